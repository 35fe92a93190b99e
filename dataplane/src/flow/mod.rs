//! The per-core flow table.
//!
//! Both directions of a flow hit one entry: the key is the 5-tuple (+ VLAN) with
//! the two endpoints put in a fixed order ([`FlowKey::new`]).
//!
//! - [`FlowEntry`]: one tracked flow (key, verdict, state, counters), 128 bytes at most.
//! - [`FlowState`], [`FlowEntry::update`], [`Timeouts`] (in `tcp.rs`): the state machine
//!   and the per-state idle timeouts.
//! - [`FlowTable`] (in `table.rs`): the fixed-capacity open-addressing table.
//!
//! Typical packet path:
//!
//! ```text
//! let (key, side) = FlowKey::new(src, dst, proto, sport, dport, vlan);
//! let h = table.hash(&key);
//! match table.lookup_hashed(&key, h, now) {
//!     Lookup::Hit(e) => {
//!         // (the worker first checks `e.macs_match(side, ..)`, and decides a
//!         // SYN that `!e.syn_continues(dir)` as a new connection)
//!         let u = e.update(e.dir(side), flags, len, now);
//!         if u.restart {
//!             // report *e as ended; classify; *e = FlowEntry::new(..); e.update(..)
//!         } else if u.closed() {
//!             // optionally report the end now
//!         }
//!     }
//!     miss => {
//!         if let Lookup::Expired(old) = miss { /* report old as ended */ }
//!         let verdict = classify(..);
//!         let (e, displaced) = table.insert_hashed(FlowEntry::new(key, side, ..), h, now);
//!         e.update(Dir::Orig, flags, len, now);
//!         if let Some(old) = displaced { /* report old as ended */ }
//!     }
//! }
//! // once per batch:
//! table.expire(now, 64, |old| { /* report old as ended */ });
//! ```

mod table;
mod tcp;

pub use table::{ExpireHook, FlowStats, FlowTable, Lookup};
pub use tcp::{FlowState, Timeouts, Update};

use crate::io::Port;
use crate::policy::Verdict;
use crate::wire::{ip_proto, MacAddr};
use std::net::IpAddr;

