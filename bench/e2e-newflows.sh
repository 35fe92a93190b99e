# shellcheck shell=bash
# bench/e2e.sh --new-flows: new flows per second, bulkhead against a bridge
# with br_netfilter, conntrack and the best nftables export of the same
# policy (`bulkhead-bench nft --conntrack`: an inet table at the IP forward
# hook, known connections accepted before the rules). Sourced by e2e.sh.
#
# The generator floods new flows: 65,536 flow templates (1k rules, 64 B), and
# every NF_PACKETS rounds over them each template's source port moves up by
# one (`bulkhead-bench gen --new-every`), so every 5-tuple is a new flow of
# NF_PACKETS frames, its frames one round (65,536 frames) apart. Both DUTs
# keep 262,144 flows (bulkhead's default `flow_capacity`, conntrack's
# default `nf_conntrack_max` here) and evict when full. New flows decided
# and passed per second = frames received / NF_PACKETS / duration, for UDP
# and TCP SYN; medians of the runs. Beside the flood, 10 established UDP
# flows at NF_EST_RATE frames/s, stamped: how many of their frames passed
# and their latency (p99) while the flood ran. A plot of the medians.

NF_FLOWS=65536
NF_PACKETS="${NF_PACKETS:-4}"
# NF_DUTS="nft-ct bulkhead-offload-on bulkhead-offload-off" adds offload off.
# The established flows beside the flood, frames a second (10 flows).
NF_EST_RATE="${NF_EST_RATE:-2000}"

# The conntrack DUT: the bridge, its IP traffic through netfilter, the
# stateful ruleset; conntrack's table emptied first (a namespace's entries
# outlive the ruleset, and the next run's flows are the same 5-tuples).
# RPS hands what dut-a receives to CPU 1: the bridge, netfilter and
# conntrack then run there, as bulkhead's worker does, instead of on the
# generator's CPU 0 in the softirq of its own sends.
nft_ct_up() { # rules
  bridge_up
  # (ip netns exec: it mounts the namespace's own /sys)
  ip netns exec "$NS_D" sh -c 'echo 2 > /sys/class/net/dut-a/queues/rx-0/rps_cpus'
  in_ns "$NS_D" sysctl -qw net.bridge.bridge-nf-call-iptables=1
  in_ns "$NS_D" conntrack -F >/dev/null 2>&1 || true
  in_ns "$NS_D" nft -f "$WORK/ct-$1.nft"
}
nft_ct_down() {
  in_ns "$NS_D" nft delete table inet bulkhead 2>/dev/null || true
  in_ns "$NS_D" sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true
  in_ns "$NS_D" conntrack -F >/dev/null 2>&1 || true
  ip netns exec "$NS_D" sh -c 'echo 0 > /sys/class/net/dut-a/queues/rx-0/rps_cpus' 2>/dev/null || true
  bridge_down
}

