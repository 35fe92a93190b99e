//! The compilation of a [`PolicySpec`] into a [`PolicySnapshot`].
//!
//! Compilation checks what the spec's types cannot (see [`PolicyError`]),
//! interns group sets, folds each network's covering prefixes into its set,
//! and paints each `(src, dst, protocol)` bucket's port
//! intervals with the rank of the first rule covering them (see [`super::classify`]).

use super::classify::{
    bucket_key, CompiledRule, GroupSet, PolicySnapshot, RuleTables, Slot, ANY, NO_RULE, PROTO_ANY,
};
use super::overlay::{Management, Overlay};
use super::proto::{PortRange, Proto};
use super::spec::{GroupIndex, Member, PolicySpec, RuleSpec, Side};
use super::Mode;
use crate::wire::MacAddr;
use ahash::{AHashMap, AHashSet};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Where in a [`PolicySpec`] a [`PolicyError`] was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `endpoints[i]`.
    Endpoint(usize),
    /// The rule with this id.
    Rule(u32),
    /// `management[i]`.
    Management(usize),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Endpoint(i) => write!(f, "endpoints[{i}]"),
            Place::Rule(id) => write!(f, "rule {id}"),
            Place::Management(i) => write!(f, "management[{i}]"),
        }
    }
}

/// What the types of a [`PolicySpec`] cannot rule out, found by compile: the
/// control plane validates its model before building a spec, so any of these
/// is a bug in the builder, reported rather than compiled into a policy that
/// would let through what a rule meant to deny.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{at}: group index {index} is out of range (the policy has {groups} groups)")]
    UnknownGroup {
        at: Place,
        index: GroupIndex,
        groups: usize,
    },
    #[error("rule id {0} is used twice")]
    DuplicateRuleId(u32),
    #[error("{at}: port range {range} is reversed")]
    ReversedPorts { at: Place, range: PortRange },
    #[error("{at}: ports are only allowed with tcp or udp (protocol is {proto})")]
    PortsWithoutProtocol { at: Place, proto: Proto },
}

/// Group indexes, checked against the number of groups.
fn checked_groups(ids: &[GroupIndex], groups: usize, at: Place) -> Result<(), PolicyError> {
    match ids.iter().find(|&&i| i as usize >= groups) {
        Some(&index) => Err(PolicyError::UnknownGroup { at, index, groups }),
        None => Ok(()),
    }
}

/// A side's group ids, [`ANY`] for `Any`, sorted and distinct.
fn side_ids(side: &Side, groups: usize, at: Place) -> Result<Vec<u32>, PolicyError> {
    match side {
        Side::Any => Ok(vec![ANY]),
        Side::Groups(ids) => {
            checked_groups(ids, groups, at)?;
            let mut ids = ids.clone();
            ids.sort_unstable();
            ids.dedup();
            Ok(ids)
        }
    }
}

fn checked_ports(proto: Proto, ports: &[PortRange], at: Place) -> Result<(), PolicyError> {
    if !ports.is_empty() && !proto.has_ports() {
        return Err(PolicyError::PortsWithoutProtocol { at, proto });
    }
    match ports.iter().find(|r| r.lo > r.hi) {
        Some(&range) => Err(PolicyError::ReversedPorts { at, range }),
        None => Ok(()),
    }
}

/// A rule with its sides resolved, before bucketing.
struct Checked<'a> {
    rule: &'a RuleSpec,
    pos: usize,
    src: Vec<u32>,
    dst: Vec<u32>,
}

/// Interns sorted group-id lists.
#[derive(Default)]
struct SetInterner {
    sets: Vec<GroupSet>,
    index: AHashMap<Vec<u32>, u32>,
}

