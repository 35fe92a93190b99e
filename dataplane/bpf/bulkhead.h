/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * bulkhead XDP: the maps shared by the XDP programs and the userspace loader
 * (dataplane/src/io/afxdp/xdp.rs looks them up by these names).
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

/* Helper ids from enum bpf_func_id in <linux/bpf.h>. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;

/* Queues per port the XSKMAP can hold (index = rx queue). */
#define BULKHEAD_MAX_QUEUES 64

/* Values of bulkhead_cfg.fail_mode: what happens to a frame whose rx queue has
 * no AF_XDP socket bound (the dataplane is not running, or crashed). */
#define BULKHEAD_FAIL_CLOSED 0 /* drop it */
#define BULKHEAD_FAIL_OPEN 1   /* forward it to the peer port, unfiltered */

/* Key of the peer port's entry in bulkhead_peer. */
#define BULKHEAD_PEER_KEY 0

/* One per loaded program (one program instance per port). */
struct bulkhead_cfg {
	__u32 fail_mode;
	__u32 _pad;
};

/* rx queue index -> AF_XDP socket of that queue. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, BULKHEAD_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} bulkhead_xsks SEC(".maps");

/* BULKHEAD_PEER_KEY -> the peer port (its ifindex), for fail-open. */
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

#endif
