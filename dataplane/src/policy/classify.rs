//! [`PolicySnapshot`] and its flow lookup.
//!
//! Nothing in [`PolicySnapshot::classify`] scans the rules:
//! - group names are interned to `u32` ids, with [`ANY`] reserved for `"any"`;
//! - MAC -> interned group set (hash map); IP -> interned group set by one
//!   longest-prefix match per family, where each prefix's set already holds the
//!   groups of every prefix covering it (folded in at compile time);
//! - rules are bucketed by `(src group | ANY, dst group | ANY)`. A bucket is a run of
//!   per-protocol slots (sorted by protocol number, "any" = 256 last); a slot is a
//!   sorted array of elementary port intervals, each holding the rank (position in
//!   `(order, list position)` order) of the first rule covering it. Classify looks up
//!   every `(s, d)` pair of the endpoints' groups (plus ANY) that some rule uses,
//!   binary-searches the port in the query's protocol slot and in the "any" slot,
//!   and keeps the smallest rank.

use super::overlay::Overlay;
use super::{Action, FlowQuery, Mode, Reason, Verdict};
use crate::wire::MacAddr;
use ahash::AHashMap;
use ipnet::{Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use smallvec::SmallVec;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// The reserved group id of `"any"` in rules.
pub(super) const ANY: u32 = u32::MAX;
/// "No rule" as a rank.
pub(super) const NO_RULE: u32 = u32::MAX;
/// The protocol key of an "any protocol" slot.
pub(super) const PROTO_ANY: u16 = 256;

#[derive(Debug)]
pub(super) struct GroupSet {
    /// Sorted, distinct group ids.
    pub(super) ids: Box<[u32]>,
    /// The strictest mode of those groups.
    pub(super) mode: Mode,
}

#[derive(Debug)]
pub(super) struct CompiledRule {
    pub(super) id: u32,
    pub(super) action: Action,
    pub(super) comment: Option<Box<str>>,
}

/// A protocol's port table inside a bucket: `starts[off..off+len]`, `best[off..off+len]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) proto: u16,
    pub(super) off: u32,
    pub(super) len: u32,
}

/// The compiled rule tables: everything a commit rebuilds. Shared between
/// the snapshots that differ only in their [`Overlay`].
pub(super) struct RuleTables {
    pub(super) default_mode: Mode,
    pub(super) group_names: Box<[String]>,
    pub(super) sets: Box<[GroupSet]>,
    pub(super) mac_sets: AHashMap<MacAddr, u32>,
    pub(super) v4: PrefixMap<Ipv4Net, u32>,
    pub(super) v6: PrefixMap<Ipv6Net, u32>,
    pub(super) block_v4: PrefixMap<Ipv4Net, ()>,
    pub(super) block_v6: PrefixMap<Ipv6Net, ()>,
    /// Per group id: whether it appears in some rule's src (resp. dst).
    pub(super) used_src: Box<[bool]>,
    pub(super) used_dst: Box<[bool]>,
    /// `(src << 32) | dst` -> range of `slots`.
    pub(super) buckets: AHashMap<u64, (u32, u32)>,
    pub(super) slots: Box<[Slot]>,
    /// Start port of each elementary interval (each slot's first is 0).
    pub(super) starts: Box<[u16]>,
    /// Rank of the first rule covering each interval, or [`NO_RULE`].
    pub(super) best: Box<[u32]>,
    /// Rules in rank order.
    pub(super) rules: Box<[CompiledRule]>,
    pub(super) rank_of: AHashMap<u32, u32>,
}

/// The compiled policy: the rule tables and the overlay, with a generation.
/// Immutable; share it behind an `Arc` (see [`super::SnapshotCell`]).
pub struct PolicySnapshot {
    pub(super) generation: u64,
    pub(super) tables: Arc<RuleTables>,
    pub(super) overlay: Overlay,
}

impl fmt::Debug for PolicySnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicySnapshot")
            .field("generation", &self.generation)
            .field("default_mode", &self.tables.default_mode)
            .field("groups", &self.tables.group_names.len())
            .field("rules", &self.tables.rules.len())
            .field("buckets", &self.tables.buckets.len())
            .field("quarantined", &self.overlay.quarantine.len())
            .finish_non_exhaustive()
    }
}

/// An endpoint's interned group sets: by MAC, by IP.
#[derive(Clone, Copy)]
pub(super) struct Endpoint {
    pub(super) mac: Option<u32>,
    pub(super) ip: Option<u32>,
}

pub(super) fn bucket_key(src: u32, dst: u32) -> u64 {
    (u64::from(src) << 32) | u64::from(dst)
}

/// Group ids of one side of a flow, filtered to those some rule uses, plus [`ANY`].
type Ids = SmallVec<[u32; 8]>;

