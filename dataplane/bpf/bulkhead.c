// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bulkhead XDP program, attached to each data port (one loaded instance per
 * port; the offload maps are shared by both).
 *
 * With an AF_XDP socket bound to the frame's rx queue:
 *   - offload on (bulkhead_generation != 0): a frame whose flow has a fresh
 *     entry in bulkhead_flows (its generation is the current one) is forwarded
 *     to the peer port through the devmap, or dropped, in the kernel, and
 *     counted in the entry. Everything else goes to the socket: no entry, a
 *     stale entry, a frame from or to other MACs than the flow's, and what
 *     flow_key() (flow_key.h) does not key: TCP SYN/FIN/RST, IP fragments,
 *     IPv6 extension headers (IPv4 options are fine), TTL or hop limit 0,
 *     DNS (port 53), ICMP other than echo, ARP, non-IP, anything malformed
 *     (userspace decides and counts it).
 *   - offload off: every frame goes to the socket.
 * With no socket bound (the dataplane is stopped or crashed; the kernel removes
 * a closed socket from the XSKMAP itself), the configured fail mode applies,
 * offload or not: fail-open redirects the frame to the peer port, fail-closed
 * drops it.
 *
 * Rebuild with ./build.sh; the object is committed.
 */
#include "bulkhead.h"
#include "flow_key.h"

static __always_inline void tier_count(__u32 idx, __u64 bytes)
{
	struct bulkhead_tier_count *c = bpf_map_lookup_elem(&bulkhead_tier, &idx);
	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

/* Whether a frame sent by `side` travels between the MACs the flow is bound
 * to: its source is mac[side], its destination mac[side ^ 1]. */
static __always_inline int macs_match(const struct ethhdr *eth, const struct bulkhead_flow_val *v,
				      __u32 side)
{
	const __u8 *src = v->mac[side & 1], *dst = v->mac[(side & 1) ^ 1];
	int same = 1;
#pragma unroll
	for (int i = 0; i < 6; i++)
		same &= (eth->h_source[i] == src[i]) & (eth->h_dest[i] == dst[i]);
	return same;
}

/* The fast path: the XDP action for a frame of a fresh offloaded flow, or -1 to
 * hand the frame to the socket. */
static __always_inline int offload(struct xdp_md *ctx, __u64 generation)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 bytes = end - data;
	struct bulkhead_flow_key key;
	__u32 side = 0;
	__builtin_memset(&key, 0, sizeof(key));
	if (flow_key(data, end, &key, &side) < 0)
		return -1;
	struct bulkhead_flow_val *v = bpf_map_lookup_elem(&bulkhead_flows, &key);
	if (!v)
		return -1;
	if (v->generation != generation) {
		tier_count(BULKHEAD_TIER_STALE, bytes);
		return -1;
	}
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || !macs_match(eth, v, side))
		return -1;
	int act;
	__u32 tier;
	if (v->action == BULKHEAD_OFFLOAD_FORWARD) {
		/* XDP_PASS marks "no peer": then userspace handles the frame. */
		act = (int)bpf_redirect_map(&bulkhead_peer, BULKHEAD_PEER_KEY, XDP_PASS);
		if (act != XDP_REDIRECT)
			return -1;
		tier = BULKHEAD_TIER_FORWARD;
	} else if (v->action == BULKHEAD_OFFLOAD_DROP) {
		act = XDP_DROP;
		tier = BULKHEAD_TIER_DROP;
	} else {
		return -1;
	}
	side &= 1;
	__sync_fetch_and_add(&v->packets[side], 1);
	__sync_fetch_and_add(&v->bytes[side], bytes);
	v->last_seen = bpf_ktime_get_ns();
	tier_count(tier, bytes);
	return act;
}

SEC("xdp")
int bulkhead_xdp(struct xdp_md *ctx)
{
	__u32 queue = ctx->rx_queue_index;
	/* The fast path only while the dataplane runs (a socket is bound): with no
	 * socket the fail mode decides, exactly as without offload. */
	if (bpf_map_lookup_elem(&bulkhead_xsks, &queue)) {
		__u32 zero = 0;
		__u64 *generation = bpf_map_lookup_elem(&bulkhead_generation, &zero);
		if (generation && *generation) {
			int act = offload(ctx, *generation);
			if (act >= 0)
				return act;
			tier_count(BULKHEAD_TIER_PUNT, ctx->data_end - ctx->data);
		}
	}

	/* XDP_PASS is never returned on purpose, so it marks "no socket here". */
	long act = bpf_redirect_map(&bulkhead_xsks, queue, XDP_PASS);
	if (act != XDP_PASS)
		return (int)act;

	__u32 key = 0;
	struct bulkhead_cfg *cfg = bpf_map_lookup_elem(&bulkhead_config, &key);
	if (cfg && cfg->fail_mode == BULKHEAD_FAIL_OPEN)
		return (int)bpf_redirect_map(&bulkhead_peer, BULKHEAD_PEER_KEY, XDP_DROP);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
