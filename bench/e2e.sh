#!/usr/bin/env bash
# End-to-end benchmark: generator -> device under test -> sink, every DUT in
# one run, medians of N runs, ratios to bridge + best nftables.
#
#   bh-e2e-gen [eth0] --veth-- [dut-a  bh-e2e-dut  dut-b] --veth-- [eth0] bh-e2e-sink
#
# Generator: kernel pktgen is not built into this kernel (no /proc/net/pktgen),
# so `bulkhead-bench gen` (XDP program in BPF_PROG_RUN live-frames mode, XDP_TX out
# of the generator's veth) sends the traffic; the report names the generator.
# Sink: an XDP program counting and dropping (`bulkhead-bench sink`).
# DUTs: bridge; bridge + nftables linear (`bulkhead-bench nft --linear`);
# bridge + nftables best (`bulkhead-bench nft`); bare XDP devmap redirect;
# bare AF_XDP forwarder; bulkhead (`bulkhead run`), and "offload off"/"offload
# on" variants when `bulkhead run` accepts `offload` in [dataplane].
#
# Usage (root): bench/e2e.sh [--runs N] [--duration S] [--no-write] [--smoke]
#               [--duts "bridge nft-best ..."] [--keep]
#   --smoke   a few seconds: 1 run of 0.5 s per DUT at 1k rules, 64 B, a short
#             latency check, nothing written
#   --records the cost of flow records to the packet path, and nothing else:
#             bulkhead with offload off, records on against records off, 1k
#             rules, 64 B, 10k flows, and a churn case (1M flows through a
#             64k-flow table: every new flow pushes one out, so records are
#             made at the rate flows start); medians of the runs and the
#             on/off ratios printed, nothing written
#   --ipfix   the same with the IPFIX export on against off (records on in
#             both), exporting over UDP to a collector in the DUT's namespace
#             (nfcapd if installed, else a socket that reads and discards)
#   --intel   threat intel, and nothing else: bulkhead with offload off, 1M
#             addresses + 1M domains in block feeds against none (1k rules,
#             64 B, 10k flows; medians of the runs, their ratio); then, offload
#             off and on, the time from adding a block entry for the streaming
#             flows' destinations through the API to their last frame, with
#             the quarantine timed the same way beside it; nothing written
#   --new-flows new flows per second, bulkhead (offload on) against bridge +
#             br_netfilter + conntrack + best nftables, UDP and TCP SYN
#             floods of new flows, with established flows' loss and latency
#             beside them (bench/e2e-newflows.sh); lines and a plot in /tmp
# Takes /tmp/bh-netns.lock itself (other namespace tests wait, and we wait for
# them); not when an ancestor process holds it already (or BH_E2E_LOCKED=1). BULKHEAD=path runs
# another appliance binary, BULKHEAD_BENCH=path another bulkhead-bench (default:
# beside $BULKHEAD), BULKHEAD_NO_BUILD=1 skips `cargo build --release`.
# Namespaces bh-e2e-*, removed on exit and, after a crash, at start.
set -euo pipefail

LOCK=/tmp/bh-netns.lock
# Whether an ancestor (e.g. `flock /tmp/bh-netns.lock bash .ci/run`) holds the
# lock: /proc/locks names the process that took it. Taking it again would wait
# for ourselves.
lock_held_by_ancestor() {
  local ino holders pid h
  ino="$(stat -c %i "$LOCK" 2>/dev/null)" || return 1
  holders="$(awk -v i=":$ino" '$2 == "FLOCK" && $6 ~ (i "$") { print $5 }' /proc/locks)"
  [ -n "$holders" ] || return 1
  pid=$$
  while [ "${pid:-0}" -gt 1 ]; do
    for h in $holders; do [ "$h" = "$pid" ] && return 0; done
    pid="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $2 }')"
  done
  return 1
}
if [ -z "${BH_E2E_LOCKED:-}" ] && ! lock_held_by_ancestor; then
  # -o: only flock holds the lock, not the DUT processes it would outlive.
  exec env BH_E2E_LOCKED=1 flock -o "$LOCK" "$0" "$@"
fi

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX="bh-e2e-"
NS_G="${PREFIX}gen"
NS_D="${PREFIX}dut"
NS_S="${PREFIX}sink"
PIN_DIR=/sys/fs/bpf/bulkhead
# The sink's counters, for `bulkhead-bench quarantine` (the sink removes it).
SINK_PIN=/sys/fs/bpf/bh-e2e-sink-count
API_PORT=9443

