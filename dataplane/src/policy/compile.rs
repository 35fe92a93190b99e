//! Validation of a [`PolicySpec`] and its compilation into a [`PolicySnapshot`].
//!
//! Validation walks the whole spec and collects every [`Problem`] with its path.
//! Compilation interns group names and group sets, folds each CIDR's covering
//! prefixes into its set, and paints each `(src, dst, protocol)` bucket's port
//! intervals with the rank of the first rule covering them (see [`super::classify`]).

use super::classify::{
    bucket_key, CompiledRule, GroupSet, Management, Overlay, PolicySnapshot, RuleTables, Slot, ANY,
    NO_RULE, PROTO_ANY,
};
use super::spec::{parse_mac, PolicySpec, PortRange, Proto};
use super::Mode;
use crate::wire::MacAddr;
use ahash::{AHashMap, AHashSet};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// One validation problem: where (`rules[3].dst[0]`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a [`PolicySpec`]; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Parses `10.0.1.0/24`, `2001:db8::/32` or a bare address; host bits are cleared.
pub(crate) fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
    };
    Some(net.trunc())
}

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Resolves group names; rules may say `["any"]` (-> `[ANY]`). `None` on error.
    fn groups(
        &mut self,
        names: &[String],
        path: &str,
        ids: &AHashMap<&str, u32>,
        in_rule: bool,
    ) -> Option<Vec<u32>> {
        if names.is_empty() {
            let hint = if in_rule {
                "name groups or \"any\""
            } else {
                "name at least one group"
            };
            self.err(path, format!("empty group list: {hint}"));
            return None;
        }
        let mut out = Vec::with_capacity(names.len());
        let mut ok = true;
        for (j, n) in names.iter().enumerate() {
            if let Some(&id) = ids.get(n.as_str()) {
                out.push(id);
            } else if n == "any" && in_rule {
                if names.len() > 1 {
                    self.err(
                        format!("{path}[{j}]"),
                        "\"any\" cannot be combined with group names",
                    );
                    ok = false;
                }
                out.push(ANY);
            } else {
                self.err(format!("{path}[{j}]"), format!("unknown group {n:?}"));
                ok = false;
            }
        }
        out.sort_unstable();
        out.dedup();
        ok.then_some(out)
    }

    fn ports(&mut self, proto: Proto, ports: &[PortRange], path: &str) -> bool {
        let mut ok = true;
        if !ports.is_empty() && !proto.has_ports() {
            self.err(
                path,
                format!("ports are only allowed with proto tcp or udp (proto is {proto})"),
            );
            ok = false;
        }
        for (k, r) in ports.iter().enumerate() {
            if r.lo > r.hi {
                self.err(
                    format!("{path}[{k}]"),
                    format!("port range reversed: {}-{}", r.lo, r.hi),
                );
                ok = false;
            }
        }
        ok
    }
}

/// A validated rule, before bucketing.
struct Checked {
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

impl PolicySnapshot {
    /// A policy with nothing in it: every endpoint is in no group, in enforce mode,
    /// so every flow is denied by default.
    pub fn empty(generation: u64) -> Self {
        Self::build_empty(generation)
    }

