/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The sink's XDP program: counts every frame and its bytes, and for frames
 * stamped by the generator (magic at BH_MAGIC_OFF) the latency from the stamp
 * to now into a histogram, and the arrival times of the last frame and of the
 * first since the reader asked; then drops the frame.
 */
#include "harness.h"

/* key 0: frames, key 1: bytes, key 2: stamped frames, key 3: when the last
 * frame arrived (CLOCK_MONOTONIC ns, per CPU: the reader takes the largest),
 * key 4: when the first frame arrived since the reader zeroed it (per CPU:
 * the reader takes the smallest non-zero). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __u64);
} bh_sink_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BH_LAT_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} bh_sink_lat SEC(".maps");

static __always_inline void bump(void *map, __u32 key, __u64 by)
{
	__u64 *v = bpf_map_lookup_elem(map, &key);
	if (v)
		*v += by;
}

SEC("xdp")
int bh_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	bump(&bh_sink_count, 0, 1);
	bump(&bh_sink_count, 1, end - data);
	__u64 now = bpf_ktime_get_ns();
	__u32 last = 3, first = 4;
	__u64 *at = bpf_map_lookup_elem(&bh_sink_count, &last);
	if (at)
		*at = now;
	at = bpf_map_lookup_elem(&bh_sink_count, &first);
	if (at && *at == 0)
		*at = now;
	if (data + BH_MAGIC_OFF + 4 <= end && *(__u32 *)(data + BH_MAGIC_OFF) == BH_MAGIC) {
		__u64 sent = *(__u64 *)(data + BH_TS_OFF);
		__u64 d = now > sent ? now - sent : 0;
		__u64 fine_max = (__u64)BH_LAT_FINE_NS * BH_LAT_FINE_BUCKETS;
		__u64 b = d < fine_max ? d / BH_LAT_FINE_NS
				       : BH_LAT_FINE_BUCKETS + (d - fine_max) / BH_LAT_COARSE_NS;
		if (b >= BH_LAT_BUCKETS)
			b = BH_LAT_BUCKETS - 1;
		bump(&bh_sink_count, 2, 1);
		bump(&bh_sink_lat, (__u32)b, 1);
	}
	return XDP_DROP;
}

char _license[] SEC("license") = "Dual BSD/GPL";