RUNS=3
DURATION=3
WRITE=1
SMOKE=0
RECORDS_ONLY=0
INTEL_ONLY=0
NEWFLOWS_ONLY=0
DUTS_ARG=""
ARGS_SHOWN="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --no-write) WRITE=0; shift ;;
    --smoke) SMOKE=1; RUNS=1; DURATION=0.5; WRITE=0; shift ;;
    --records) RECORDS_ONLY=1; WRITE=0; shift ;;
    --ipfix) RECORDS_ONLY=1; PAIR=ipfix; WRITE=0; shift ;;
    --intel) INTEL_ONLY=1; WRITE=0; shift ;;
    --new-flows) NEWFLOWS_ONLY=1; WRITE=0; shift ;;
    --duts) DUTS_ARG="$2"; shift 2 ;;
    --keep) export BH_E2E_KEEP=1; shift ;;
    -h|--help) sed -n '2,43p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "e2e.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, XDP)"
for tool in ip nft ethtool nsenter taskset bridge; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install -y iproute2 nftables ethtool util-linux)"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (generator on CPU 0, userspace DUTs on CPU 1)"
# The sink pins its counters on bpffs before any bulkhead (which mounts it
# itself) has run: a fresh machine may have nothing mounted there.
if ! grep -qs " /sys/fs/bpf bpf " /proc/self/mounts; then
  mount -t bpf bpf /sys/fs/bpf || die "cannot mount bpffs on /sys/fs/bpf"
fi

BULKHEAD="${BULKHEAD:-${CARGO_TARGET_DIR:-$ROOT/target}/release/bulkhead}"
# The benchmark's own tools (generator, sink, forwarders, policy and its
# nftables export, report) are the bulkhead-bench binary, not the appliance's;
# by default beside $BULKHEAD.
BENCH="${BULKHEAD_BENCH:-$(dirname "$BULKHEAD")/bulkhead-bench}"
if [ -z "${BULKHEAD_NO_BUILD:-}" ] && command -v cargo >/dev/null; then
  (cd "$ROOT" && cargo build --release --quiet -p bulkhead -p bulkhead-bench) ||
    die "cargo build --release failed"
fi
[ -x "$BULKHEAD" ] || die "$BULKHEAD not found: run cargo build --release first"
[ -x "$BENCH" ] || die "$BENCH not found: run cargo build --release -p bulkhead-bench first (or set BULKHEAD_BENCH)"

WORK="$(mktemp -d /tmp/bh-e2e.XXXXXX)"
DUT_PID=""
SINK_PID=""

