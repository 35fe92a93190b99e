/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The bare XDP forwarder (the kernel ceiling of the comparison): every frame
 * is redirected to the other port through a devmap keyed by the receiving
 * interface's index. No parsing, no policy.
 */
#include "harness.h"

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} bh_fwd_peer SEC(".maps");

SEC("xdp")
int bh_fwd(struct xdp_md *ctx)
{
	return bpf_redirect_map(&bh_fwd_peer, ctx->ingress_ifindex, XDP_DROP);
}

char _license[] SEC("license") = "Dual BSD/GPL";
