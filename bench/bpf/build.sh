#!/usr/bin/env bash
# Rebuild the committed XDP objects of the end-to-end benchmark (gen.o, sink.o,
# fwd.o) from their C sources. Needs clang (Debian: apt-get install -y clang);
# only <linux/bpf.h> (linux-libc-dev) is used, no libbpf. Running the harness
# needs no clang: the objects are committed and embedded in the binary.
set -euo pipefail
cd "$(dirname "$0")"
CLANG=${CLANG:-clang}
MULTIARCH=${MULTIARCH:-/usr/include/$(uname -m)-linux-gnu}
for p in gen sink fwd; do
  "$CLANG" -O2 -g -Wall -Werror -target bpf -I"$MULTIARCH" -c "$p.c" -o "$p.o"
  echo "built $(pwd)/$p.o"
done