cleanup() {
  if [ -n "$DUT_PID" ]; then
    kill -TERM "$DUT_PID" 2>/dev/null || true
    wait "$DUT_PID" 2>/dev/null || true
    DUT_PID=""
  fi
  if [ -n "$SINK_PID" ]; then
    [ -n "${SINK_IN:-}" ] && exec {SINK_IN}>&-
    kill -TERM "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=""
  fi
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${PREFIX}" || true); do
    ino="$(stat -L -c %i "/var/run/netns/$ns" 2>/dev/null || true)"
    [ -n "$ino" ] && rm -f "$PIN_DIR/$ino"-* 2>/dev/null
    # Processes a crashed run left in our namespaces.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns delete "$ns" 2>/dev/null || true
  done
  rm -f "$SINK_PIN"
}
on_exit() {
  cleanup
  if [ -n "${BH_E2E_KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

cleanup # leftovers of a run that died

in_ns() { local ns="$1"; shift; nsenter --net="/var/run/netns/$ns" "$@"; }

build_topology() {
  for ns in "$NS_G" "$NS_D" "$NS_S"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    in_ns "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
  done
  ip link add eth0 netns "$NS_G" type veth peer name dut-a netns "$NS_D"
  ip link add eth0 netns "$NS_S" type veth peer name dut-b netns "$NS_D"
  for ns in "$NS_G" "$NS_S"; do ip -n "$ns" link set eth0 up; done
  ip -n "$NS_D" link set dut-a up
  ip -n "$NS_D" link set dut-b up
  # NAPI on the veths that receive XDP-transmitted or redirected frames.
  in_ns "$NS_D" ethtool -K dut-a gro on >/dev/null
  in_ns "$NS_D" ethtool -K dut-b gro on >/dev/null
  in_ns "$NS_G" ethtool -K eth0 gro on >/dev/null
  in_ns "$NS_S" ethtool -K eth0 gro on >/dev/null
}

# The sink: a long-lived `bulkhead-bench sink` driven over a pipe.
start_sink() {
  mkfifo "$WORK/sink.in" "$WORK/sink.out"
  # nsenter directly (not the in_ns function): $! must be the process itself.
  nsenter --net="/var/run/netns/$NS_S" "$BENCH" sink --dev eth0 --pin "$SINK_PIN" \
    <"$WORK/sink.in" >"$WORK/sink.out" 2>"$WORK/sink.err" &
  SINK_PID=$!
  exec {SINK_IN}>"$WORK/sink.in"
  exec {SINK_OUT}<"$WORK/sink.out"
  local line
  read -r -t 20 line <&"$SINK_OUT" || { cat "$WORK/sink.err" >&2; die "the sink did not start"; }
  [ "$line" = ready ] || die "sink: $line"
}
sink() { # command -> its answer line
  local line
  echo "$1" >&"$SINK_IN"
  read -r -t 30 line <&"$SINK_OUT" || die "the sink did not answer $1"
  echo "$line"
}

policy_file() { echo "$WORK/policy-$1.yaml"; }
make_policies() {
  local r
  for r in "$@"; do
    "$BENCH" policy --rules "$r" -o "$(policy_file "$r")"
    "$BENCH" nft -o "$WORK/best-$r.nft" "$(policy_file "$r")"
    "$BENCH" nft --linear -o "$WORK/linear-$r.nft" "$(policy_file "$r")"
  done
}

# Does `bulkhead run` know [dataplane] offload? (The offload branch adds it.)
offload_supported() {
  cat >"$WORK/probe.toml" <<EOF
[ports]
a = "bh-e2e-none-a"
b = "bh-e2e-none-b"
[dataplane]
offload = "off"
[policy]
file = "$(policy_file "${RULE_COUNTS%% *}")"
EOF
  local out
  out="$("$BULKHEAD" run --config "$WORK/probe.toml" 2>&1 || true)"
  case "$out" in *"unknown field \`offload\`"*) return 1 ;; *) return 0 ;; esac
}

bridge_up() {
  ip -n "$NS_D" link add br0 type bridge stp_state 0 forward_delay 0
  if in_ns "$NS_D" sysctl -n net.bridge.bridge-nf-call-iptables >/dev/null 2>&1; then
    in_ns "$NS_D" sysctl -qw net.bridge.bridge-nf-call-iptables=0
  fi
  ip -n "$NS_D" link set dut-a master br0
  ip -n "$NS_D" link set dut-b master br0
  ip -n "$NS_D" link set br0 up
  # The sink never sends: pin the destination MACs to dut-b (no flooding).
  local g
  : >"$WORK/fdb"
  for g in $(seq 0 99); do
    printf 'fdb add 02:00:00:0b:%02x:%02x dev dut-b master static\n' $((g >> 8)) $((g & 255)) >>"$WORK/fdb"
  done
  bridge -n "$NS_D" -batch "$WORK/fdb"
}
bridge_down() {
  in_ns "$NS_D" nft delete table bridge bulkhead 2>/dev/null || true
  ip -n "$NS_D" link delete br0 2>/dev/null || true
}

start_proc() { # log cpu cmd... ; waits for "ready"/"forwarding" in the log
  local log="$1" cpu="$2"; shift 2
  # nsenter and taskset exec: $! is the DUT process itself.
  nsenter --net="/var/run/netns/$NS_D" taskset -c "$cpu" "$@" >"$log" 2>&1 &
  DUT_PID=$!
  for _ in $(seq 1 100); do
    grep -q "^ready\|^forwarding" "$log" 2>/dev/null && return 0
    kill -0 "$DUT_PID" 2>/dev/null || { cat "$log" >&2; die "DUT process exited: $*"; }
    sleep 0.1
  done
  cat "$log" >&2
  die "DUT process not ready after 10 s: $*"
}
stop_proc() {
  [ -n "$DUT_PID" ] || return 0
  kill -TERM "$DUT_PID" 2>/dev/null || true
  wait "$DUT_PID" 2>/dev/null || true
  DUT_PID=""
}

