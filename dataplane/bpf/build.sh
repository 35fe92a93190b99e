#!/usr/bin/env bash
# Rebuild the committed XDP objects from their C sources (needs clang; Debian:
# apt-get install -y clang). Only <linux/bpf.h> is used (linux-libc-dev), no
# libbpf.
#   bulkhead.o        the XDP program (bulkhead.c; its ABI in bulkhead.h)
#   flow_key_probe.o  test only: the program's flow key under BPF_PROG_RUN
# Then regenerates dataplane/src/io/afxdp/abi.rs, the Rust side's constants and
# map definitions, from bulkhead.o (cargo run -p bulkhead-abi-gen).
# OUT_DIR=dir writes the objects there instead and leaves abi.rs alone (CI
# rebuilds them and compares them with the committed ones). The build is
# reproducible: the debug info names no absolute path, so the same clang gives
# the same bytes from any checkout.
set -euo pipefail
cd "$(dirname "$0")"
CLANG=${CLANG:-clang}
OUT_DIR=${OUT_DIR:-}
# <linux/bpf.h> includes <asm/types.h>, which Debian keeps in the multiarch dir.
MULTIARCH=${MULTIARCH:-/usr/include/$(uname -m)-linux-gnu}
[ -z "$OUT_DIR" ] || mkdir -p "$OUT_DIR"
for p in bulkhead flow_key_probe; do
  out="${OUT_DIR:-.}/$p.o"
  "$CLANG" -O2 -g -Wall -Werror -target bpf -I"$MULTIARCH" \
    -fdebug-prefix-map="$(pwd)=." -fdebug-compilation-dir=. \
    -c "$p.c" -o "$out"
  echo "built $out"
done
if [ -z "$OUT_DIR" ]; then
  (cd ../.. && cargo run --quiet -p bulkhead-abi-gen)
fi
