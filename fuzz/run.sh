#!/usr/bin/env bash
# Fuzz one target with AFL++ on stable Rust (docs/fuzzing.md).
#
#   fuzz/run.sh TARGET SECONDS        run for SECONDS (afl-fuzz -V)
#   fuzz/run.sh TARGET --execs N      run for about N executions (afl-fuzz -E)
#   fuzz/run.sh setup                 only install the tools and build the targets
#
# TARGET: frame | dns | policy. Installs what it needs (clang and llvm from
# Debian, cargo-afl from crates.io, AFL++ built by `cargo afl config --build`),
# builds the targets with `cargo afl build --release`, fuzzes from
# fuzz/corpus/TARGET into FUZZ_OUT (default fuzz/out/TARGET, emptied first),
# then prints the run's figures and every crash and hang, and exits 1 if there
# is any. Environment: CARGO_TARGET_DIR (default fuzz/target), FUZZ_OUT,
# FUZZ_TIMEOUT_MS (afl-fuzz -t, default 1000), NICE (default 10),
# AFL_NO_AFFINITY (default 1: no CPU pinning, so that several targets, or a
# fuzzer and a build, share a small machine; 0 pins each fuzzer to a free core).
# Several targets at once: run `setup` first, then one run.sh per target.
set -euo pipefail
cd "$(dirname "$0")"

usage() { echo "usage: $0 frame|dns|policy SECONDS|--execs N   or   $0 setup" >&2; exit 2; }
[ $# -ge 1 ] || usage
target=$1
case "$target" in
  setup) [ $# -eq 1 ] || usage ;;
  frame | dns | policy)
    [ $# -ge 2 ] || usage
    case "$2" in
      --execs) [ $# -eq 3 ] || usage; limit=(-E "$3") ;;
      *) [ $# -eq 2 ] || usage; limit=(-V "$2") ;;
    esac
    ;;
  *) usage ;;
esac
nice=(nice -n "${NICE:-10}")
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
out="${FUZZ_OUT:-$PWD/out/$target}"

# --- tools ---------------------------------------------------------------
if ! command -v clang >/dev/null 2>&1 || ! command -v llvm-config >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "fuzz: installing clang and llvm" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq clang llvm >/dev/null
  else
    echo "fuzz: AFL++ needs clang and llvm (apt-get install clang llvm)" >&2
    exit 2
  fi
fi
if ! cargo afl --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-afl" >&2
  "${nice[@]}" cargo install cargo-afl --locked
fi
# cargo-afl builds AFL++ when it is installed; `config --build` does it for a
# toolchain that has none yet (it refuses, harmlessly, when it is there).
rustc_id="$(rustc -V | awk '{ print $1 "-" $2 "-" substr($3, 2, 7) }')"
if ! ls "${XDG_DATA_HOME:-$HOME/.local/share}/afl.rs/$rustc_id"/afl.rs-*/afl/bin/afl-fuzz >/dev/null 2>&1; then
  echo "fuzz: building AFL++" >&2
  "${nice[@]}" cargo afl config --build
fi

# --- machine -------------------------------------------------------------
# AFL refuses to start when core dumps go to a helper program (systemd-coredump,
# apport): a crash would be reported late or not at all. As root, set it.
if [ "$(head -c 1 /proc/sys/kernel/core_pattern)" = "|" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo core >/proc/sys/kernel/core_pattern
  else
    echo "fuzz: core_pattern pipes to a program; as root: echo core >/proc/sys/kernel/core_pattern" >&2
  fi
fi
# This VM has no CPU frequency governor to check; AFL_NO_UI: plain log lines.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
if [ "${AFL_NO_AFFINITY:-1}" = 0 ]; then
  unset AFL_NO_AFFINITY
else
  export AFL_NO_AFFINITY=1
fi

# --- build and fuzz ------------------------------------------------------
# Not --locked: fuzz/Cargo.lock pins what it has, and a dependency the
# libraries gain later is resolved here instead of failing the build.
"${nice[@]}" cargo afl build --release --bins
[ "$target" = setup ] && exit 0
rm -rf "$out"
mkdir -p "$(dirname "$out")"
status=0
"${nice[@]}" cargo afl fuzz -i "corpus/$target" -o "$out" -t "${FUZZ_TIMEOUT_MS:-1000}" \
  "${limit[@]}" -- "$CARGO_TARGET_DIR/release/$target" >"$out.log" 2>&1 || status=$?

# --- report --------------------------------------------------------------
stats="$out/default/fuzzer_stats"
if [ ! -f "$stats" ]; then
  tail -n 40 "$out.log" >&2
  echo "fuzz: afl-fuzz did not run (exit $status)" >&2
  exit 1
fi
echo "fuzz $target: $(date -u +%FT%TZ)"
grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|stability|bitmap_cvg) ' "$stats"
found=0
for kind in crashes hangs; do
  for f in "$out/default/$kind"/id:*; do
    [ -e "$f" ] || continue
    found=$((found + 1))
    echo "--- $kind: $f ($(wc -c <"$f") bytes)"
    od -A x -t x1z -v "$f" | head -n 16
  done
done
if [ "$found" -gt 0 ]; then
  echo "fuzz $target: $found crash(es)/hang(s) found; replay one with:" >&2
  echo "  $CARGO_TARGET_DIR/release/$target < FILE" >&2
  echo "then copy it to fuzz/regressions/$target/ (docs/fuzzing.md)" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  tail -n 20 "$out.log" >&2
  echo "fuzz: afl-fuzz exited with $status" >&2
  exit 1
fi
echo "fuzz $target: no crash, no hang"