/// The direction-normalised 5-tuple + VLAN. `#[repr(C)]`: the XDP offload map
/// uses the same bytes (`struct bulkhead_flow_key` in `dataplane/bpf/bulkhead.h`;
/// a test of the AF_XDP backend compares the two layouts through the object's BTF).
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
    /// [`FlowKey::FAMILY_IPV4`] or [`FlowKey::FAMILY_IPV6`].
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
    /// `family` of an IPv4 flow (`BULKHEAD_FAMILY_IPV4` in the XDP program's
    /// `bulkhead.h`; the AF_XDP backend checks the two agree when it builds).
    pub const FAMILY_IPV4: u8 = 4;
    /// `family` of an IPv6 flow (`BULKHEAD_FAMILY_IPV6`).
    pub const FAMILY_IPV6: u8 = 6;

    /// The key for a packet from `src:sport` to `dst:dport`, and which side sent it.
    #[inline]
    pub fn new(
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        sport: u16,
        dport: u16,
        vlan: [u16; 2],
    ) -> (FlowKey, Side) {
        let (a, b) = (to_u128(src), to_u128(dst));
        let family = if src.is_ipv4() {
            FlowKey::FAMILY_IPV4
        } else {
            FlowKey::FAMILY_IPV6
        };
        // Comparing big-endian u128s orders exactly as comparing the octets would.
        let src_is_lo = (a, sport) <= (b, dport);
        let (addr_lo, port_lo, addr_hi, port_hi, side) = if src_is_lo {
            (a, sport, b, dport, Side::Lo)
        } else {
            (b, dport, a, sport, Side::Hi)
        };
        (
            FlowKey {
                addr_lo: addr_lo.to_be_bytes(),
                addr_hi: addr_hi.to_be_bytes(),
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

#[inline]
fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => 0xffff_0000_0000 | u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// The direction of a packet relative to the flow's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Same direction as the first packet (counter index 0).
    Orig = 0,
    /// The other way (counter index 1).
    Reply = 1,
}

/// One tracked flow. `Copy`, at most 128 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowEntry {
    pub key: FlowKey,
    /// Which side of `key` sent the first packet.
    pub orig: Side,
    /// Source MAC of the first packet.
    pub orig_src_mac: MacAddr,
    /// Destination MAC of the first packet.
    pub orig_dst_mac: MacAddr,
    pub state: FlowState,
    pub verdict: Verdict,
    /// The policy generation `verdict` was computed from.
    pub generation: u64,
    /// Nanoseconds, the caller's clock.
    pub first_seen: u64,
    /// Nanoseconds, the caller's clock; what the idle timeout counts from.
    pub last_seen: u64,
    /// `[orig, reply]`, indexed by [`Dir`].
    pub packets: [u64; 2],
    /// `[orig, reply]` bytes, indexed by [`Dir`].
    pub bytes: [u64; 2],
    /// Private bookkeeping: which sides sent a FIN (`tcp::FIN_*`), whether
    /// the flow is offloaded ([`OFFLOADED`]), the interim parity
    /// ([`INTERIM`]), the port the initiator is on ([`ORIG_ON_B`]) and
    /// packets not yet reported ([`UNREPORTED`]).
    tcp: u8,
    /// The TCP flags of every packet userspace saw, both directions OR'd
    /// (the kernel tier carries only ACK/PSH segments of an established
    /// connection; SYN, FIN and RST always come up).
    flags_seen: u8,
}

/// The bit of `FlowEntry::tcp` that says the flow is offloaded (no room for a
/// field: the entry is 128 bytes).
const OFFLOADED: u8 = 0x80;
/// The bit of `FlowEntry::tcp` that holds the parity of the interim-report
/// period the flow was last looked at in ([`FlowEntry::interim_boundary`]).
const INTERIM: u8 = 0x40;
/// The bit of `FlowEntry::tcp` that says the initiator is on segment B.
const ORIG_ON_B: u8 = 0x20;
/// The bit of `FlowEntry::tcp` that says the flow carried packets since its
/// last interim report (or its start).
const UNREPORTED: u8 = 0x10;

const _: () = assert!(std::mem::size_of::<FlowEntry>() <= 128);
const _: () = assert!(std::mem::size_of::<FlowKey>() == 44);

impl FlowEntry {
    /// A new entry with no packets counted yet: `orig` sent the first packet, with
    /// these MACs. Count that packet with [`FlowEntry::update`]`(Dir::Orig, ..)`: the
    /// first update sets the initial state (until then `state` is a placeholder:
    /// `SynSent` for TCP, `Unreplied` otherwise).
    pub fn new(
        key: FlowKey,
        orig: Side,
        orig_src_mac: MacAddr,
        orig_dst_mac: MacAddr,
        verdict: Verdict,
        generation: u64,
        now: u64,
    ) -> FlowEntry {
        let state = if key.proto == ip_proto::TCP {
            FlowState::SynSent
        } else {
            FlowState::Unreplied
        };
        FlowEntry {
            key,
            orig,
            orig_src_mac,
            orig_dst_mac,
            state,
            verdict,
            generation,
            first_seen: now,
            last_seen: now,
            packets: [0; 2],
            bytes: [0; 2],
            tcp: 0,
            flags_seen: 0,
        }
    }

    /// The segment the initiator is on (its first packet came in there, or,
    /// for a flow picked up from its reply, the other one).
    #[inline]
    pub fn orig_port(&self) -> Port {
        if self.tcp & ORIG_ON_B != 0 {
            Port::B
        } else {
            Port::A
        }
    }

    #[inline]
    pub fn set_orig_port(&mut self, port: Port) {
        match port {
            Port::A => self.tcp &= !ORIG_ON_B,
            Port::B => self.tcp |= ORIG_ON_B,
        }
    }

    /// Whether the flow carried packets since its last interim report.
    #[inline]
    pub fn unreported(&self) -> bool {
        self.tcp & UNREPORTED != 0
    }

    /// The flow carried packets (counted here, or by the kernel tier).
    #[inline]
    pub fn mark_unreported(&mut self) {
        self.tcp |= UNREPORTED;
    }

    /// An interim report of the flow went out.
    #[inline]
    pub fn mark_reported(&mut self) {
        self.tcp &= !UNREPORTED;
    }

    /// The TCP flags seen in either direction (0 for other protocols).
    #[inline]
    pub fn flags_seen(&self) -> u8 {
        self.flags_seen
    }

    /// The direction of a packet sent by `side` (as returned by [`FlowKey::new`]).
    #[inline]
    pub fn dir(&self, side: Side) -> Dir {
        if side == self.orig {
            Dir::Orig
        } else {
            Dir::Reply
        }
    }

    /// The MAC the flow is bound to on `side` of its key: the MAC that side
    /// used in the flow's first packet.
    #[inline]
    pub fn mac_of(&self, side: Side) -> MacAddr {
        if side == self.orig {
            self.orig_src_mac
        } else {
            self.orig_dst_mac
        }
    }

    /// The MACs the flow is bound to, by side of its key: `[lo, hi]` (the
    /// kernel tier's order).
    #[inline]
    pub fn side_macs(&self) -> [MacAddr; 2] {
        [self.mac_of(Side::Lo), self.mac_of(Side::Hi)]
    }

    /// Whether a frame sent by `side` from `src` to `dst` belongs to this flow:
    /// a flow is bound to the MACs that opened it, so a frame with its
    /// addresses from another MAC (a spoofer, a quarantined host that changed
    /// its MAC) is not carried by it.
    #[inline]
    pub fn macs_match(&self, side: Side, src: MacAddr, dst: MacAddr) -> bool {
        if side == self.orig {
            src == self.orig_src_mac && dst == self.orig_dst_mac
        } else {
            src == self.orig_dst_mac && dst == self.orig_src_mac
        }
    }

    /// Packets in both directions.
    #[inline]
    pub fn total_packets(&self) -> u64 {
        self.packets[0].wrapping_add(self.packets[1])
    }

    /// Bytes in both directions.
    #[inline]
    pub fn total_bytes(&self) -> u64 {
        self.bytes[0].wrapping_add(self.bytes[1])
    }

    /// The flow has an entry in the kernel tier (the XDP offload map), as far as
    /// the worker knows: its packets may be counted there, not here.
    #[inline]
    pub fn offloaded(&self) -> bool {
        self.tcp & OFFLOADED != 0
    }

    #[inline]
    pub fn set_offloaded(&mut self, on: bool) {
        if on {
            self.tcp |= OFFLOADED;
        } else {
            self.tcp &= !OFFLOADED;
        }
    }

    /// Whether a period boundary of the flow's interim reports (every `every`
    /// ns of its life, IPFIX's active timeout) was crossed since the flow was
    /// last asked: then a report is due if the flow carried packets since
    /// its last one ([`FlowEntry::unreported`]; an idle connection is not
    /// reported again and again). Without a field to spare, the entry keeps
    /// only the parity of the period it was last asked in; a caller that asks
    /// at least once a period (the table's sweep) sees every boundary.
    #[inline]
    pub fn interim_boundary(&mut self, now: u64, every: u64) -> bool {
        if every == 0 {
            return false;
        }
        let period = now.saturating_sub(self.first_seen) / every;
        let parity = if period & 1 == 1 { INTERIM } else { 0 };
        if self.tcp & INTERIM == parity {
            return false;
        }
        self.tcp ^= INTERIM;
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::{Action, Mode, Reason};
    use std::net::{Ipv4Addr, Ipv6Addr};

    pub(crate) fn allow() -> Verdict {
        Verdict {
            action: Action::Allow,
            reason: Reason::Default,
            mode: Mode::Enforce,
            would_deny: false,
        }
    }

    pub(crate) fn v4(a: u8, b: u8) -> (IpAddr, IpAddr) {
        (
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, b)),
        )
    }

    /// A fresh entry for a packet `src:sport -> dst:dport` and that packet's side.
    pub(crate) fn entry(proto: u8, sport: u16, dport: u16, now: u64) -> (FlowEntry, Side) {
        let (s, d) = v4(1, 2);
        let (key, side) = FlowKey::new(s, d, proto, sport, dport, [0, 0]);
        let e = FlowEntry::new(
            key,
            side,
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 2]),
            allow(),
            1,
            now,
        );
        (e, side)
    }

    #[test]
    fn size_of_entry() {
        assert_eq!(std::mem::size_of::<FlowEntry>(), 128);
        assert_eq!(std::mem::size_of::<FlowKey>(), 44);
    }

    #[test]
    fn both_directions_one_key() {
        let (a, b) = v4(1, 2);
        let (k1, s1) = FlowKey::new(a, b, 6, 40000, 443, [0, 0]);
        let (k2, s2) = FlowKey::new(b, a, 6, 443, 40000, [0, 0]);
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
        let e = FlowEntry::new(
            k1,
            s1,
            MacAddr::default(),
            MacAddr::default(),
            allow(),
            0,
            0,
        );
        assert_eq!(e.dir(s1), Dir::Orig);
        assert_eq!(e.dir(s2), Dir::Reply);
    }

    #[test]
    fn family_and_vlan_differ() {
        let (a, b) = v4(1, 2);
        let (k4, _) = FlowKey::new(a, b, 17, 1000, 53, [0, 0]);
        let a6 = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        let b6 = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped());
        // Same 16 address bytes, but the family differs.
        let (k6, _) = FlowKey::new(a6, b6, 17, 1000, 53, [0, 0]);
        assert_eq!(k4.addr_lo, k6.addr_lo);
        assert_ne!(k4, k6);
        let (k6b, _) = FlowKey::new(
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            17,
            1000,
            53,
            [0, 0],
        );
        assert_ne!(k4, k6b);
        let (kv, _) = FlowKey::new(a, b, 17, 1000, 53, [10, 0]);
        let (kq, _) = FlowKey::new(a, b, 17, 1000, 53, [10, 20]);
        assert_ne!(k4, kv);
        assert_ne!(kv, kq);

        let mut t = FlowTable::new(16, Timeouts::default());
        for k in [k4, k6, k6b, kv, kq] {
            let e = FlowEntry::new(
                k,
                Side::Lo,
                MacAddr::default(),
                MacAddr::default(),
                allow(),
                0,
                0,
            );
            assert!(t.insert(e, 0).1.is_none());
        }
        assert_eq!(t.len(), 5);
    }
}
