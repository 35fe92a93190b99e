# shellcheck shell=bash disable=SC2154
# Sourced by images/boot-test.sh: the two workloads of the traffic test, each
# a network namespace whose NIC is a tap device qemu holds as a data NIC of
# the appliance. Uses boot-test.sh's ns_a/ns_b, tap_a/tap_b, wl_mac_*,
# wl_ip_*, qemu_pid, work and fail.

reap_stale_workloads() { # namespaces and taps of earlier runs whose script is gone
  local ns pid p tap
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^bh-bt[0-9]+-w[ab]$' || true); do
    pid="${ns#bh-bt}"
    pid="${pid%-w?}"
    kill -0 "$pid" 2>/dev/null && continue
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  for tap in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^bhbt[0-9]+[ab]$' || true); do
    pid="${tap#bhbt}"
    pid="${pid%?}"
    kill -0 "$pid" 2>/dev/null || ip link del "$tap" 2>/dev/null || true
  done
}

make_namespaces() {
  local ns
  for ns in "$ns_a" "$ns_b"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # No IPv6 on the workloads' NICs: only the test's own frames cross.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
}

make_taps() { # the workloads' NICs, in this namespace until qemu holds them
  local tap mac
  for pair in "$tap_a $wl_mac_a" "$tap_b $wl_mac_b"; do
    read -r tap mac <<<"$pair"
    ip tuntap add mode tap name "$tap"
    ip link set "$tap" address "$mac"
    ip link set "$tap" up
  done
}

attach_taps() { # once qemu holds the taps (carrier on), each goes into its workload's namespace
  local tap ns addr deadline=$((SECONDS + 60))
  for tap in "$tap_a" "$tap_b"; do
    until [ "$(cat "/sys/class/net/$tap/carrier" 2>/dev/null)" = 1 ]; do
      kill -0 "$qemu_pid" 2>/dev/null || { qemu_pid=""; cat "$work/qemu.log" >&2; fail "qemu exited"; }
      [ "$SECONDS" -lt "$deadline" ] || fail "qemu did not open the tap device $tap within 60 s"
      sleep 0.2
    done
  done
  for triple in "$tap_a $ns_a $wl_ip_a" "$tap_b $ns_b $wl_ip_b"; do
    read -r tap ns addr <<<"$triple"
    ip link set "$tap" netns "$ns"
    ip -n "$ns" link set "$tap" up
    ip -n "$ns" addr add "$addr/24" dev "$tap"
  done
}

drop_taps() { # after qemu exited: the taps go; the namespaces (and the listener) stay
  ip -n "$ns_a" link del "$tap_a" 2>/dev/null || true
  ip -n "$ns_b" link del "$tap_b" 2>/dev/null || true
}

remove_workloads() { # at exit: whatever still runs in the namespaces is this script's
  local p
  for p in $(ip netns pids "$ns_a" 2>/dev/null) $(ip netns pids "$ns_b" 2>/dev/null); do
    kill "$p" 2>/dev/null || true
  done
  ip netns del "$ns_a" 2>/dev/null || true
  ip netns del "$ns_b" 2>/dev/null || true
  ip link del "$tap_a" 2>/dev/null || true
  ip link del "$tap_b" 2>/dev/null || true
}
