#!/usr/bin/env bash
# One worker against two: bulkhead's userspace path with dataplane.workers = 1
# and = 2 on veths with two queues, side by side in one run.
#
#   client (10.89.0.1-4) --veth, 2 queues-- [dut-a  bulkhead  dut-b] --veth, 2 queues-- server (10.89.0.101-104)
#
# Four address pairs, so flows spread over the workers (ownership goes by host
# pair). Each DUT gets four parallel iperf3 UDP floods of 64-byte payloads (one
# per pair) and four parallel TCP streams. Offload is off: this measures the
# userspace path, which is what several workers parallelise. Medians over the
# runs are printed and, with --write, appended to bench/RESULTS.md.
#
# Usage (root): bench/workers.sh [--runs N] [--duration S] [--write] [--smoke]
# Namespaces bh-wk-*: removed on exit and, after a crash, at the next start.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX="bh-wk-"
NS_C="${PREFIX}client"
NS_D="${PREFIX}dut"
NS_S="${PREFIX}server"
PAIRS=4
PIN_DIR=/sys/fs/bpf/bulkhead

RUNS=3
DURATION=5
WRITE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --write) WRITE=1; shift ;;
    --smoke) RUNS=1; DURATION=1; WRITE=0; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "workers.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, XDP)"
for tool in ip iperf3 ethtool nsenter python3 ping; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
BULKHEAD="${BULKHEAD:-$ROOT/target/release/bulkhead}"
if [ -z "${BULKHEAD_NO_BUILD:-}" ] && command -v cargo >/dev/null; then
  (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[ -x "$BULKHEAD" ] || die "$BULKHEAD not found"

WORK="$(mktemp -d /tmp/bh-wk.XXXXXX)"
APPLIANCE_PID=""
cleanup() {
  if [ -n "$APPLIANCE_PID" ]; then
    kill -TERM "$APPLIANCE_PID" 2>/dev/null || true
    wait "$APPLIANCE_PID" 2>/dev/null || true
    APPLIANCE_PID=""
  fi
  pkill -f "iperf3 -s -1 -B 10.89.0." 2>/dev/null || true
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${PREFIX}" || true); do
    ino="$(stat -L -c %i "/var/run/netns/$ns" 2>/dev/null || true)"
    [ -n "$ino" ] && rm -f "$PIN_DIR/$ino"-* 2>/dev/null
    ip netns delete "$ns" 2>/dev/null || true
  done
}
trap 'cleanup; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
cleanup

in_ns() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }
client_ip() { echo "10.89.0.$1"; }
server_ip() { echo "10.89.0.$((100 + $1))"; }

for ns in "$NS_C" "$NS_D" "$NS_S"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
done
ip link add eth0 netns "$NS_C" numtxqueues 2 numrxqueues 2 type veth peer name dut-a \
  netns "$NS_D" numtxqueues 2 numrxqueues 2
ip link add eth0 netns "$NS_S" numtxqueues 2 numrxqueues 2 type veth peer name dut-b \
  netns "$NS_D" numtxqueues 2 numrxqueues 2
for i in $(seq 1 $PAIRS); do
  ip -n "$NS_C" addr add "$(client_ip "$i")/24" dev eth0
  ip -n "$NS_S" addr add "$(server_ip "$i")/24" dev eth0
done
for ns in "$NS_C" "$NS_S"; do
  ip -n "$ns" link set eth0 up
  in_ns "$ns" ethtool -K eth0 tx off gro on >/dev/null
done
ip -n "$NS_D" link set dut-a up
ip -n "$NS_D" link set dut-b up

cat >"$WORK/policy.yaml" <<'EOF'
default_mode: learn
EOF

