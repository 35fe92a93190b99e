// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Test only, never attached: runs the XDP program's flow key (flow_key.h, the
 * code bulkhead.c runs) on a frame under BPF_PROG_RUN and prepends the result
 * to it, so a test can compare it with the Rust `FlowKey` of the same frame
 * (dataplane/tests/xdp_flow_key.rs). Built by ./build.sh beside bulkhead.o.
 */
#include "bulkhead.h"
#include "flow_key.h"

static long (*bpf_xdp_adjust_head)(struct xdp_md *ctx, int delta) = (void *)BPF_FUNC_xdp_adjust_head;

/* What the probe prepends to the frame. */
struct bulkhead_flow_key_probe {
	__s32 rc;   /* flow_key()'s answer: 0, or -1 (the frame goes to userspace) */
	__u32 side; /* which side of the key sent the frame: 0 lo, 1 hi */
	struct bulkhead_flow_key key;
};

SEC("xdp")
int bulkhead_flow_key_probe(struct xdp_md *ctx)
{
	struct bulkhead_flow_key_probe out;
	__builtin_memset(&out, 0, sizeof(out));
	/* As offload() in bulkhead.c calls it. */
	out.rc = flow_key((void *)(long)ctx->data, (void *)(long)ctx->data_end, &out.key, &out.side);
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(out)))
		return XDP_ABORTED;
	void *data = (void *)(long)ctx->data;
	if (data + sizeof(out) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, &out, sizeof(out));
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