impl SetInterner {
    fn intern(&mut self, mut ids: Vec<u32>, modes: &[Mode]) -> u32 {
        ids.sort_unstable();
        ids.dedup();
        if let Some(&i) = self.index.get(&ids) {
            return i;
        }
        let mode = ids
            .iter()
            .filter_map(|&g| modes.get(g as usize).copied())
            .max()
            .unwrap_or(Mode::Learn);
        let i = self.sets.len() as u32;
        self.sets.push(GroupSet {
            ids: ids.clone().into_boxed_slice(),
            mode,
        });
        self.index.insert(ids, i);
        i
    }
}

/// Builds the per-prefix sets: each prefix's groups joined with those of every covering prefix.
fn prefix_sets<P: prefix_trie::Prefix>(
    mut own: Vec<(P, Vec<u32>)>,
    interner: &mut SetInterner,
    modes: &[Mode],
) -> PrefixMap<P, u32> {
    own.sort_by_key(|(p, _)| p.prefix_len());
    let mut map: PrefixMap<P, u32> = PrefixMap::new();
    for (p, mut ids) in own {
        if let Some((_, &cover)) = map.get_lpm(&p) {
            if let Some(set) = interner.sets.get(cover as usize) {
                ids.extend_from_slice(&set.ids);
            }
        }
        let id = interner.intern(ids, modes);
        map.insert(p, id);
    }
    map
}

/// One rule's contribution to one `(bucket, protocol)` port table.
struct Entry {
    key: u64,
    proto: u16,
    lo: u16,
    hi: u16,
    rank: u32,
}

/// Reused buffers for painting port tables.
#[derive(Default)]
struct Painter {
    bounds: Vec<u32>,
    best: Vec<u32>,
    next: Vec<u32>,
}

impl Painter {
    /// Paints `run` (sorted by rank) onto elementary intervals; appends the merged
    /// table to `starts`/`best`.
    fn paint(&mut self, run: &[Entry], starts: &mut Vec<u16>, best: &mut Vec<u32>) {
        self.bounds.clear();
        self.bounds.extend([0, 65536]);
        for e in run {
            self.bounds.extend([u32::from(e.lo), u32::from(e.hi) + 1]);
        }
        self.bounds.sort_unstable();
        self.bounds.dedup();
        let n = self.bounds.len() - 1;
        self.best.clear();
        self.best.resize(n, NO_RULE);
        self.next.clear();
        self.next.extend(0..=n as u32);
        for e in run {
            let a = self.bounds.partition_point(|&b| b < u32::from(e.lo));
            let b = self.bounds.partition_point(|&b| b < u32::from(e.hi) + 1);
            let mut i = find(&mut self.next, a as u32) as usize;
            while i < b {
                self.best[i] = e.rank;
                self.next[i] = i as u32 + 1;
                i = find(&mut self.next, i as u32 + 1) as usize;
            }
        }
        let mut prev = None;
        for (i, &r) in self.best.iter().enumerate() {
            if prev != Some(r) {
                starts.push(self.bounds[i] as u16);
                best.push(r);
                prev = Some(r);
            }
        }
    }
}

/// "Next unpainted interval at or after `i`", with path compression.
fn find(next: &mut [u32], i: u32) -> u32 {
    let mut root = i;
    while next[root as usize] != root {
        root = next[root as usize];
    }
    let mut j = i;
    while next[j as usize] != root {
        let k = next[j as usize];
        next[j as usize] = root;
        j = k;
    }
    root
}

/// The group sets of the endpoints: by MAC, and by prefix per family.
struct EndpointSets {
    macs: AHashMap<MacAddr, u32>,
    v4: PrefixMap<Ipv4Net, u32>,
    v6: PrefixMap<Ipv6Net, u32>,
}

