//! Matching later IP fragments to the ports their first fragment carried.
//!
//! Only the first fragment of a datagram holds the transport header. The worker
//! remembers `(src, dst, proto, id) -> (src port, dst port)` from first fragments
//! in a fixed-size, direct-mapped table (a new entry overwrites whatever shared its
//! slot), so later fragments are classified with their datagram's flow. A later
//! fragment with no remembered first fragment (reordered, or the first was lost or
//! never sent, as in a fragment attack) is handled by [`FragmentPolicy`].

use ahash::RandomState;
use std::net::IpAddr;

/// What to do with a later fragment whose first fragment was not seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FragmentPolicy {
    /// Drop it (counted as `DropReason::Fragment`). The safe default: a firewall
    /// cannot classify a fragment without ports.
    #[default]
    Drop,
    /// Forward it unclassified.
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
struct FragKey {
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    proto: u8,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    key: FragKey,
    ports: (u16, u16),
    /// 0 = empty.
    expires: u64,
}

/// First fragments seen recently, by datagram.
#[derive(Debug)]
pub struct FragTable {
    slots: Box<[Slot]>,
    hasher: RandomState,
    lifetime: u64,
}

impl FragTable {
    /// `slots` is rounded up to a power of two; `lifetime_ns` is how long a first
    /// fragment is remembered (Linux's `ipfrag_time` is 30 s).
    pub fn new(slots: usize, lifetime_ns: u64) -> Self {
        let n = slots.max(1).next_power_of_two();
        FragTable {
            slots: vec![Slot::default(); n].into_boxed_slice(),
            hasher: RandomState::new(),
            lifetime: lifetime_ns,
        }
    }

    fn key(src: IpAddr, dst: IpAddr, proto: u8, id: u32) -> FragKey {
        FragKey {
            src: octets(src),
            dst: octets(dst),
            id,
            proto,
        }
    }

    fn slot(&self, key: &FragKey) -> usize {
        (self.hasher.hash_one(key) as usize) & (self.slots.len() - 1)
    }

    /// Remember the ports of a first fragment.
    pub fn insert(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        id: u32,
        ports: (u16, u16),
        now: u64,
    ) {
        let key = Self::key(src, dst, proto, id);
        let i = self.slot(&key);
        self.slots[i] = Slot {
            key,
            ports,
            expires: now.saturating_add(self.lifetime).max(1),
        };
    }

    /// The ports of a later fragment's datagram, if its first fragment was seen.
    pub fn lookup(
        &self,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        id: u32,
        now: u64,
    ) -> Option<(u16, u16)> {
        let key = Self::key(src, dst, proto, id);
        let s = &self.slots[self.slot(&key)];
        (s.expires != 0 && s.expires > now && s.key == key).then_some(s.ports)
    }
}

fn octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn later_fragment_finds_its_first_fragments_ports() {
        let mut t = FragTable::new(64, 30 * S);
        t.insert(ip("10.0.0.1"), ip("10.0.0.2"), 17, 7, (5353, 53), 0);
        assert_eq!(
            t.lookup(ip("10.0.0.1"), ip("10.0.0.2"), 17, 7, S),
            Some((5353, 53))
        );
    }

    #[test]
    fn other_datagrams_and_stale_entries_do_not_match() {
        let mut t = FragTable::new(64, 30 * S);
        t.insert(ip("10.0.0.1"), ip("10.0.0.2"), 17, 7, (5353, 53), 0);
        assert_eq!(t.lookup(ip("10.0.0.1"), ip("10.0.0.2"), 17, 8, S), None);
        assert_eq!(t.lookup(ip("10.0.0.2"), ip("10.0.0.1"), 17, 7, S), None);
        assert_eq!(t.lookup(ip("10.0.0.1"), ip("10.0.0.2"), 6, 7, S), None);
        assert_eq!(
            t.lookup(ip("10.0.0.1"), ip("10.0.0.2"), 17, 7, 31 * S),
            None
        );
    }
}
