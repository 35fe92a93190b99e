//! Threat-intel addresses, as the packet path asks them: "is this address
//! listed, and by which entry?" for each end of a new flow; and listed
//! domains ([`domains`]), as the packet path asks them of a DNS answer.
//!
//! Feeds are mostly single addresses (a C2's IP), with some networks: single
//! addresses are sorted arrays searched by bisection (8 bytes an IPv4 entry,
//! 20 an IPv6 one; bench/RESULTS.md "Threat intel") and only real networks
//! go into a prefix trie, a node each. The set is built
//! once by the control plane and read-only after: it is published beside
//! the policy snapshot, never compiled into the rules.

pub mod domains;

use domains::DomainSet;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Which entry listed an address: an index into the control plane's entries.
pub type EntryId = u32;

/// The block feeds' addresses and domains as the packet path reads them,
/// in two layers built apart: the feed files named in the config, and the
/// feeds managed through the API. An API call rebuilds its own layer only,
/// however large the files' layer is. Cloning it clones four `Arc`s.
#[derive(Debug, Default, Clone)]
pub struct Blocked {
    pub ips: [Arc<IpSet>; 2],
    pub domains: [Arc<DomainSet>; 2],
}

impl Blocked {
    /// One layer: `ips` and `domains` (the other empty).
    pub fn one(ips: Arc<IpSet>, domains: Arc<DomainSet>) -> Blocked {
        Blocked {
            ips: [ips, Arc::default()],
            domains: [domains, Arc::default()],
        }
    }

    /// The entry that blocks `ip`: the first layer's, else the second's.
    #[inline]
    pub fn ip(&self, ip: IpAddr) -> Option<EntryId> {
        self.ips
            .iter()
            .filter(|s| !s.is_empty())
            .find_map(|s| s.lookup(ip))
    }

    /// The entry that blocks `name` or a domain it is under.
    #[inline]
    pub fn domain(&self, name: &str) -> Option<EntryId> {
        self.domains
            .iter()
            .filter(|s| !s.is_empty())
            .find_map(|s| s.lookup_id(name))
    }

    /// Whether some layer lists domains.
    #[inline]
    pub fn has_domains(&self) -> bool {
        self.domains.iter().any(|d| !d.is_empty())
    }

    /// Addresses and networks listed, both layers.
    pub fn len(&self) -> usize {
        self.ips.iter().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An address DNS-aware blocking may block: not one a sinkhole answers
/// with (`0.0.0.0`, loopback), nor multicast, broadcast or link-local.
pub fn blockable(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let special = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast() || v4.is_link_local());
    !(special || ip.is_unspecified() || ip.is_loopback() || ip.is_multicast())
}

/// Listed addresses and networks, each with the entry that listed it.
#[derive(Default)]
pub struct IpSet {
    /// Single IPv4 addresses, sorted, no duplicates.
    v4: Vec<(u32, EntryId)>,
    /// Single IPv6 addresses, sorted, no duplicates.
    v6: Vec<(u128, EntryId)>,
    /// Networks: the longest listed prefix that holds an address.
    nets4: PrefixMap<Ipv4Net, EntryId>,
    nets6: PrefixMap<Ipv6Net, EntryId>,
    nets: usize,
}

impl std::fmt::Debug for IpSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpSet")
            .field("addresses", &(self.v4.len() + self.v6.len()))
            .field("networks", &self.nets)
            .finish()
    }
}

impl IpSet {
    /// The set of `entries`. An address or network listed twice keeps the
    /// first entry that listed it.
    pub fn new(entries: impl IntoIterator<Item = (IpNet, EntryId)>) -> IpSet {
        let mut set = IpSet::default();
        for (net, id) in entries {
            match net {
                IpNet::V4(n) if n.prefix_len() == 32 => set.v4.push((n.addr().into(), id)),
                IpNet::V6(n) if n.prefix_len() == 128 => set.v6.push((n.addr().into(), id)),
                IpNet::V4(n) => {
                    let n = n.trunc();
                    if set.nets4.get(&n).is_none() {
                        set.nets4.insert(n, id);
                        set.nets += 1;
                    }
                }
                IpNet::V6(n) => {
                    let n = n.trunc();
                    if set.nets6.get(&n).is_none() {
                        set.nets6.insert(n, id);
                        set.nets += 1;
                    }
                }
            }
        }
        // Stable: the first of equal addresses (the first entry) stays.
        set.v4.sort_by_key(|e| e.0);
        set.v4.dedup_by_key(|e| e.0);
        set.v4.shrink_to_fit();
        set.v6.sort_by_key(|e| e.0);
        set.v6.dedup_by_key(|e| e.0);
        set.v6.shrink_to_fit();
        set
    }