fn endpoint_sets(
    spec: &PolicySpec,
    modes: &[Mode],
    interner: &mut SetInterner,
) -> Result<EndpointSets, PolicyError> {
    let mut macs: AHashMap<MacAddr, Vec<u32>> = AHashMap::new();
    let mut v4: BTreeMap<Ipv4Net, Vec<u32>> = BTreeMap::new();
    let mut v6: BTreeMap<Ipv6Net, Vec<u32>> = BTreeMap::new();
    for (i, e) in spec.endpoints.iter().enumerate() {
        checked_groups(&e.groups, modes.len(), Place::Endpoint(i))?;
        if e.groups.is_empty() {
            continue;
        }
        let ids = match e.member {
            Member::Mac(mac) => macs.entry(mac).or_default(),
            Member::Net(IpNet::V4(n)) => v4.entry(n.trunc()).or_default(),
            Member::Net(IpNet::V6(n)) => v6.entry(n.trunc()).or_default(),
        };
        ids.extend_from_slice(&e.groups);
    }
    Ok(EndpointSets {
        macs: macs
            .into_iter()
            .map(|(mac, g)| (mac, interner.intern(g, modes)))
            .collect(),
        v4: prefix_sets(v4.into_iter().collect(), interner, modes),
        v6: prefix_sets(v6.into_iter().collect(), interner, modes),
    })
}

/// The quarantine and the management exceptions.
fn overlay(spec: &PolicySpec) -> Result<Overlay, PolicyError> {
    let mut management = Vec::with_capacity(spec.management.len());
    for (i, m) in spec.management.iter().enumerate() {
        checked_ports(m.proto, &m.ports, Place::Management(i))?;
        management.push(Management {
            net: m.net.trunc(),
            proto: m.proto,
            ports: m.ports.clone().into_boxed_slice(),
            macs: m.macs.clone().into_boxed_slice(),
        });
    }
    Ok(Overlay {
        quarantine: Arc::new(spec.quarantine.iter().copied().collect()),
        management: management.into(),
        ..Overlay::default()
    })
}

fn blocklist(spec: &PolicySpec) -> (PrefixMap<Ipv4Net, ()>, PrefixMap<Ipv6Net, ()>) {
    let mut v4 = PrefixMap::new();
    let mut v6 = PrefixMap::new();
    for net in &spec.blocklist {
        match net.trunc() {
            IpNet::V4(n) => {
                v4.insert(n, ());
            }
            IpNet::V6(n) => {
                v6.insert(n, ());
            }
        }
    }
    (v4, v6)
}

/// The rules with their sides resolved, in rank order: `(order, position)`.
fn ranked_rules(spec: &PolicySpec) -> Result<Vec<Checked<'_>>, PolicyError> {
    let groups = spec.groups.len();
    let mut ids = AHashSet::with_capacity(spec.rules.len());
    let mut checked = Vec::with_capacity(spec.rules.len());
    for (pos, rule) in spec.rules.iter().enumerate() {
        let at = Place::Rule(rule.id);
        if !ids.insert(rule.id) {
            return Err(PolicyError::DuplicateRuleId(rule.id));
        }
        checked_ports(rule.proto, &rule.ports, at)?;
        checked.push(Checked {
            rule,
            pos,
            src: side_ids(&rule.src, groups, at)?,
            dst: side_ids(&rule.dst, groups, at)?,
        });
    }
    checked.sort_by_key(|c| (c.rule.order, c.pos));
    Ok(checked)
}

/// The rules in rank order, which groups they use, and one port-table entry
/// per `(src group, dst group, port range)` of each.
struct Bucketed {
    rules: Vec<CompiledRule>,
    rank_of: AHashMap<u32, u32>,
    used_src: Vec<bool>,
    used_dst: Vec<bool>,
    entries: Vec<Entry>,
}

