//! Address bindings: which MAC holds which IP, for the spoofing guard.
//!
//! A workload's declared addresses (`workloads[].ips`) are bound to it for
//! good; an address learned on the wire (ARP, a DHCP lease, a flow's source)
//! is bound to the first MAC seen with it. Another MAC that claims a bound
//! address does not get it: the address is not learned for it (so no
//! assignment rule by CIDR can give it the holder's labels) and the claim is
//! counted. A DHCP lease is the server's word, so it moves a *learned*
//! binding to the lease's MAC; a declared one never moves.
//!
//! The bindings go to the dataplane in the snapshot's overlay
//! ([`dataplane::policy::PolicySnapshot::with_bindings`]), debounced like a
//! relabelling, without a new generation: the packet path drops a new flow,
//! an ARP or a neighbour advertisement that claims a bound address from
//! another MAC.

use crate::model::{Model, Origin};
use dataplane::policy::parse_mac;
use dataplane::wire::MacAddr;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// What an observation of `mac` using `ip` may do with the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// Unbound or already this MAC's: learn it.
    Learn,
    /// A DHCP lease moves it from a learned holder: take it from `from`.
    Move { from: MacAddr },
    /// Another MAC holds it: do not learn it.
    Refused { owner: MacAddr },
}

#[derive(Debug, Default)]
pub(super) struct AddressBook {
    /// IP -> (holder, declared).
    owners: HashMap<IpAddr, (MacAddr, bool)>,
    /// A binding changed and is not published yet, since then.
    pub(super) dirty_since: Option<Instant>,
}

impl AddressBook {
    /// The bindings of `model`'s workloads: declared workloads (and their
    /// declared addresses) first, then the learned ones in order.
    pub(super) fn of(model: &Model) -> AddressBook {
        let mut owners = HashMap::new();
        for declared in [true, false] {
            for w in model.workloads.iter() {
                if (w.origin != Origin::Observed) != declared {
                    continue;
                }
                let Some(mac) = parse_mac(&w.mac) else {
                    continue;
                };
                for ip in w.ips.iter().filter_map(|t| t.trim().parse::<IpAddr>().ok()) {
                    owners.entry(ip).or_insert((mac, declared));
                }
            }
        }
        AddressBook {
            owners,
            dirty_since: None,
        }
    }

    /// Whether `mac` may use `ip` (`lease`: a DHCP server leased it to `mac`).
    pub(super) fn claim(&self, mac: MacAddr, ip: IpAddr, lease: bool) -> Claim {
        match self.owners.get(&ip) {
            None => Claim::Learn,
            Some(&(owner, _)) if owner == mac => Claim::Learn,
            Some(&(owner, false)) if lease => Claim::Move { from: owner },
            Some(&(owner, _)) => Claim::Refused { owner },
        }
    }

    /// `mac` learned `ip` (after [`AddressBook::claim`] allowed it).
    pub(super) fn bind(&mut self, mac: MacAddr, ip: IpAddr, now: Instant) {
        let old = self.owners.insert(ip, (mac, false));
        if old.map(|(m, _)| m) != Some(mac) {
            self.dirty_since.get_or_insert(now);
        }
    }

    /// A learned workload was forgotten: its learned addresses are free.
    pub(super) fn release(&mut self, mac: MacAddr, now: Instant) {
        let before = self.owners.len();
        self.owners
            .retain(|_, &mut (owner, declared)| declared || owner != mac);
        if self.owners.len() != before {
            self.dirty_since.get_or_insert(now);
        }
    }

    /// The bindings, for the snapshot's overlay.
    pub(super) fn pairs(&self) -> impl Iterator<Item = (IpAddr, MacAddr)> + '_ {
        self.owners.iter().map(|(&ip, &(mac, _))| (ip, mac))
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.owners.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Workload;

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, last])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn model() -> Model {
        let mut m = Model::default();
        m.workloads.push(Workload {
            mac: "02:00:00:00:00:01".into(),
            name: "db-1".into(),
            ips: vec!["10.0.0.1".into()],
            ..Workload::default()
        });
        m.workloads.push(Workload {
            mac: "02:00:00:00:00:02".into(),
            origin: Origin::Observed,
            ips: vec!["10.0.0.2".into(), "10.0.0.1".into()],
            ..Workload::default()
        });
        m
    }

    #[test]
    fn declared_addresses_win_and_never_move() {
        let book = AddressBook::of(&model());
        assert_eq!(book.len(), 2);
        assert_eq!(book.claim(mac(1), ip("10.0.0.1"), false), Claim::Learn);
        let refused = Claim::Refused { owner: mac(1) };
        assert_eq!(book.claim(mac(2), ip("10.0.0.1"), false), refused);
        assert_eq!(book.claim(mac(9), ip("10.0.0.1"), true), refused);
    }

    #[test]
    fn a_learned_address_is_refused_to_others_and_moved_by_a_lease() {
        let mut book = AddressBook::of(&model());
        let learned = ip("10.0.0.2");
        assert_eq!(
            book.claim(mac(9), learned, false),
            Claim::Refused { owner: mac(2) }
        );
        assert_eq!(
            book.claim(mac(9), learned, true),
            Claim::Move { from: mac(2) }
        );
        assert!(book.dirty_since.is_none());
        book.bind(mac(9), learned, Instant::now());
        assert!(book.dirty_since.is_some());
        assert_eq!(book.claim(mac(9), learned, false), Claim::Learn);
        assert_eq!(book.claim(mac(5), ip("10.0.0.3"), false), Claim::Learn);
    }
}