bulkhead_up() { # rules offload(""|on|off) [api]; env RECORDS=off, FLOW_CAPACITY=N, INTEL_ON=true
  local extra="" api="enabled = false" records="enabled = ${RECORDS_ON:-true}" ipfix="" intel=""
  [ "${IPFIX_ON:-false}" = true ] && ipfix="collectors = [\"udp://127.0.0.1:4739\"]"
  if [ "${INTEL_ON:-false}" = true ]; then
    intel="[[intel.feeds]]
name = \"bench-ips\"
path = \"$WORK/intel-ips.txt\"
action = \"block\"
[[intel.feeds]]
name = \"bench-domains\"
path = \"$WORK/intel-domains.txt\"
action = \"block\""
  fi
  [ -n "$2" ] && extra="offload = \"$2\""
  [ "${3:-}" = api ] && api="listen = \"127.0.0.1:$API_PORT\""
  DUT_STORE="$WORK/bulkhead-$1-$RANDOM.db"
  cat >"$WORK/bulkhead.toml" <<EOF
[ports]
a = "dut-a"
b = "dut-b"
fail_mode = "closed"
on_stop = "detach"

[dataplane]
flow_capacity = ${FLOW_CAPACITY:-2097152}
stats_interval = ${STATS_INTERVAL:-3600}
$extra

[records]
$records

[ipfix]
$ipfix

[policy]
file = "$(policy_file "$1")"

# A store of its own each time: a store's live version wins over the file.
[control]
store = "$DUT_STORE"

[api]
$api

[intel]
$intel
EOF
  start_proc "$WORK/dut.log" 1 "$BULKHEAD" run --config "$WORK/bulkhead.toml"
}

dut_up() { # dut rules
  case "$1" in
    bridge) bridge_up ;;
    nft-linear) bridge_up; in_ns "$NS_D" nft -f "$WORK/linear-$2.nft" ;;
    nft-best) bridge_up; in_ns "$NS_D" nft -f "$WORK/best-$2.nft" ;;
    xdp-fwd) start_proc "$WORK/dut.log" 1 "$BENCH" xdp-fwd --a dut-a --b dut-b ;;
    afxdp-fwd) start_proc "$WORK/dut.log" 1 "$BENCH" afxdp-fwd --a dut-a --b dut-b ;;
    bulkhead) bulkhead_up "$2" "" ;;
    bulkhead-offload-off) bulkhead_up "$2" off ;;
    bulkhead-offload-on) bulkhead_up "$2" on ;;
    bulkhead-records-on) RECORDS_ON=true bulkhead_up "$2" off ;;
    bulkhead-records-off) RECORDS_ON=false bulkhead_up "$2" off ;;
    bulkhead-ipfix-on) IPFIX_ON=true bulkhead_up "$2" off ;;
    bulkhead-ipfix-off) IPFIX_ON=false bulkhead_up "$2" off ;;
    bulkhead-intel-on) INTEL_ON=true bulkhead_up "$2" off ;;
    bulkhead-intel-off) INTEL_ON=false bulkhead_up "$2" off ;;
    *) die "unknown DUT $1" ;;
  esac
}
dut_down() {
  case "$1" in
    bridge|nft-*) bridge_down ;;
    *) stop_proc ;;
  esac
}
rule_dependent() { case "$1" in nft-*|bulkhead*) return 0 ;; *) return 1 ;; esac; }

# /proc/stat busy jiffies and total jiffies of cpu0 and cpu1: "b0 t0 b1 t1".
cpu_snap() {
  awk '/^cpu[01] / { t = 0; for (i = 2; i <= NF; i++) t += $i; printf "%d %d ", t - $5 - $6, t }' /proc/stat
}
proc_ticks() { # pid -> utime+stime ticks (0 if none)
  if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
  else
    echo 0
  fi
}

gen() { # size flows rules rate duration [--stamp]
  in_ns "$NS_G" taskset -c 0 "$BENCH" gen --dev eth0 --size "$1" --flows "$2" --rules "$3" \
    --rate "$4" --duration "$5" ${6:-}
}