fn bucket_entries(ranked: &[Checked<'_>], groups: usize) -> Bucketed {
    let mut out = Bucketed {
        rules: Vec::with_capacity(ranked.len()),
        rank_of: AHashMap::with_capacity(ranked.len()),
        used_src: vec![false; groups],
        used_dst: vec![false; groups],
        entries: Vec::new(),
    };
    let full = [PortRange::new(0, u16::MAX)];
    for (rank, c) in ranked.iter().enumerate() {
        let r = c.rule;
        let rank = rank as u32;
        out.rules.push(CompiledRule {
            id: r.id,
            action: r.action,
            comment: r.comment.as_deref().map(Box::from),
        });
        out.rank_of.insert(r.id, rank);
        for (ids, used) in [(&c.src, &mut out.used_src), (&c.dst, &mut out.used_dst)] {
            for &g in ids {
                if let Some(u) = used.get_mut(g as usize) {
                    *u = true;
                }
            }
        }
        let proto = r.proto.number().map_or(PROTO_ANY, u16::from);
        let ports = if r.ports.is_empty() {
            &full[..]
        } else {
            &r.ports[..]
        };
        for &s in &c.src {
            for &d in &c.dst {
                for p in ports {
                    out.entries.push(Entry {
                        key: bucket_key(s, d),
                        proto,
                        lo: p.lo,
                        hi: p.hi,
                        rank,
                    });
                }
            }
        }
    }
    out.entries
        .sort_unstable_by_key(|e| (e.key, e.proto, e.rank));
    out
}

/// The painted port tables of every bucket.
struct Painted {
    buckets: AHashMap<u64, (u32, u32)>,
    slots: Vec<Slot>,
    starts: Vec<u16>,
    best: Vec<u32>,
}

/// Paints each `(bucket, protocol)` run of `entries` (sorted by key, protocol, rank).
fn paint_buckets(entries: &[Entry]) -> Painted {
    let mut out = Painted {
        buckets: AHashMap::new(),
        slots: Vec::new(),
        starts: Vec::new(),
        best: Vec::new(),
    };
    let mut painter = Painter::default();
    let mut i = 0;
    while i < entries.len() {
        let key = entries[i].key;
        let first_slot = out.slots.len() as u32;
        while i < entries.len() && entries[i].key == key {
            let proto = entries[i].proto;
            let j = i + entries[i..].partition_point(|e| e.key == key && e.proto == proto);
            let off = out.starts.len() as u32;
            painter.paint(&entries[i..j], &mut out.starts, &mut out.best);
            out.slots.push(Slot {
                proto,
                off,
                len: out.starts.len() as u32 - off,
            });
            i = j;
        }
        out.buckets
            .insert(key, (first_slot, out.slots.len() as u32 - first_slot));
    }
    out
}

impl PolicySnapshot {
    /// A policy with nothing in it: every endpoint is in no group, in enforce mode,
    /// so every flow is denied by default.
    pub fn empty(generation: u64) -> Self {
        Self::build_empty(generation)
    }

    /// Compiles `spec` into lookup tables; refuses a spec whose indexes, rule
    /// ids or port ranges are inconsistent ([`PolicyError`]).
    pub fn compile(spec: &PolicySpec, generation: u64) -> Result<Self, PolicyError> {
        let modes: Vec<Mode> = spec.groups.iter().map(|g| g.mode).collect();
        let mut interner = SetInterner::default();
        let endpoints = endpoint_sets(spec, &modes, &mut interner)?;
        let overlay = overlay(spec)?;
        let ranked = ranked_rules(spec)?;
        let bucketed = bucket_entries(&ranked, spec.groups.len());
        let painted = paint_buckets(&bucketed.entries);
        let (block_v4, block_v6) = blocklist(spec);
        Ok(PolicySnapshot {
            generation,
            tables: Arc::new(RuleTables {
                default_mode: spec.default_mode,
                group_names: spec.groups.iter().map(|g| g.name.clone()).collect(),
                sets: interner.sets.into_boxed_slice(),
                mac_sets: endpoints.macs,
                v4: endpoints.v4,
                v6: endpoints.v6,
                block_v4,
                block_v6,
                used_src: bucketed.used_src.into_boxed_slice(),
                used_dst: bucketed.used_dst.into_boxed_slice(),
                buckets: painted.buckets,
                slots: painted.slots.into_boxed_slice(),
                starts: painted.starts.into_boxed_slice(),
                best: painted.best.into_boxed_slice(),
                rules: bucketed.rules.into_boxed_slice(),
                rank_of: bucketed.rank_of,
            }),
            overlay,
        })
    }
}