    /// The entry that lists `ip`: the address itself, else the longest
    /// listed network holding it.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<EntryId> {
        self.listed(ip).map(|(_, id)| id)
    }

    /// [`IpSet::lookup`], with what is listed: the address, or the network.
    #[inline]
    pub fn listed(&self, ip: IpAddr) -> Option<(IpNet, EntryId)> {
        match ip {
            IpAddr::V4(a) => {
                let key = u32::from(a);
                if let Ok(i) = self.v4.binary_search_by_key(&key, |e| e.0) {
                    return Some((IpNet::from(ip), self.v4[i].1));
                }
                if self.nets4.is_empty() {
                    return None;
                }
                let (net, id) = self.nets4.get_lpm(&Ipv4Net::from(a))?;
                Some((IpNet::V4(net), *id))
            }
            IpAddr::V6(a) => {
                // An IPv4-mapped address is the IPv4 address.
                if let Some(v4) = a.to_ipv4_mapped() {
                    return self.listed(IpAddr::V4(v4));
                }
                let key = u128::from(a);
                if let Ok(i) = self.v6.binary_search_by_key(&key, |e| e.0) {
                    return Some((IpNet::from(ip), self.v6[i].1));
                }
                if self.nets6.is_empty() {
                    return None;
                }
                let (net, id) = self.nets6.get_lpm(&Ipv6Net::from(a))?;
                Some((IpNet::V6(net), *id))
            }
        }
    }

    /// What entry `id` lists, found by a scan (a log line's or a record's
    /// words, not the packet path's).
    pub fn net_of(&self, id: EntryId) -> Option<IpNet> {
        let v4 = self.v4.iter().find(|e| e.1 == id);
        if let Some(&(a, _)) = v4 {
            return Some(IpNet::from(IpAddr::from(std::net::Ipv4Addr::from(a))));
        }
        let v6 = self.v6.iter().find(|e| e.1 == id);
        if let Some(&(a, _)) = v6 {
            return Some(IpNet::from(IpAddr::from(std::net::Ipv6Addr::from(a))));
        }
        let n4 = self
            .nets4
            .iter()
            .find(|(_, &e)| e == id)
            .map(|(n, _)| IpNet::V4(n));
        n4.or_else(|| {
            self.nets6
                .iter()
                .find(|(_, &e)| e == id)
                .map(|(n, _)| IpNet::V6(n))
        })
    }

    /// Single addresses and networks listed.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len() + self.nets
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes of the address arrays (the networks' trie is not
    /// counted: feeds hold few networks).
    pub fn address_bytes(&self) -> usize {
        self.v4.capacity() * std::mem::size_of::<(u32, EntryId)>()
            + self.v6.capacity() * std::mem::size_of::<(u128, EntryId)>()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse()
            .unwrap_or_else(|_| IpNet::from(s.parse::<IpAddr>().unwrap()))
    }

    #[test]
    fn addresses_and_the_longest_network_are_found_with_their_entry() {
        let set = IpSet::new([
            (net("203.0.113.66"), 1),
            (net("198.51.100.0/24"), 2),
            (net("198.51.100.128/25"), 3),
            (net("2001:db8::bad"), 4),
            (net("2001:db8:bad::/48"), 5),
            (net("203.0.113.66"), 6),
            (net("10.1.2.3/16"), 7),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(set.lookup(ip("203.0.113.66")), Some(1), "first entry wins");
        assert_eq!(set.lookup(ip("203.0.113.67")), None);
        assert_eq!(set.lookup(ip("198.51.100.7")), Some(2));
        assert_eq!(set.lookup(ip("198.51.100.200")), Some(3), "longest prefix");
        assert_eq!(set.lookup(ip("2001:db8::bad")), Some(4));
        assert_eq!(set.lookup(ip("2001:db8:bad:1::9")), Some(5));
        assert_eq!(set.lookup(ip("2001:db8::bae")), None);
        assert_eq!(set.lookup(ip("::ffff:203.0.113.66")), Some(1), "v4-mapped");
        assert_eq!(set.lookup(ip("10.1.200.1")), Some(7), "host bits dropped");
        assert_eq!(
            set.listed(ip("198.51.100.200")),
            Some(("198.51.100.128/25".parse().unwrap(), 3))
        );
        assert_eq!(
            set.listed(ip("203.0.113.66")),
            Some(("203.0.113.66/32".parse().unwrap(), 1))
        );
        assert_eq!(set.len(), 6);
        assert_eq!(set.net_of(3), Some(net("198.51.100.128/25")));
        assert_eq!(set.net_of(4), Some(net("2001:db8::bad")));
        assert_eq!(set.net_of(1), Some(net("203.0.113.66")));
        assert_eq!(set.net_of(6), None, "a duplicate is not held");
    }

    #[test]
    fn an_empty_set_lists_nothing() {
        let set = IpSet::new([]);
        assert!(set.is_empty());
        assert_eq!(set.lookup("10.0.0.1".parse().unwrap()), None);
        assert_eq!(set.lookup("::1".parse().unwrap()), None);
    }
}