# One measurement: appends a JSON line to $WORK/results.
measure() { # kind dut rules size flows run rate
  local kind="$1" dut="$2" rules="$3" size="$4" flows="$5" run="$6" rate="$7"
  local stamp="" g s c0 c1 p0 p1 lat="null"
  [ "$kind" = lat ] && stamp="--stamp"
  # Warm-up: every flow through the DUT (flow tables, bridge learning); about
  # 200k frames/s reach a userspace DUT, so many flows need a longer warm-up.
  local warm
  warm="$(awk -v f="$flows" 'BEGIN { w = f / 200000; if (w < 0.3) w = 0.3; print w }')"
  gen "$size" "$flows" "$rules" 0 "$warm" >/dev/null
  sleep 0.2
  sink reset >/dev/null
  c0="$(cpu_snap)"; p0="$(proc_ticks "$DUT_PID")"
  g="$(gen "$size" "$flows" "$rules" "$rate" "$DURATION" $stamp)" || die "generator failed ($dut)"
  c1="$(cpu_snap)"; p1="$(proc_ticks "$DUT_PID")"
  sleep 0.1
  s="$(sink read)"
  [ "$kind" = lat ] && lat="$(sink lat)"
  read -r b0 t0 b1 t1 <<<"$c0"
  read -r B0 T0 B1 T1 <<<"$c1"
  local cpu
  cpu="$(awk -v a="$((B0 - b0))" -v b="$((T0 - t0))" -v c="$((B1 - b1))" -v d="$((T1 - t1))" \
    'BEGIN { printf "%.3f,%.3f", (b ? a / b : 0), (d ? c / d : 0) }')"
  printf '{"kind":"%s","dut":"%s","rules":%s,"size":%s,"flows":%s,"run":%s,"rate":%s,"gen":%s,"sink":%s,"lat":%s,"cpu":[%s],"dut_ticks":%s}\n' \
    "$kind" "$dut" "$rules" "$size" "$flows" "$run" "$rate" "$g" "$s" "$lat" "$cpu" "$((p1 - p0))" >>"$WORK/results"
  printf '  %-9s %-22s %6s rules %4s B %7s flows: sent %9s, received %9s frames in %ss\n' \
    "$kind" "$dut" "$rules" "$size" "$flows" "$(echo "$g" | sed 's/.*"sent":\([0-9]*\).*/\1/')" \
    "$(echo "$s" | sed 's/.*"frames":\([0-9]*\).*/\1/')" "$DURATION"
}

# A failed check of a DUT process: stop it and show its last counters (a
# bulkhead DUT prints them on SIGTERM: drops by reason, the kernel's socket drops).
dut_fail() {
  if [ -n "$DUT_PID" ]; then
    stop_proc
    grep "^stats" "$WORK/dut.log" | tail -1 >&2 || true
  fi
  die "$@"
}

# The DUTs with a policy must carry the same policy: allowed UDP and TCP SYN
# flows pass, flows on ports no rule allows are dropped. Fails the run if not.
verify_policy() { # dut rules
  local dut="$1" rules="$2" proto off want got g s
  for proto in udp syn; do
    for off in "" --off-policy; do
      sink reset >/dev/null
      g="$(in_ns "$NS_G" "$BENCH" gen --dev eth0 --flows 1000 --rules "$rules" --proto "$proto" \
        --rate 20000 --duration 0.3 $off)" || die "generator failed ($dut check)"
      sleep 0.1
      s="$(sink read)"
      got="$(echo "$s" | sed 's/.*"frames":\([0-9]*\).*/\1/')"
      want="$(echo "$g" | sed 's/.*"sent":\([0-9]*\).*/\1/')"
      # Denied traffic: nothing (a stray frame of the namespaces' own, e.g. the
      # bridge's, may be counted: tolerate under 1 %). Allowed traffic: every
      # frame but a few (a userspace DUT's first packets).
      if [ -n "$off" ] && [ "$got" -gt $((want / 100)) ]; then
        dut_fail "$dut ($rules rules) let $got $proto frames through that the policy denies"
      fi
      if [ -z "$off" ] && [ "$got" -lt $((want * 9 / 10)) ]; then
        dut_fail "$dut ($rules rules) forwarded $got of $want allowed $proto frames"
      fi
    done
  done
  echo "  policy check $dut ($rules rules): allowed UDP and SYN pass, the rest is dropped"
}

