#!/usr/bin/env bash
# Rebuild the committed XDP object from bulkhead.c (needs clang; Debian: apt-get
# install -y clang). Only <linux/bpf.h> is used (linux-libc-dev), no libbpf.
set -euo pipefail
cd "$(dirname "$0")"
CLANG=${CLANG:-clang}
# <linux/bpf.h> includes <asm/types.h>, which Debian keeps in the multiarch dir.
MULTIARCH=${MULTIARCH:-/usr/include/$(uname -m)-linux-gnu}
"$CLANG" -O2 -g -Wall -Werror -target bpf -I"$MULTIARCH" -c bulkhead.c -o bulkhead.o
echo "built $(pwd)/bulkhead.o"
