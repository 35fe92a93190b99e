/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * bulkhead XDP: the ABI shared by the XDP program and userspace: constants,
 * maps and the types in them. This header is its one definition. Userspace
 * does not copy it: dataplane/src/io/afxdp/abi.rs (the constants, map names,
 * types, key and value sizes, entries, the program's name) is generated from
 * the compiled object's BTF and map definitions, and a test fails when the
 * committed file is not what the committed object gives; the Rust structs
 * written into the maps are checked against the object's BTF field by field
 * (offload_btf.rs). CI rebuilds the object from this source and fails on any
 * difference. Rebuild and regenerate with ./build.sh.
 *
 * Self-contained on purpose: only <linux/bpf.h> is needed, so the object builds
 * without libbpf-dev. The few libbpf macros and helpers used are declared here.
 */
#ifndef BULKHEAD_BPF_H
#define BULKHEAD_BPF_H

#include <linux/bpf.h>

/* libbpf's BTF map-definition macros. */
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define SEC(name) __attribute__((section(name), used))
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* Helper ids from enum bpf_func_id in <linux/bpf.h>. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;

/*
 * The constants are enums, not #defines, so that they reach the object's BTF
 * (userspace generates its copy from there); struct bulkhead_abi below makes
 * clang emit them.
 */

/* Sizes and fixed keys. */
enum bulkhead_limit {
	BULKHEAD_MAX_QUEUES = 64, /* queues per port the XSKMAP can hold (index = rx queue) */
	BULKHEAD_PEER_KEY = 0,    /* key of the peer port's entry in bulkhead_peer */
};

/* Values of bulkhead_cfg.fail_mode: what happens to a frame whose rx queue has
 * no AF_XDP socket bound (the dataplane is not running, or crashed). */
enum bulkhead_fail_mode {
	BULKHEAD_FAIL_CLOSED = 0, /* drop it */
	BULKHEAD_FAIL_OPEN = 1,   /* forward it to the peer port, unfiltered */
};

/* Values of bulkhead_flow_val.action. */
enum bulkhead_offload_action {
	BULKHEAD_OFFLOAD_FORWARD = 1, /* redirect to the peer port */
	BULKHEAD_OFFLOAD_DROP = 2,
};

/* Indexes of bulkhead_tier: what the program did with the frames it looked up
 * (only while offload is on and a socket is bound). */
enum bulkhead_tier_index {
	BULKHEAD_TIER_FORWARD = 0, /* forwarded in the kernel */
	BULKHEAD_TIER_DROP = 1,    /* dropped in the kernel */
	BULKHEAD_TIER_STALE = 2,   /* entry of an older generation: punted */
	BULKHEAD_TIER_PUNT = 3,    /* no entry, or not offloadable: punted */
	BULKHEAD_TIER_COUNT = 4,
};

/* Values of bulkhead_flow_key.family. */
enum bulkhead_family {
	BULKHEAD_FAMILY_IPV4 = 4,
	BULKHEAD_FAMILY_IPV6 = 6,
};

/*
 * Every enum above as a member, and one variable of it: clang writes an enum
 * into BTF only where something it emits uses it. The variable sits in a
 * section of its own that loaders skip (aya and libbpf load programs, maps,
 * .data/.rodata/.bss and license): it costs no map and no instruction.
 * A new shared enum gets a member here.
 */
struct bulkhead_abi {
	enum bulkhead_limit limit;
	enum bulkhead_fail_mode fail_mode;
	enum bulkhead_offload_action offload_action;
	enum bulkhead_tier_index tier_index;
	enum bulkhead_family family;
};
static const struct bulkhead_abi bulkhead_abi SEC(".bulkhead.abi") = {};

/* One per loaded program (one program instance per port). */
struct bulkhead_cfg {
	__u32 fail_mode; /* BULKHEAD_FAIL_* */
	__u32 _pad;
};

/* rx queue index -> AF_XDP socket of that queue. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, BULKHEAD_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} bulkhead_xsks SEC(".maps");

/* BULKHEAD_PEER_KEY -> the peer port (its ifindex), for fail-open and for
 * offloaded flows. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} bulkhead_peer SEC(".maps");

/* Key 0 -> struct bulkhead_cfg. A missing or zeroed entry means fail-closed. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bulkhead_cfg);
} bulkhead_config SEC(".maps");

/* ---- Flow offload (the kernel tier) ---- */

/*
 * The direction-normalised 5-tuple + VLAN: the same bytes as the userspace
 * flow table's key (Rust `dataplane::flow::FlowKey`, #[repr(C)], 44 bytes).
 * The lower endpoint (address, then port) is "lo"; IPv4 addresses are written
 * as ::ffff:a.b.c.d; ports in host byte order; ICMP echo uses its identifier as
 * both ports; VLAN IDs [outer, inner], 0 where untagged.
 */
struct bulkhead_flow_key {
	__u8 addr_lo[16];
	__u8 addr_hi[16];
	__u16 port_lo;
	__u16 port_hi;
	__u16 vlan[2];
	__u8 proto;
	__u8 family; /* BULKHEAD_FAMILY_* */
	__u8 _pad[2];
};

/*
 * One offloaded flow. Userspace writes it (counters zero); the program only
 * counts. Counters are per sender side ([0]: sent by the lo endpoint, [1]: by
 * the hi endpoint) and updated with atomic adds: the two directions arrive on
 * different ports (different NAPI contexts, possibly different CPUs).
 * A flow is bound to the MACs that opened it: a frame of the flow's addresses
 * whose source MAC is not mac[its side] or whose destination MAC is not the
 * other side's is punted (a spoofer, or a quarantined host that changed its
 * MAC, never rides a live flow).
 */
struct bulkhead_flow_val {
	__u64 generation; /* matches bulkhead_generation[0]: fresh; else punt */
	__u64 packets[2];
	__u64 bytes[2];
	__u64 last_seen; /* bpf_ktime_get_ns() of the last packet counted, 0: none */
	__u32 action;    /* BULKHEAD_OFFLOAD_* */
	__u8 mac[2][6];  /* [lo side's MAC, hi side's MAC] */
};

/* Shared by the programs of both ports (the loader reuses one map for both).
 * LRU: when full, the least recently used entries make room; such a flow's
 * next packet goes to userspace again, which holds the truth. max_entries is
 * set by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct bulkhead_flow_key);
	__type(value, struct bulkhead_flow_val);
} bulkhead_flows SEC(".maps");

/* Key 0 -> the current offload generation (shared by both ports). 0: offload
 * off, every frame goes to the socket as without offload. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} bulkhead_generation SEC(".maps");

struct bulkhead_tier_count {
	__u64 packets;
	__u64 bytes;
};

/* Per port program, per CPU: no atomics needed. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BULKHEAD_TIER_COUNT);
	__type(key, __u32);
	__type(value, struct bulkhead_tier_count);
} bulkhead_tier SEC(".maps");

#endif
