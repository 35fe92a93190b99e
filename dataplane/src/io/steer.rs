//! Which worker owns a frame's flow, when several workers share a port pair.
//!
//! Each worker keeps its own flow table, so both directions of a flow, every
//! fragment of a packet and the ICMP errors about it must reach the same worker.
//! Where the NIC cannot spread frames that way (a symmetric RSS key), workers
//! hand frames to their owner; this is the owner: a hash of the two IP addresses
//! (in either order) and the protocol. Ports are left out on purpose: later IP
//! fragments carry none, and an ICMP error is steered by the flow it quotes.

use crate::wire::{L3Info, L4Info, PacketInfo};
use std::net::IpAddr;

/// The worker (of `n`) that owns the flow of a parsed frame, or `None` for
/// frames without one (ARP, non-IP): any worker may handle those. The worker
/// that received the frame asks, after its own parse, and hands the frame
/// with that parse to the owner ([`super::PacketIo::hand_off`]).
#[inline]
pub fn owner(info: &PacketInfo, n: usize) -> Option<usize> {
    if n <= 1 {
        return Some(0);
    }
    let L3Info::Ip(ip) = info.l3 else {
        return None;
    };
    let (a, b, proto) = match ip.l4 {
        L4Info::IcmpError { inner, .. } => (inner.src, inner.dst, inner.proto),
        _ => (ip.src, ip.dst, ip.proto),
    };
    let h = symmetric_hash(a, b, proto);
    Some((h % n as u64) as usize)
}

/// A hash of an address pair and protocol that does not depend on the order
/// of the two addresses.
#[inline]
pub fn symmetric_hash(a: IpAddr, b: IpAddr, proto: u8) -> u64 {
    let word = |ip: IpAddr| -> u64 {
        let o = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let (hi, lo) = o.split_at(8);
        let mut h = [0u8; 8];
        let mut l = [0u8; 8];
        h.copy_from_slice(hi);
        l.copy_from_slice(lo);
        mix(u64::from_le_bytes(h) ^ mix(u64::from_le_bytes(l)))
    };
    let (x, y) = (word(a), word(b));
    // Sum and xor are both order-free; two of them keep a = b distinct from 0.
    mix(x.wrapping_add(y) ^ x.rotate_left(17) ^ y.rotate_left(17) ^ u64::from(proto))
}

/// A 64-bit finaliser (splitmix64's): every input bit moves every output bit.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;
    use etherparse::PacketBuilder;
    use std::net::Ipv4Addr;

    /// The owner of a frame, as the worker that receives it finds it.
    fn owner_of(frame: &[u8], n: usize) -> Option<usize> {
        owner(&wire::parse(frame).ok()?, n)
    }

    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut out, &[0u8; 8])
            .expect("build");
        out
    }

    #[test]
    fn both_directions_have_one_owner_and_flows_spread() {
        let mut per_worker = [0usize; 4];
        for i in 0..1000u32 {
            let b = i.to_be_bytes();
            let a = [10, 1, b[2], b[3]];
            let c = [10, 2, b[3], b[2]];
            let there = owner_of(&udp(a, c, 1000, 53), 4).expect("IP has an owner");
            let back = owner_of(&udp(c, a, 53, 1000), 4).expect("IP has an owner");
            assert_eq!(there, back, "flow {i}");
            per_worker[there] += 1;
        }
        // 1000 address pairs over 4 workers: none gets fewer than half its share.
        assert!(per_worker.iter().all(|&n| n > 125), "{per_worker:?}");
    }

    #[test]
    fn an_icmp_error_goes_to_the_owner_of_the_flow_it_quotes() {
        let flow = udp([10, 0, 0, 1], [10, 0, 9, 9], 40000, 53);
        let ip_and_udp = &flow[14..14 + 28];
        let mut err = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 1])
            .ipv4([192, 0, 2, 254], [10, 0, 0, 1], 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ))
            .write(&mut err, ip_and_udp)
            .expect("build");
        for n in [2, 3, 8] {
            assert_eq!(owner_of(&err, n), owner_of(&flow, n), "{n} workers");
        }
    }

    #[test]
    fn frames_without_a_flow_have_no_owner_and_one_worker_owns_all() {
        let mut arp = [0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        arp[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        let info = wire::parse(&arp).expect("an ARP request parses");
        assert!(matches!(info.l3, L3Info::Arp(_)));
        assert_eq!(owner(&info, 2), None);
        assert_eq!(owner(&info, 1), Some(0));
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert_ne!(symmetric_hash(a, a, 6), symmetric_hash(a, a, 17));
    }
}