# ---------------------------------------------------------------------------
START_TIME=$(date +%s)
if [ "$SMOKE" = 1 ] || [ "$NEWFLOWS_ONLY" = 1 ]; then RULE_COUNTS="1000"; else RULE_COUNTS="1000 100000"; fi
echo "kernel $(uname -r), $(nproc) CPUs; $RUNS run(s) of ${DURATION}s; rules: $RULE_COUNTS"
[ -e /proc/net/pktgen ] && echo "note: kernel pktgen is present, but the harness drives bulkhead-bench gen (flows must aim at the policy's rules)"
make_policies $RULE_COUNTS
build_topology
start_sink

if [ "$RECORDS_ONLY" = 1 ]; then
  # Records (or the IPFIX export) on and off alternate within each run, so
  # that both see the same machine; 1k rules, 64 B; the received frames'
  # medians and their ratio.
  what="${PAIR:-records}"
  if [ "$what" = ipfix ]; then
    # The collector, in the DUT's namespace where the appliance sends.
    ip -n "$NS_D" link set lo up
    if command -v nfcapd >/dev/null; then
      mkdir -p "$WORK/nfcapd"
      nsenter --net="/var/run/netns/$NS_D" nfcapd -w "$WORK/nfcapd" -b 127.0.0.1 -p 4739 >"$WORK/nfcapd.log" 2>&1 &
    else
      nsenter --net="/var/run/netns/$NS_D" python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 4739))
while True: s.recv(65536)' &
    fi
    COLLECTOR_PID=$!  # the namespace's cleanup stops it
  fi
  : >"$WORK/results"
  for run in $(seq 1 "$RUNS"); do
    for case in steady churn; do
      for dut in "bulkhead-$what-on" "bulkhead-$what-off"; do
        if [ "$case" = churn ]; then flows=1000000; cap=65536; else flows=10000; cap=2097152; fi
        FLOW_CAPACITY=$cap dut_up "$dut" 1000
        measure "$case" "$dut" 1000 64 "$flows" "$run" 0
        dut_down "$dut"
      done
    done
  done
  echo "$what on against off (medians of $RUNS runs of ${DURATION}s, frames received per second):"
  for case in steady churn; do
    on="$(grep "\"kind\":\"$case\",\"dut\":\"bulkhead-$what-on\"" "$WORK/results" \
      | sed 's/.*"sink":{"frames":\([0-9]*\).*/\1/' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')"
    off="$(grep "\"kind\":\"$case\",\"dut\":\"bulkhead-$what-off\"" "$WORK/results" \
      | sed 's/.*"sink":{"frames":\([0-9]*\).*/\1/' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')"
    awk -v c="$case" -v w="$what" -v on="$on" -v off="$off" -v d="$DURATION" 'BEGIN {
      printf "  %-6s %s on %9.0f pps, off %9.0f pps, on/off %.3f\n", c, w, on / d, off / d, (off ? on / off : 0) }'
  done
  cp "$WORK/results" "${BH_E2E_RECORDS_OUT:-/tmp/bh-e2e-$what.jsonl}"
  if [ -n "${COLLECTOR_PID:-}" ]; then
    kill -TERM "$COLLECTOR_PID" 2>/dev/null; wait "$COLLECTOR_PID" 2>/dev/null
    grep -h "^Ident" "$WORK/nfcapd.log" 2>/dev/null | sed 's/^/  collector: /'
  fi
  exit 0
fi

if [ "$NEWFLOWS_ONLY" = 1 ]; then
  # shellcheck source=bench/e2e-newflows.sh
  . "$ROOT/bench/e2e-newflows.sh"
  new_flows_mode
  exit 0
fi