impl PolicySnapshot {
    /// A policy with nothing in it (every flow denied by default), built without validation.
    pub(super) fn build_empty(generation: u64) -> Self {
        PolicySnapshot {
            generation,
            tables: Arc::new(RuleTables {
                default_mode: Mode::Enforce,
                group_names: Box::default(),
                sets: Box::default(),
                mac_sets: AHashMap::new(),
                v4: PrefixMap::new(),
                v6: PrefixMap::new(),
                block_v4: PrefixMap::new(),
                block_v6: PrefixMap::new(),
                used_src: Box::default(),
                used_dst: Box::default(),
                buckets: AHashMap::new(),
                slots: Box::default(),
                starts: Box::default(),
                best: Box::default(),
                rules: Box::default(),
                rank_of: AHashMap::new(),
            }),
            overlay: Overlay::default(),
        }
    }

    /// The generation this snapshot was compiled with.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The mode of an endpoint that is in no group.
    pub fn default_mode(&self) -> Mode {
        self.tables.default_mode
    }

    /// The number of rules.
    pub fn rule_count(&self) -> usize {
        self.tables.rules.len()
    }

    /// The number of groups.
    pub fn group_count(&self) -> usize {
        self.tables.group_names.len()
    }

    /// Whether a rule with this id exists.
    pub fn has_rule(&self, id: u32) -> bool {
        self.tables.rank_of.contains_key(&id)
    }

    /// The comment of rule `id`, if it has one.
    pub fn rule_comment(&self, id: u32) -> Option<&str> {
        let rank = *self.tables.rank_of.get(&id)?;
        self.tables.rules.get(rank as usize)?.comment.as_deref()
    }

    /// The action of rule `id`.
    pub fn rule_action(&self, id: u32) -> Option<Action> {
        let rank = *self.tables.rank_of.get(&id)?;
        Some(self.tables.rules.get(rank as usize)?.action)
    }

