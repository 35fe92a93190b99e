#!/usr/bin/env bash
# Rebuild the test-only BPF objects of dataplane/tests (needs clang; Debian:
# apt-get install -y clang). The objects are committed so the tests run without
# clang; OUT_DIR=dir writes them elsewhere (.ci/run rebuilds and compares).
set -euo pipefail
cd "$(dirname "$0")"
CLANG=${CLANG:-clang}
OUT_DIR=${OUT_DIR:-.}
# <linux/bpf.h> includes <asm/types.h>, which Debian keeps in the multiarch dir.
MULTIARCH=${MULTIARCH:-/usr/include/$(uname -m)-linux-gnu}
for src in vlan_push.c; do
  "$CLANG" -O2 -Wall -Werror -target bpf -I"$MULTIARCH" -c "$src" -o "$OUT_DIR/${src%.c}.o"
  echo "built $OUT_DIR/${src%.c}.o"
done