bulkhead_up() { # workers
  cat >"$WORK/bulkhead.toml" <<EOF
[ports]
a = "dut-a"
b = "dut-b"
on_stop = "detach"

[dataplane]
workers = $1
offload = "off"
frames = 8192

[policy]
file = "$WORK/policy.yaml"

[control]
store = "$WORK/bulkhead-$1-$RANDOM.db"

[api]
enabled = false
EOF
  nsenter --net="/var/run/netns/$NS_D" "$BULKHEAD" run --config "$WORK/bulkhead.toml" \
    >>"$WORK/appliance.log" 2>&1 &
  APPLIANCE_PID=$!
  local i
  for i in $(seq 1 40); do
    if in_ns "$NS_C" ping -q -c 1 -W 1 "$(server_ip 1)" >/dev/null 2>&1; then return 0; fi
    kill -0 "$APPLIANCE_PID" 2>/dev/null || { cat "$WORK/appliance.log" >&2; die "bulkhead exited"; }
    sleep 0.25
  done
  cat "$WORK/appliance.log" >&2
  die "no path through bulkhead with $1 worker(s)"
}

bulkhead_down() {
  kill -TERM "$APPLIANCE_PID" 2>/dev/null || true
  wait "$APPLIANCE_PID" 2>/dev/null || true
  APPLIANCE_PID=""
}

# PAIRS parallel iperf3 runs; prints the summed figure (UDP: pps received, TCP: Gbit/s).
parallel_iperf() { # udp|tcp tag
  local kind="$1" tag="$2" i pids=()
  for i in $(seq 1 $PAIRS); do
    in_ns "$NS_S" timeout $((DURATION + 30)) iperf3 -s -1 -B "$(server_ip "$i")" -p $((5300 + i)) \
      >/dev/null 2>&1 &
  done
  sleep 0.5
  for i in $(seq 1 $PAIRS); do
    local args=(-c "$(server_ip "$i")" -B "$(client_ip "$i")" -p $((5300 + i)) -t "$DURATION" -J)
    [ "$kind" = udp ] && args+=(-u -l 64 -b 0)
    in_ns "$NS_C" timeout $((DURATION + 20)) iperf3 "${args[@]}" >"$WORK/$kind-$tag-$i.json" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  wait 2>/dev/null || true
  python3 - "$kind" "$WORK"/"$kind-$tag"-*.json <<'EOF'
import json, sys
kind, files = sys.argv[1], sys.argv[2:]
total = 0.0
for f in files:
    try:
        d = json.load(open(f))
        r = d["end"]["sum_received"]
    except Exception:
        continue
    if kind == "udp":
        total += (r["packets"] - r["lost_packets"]) / (r["seconds"] or 1)
    else:
        total += r["bits_per_second"] / 1e9
print(("%.0f" if kind == "udp" else "%.3f") % total)
EOF
}

echo "kernel $(uname -r), $(nproc) CPUs; $RUNS run(s) of ${DURATION}s; $PAIRS address pairs, veths with 2 queues"
: >"$WORK/results"
for run in $(seq 1 "$RUNS"); do
  for w in 1 2; do
    bulkhead_up "$w"
    udp="$(parallel_iperf udp "$w-$run")"
    tcp="$(parallel_iperf tcp "$w-$run")"
    bulkhead_down
    echo "$w $run $udp $tcp" >>"$WORK/results"
    printf '  run %d, %d worker(s): UDP 64B %9s pps received, TCP %7s Gbit/s\n' "$run" "$w" "$udp" "$tcp"
  done
done
grep -h "worker(s)\|w0 \|w1 " "$WORK/appliance.log" | tail -4 || true

python3 - "$WORK/results" "$RUNS" "$DURATION" >"$WORK/table" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def med(w, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == w)
print("| measure (median of %s runs, %s s, 4 address pairs) | 1 worker | 2 workers | 2 / 1 |" % (sys.argv[2], sys.argv[3]))
print("|---|---:|---:|---:|")
for name, col, fmt in [("UDP 64 B, packets/s received", 2, "%.0f"), ("TCP, Gbit/s", 3, "%.2f")]:
    a, b = med("1", col), med("2", col)
    print("| %s | %s | %s | %s |" % (name, fmt % a, fmt % b, "%.2f" % (b / a) if a else "-"))
EOF
echo
cat "$WORK/table"
if [ "$WRITE" = 1 ]; then
  {
    echo
    echo "### Workers: one against two (issue 4)"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r), $(nproc) CPUs. Reproduce: \`sudo bench/workers.sh --write\`."
    echo
    cat "$WORK/table"
  } >>"$ROOT/bench/RESULTS.md"
  echo "appended to bench/RESULTS.md"
fi