    /// Whether `ip` is in a blocked CIDR.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.tables.block_v4.get_lpm(&Ipv4Net::from(a)).is_some(),
            IpAddr::V6(a) => self.tables.block_v6.get_lpm(&Ipv6Net::from(a)).is_some(),
        }
    }

    /// The names of the groups of the endpoint `(mac, ip)`, sorted by declaration.
    pub fn endpoint_groups(&self, mac: MacAddr, ip: IpAddr) -> Vec<&str> {
        let ep = self.endpoint(mac, ip);
        let mut ids: Vec<u32> = self
            .set_ids(ep.mac)
            .iter()
            .chain(self.set_ids(ep.ip))
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.iter()
            .filter_map(|&g| self.tables.group_names.get(g as usize).map(String::as_str))
            .collect()
    }

    /// The mode of a MAC by its groups alone (for frames without IP): the
    /// strictest of its groups', or the default.
    pub fn mac_mode(&self, mac: MacAddr) -> Mode {
        self.mode_of(Endpoint {
            mac: self.tables.mac_sets.get(&mac).copied(),
            ip: None,
        })
    }

    /// The mode of the endpoint `(mac, ip)`: the strictest of its groups', or the default.
    pub fn endpoint_mode(&self, mac: MacAddr, ip: IpAddr) -> Mode {
        self.mode_of(self.endpoint(mac, ip))
    }

    /// The verdict for a new flow.
    /// Precedence: quarantine (with management exceptions) > threat intel's
    /// blocked addresses > the policy's blocklist > the first matching rule >
    /// the effective mode's default. The effective mode is the
    /// strictest of both endpoints' modes; audit and learn turn a deny into an allow
    /// with `would_deny`, except learn's default, which is a plain allow. Quarantine,
    /// intel and blocklist deny in every mode.
    ///
    /// When both endpoints are quarantined, the flow passes only if each one's peer
    /// matches a management exception.
    pub fn classify(&self, q: &FlowQuery) -> Verdict {
        let src = self.endpoint(q.src_mac, q.src_ip);
        let dst = self.endpoint(q.dst_mac, q.dst_ip);
        let mode = self.mode_of(src).max(self.mode_of(dst));
        let plain = |action, reason| Verdict {
            action,
            reason,
            mode,
            would_deny: false,
        };

        if !self.overlay.quarantine.is_empty() {
            let sq = self.overlay.quarantine.contains(&q.src_mac);
            let dq = self.overlay.quarantine.contains(&q.dst_mac);
            if sq || dq {
                let ok = (!sq || self.management_allows(q.dst_mac, q.dst_ip, q))
                    && (!dq || self.management_allows(q.src_mac, q.src_ip, q));
                return if ok {
                    plain(Action::Allow, Reason::Management)
                } else {
                    plain(Action::Deny, Reason::Quarantine)
                };
            }
        }
        if let Some(id) = self
            .intel_blocks(q.src_ip)
            .or_else(|| self.intel_blocks(q.dst_ip))
        {
            return plain(Action::Deny, Reason::Intel(id));
        }
        if self.is_blocked(q.src_ip) || self.is_blocked(q.dst_ip) {
            return plain(Action::Deny, Reason::Blocklist);
        }

        let rank = self.first_rule(src, dst, q.proto, q.dst_port);
        match self.tables.rules.get(rank as usize) {
            Some(rule) => {
                let reason = Reason::Rule(rule.id);
                match (rule.action, mode) {
                    (Action::Allow, _) => plain(Action::Allow, reason),
                    (Action::Deny, Mode::Enforce) => plain(Action::Deny, reason),
                    (Action::Deny, _) => Verdict {
                        action: Action::Allow,
                        reason,
                        mode,
                        would_deny: true,
                    },
                }
            }
            None => match mode {
                Mode::Learn => plain(Action::Allow, Reason::Default),
                Mode::Audit => Verdict {
                    action: Action::Allow,
                    reason: Reason::Default,
                    mode,
                    would_deny: true,
                },
                Mode::Enforce => plain(Action::Deny, Reason::Default),
            },
        }
    }

    fn endpoint(&self, mac: MacAddr, ip: IpAddr) -> Endpoint {
        let ip = match ip {
            IpAddr::V4(a) => self.tables.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, &s)| s),
            IpAddr::V6(a) => self.tables.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, &s)| s),
        };
        Endpoint {
            mac: self.tables.mac_sets.get(&mac).copied(),
            ip,
        }
    }

    fn set_ids(&self, set: Option<u32>) -> &[u32] {
        set.and_then(|s| self.tables.sets.get(s as usize))
            .map_or(&[], |s| &s.ids)
    }

    fn mode_of(&self, ep: Endpoint) -> Mode {
        let m = |s: Option<u32>| {
            s.and_then(|s| self.tables.sets.get(s as usize))
                .map(|s| s.mode)
        };
        match (m(ep.mac), m(ep.ip)) {
            (None, None) => self.tables.default_mode,
            (a, b) => a.max(b).unwrap_or(self.tables.default_mode),
        }
    }

    /// The endpoint's groups that some rule uses on this side, then [`ANY`].
    fn side_ids(&self, ep: Endpoint, used: &[bool]) -> Ids {
        let mut out = Ids::new();
        let used = |g: &&u32| used.get(**g as usize).copied().unwrap_or(false);
        out.extend(self.set_ids(ep.mac).iter().filter(used).copied());
        let n = out.len();
        for &g in self.set_ids(ep.ip).iter().filter(used) {
            if !out[..n].contains(&g) {
                out.push(g);
            }
        }
        out.push(ANY);
        out
    }

    /// The rank of the first matching rule, or [`NO_RULE`].
    fn first_rule(&self, src: Endpoint, dst: Endpoint, proto: u8, port: u16) -> u32 {
        if self.tables.buckets.is_empty() {
            return NO_RULE;
        }
        let srcs = self.side_ids(src, &self.tables.used_src);
        let dsts = self.side_ids(dst, &self.tables.used_dst);
        let mut best = NO_RULE;
        for &s in &srcs {
            for &d in &dsts {
                if let Some(&(off, len)) = self.tables.buckets.get(&bucket_key(s, d)) {
                    best = best.min(self.bucket_best(off, len, proto, port));
                }
            }
        }
        best
    }

    fn bucket_best(&self, off: u32, len: u32, proto: u8, port: u16) -> u32 {
        let Some(slots) = self.tables.slots.get(off as usize..(off + len) as usize) else {
            return NO_RULE;
        };
        let mut best = NO_RULE;
        if let Ok(i) = slots.binary_search_by_key(&u16::from(proto), |s| s.proto) {
            best = self.slot_best(slots[i], port);
        }
        if let Some(&last) = slots.last() {
            if last.proto == PROTO_ANY {
                best = best.min(self.slot_best(last, port));
            }
        }
        best
    }

    fn slot_best(&self, slot: Slot, port: u16) -> u32 {
        let range = slot.off as usize..(slot.off + slot.len) as usize;
        let (Some(starts), Some(best)) = (
            self.tables.starts.get(range.clone()),
            self.tables.best.get(range),
        ) else {
            return NO_RULE;
        };
        let i = starts.partition_point(|&s| s <= port);
        i.checked_sub(1)
            .and_then(|i| best.get(i))
            .copied()
            .unwrap_or(NO_RULE)
    }
}