if [ "$INTEL_ONLY" = 1 ]; then
  # 1M public addresses (11.0.0.0/12, away from the traffic's 10.0.0.0/8)
  # and 1M domains, one a line, as feed files are written.
  awk 'BEGIN { for (i = 0; i < 1000000; i++) printf "11.%d.%d.%d\n", int(i / 65536), int(i / 256) % 256, i % 256 }' >"$WORK/intel-ips.txt"
  awk 'BEGIN { for (i = 0; i < 1000000; i++) printf "c%d.intel-bench-%d.example\n", i, i % 997 }' >"$WORK/intel-domains.txt"
  : >"$WORK/results"
  for run in $(seq 1 "$RUNS"); do
    for dut in bulkhead-intel-on bulkhead-intel-off; do
      dut_up "$dut" 1000
      measure tput "$dut" 1000 64 10000 "$run" 0
      dut_down "$dut"
    done
  done
  if [ "$RUNS" -gt 0 ]; then
    echo "intel (1M addresses + 1M domains, block) on against off, offload off (medians of $RUNS runs of ${DURATION}s):"
    med() {
      grep "\"dut\":\"$1\"" "$WORK/results" | sed 's/.*"sink":{"frames":\([0-9]*\).*/\1/' \
        | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
    }
    on="$(med bulkhead-intel-on)"
    off="$(med bulkhead-intel-off)"
    awk -v on="$on" -v off="$off" -v d="$DURATION" 'BEGIN {
      printf "  intel on %9.0f pps, off %9.0f pps, on/off %.3f\n", on / d, off / d, (off ? on / off : 0) }'
  fi
  cp "$WORK/results" "${BH_E2E_INTEL_OUT:-/tmp/bh-e2e-intel.jsonl}"
  # The cut: an entry added through the API while the flows stream (the
  # quarantine of their source beside it, the same way); without other
  # feeds, then with the 1M + 1M feed files in force too (a change reads
  # every feed again, seconds on the DUT's busy CPU: fewer tries, and a
  # generator that outlasts them).
  GEN_MAC="02:00:00:0a:00:00"
  for feeds in ${INTEL_CASES:-none 1M}; do
  for off in off on; do
    if [ "$feeds" = 1M ]; then
      TRIES="${INTEL_TRIES_LOADED:-5}"; label="bulkhead-offload-$off+1M-feeds"
      INTEL_ON=true bulkhead_up 1000 "$off" api
    else
      TRIES="${INTEL_TRIES:-100}"; label="bulkhead-offload-$off"
      bulkhead_up 1000 "$off" api
    fi
    in_ns "$NS_D" "$BULKHEAD" token create --store "$DUT_STORE" --role admin --name bench \
      >"$WORK/token" 2>/dev/null || die "token create"
    fp="$(sed -n 's/.*SHA-256 fingerprint \([0-9A-Fa-f:]*\).*/\1/p' "$WORK/dut.log" | head -1)"
    nsenter --net="/var/run/netns/$NS_G" taskset -c 0 "$BENCH" gen --dev eth0 --size 64 \
      --flows 10 --rules 1000 --rate 100000 --duration $((60 * TRIES + 30)) >/dev/null &
    GEN_PID=$!
    for how in quarantine intel; do
      feed=()
      [ "$how" = intel ] && feed=(--intel-feed bench)
      in_ns "$NS_D" "$BENCH" quarantine --url "https://127.0.0.1:$API_PORT" \
        --token-file "$WORK/token" --fingerprint "$fp" --mac "$GEN_MAC" --sink-pin "$SINK_PIN" \
        --tries "$TRIES" --dut "$label" --rules 1000 --rate 100000 "${feed[@]}" \
        | sed 's/^/  /' || { kill "$GEN_PID" 2>/dev/null; die "$how timing (offload $off) failed"; }
    done
    kill "$GEN_PID" 2>/dev/null || true
    wait "$GEN_PID" 2>/dev/null || true
    stop_proc
  done
  done
  exit 0
fi

DUTS="bridge nft-linear nft-best xdp-fwd afxdp-fwd"
if offload_supported; then
  DUTS="$DUTS bulkhead-offload-off bulkhead-offload-on"
else
  DUTS="$DUTS bulkhead"
fi
[ -n "$DUTS_ARG" ] && DUTS="$DUTS_ARG"
echo "DUTs: $DUTS"
: >"$WORK/results"

FLOWS=10000
for run in $(seq 1 "$RUNS"); do
  for dut in $DUTS; do
    for rules in $RULE_COUNTS; do
      # Rule-independent DUTs are measured once (with the first policy's traffic).
      if ! rule_dependent "$dut" && [ "$rules" != "${RULE_COUNTS%% *}" ]; then continue; fi
      dut_up "$dut" "$rules"
      if [ "$run" = 1 ] && rule_dependent "$dut"; then verify_policy "$dut" "$rules"; fi
      measure tput "$dut" "$rules" 64 "$FLOWS" "$run" 0
      if [ "$SMOKE" = 0 ] && [ "$rules" = 1000 ]; then
        measure tput "$dut" "$rules" 1518 "$FLOWS" "$run" 0
      fi
      dut_down "$dut"
    done
  done
