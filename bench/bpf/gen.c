/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The traffic generator's XDP program, run by BPF_PROG_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES: every run rewrites the frame's headers from the
 * next flow's template, optionally stamps the send time, and transmits it out
 * of the generator's interface (XDP_TX). With new_every set, each round over
 * the templates N times moves every source port up by one: new flows of N
 * frames each. With an interval set it paces itself:
 * a frame whose time has not come is dropped (not sent) instead.
 */
#include "harness.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bh_gen_cfg);
} bh_gen_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bh_gen_state);
} bh_gen_state SEC(".maps");

/* Flow templates: the first BH_HDR_BYTES bytes of each flow's frame. */
struct bh_tmpl {
	__u64 w[BH_HDR_BYTES / 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << 21);
	__type(key, __u32);
	__type(value, struct bh_tmpl);
} bh_flows SEC(".maps");

SEC("xdp")
int bh_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct bh_gen_cfg *cfg = bpf_map_lookup_elem(&bh_gen_cfg, &zero);
	struct bh_gen_state *st = bpf_map_lookup_elem(&bh_gen_state, &zero);
	if (!cfg || !st || cfg->flows == 0)
		return XDP_ABORTED;
	if (data + BH_HDR_BYTES > end)
		return XDP_ABORTED;

	__u64 now = 0;
	if (cfg->interval_ns || cfg->stamp)
		now = bpf_ktime_get_ns();
	if (cfg->interval_ns) {
		if (now < st->next_ns) {
			st->skipped++;
			return XDP_DROP;
		}
		/* No catch-up burst after a pause (between two BPF_PROG_RUN calls). */
		if (now - st->next_ns > 1000000)
			st->next_ns = now;
		st->next_ns += cfg->interval_ns;
	}

	__u32 idx = st->next_flow;
	if (idx + 1 >= cfg->flows) {
		st->next_flow = 0;
		st->round++;
	} else {
		st->next_flow = idx + 1;
	}
	struct bh_tmpl *t = bpf_map_lookup_elem(&bh_flows, &idx);
	if (!t)
		return XDP_ABORTED;
	__u64 *w = data;
#pragma unroll
	for (int i = 0; i < BH_HDR_BYTES / 8; i++)
		w[i] = t->w[i];
	if (cfg->new_every) {
		/* A new source port (network order), and the TCP checksum moved
		 * by the same amount (RFC 1624); UDP's is 0 (none over IPv4). */
		__u16 *sp = data + BH_SPORT_OFF;
		__u16 old = *sp;
		__u16 port = __builtin_bswap16(old) + (__u16)(st->round / cfg->new_every);
		__u16 new = __builtin_bswap16(port);
		*sp = new;
		if (*(__u8 *)(data + BH_IPPROTO_OFF) == 6 /* TCP */) {
			__u16 *csum = data + BH_TCP_CSUM_OFF;
			__u32 sum = (__u16)~*csum + (__u16)~old + new;
			sum = (sum & 0xffff) + (sum >> 16);
			sum = (sum & 0xffff) + (sum >> 16);
			*csum = ~sum;
		}
	}
	if (cfg->stamp) {
		*(__u64 *)(data + BH_TS_OFF) = now;
		*(__u32 *)(data + BH_MAGIC_OFF) = BH_MAGIC;
	}
	st->sent++;
	return XDP_TX;
}

char _license[] SEC("license") = "Dual BSD/GPL";
