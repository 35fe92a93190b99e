#!/usr/bin/env bash
# Rebuild the committed XDP object bulkhead.o from bulkhead.c (its ABI in
# bulkhead.h; needs clang; Debian: apt-get install -y clang). Only
# <linux/bpf.h> is used (linux-libc-dev), no libbpf.
# Then regenerates dataplane/src/io/afxdp/abi.rs, the Rust side's constants and
# map definitions, from bulkhead.o (a dataplane test writes it; cargo needed).
# OUT_DIR=dir writes the object there instead and leaves abi.rs alone (CI
# rebuilds it and compares it with the committed one). The build is
# reproducible: the debug info names no absolute path, so the same clang gives
# the same bytes from any checkout.
set -euo pipefail
cd "$(dirname "$0")"
CLANG=${CLANG:-clang}
OUT_DIR=${OUT_DIR:-}
# <linux/bpf.h> includes <asm/types.h>, which Debian keeps in the multiarch dir.
MULTIARCH=${MULTIARCH:-/usr/include/$(uname -m)-linux-gnu}
[ -z "$OUT_DIR" ] || mkdir -p "$OUT_DIR"
for p in bulkhead; do
  out="${OUT_DIR:-.}/$p.o"
  "$CLANG" -O2 -g -Wall -Werror -target bpf -I"$MULTIARCH" \
    -fdebug-prefix-map="$(pwd)=." -fdebug-compilation-dir=. \
    -c "$p.c" -o "$out"
  echo "built $out"
done
if [ -z "$OUT_DIR" ]; then
  # The generator is a test (io::afxdp::abi_gen) that writes the file when asked.
  (cd ../.. && BULKHEAD_WRITE_ABI=1 cargo test --quiet -p bulkhead-dataplane --lib abi_gen >/dev/null)
  echo "generated dataplane/src/io/afxdp/abi.rs"
fi
