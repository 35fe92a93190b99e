//! The per-core flow table.
//!
//! Both directions of a flow hit one entry: the key is the 5-tuple (+ VLAN) with
//! the two endpoints put in a fixed order ([`FlowKey::new`]).

use std::net::IpAddr;

/// The direction-normalised 5-tuple + VLAN. `#[repr(C)]`: the XDP offload map
/// will use the same layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct FlowKey {
    /// The lower of the two endpoints (address, then port); IPv4 as `::ffff:a.b.c.d`.
    pub addr_lo: [u8; 16],
    pub addr_hi: [u8; 16],
    pub port_lo: u16,
    pub port_hi: u16,
    /// `[outer, inner]` VLAN IDs, 0 where untagged.
    pub vlan: [u16; 2],
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Which endpoint of a [`FlowKey`] sent a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Lo,
    Hi,
}

impl FlowKey {
    /// The key for a packet from `src:sport` to `dst:dport`, and which side sent it.
    pub fn new(
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        sport: u16,
        dport: u16,
        vlan: [u16; 2],
    ) -> (FlowKey, Side) {
        let (a, b) = (to16(src), to16(dst));
        let family = if src.is_ipv4() { 4 } else { 6 };
        let src_is_lo = (a, sport) <= (b, dport);
        let (addr_lo, port_lo, addr_hi, port_hi, side) = if src_is_lo {
            (a, sport, b, dport, Side::Lo)
        } else {
            (b, dport, a, sport, Side::Hi)
        };
        (
            FlowKey {
                addr_lo,
                addr_hi,
                port_lo,
                port_hi,
                vlan,
                proto,
                family,
                _pad: [0; 2],
            },
            side,
        )
    }
}

fn to16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}