# One run of the flood through the DUT that is up; appends a JSON line.
new_flows_measure() { # dut proto run
  local dut="$1" proto="$2" run="$3" g s c0 c1 cpu est est_pid lat
  sink reset >/dev/null
  # The established flows: 10 UDP flows at NF_EST_RATE frames/s, stamped
  # (the sink counts them apart and times them), from half a second before
  # the flood to half a second after it.
  in_ns "$NS_G" taskset -c 0 "$BENCH" gen --dev eth0 --size 64 --flows 10 --rules 1000 \
    --rate "$NF_EST_RATE" --duration "$(awk -v d="$DURATION" 'BEGIN { print d + 1 }')" --stamp \
    >"$WORK/est.json" 2>/dev/null &
  est_pid=$!
  sleep 0.5
  c0="$(cpu_snap)"
  g="$(in_ns "$NS_G" taskset -c 0 "$BENCH" gen --dev eth0 --size 64 --flows "$NF_FLOWS" \
    --rules 1000 --proto "$proto" --new-every "$NF_PACKETS" --duration "$DURATION")" ||
    die "generator failed ($dut)"
  c1="$(cpu_snap)"
  wait "$est_pid" || die "the established flows' generator failed ($dut)"
  est="$(cat "$WORK/est.json")"
  # CPU 1's busy share: the DUT's (bulkhead, or the bridge's softirqs).
  cpu="$(awk -v a="$c0" -v b="$c1" 'BEGIN { split(a, x, " "); split(b, y, " ");
    printf "%.2f", (y[4] - x[4] ? (y[3] - x[3]) / (y[4] - x[4]) : 0) }')"
  sleep 0.1
  s="$(sink read)"
  lat="$(sink lat)"
  case "$s" in *'"frames":0,'*) die "no frame of the $proto flood passed $dut" ;; esac
  case "$g" in *'"new_flows":'*) ;; *) die "the generator made no new flows: $g" ;; esac
  printf '{"kind":"newflows","dut":"%s","proto":"%s","run":%s,"packets_per_flow":%s,"gen":%s,"sink":%s,"cpu1":%s,"established":{"gen":%s,"lat":%s}}\n' \
    "$dut" "$proto" "$run" "$NF_PACKETS" "$g" "$s" "$cpu" "$est" "$lat" >>"$WORK/results"
  # New flows: the sink's frames less the established flows' (stamped).
  awk -v d="$dut" -v p="$proto" -v sent="$(echo "$g" | sed 's/.*"sent":\([0-9]*\).*/\1/')" \
    -v got="$(echo "$s" | sed 's/.*"frames":\([0-9]*\).*/\1/')" \
    -v st="$(echo "$s" | sed 's/.*"stamped":\([0-9]*\).*/\1/')" \
    -v es="$(echo "$est" | sed 's/.*"sent":\([0-9]*\).*/\1/')" \
    -v p99="$(echo "$lat" | sed 's/.*"p99_us":\([0-9.]*\).*/\1/')" \
    -v k="$NF_PACKETS" -v t="$DURATION" -v c="$cpu" \
    'BEGIN { printf "  newflows %-22s %-3s offered %9.0f new flows/s, passed %9.0f new flows/s, CPU 1 busy %.0f%%; established: %d of %d frames passed (%.1f%%), p99 %s us\n",
      d, p, sent / k / t, (got - st) / k / t, c * 100, st, es, (es ? 100 * st / es : 0), p99 }'
}

new_flows_mode() {
  command -v conntrack >/dev/null || die "conntrack is not installed (apt-get install -y conntrack)"
  "$BENCH" nft --conntrack -o "$WORK/ct-1000.nft" "$(policy_file 1000)"
  : >"$WORK/results"
  local run proto dut
  for run in $(seq 1 "$RUNS"); do
    for proto in udp syn; do
      for dut in ${NF_DUTS:-nft-ct bulkhead-offload-on}; do
        if [ "$dut" = nft-ct ]; then nft_ct_up 1000; else STATS_INTERVAL=1 FLOW_CAPACITY=262144 dut_up "$dut" 1000; fi
        # Same policy on both: what it allows passes, the rest is dropped.
        if [ "$run" = 1 ] && [ "$proto" = udp ]; then verify_policy "$dut" 1000; fi
        new_flows_measure "$dut" "$proto" "$run"
        if [ "$dut" = nft-ct ]; then
          in_ns "$NS_D" conntrack -S 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^(found|insert|drop|early_drop|insert_failed)=/) { split($i, kv, "="); t[kv[1]] += kv[2] } }
            END { printf "    conntrack:"; for (k in t) printf " %s=%d", k, t[k]; print "" }'
          nft_ct_down
        else
          # Its counters on SIGTERM: where frames went (drops by reason).
          dut_down "$dut"
          grep -a "stats: A rx" "$WORK/dut.log" | tail -1 | sed 's/^.*stats:/    bulkhead stats:/'
        fi
      done
    done
  done
  echo "new flows passed per second (medians of $RUNS runs of ${DURATION}s, $NF_PACKETS frames a flow):"
  cp "$WORK/results" "${BH_E2E_NEWFLOWS_OUT:-/tmp/bh-e2e-newflows.jsonl}"
  local png="${BH_E2E_NEWFLOWS_PLOT:-/tmp/bh-e2e-newflows.png}"
  "$BENCH" plot-new-flows --results "$WORK/results" --png "$png" || die "plot-new-flows failed"
  echo "results ${BH_E2E_NEWFLOWS_OUT:-/tmp/bh-e2e-newflows.jsonl}, plot $png"
}
