/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * bulkhead end-to-end benchmark: what the harness's XDP programs share with
 * their loaders (bench/src/bin/bulkhead-bench/ looks maps up by these names).
 * Self-contained like dataplane/bpf/bulkhead.h: only <linux/bpf.h>.
 */
#ifndef BH_HARNESS_H
#define BH_HARNESS_H

#include <linux/bpf.h>

#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define SEC(name) __attribute__((section(name), used))

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;

/* The generator rewrites this many bytes at the start of every frame from the
 * flow's template (Ethernet + IPv4 + TCP headers fit; frames are >= 60 bytes). */
#define BH_HDR_BYTES 56

/* Where a UDP frame carries its send time (u64, ns, CLOCK_MONOTONIC) and a
 * magic (u32) that tells the sink the stamp is there. */
#define BH_TS_OFF 44
#define BH_MAGIC_OFF 52
#define BH_MAGIC 0x62686c74 /* "bhlt" */

/* The source port's and the TCP checksum's places in a template's frame
 * (Ethernet, IPv4 without options). */
#define BH_SPORT_OFF 34
#define BH_TCP_CSUM_OFF 50
#define BH_IPPROTO_OFF 23

/* Generator config (array, key 0). */
struct bh_gen_cfg {
	__u32 flows;       /* templates in bh_flows */
	__u32 stamp;       /* 1: write the send time into each frame */
	__u64 interval_ns; /* 0: flat out; else one frame every interval_ns */
	__u64 new_every;   /* 0: the templates as they are; N: every N rounds
			    * over the templates, every flow's source port moves
			    * up by one (a new 5-tuple: a flood of new flows of
			    * N frames each) */
};

/* Generator state (per-CPU array, key 0). */
struct bh_gen_state {
	__u64 next_flow;
	__u64 next_ns;
	__u64 sent;
	__u64 skipped;
	__u64 round; /* rounds over the templates completed */
};

/* Latency histogram of the sink: 100 ns buckets up to 1 ms, then 10 us
 * buckets up to 100 ms; the last bucket holds everything above. */
#define BH_LAT_FINE_NS 100
#define BH_LAT_FINE_BUCKETS 10000
#define BH_LAT_COARSE_NS 10000
#define BH_LAT_BUCKETS (BH_LAT_FINE_BUCKETS + 9900 + 1)

#endif