done

# Latency at a fixed rate below every DUT's saturation, 1k rules.
LAT_RATE=${LAT_RATE:-10000}
for dut in $DUTS; do
  dut_up "$dut" 1000
  measure lat "$dut" 1000 64 "$FLOWS" 1 "$LAT_RATE"
  dut_down "$dut"
done

# Incident timing: quarantine the generator's MAC over the HTTPS API while it
# streams, at each rule count: how long frames still reach the sink after the
# answer, and how fast a release brings the flow back.
QUAR_RATE=100000
if [ "$SMOKE" = 1 ]; then QUAR_TRIES=5; else QUAR_TRIES=100; fi
# 10 flows against 1k (100k) rules aim at rules 0, 100, ... 900 (0, 10000,
# ... 90000): all from source group s0, whose workload MAC this is
# (bench/src/bin/bulkhead-bench/model.rs).
GEN_MAC="02:00:00:0a:00:00"
: >"$WORK/incident"
for dut in $DUTS; do
  case "$dut" in bulkhead-offload-off) off=off ;; bulkhead-offload-on) off=on ;; bulkhead) off="" ;; *) continue ;; esac
  for rules in $RULE_COUNTS; do
    bulkhead_up "$rules" "$off" api
    in_ns "$NS_D" "$BULKHEAD" token create --store "$DUT_STORE" --role operator --name bench \
      >"$WORK/token" 2>/dev/null || dut_fail "token create for $dut"
    fp="$(sed -n 's/.*SHA-256 fingerprint \([0-9A-Fa-f:]*\).*/\1/p' "$WORK/dut.log" | head -1)"
    [ -n "$fp" ] || dut_fail "$dut did not print its API fingerprint"
    # nsenter directly (not the in_ns function): $! must be the generator itself.
    nsenter --net="/var/run/netns/$NS_G" taskset -c 0 "$BENCH" gen --dev eth0 --size 64 \
      --flows 10 --rules "$rules" --rate "$QUAR_RATE" --duration $((QUAR_TRIES + 10)) >/dev/null &
    GEN_PID=$!
    in_ns "$NS_D" "$BENCH" quarantine --url "https://127.0.0.1:$API_PORT" \
      --token-file "$WORK/token" --fingerprint "$fp" --mac "$GEN_MAC" --sink-pin "$SINK_PIN" \
      --tries "$QUAR_TRIES" --dut "$dut" --rules "$rules" --rate "$QUAR_RATE" >>"$WORK/incident" \
      || { kill "$GEN_PID" 2>/dev/null; wait "$GEN_PID" 2>/dev/null; dut_fail "quarantine timing through $dut failed"; }
    kill "$GEN_PID" 2>/dev/null || true
    wait "$GEN_PID" 2>/dev/null || true
    echo "  quarantine $(tail -1 "$WORK/incident")"
    dut_down "$dut"
  done
done

# Scaling with concurrent flows (1k rules, 64 B), medians of the runs too.
if [ "$SMOKE" = 0 ]; then
  for run in $(seq 1 "$RUNS"); do
    for dut in $DUTS; do
      case "$dut" in bridge|nft-best|bulkhead*) ;; *) continue ;; esac
      for flows in 1000 100000 1000000; do
        dut_up "$dut" 1000
        measure scale "$dut" 1000 64 "$flows" "$run" 0
        dut_down "$dut"
      done
    done
  done
fi

ELAPSED=$(( $(date +%s) - START_TIME ))
echo "measured in ${ELAPSED}s"
REPORT_ARGS=(--results "$WORK/results" --incident "$WORK/incident" --elapsed "$ELAPSED" --command "bench/e2e.sh${ARGS_SHOWN:+ $ARGS_SHOWN}")
if [ "$WRITE" = 1 ]; then
  "$BENCH" report "${REPORT_ARGS[@]}" --append "$ROOT/bench/RESULTS.md" \
    --plot "$ROOT/bench/e2e-pps-vs-rules.png"
  cp "$WORK/results" "$ROOT/bench/e2e-results.jsonl"
  echo "appended to bench/RESULTS.md; plot bench/e2e-pps-vs-rules.png; raw bench/e2e-results.jsonl"
else
  "$BENCH" report "${REPORT_ARGS[@]}" --check
fi
