// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bulkhead XDP program, attached to each data port (one loaded instance per
 * port, each with its own maps).
 *
 * Every frame goes to the AF_XDP socket bound to its rx queue, where the
 * userspace worker decides it. When no socket is bound for that queue (the
 * dataplane is stopped or crashed; the kernel removes a closed socket from the
 * XSKMAP itself), the configured fail mode applies: fail-open redirects the
 * frame to the peer port through the devmap, fail-closed drops it.
 *
 * Rebuild with ./build.sh; the object is committed.
 */
#include "bulkhead.h"

SEC("xdp")
int bulkhead_xdp(struct xdp_md *ctx)
{
	/* XDP_PASS is never returned on purpose, so it marks "no socket here". */
	long act = bpf_redirect_map(&bulkhead_xsks, ctx->rx_queue_index, XDP_PASS);
	if (act != XDP_PASS)
		return (int)act;

	__u32 key = 0;
	struct bulkhead_cfg *cfg = bpf_map_lookup_elem(&bulkhead_config, &key);
	if (cfg && cfg->fail_mode == BULKHEAD_FAIL_OPEN)
		return (int)bpf_redirect_map(&bulkhead_peer, BULKHEAD_PEER_KEY, XDP_DROP);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
