#!/usr/bin/env bash
# Rebuild the committed XDP object from bulkhead.c (needs clang; Debian: apt-get
# install -y clang). Only <linux/bpf.h> is used (linux-libc-dev), no libbpf.
# OUT=path writes the object elsewhere (CI rebuilds it and compares it with the
# committed one). The build is reproducible: the debug info names no absolute
# path, so the same clang gives the same bytes from any checkout.
set -euo pipefail
cd "$(dirname "$0")"
CLANG=${CLANG:-clang}
OUT=${OUT:-bulkhead.o}
# <linux/bpf.h> includes <asm/types.h>, which Debian keeps in the multiarch dir.
MULTIARCH=${MULTIARCH:-/usr/include/$(uname -m)-linux-gnu}
"$CLANG" -O2 -g -Wall -Werror -target bpf -I"$MULTIARCH" \
  -fdebug-prefix-map="$(pwd)=." -fdebug-compilation-dir=. \
  -c bulkhead.c -o "$OUT"
echo "built $OUT"
