//! What a snapshot carries beside its rule tables and changes without a
//! commit: the quarantined MACs and the management exceptions that keep
//! their channel open, the address bindings (which MAC holds which IP), and
//! the threat-intel addresses that are blocked (the block feeds' set and the
//! addresses DNS answered for their domains).
//!
//! Each part is shared behind its own `Arc`: a quarantine, a feed reload or
//! a DNS answer makes a new snapshot that shares the rule tables and every
//! other part, so its cost is the size of the part that changed, never a
//! recompile of the rules.

use super::proto::{PortRange, Proto};
use super::{FlowQuery, PolicySnapshot};
use crate::intel::{Blocked, EntryId};
use crate::wire::MacAddr;
use ahash::{AHashMap, AHashSet};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub(super) struct Management {
    pub(super) net: IpNet,
    pub(super) proto: Proto,
    pub(super) ports: Box<[PortRange]>,
    /// The management hosts: the exception holds only for these MACs.
    pub(super) macs: Box<[MacAddr]>,
}

impl Management {
    fn allows(&self, other_mac: MacAddr, other: IpAddr, proto: u8, port: u16) -> bool {
        self.macs.contains(&other_mac)
            && self.net.contains(&other)
            && self.proto.matches(proto)
            && (self.ports.is_empty() || self.ports.iter().any(|r| r.contains(port)))
    }
}

/// Addresses DNS answered for a blocked domain, each with the entry that
/// listed the domain.
pub type Resolved = AHashMap<IpAddr, EntryId>;

/// See the module's documentation. Cloning it clones eight `Arc`s.
#[derive(Debug, Default, Clone)]
pub(super) struct Overlay {
    pub(super) quarantine: Arc<AHashSet<MacAddr>>,
    pub(super) management: Arc<[Management]>,
    pub(super) bindings: Arc<AHashMap<IpAddr, MacAddr>>,
    /// The block feeds' addresses and networks, and their domains.
    pub(super) intel: Blocked,
    pub(super) resolved: Arc<Resolved>,
}

impl PolicySnapshot {
    fn with(&self, generation: u64, change: impl FnOnce(&mut Overlay)) -> PolicySnapshot {
        let mut overlay = self.overlay.clone();
        change(&mut overlay);
        PolicySnapshot {
            generation,
            tables: self.tables.clone(),
            overlay,
        }
    }

    /// This policy with another set of quarantined MACs, as `generation`:
    /// the rule tables are shared, not rebuilt, so the cost is the set's size.
    pub fn with_quarantine(
        &self,
        quarantine: impl IntoIterator<Item = MacAddr>,
        generation: u64,
    ) -> PolicySnapshot {
        self.with(generation, |o| {
            o.quarantine = Arc::new(quarantine.into_iter().collect());
        })
    }

    /// This policy with other address bindings (IP -> the MAC that holds
    /// it), same generation: a binding decides new flows and ARP only (a
    /// frame claiming an address another MAC holds is a spoof), so flows
    /// already decided need no second look.
    pub fn with_bindings(
        &self,
        bindings: impl IntoIterator<Item = (IpAddr, MacAddr)>,
    ) -> PolicySnapshot {
        self.with(self.generation, |o| {
            o.bindings = Arc::new(bindings.into_iter().collect());
        })
    }

    /// This policy with other blocked threat intel, as `generation`
    /// (flows decided before are decided again, so a newly listed address
    /// cuts its flows, offloaded ones too): `intel` holds the block feeds'
    /// addresses and domains, `resolved` the addresses DNS answered for
    /// those domains. All are shared, not copied.
    pub fn with_intel(
        &self,
        intel: Blocked,
        resolved: Arc<Resolved>,
        generation: u64,
    ) -> PolicySnapshot {
        self.with(generation, |o| {
            o.intel = intel;
            o.resolved = resolved;
        })
    }

    /// The block feeds' entry that lists `name` or a domain it is under.
    #[inline]
    pub fn intel_domain(&self, name: &str) -> Option<EntryId> {
        self.overlay.intel.domain(name)
    }

    /// Whether some block feed lists domains.
    #[inline]
    pub fn blocks_domains(&self) -> bool {
        self.overlay.intel.has_domains()
    }

    /// The threat-intel entry that blocks `ip`, if one does.
    #[inline]
    pub fn intel_blocks(&self, ip: IpAddr) -> Option<EntryId> {
        let o = &self.overlay;
        if !o.resolved.is_empty() {
            if let Some(&id) = o.resolved.get(&ip) {
                return Some(id);
            }
        }
        o.intel.ip(ip)
    }

    /// The blocked threat-intel addresses: the feeds' entries and the
    /// addresses resolved for their domains.
    pub fn intel_len(&self) -> (usize, usize) {
        (self.overlay.intel.len(), self.overlay.resolved.len())
    }

    /// The MAC that holds `ip`, if a workload holds it.
    #[inline]
    pub fn owner_of(&self, ip: IpAddr) -> Option<MacAddr> {
        if self.overlay.bindings.is_empty() {
            return None;
        }
        self.overlay.bindings.get(&ip).copied()
    }

    /// Whether `mac` sending as `ip` claims an address another MAC holds.
    #[inline]
    pub fn claims_other(&self, mac: MacAddr, ip: IpAddr) -> Option<MacAddr> {
        self.owner_of(ip).filter(|&owner| owner != mac)
    }

    /// The quarantined MACs, in no order.
    pub fn quarantined(&self) -> impl Iterator<Item = MacAddr> + '_ {
        self.overlay.quarantine.iter().copied()
    }

    /// Whether `mac` is quarantined.
    pub fn is_quarantined(&self, mac: MacAddr) -> bool {
        self.overlay.quarantine.contains(&mac)
    }

    pub(super) fn management_allows(
        &self,
        other_mac: MacAddr,
        other: IpAddr,
        q: &FlowQuery,
    ) -> bool {
        self.overlay
            .management
            .iter()
            .any(|m| m.allows(other_mac, other, q.proto, q.dst_port))
    }

    /// Whether a frame between `src` and `dst` has a quarantined end.
    #[inline]
    pub fn quarantines(&self, src: MacAddr, dst: MacAddr) -> bool {
        !self.overlay.quarantine.is_empty()
            && (self.overlay.quarantine.contains(&src) || self.overlay.quarantine.contains(&dst))
    }

    /// Whether a frame below IP (ARP, IPv6 neighbour discovery) with a
    /// quarantined end may pass: only between a quarantined host and a
    /// management host (by MAC), so that the management channel can resolve
    /// addresses. A broadcast or multicast question from the quarantined host
    /// passes only if it asks for an address of a management exception
    /// (`target`); anything else (gratuitous ARP, router advertisements,
    /// questions to other hosts, answers to them) is cut.
    pub fn quarantine_l2_allows(&self, src: MacAddr, dst: MacAddr, target: Option<IpAddr>) -> bool {
        let is_mgmt = |mac: MacAddr| {
            self.overlay
                .management
                .iter()
                .any(|m| m.macs.contains(&mac))
        };
        let (sq, dq) = (
            self.overlay.quarantine.contains(&src),
            self.overlay.quarantine.contains(&dst),
        );
        if sq && dq {
            return false;
        }
        if dq {
            return is_mgmt(src);
        }
        if dst.is_multicast() {
            return target
                .is_some_and(|t| self.overlay.management.iter().any(|m| m.net.contains(&t)));
        }
        is_mgmt(dst)
    }
}
