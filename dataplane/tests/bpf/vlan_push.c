// Test-only tc programs: tag every frame a host sends the way an 802.1Q or
// 802.1ad sub-interface does, with the tag beside the frame (skb metadata)
// until the device inserts it. On a veth with tx VLAN offload on, the tag
// stays beside the frame all the way into the peer's XDP program, which then
// sees the frame untagged: the case dataplane/tests/afxdp_vlan.rs reproduces.
// Built by build.sh in this directory; the object is committed.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>

#define SEC(n) __attribute__((section(n), used))

static long (*bpf_skb_vlan_push)(struct __sk_buff *skb, __be16 proto,
				 __u16 tci) = (void *)BPF_FUNC_skb_vlan_push;

// 802.1Q, VLAN 20 (the VLAN the AF_XDP VLAN tests use).
SEC("classifier/push_ctag")
int push_ctag(struct __sk_buff *skb)
{
	bpf_skb_vlan_push(skb, __builtin_bswap16(ETH_P_8021Q), 20);
	return TC_ACT_OK;
}

// 802.1ad, VLAN 200: the outer (service) tag of QinQ.
SEC("classifier/push_stag")
int push_stag(struct __sk_buff *skb)
{
	bpf_skb_vlan_push(skb, __builtin_bswap16(ETH_P_8021AD), 200);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
