/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The flow key of a frame, as the XDP program computes it: which frames the
 * kernel tier may carry, and the direction-normalised key it looks them up by.
 * Included by bulkhead.c and by flow_key_probe.c, the test program that runs
 * this code under BPF_PROG_RUN against the Rust `FlowKey`
 * (dataplane/tests/xdp_flow_key.rs).
 */
#ifndef BULKHEAD_FLOW_KEY_H
#define BULKHEAD_FLOW_KEY_H

#include "bulkhead.h"

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define bh_ntohs(x) __builtin_bswap16(x)
#define bh_ntohl(x) __builtin_bswap32(x)
#else
#define bh_ntohs(x) (x)
#define bh_ntohl(x) (x)
#endif
#define bh_htons(x) bh_ntohs(x)

#define ETH_P_8021AD_ 0x88A8
#define IP_MF_OFFSET 0x3fff /* the MF flag and the fragment offset */
#define DNS_PORT 53

struct bh_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* The first 8 bytes of an ICMP / ICMPv6 message. */
struct bh_icmp_hdr {
	__u8 type;
	__u8 code;
	__u16 csum;
	__be16 id;
	__be16 seq;
};

/* Compare two addresses held as four network-order words: <0, 0, >0, as the
 * big-endian octets compare (Rust compares them as big-endian u128s). */
static __always_inline int addr_cmp(const __u32 *a, const __u32 *b)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u32 x = bh_ntohl(a[i]), y = bh_ntohl(b[i]);
		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

/*
 * Build the flow key of an offloadable frame, and which side of the key sent it
 * (0: lo, 1: hi). Returns -1 where the frame must go to userspace.
 */
static __always_inline int flow_key(void *data, void *end, struct bulkhead_flow_key *key,
				    __u32 *side)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	__u16 proto = eth->h_proto;
	void *p = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bh_htons(ETH_P_8021Q) && proto != bh_htons(ETH_P_8021AD_))
			break;
		struct bh_vlan_hdr *v = p;
		if ((void *)(v + 1) > end)
			return -1;
		key->vlan[i] = bh_ntohs(v->tci) & 0x0fff;
		proto = v->proto;
		p = v + 1;
	}

	__u32 src[4] = {}, dst[4] = {};
	__u32 l4_len;
	__u8 l4proto;
	void *l4;
	if (proto == bh_htons(ETH_P_IP)) {
		struct iphdr *ip = p;
		if ((void *)(ip + 1) > end)
			return -1;
		__u32 ihl = ip->ihl * 4;
		__u32 tot = bh_ntohs(ip->tot_len);
		if (ip->version != 4 || ihl < sizeof(*ip) || tot < ihl)
			return -1;
		if (p + tot > end)
			return -1;
		if (ip->frag_off & bh_htons(IP_MF_OFFSET))
			return -1;
		if (ip->ttl == 0) /* the worker drops it */
			return -1;
		l4_len = tot - ihl;
		l4 = p + ihl;
		l4proto = ip->protocol;
		src[2] = dst[2] = bh_ntohl(0x0000ffff); /* ::ffff:a.b.c.d */
		src[3] = ip->saddr;
		dst[3] = ip->daddr;
		key->family = BULKHEAD_FAMILY_IPV4;
	} else if (proto == bh_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = p;
		if ((void *)(ip6 + 1) > end)
			return -1;
		__u32 plen = bh_ntohs(ip6->payload_len);
		if (ip6->version != 6 || (void *)(ip6 + 1) + plen > end)
			return -1;
		if (ip6->hop_limit == 0) /* the worker drops it */
			return -1;
		l4_len = plen;
		l4 = ip6 + 1;
		/* Extension headers (fragments included) go to userspace. */
		l4proto = ip6->nexthdr;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			src[i] = ip6->saddr.in6_u.u6_addr32[i];
			dst[i] = ip6->daddr.in6_u.u6_addr32[i];
		}
		key->family = BULKHEAD_FAMILY_IPV6;
	} else {
		return -1; /* ARP, non-IP */
	}

	__u16 sport, dport;
	if (l4proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > end || l4_len < sizeof(*th))
			return -1;
		__u32 doff = th->doff * 4;
		if (doff < sizeof(*th) || doff > l4_len)
			return -1;
		if (th->syn || th->fin || th->rst)
			return -1;
		sport = bh_ntohs(th->source);
		dport = bh_ntohs(th->dest);
		if (sport == DNS_PORT || dport == DNS_PORT)
			return -1;
	} else if (l4proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > end || l4_len < sizeof(*uh))
			return -1;
		__u32 ulen = bh_ntohs(uh->len);
		if (ulen < sizeof(*uh) || ulen > l4_len)
			return -1;
		sport = bh_ntohs(uh->source);
		dport = bh_ntohs(uh->dest);
		if (sport == DNS_PORT || dport == DNS_PORT)
			return -1;
	} else if ((l4proto == IPPROTO_ICMP && key->family == BULKHEAD_FAMILY_IPV4) ||
		   (l4proto == IPPROTO_ICMPV6 && key->family == BULKHEAD_FAMILY_IPV6)) {
		struct bh_icmp_hdr *ih = l4;
		if ((void *)(ih + 1) > end || l4_len < sizeof(*ih))
			return -1;
		/* Echo request / reply only: errors belong to the flow they quote. */
		if (key->family == BULKHEAD_FAMILY_IPV4 ? (ih->type != 8 && ih->type != 0)
				     : (ih->type != 128 && ih->type != 129))
			return -1;
		sport = dport = bh_ntohs(ih->id);
	} else {
		return -1;
	}

	int cmp = addr_cmp(src, dst);
	int src_is_lo = cmp < 0 || (cmp == 0 && sport <= dport);
	__u32 *lo = src_is_lo ? src : dst, *hi = src_is_lo ? dst : src;
	__builtin_memcpy(key->addr_lo, lo, 16);
	__builtin_memcpy(key->addr_hi, hi, 16);
	key->port_lo = src_is_lo ? sport : dport;
	key->port_hi = src_is_lo ? dport : sport;
	key->proto = l4proto;
	*side = src_is_lo ? 0 : 1;
	return 0;
}

#endif