    /// Validates `spec` (reporting every problem with its path) and compiles it.
    pub fn compile(spec: &PolicySpec, generation: u64) -> Result<Self, PolicyError> {
        let mut ck = Checker {
            problems: Vec::new(),
        };

        // Groups.
        let mut ids: AHashMap<&str, u32> = AHashMap::new();
        let mut first_at: AHashMap<&str, usize> = AHashMap::new();
        let mut names = Vec::new();
        let mut modes = Vec::new();
        for (i, g) in spec.groups.iter().enumerate() {
            let path = format!("groups[{i}].name");
            if g.name.trim().is_empty() {
                ck.err(path, "empty group name");
            } else if g.name.eq_ignore_ascii_case("any") {
                ck.err(
                    path,
                    "\"any\" is reserved (it means every endpoint in rules)",
                );
            } else if let Some(j) = first_at.get(g.name.as_str()) {
                ck.err(
                    path,
                    format!("duplicate group name {:?} (also groups[{j}])", g.name),
                );
            } else {
                first_at.insert(&g.name, i);
                ids.insert(&g.name, names.len() as u32);
                names.push(g.name.clone());
                modes.push(g.mode);
            }
        }

        // Endpoints.
        let mut macs: AHashMap<MacAddr, (usize, Vec<u32>)> = AHashMap::new();
        let mut v4: BTreeMap<Ipv4Net, Vec<u32>> = BTreeMap::new();
        let mut v6: BTreeMap<Ipv6Net, Vec<u32>> = BTreeMap::new();
        for (i, e) in spec.endpoints.iter().enumerate() {
            let groups = ck.groups(&e.groups, &format!("endpoints[{i}].groups"), &ids, false);
            match (&e.mac, &e.cidr) {
                (Some(m), None) => match parse_mac(m) {
                    None => ck.err(format!("endpoints[{i}].mac"), format!("invalid MAC {m:?}")),
                    Some(mac) => {
                        if let Some((j, _)) = macs.get(&mac) {
                            ck.err(
                                format!("endpoints[{i}].mac"),
                                format!("duplicate endpoint for MAC {m:?} (also endpoints[{j}])"),
                            );
                        } else {
                            macs.insert(mac, (i, groups.unwrap_or_default()));
                        }
                    }
                },
                (None, Some(c)) => match parse_cidr(c) {
                    None => ck.err(
                        format!("endpoints[{i}].cidr"),
                        format!("invalid CIDR {c:?}"),
                    ),
                    Some(IpNet::V4(n)) => {
                        v4.entry(n).or_default().extend(groups.unwrap_or_default())
                    }
                    Some(IpNet::V6(n)) => {
                        v6.entry(n).or_default().extend(groups.unwrap_or_default())
                    }
                },
                (Some(_), Some(_)) => ck.err(
                    format!("endpoints[{i}]"),
                    "give either mac or cidr, not both",
                ),
                (None, None) => ck.err(format!("endpoints[{i}]"), "needs a mac or a cidr"),
            }
        }

        // Quarantine, management, blocklist.
        let mut quarantine = AHashSet::new();
        for (i, m) in spec.quarantine.iter().enumerate() {
            match parse_mac(m) {
                Some(mac) => {
                    quarantine.insert(mac);
                }
                None => ck.err(format!("quarantine[{i}]"), format!("invalid MAC {m:?}")),
            }
        }
        let mut management = Vec::new();
        for (i, m) in spec.management.iter().enumerate() {
            let net = parse_cidr(&m.cidr);
            if net.is_none() {
                ck.err(
                    format!("management[{i}].cidr"),
                    format!("invalid CIDR {:?}", m.cidr),
                );
            }
            let ports_ok = ck.ports(m.proto, &m.ports, &format!("management[{i}].ports"));
            let mut macs = Vec::with_capacity(m.macs.len());
            for (j, text) in m.macs.iter().enumerate() {
                match parse_mac(text) {
                    Some(mac) => macs.push(mac),
                    None => ck.err(
                        format!("management[{i}].macs[{j}]"),
                        format!("invalid MAC {text:?}"),
                    ),
                }
            }
            if m.macs.is_empty() {
                ck.err(
                    format!("management[{i}].macs"),
                    "name the management hosts' MACs: an exception by address alone lets any host that takes the address through",
                );
            }
            if let (Some(net), true, false) = (net, ports_ok, macs.is_empty()) {
                management.push(Management {
                    net,
                    proto: m.proto,
                    ports: m.ports.clone().into_boxed_slice(),
                    macs: macs.into_boxed_slice(),
                });
            }
        }
        let mut block_v4 = PrefixMap::new();
        let mut block_v6 = PrefixMap::new();
        for (i, c) in spec.blocklist.iter().enumerate() {
            match parse_cidr(c) {
                Some(IpNet::V4(n)) => {
                    block_v4.insert(n, ());
                }
                Some(IpNet::V6(n)) => {
                    block_v6.insert(n, ());
                }
                None => ck.err(format!("blocklist[{i}]"), format!("invalid CIDR {c:?}")),
            }
        }

        // Rules.
        let mut rule_pos: AHashMap<u32, usize> = AHashMap::new();
        let mut checked = Vec::with_capacity(spec.rules.len());
        for (i, r) in spec.rules.iter().enumerate() {
            if let Some(j) = rule_pos.get(&r.id) {
                ck.err(
                    format!("rules[{i}].id"),
                    format!("duplicate rule id {} (also rules[{j}])", r.id),
                );
            } else {
                rule_pos.insert(r.id, i);
            }
            let src = ck.groups(&r.src, &format!("rules[{i}].src"), &ids, true);
            let dst = ck.groups(&r.dst, &format!("rules[{i}].dst"), &ids, true);
            let ports_ok = ck.ports(r.proto, &r.ports, &format!("rules[{i}].ports"));
            if let (Some(src), Some(dst), true) = (src, dst, ports_ok) {
                checked.push(Checked { pos: i, src, dst });
            }
        }

        if !ck.problems.is_empty() {
            return Err(PolicyError {
                problems: ck.problems,
            });
        }

        // Group sets.
        let mut interner = SetInterner::default();
        let mac_sets = macs
            .into_iter()
            .map(|(mac, (_, g))| (mac, interner.intern(g, &modes)))
            .collect();
        let v4 = prefix_sets(v4.into_iter().collect(), &mut interner, &modes);
        let v6 = prefix_sets(v6.into_iter().collect(), &mut interner, &modes);

        // Rules in rank order, and their bucket entries.
        checked.sort_by_key(|c| (spec.rules[c.pos].order.unwrap_or(c.pos as i64), c.pos));
        let mut used_src = vec![false; names.len()];
        let mut used_dst = vec![false; names.len()];
        let mut rules = Vec::with_capacity(checked.len());
        let mut rank_of = AHashMap::with_capacity(checked.len());
        let mut entries = Vec::new();
        for (rank, c) in checked.iter().enumerate() {
            let r = &spec.rules[c.pos];
            let rank = rank as u32;
            rules.push(CompiledRule {
                id: r.id,
                action: r.action,
                comment: r.comment.as_deref().map(Box::from),
            });
            rank_of.insert(r.id, rank);
            for &s in &c.src {
                if let Some(u) = used_src.get_mut(s as usize) {
                    *u = true;
                }
            }
            for &d in &c.dst {
                if let Some(u) = used_dst.get_mut(d as usize) {
                    *u = true;
                }
            }
            let proto = r.proto.number().map_or(PROTO_ANY, u16::from);
            let full = [PortRange::new(0, u16::MAX)];
            let ports = if r.ports.is_empty() {
                &full[..]
            } else {
                &r.ports[..]
            };
            for &s in &c.src {
                for &d in &c.dst {
                    for p in ports {
                        entries.push(Entry {
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
        entries.sort_unstable_by_key(|e| (e.key, e.proto, e.rank));

        // Paint each (bucket, protocol) run.
        let mut buckets = AHashMap::new();
        let mut slots = Vec::new();
        let mut starts = Vec::new();
        let mut best = Vec::new();
        let mut painter = Painter::default();
        let mut i = 0;
        while i < entries.len() {
            let key = entries[i].key;
            let first_slot = slots.len() as u32;
            while i < entries.len() && entries[i].key == key {
                let proto = entries[i].proto;
                let j = i + entries[i..].partition_point(|e| e.key == key && e.proto == proto);
                let off = starts.len() as u32;
                painter.paint(&entries[i..j], &mut starts, &mut best);
                slots.push(Slot {
                    proto,
                    off,
                    len: starts.len() as u32 - off,
                });
                i = j;
            }
            buckets.insert(key, (first_slot, slots.len() as u32 - first_slot));
        }

        Ok(PolicySnapshot {
            generation,
            tables: Arc::new(RuleTables {
                default_mode: spec.default_mode,
                group_names: names.into_boxed_slice(),
                sets: interner.sets.into_boxed_slice(),
                mac_sets,
                v4,
                v6,
                block_v4,
                block_v6,
                used_src: used_src.into_boxed_slice(),
                used_dst: used_dst.into_boxed_slice(),
                buckets,
                slots: slots.into_boxed_slice(),
                starts: starts.into_boxed_slice(),
                best: best.into_boxed_slice(),
                rules: rules.into_boxed_slice(),
                rank_of,
            }),
            overlay: Arc::new(Overlay {
                quarantine,
                management: management.into_boxed_slice(),
                bindings: Arc::default(),
            }),
        })
    }
}
