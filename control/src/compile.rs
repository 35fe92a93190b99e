//! Model -> [`PolicySpec`] -> [`PolicySnapshot`]: the model is validated once
//! ([`Model::check`]) and its typed values (MACs, networks, group indexes) go
//! into the spec as they are.
//!
//! - Groups become spec groups with their modes, at the same index. A selector
//!   group's members are resolved against the current workloads into MAC
//!   endpoints; a MAC group's MACs become MAC endpoints; an IP-set group's
//!   networks become network endpoints. A MAC in several groups is one endpoint
//!   with all of them.
//! - Each enabled rule becomes one [`RuleSpec`] per protocol of its (folded)
//!   services, all at the rule's list position (`order`). Compiled id =
//!   `user id << 8 | k` for the k-th protocol, so the user rule id of a compiled id
//!   is `compiled >> 8`, stable across compiles; [`RuleMap`] holds the mapping.
//!   Disabled rules are dropped.
//! - Built-in services resolve by name; management exceptions expand one
//!   [`ManagementSpec`] per protocol.

use crate::model::Model;
use crate::validate::{selector_matches, Members, Problems};
use dataplane::policy::{
    EndpointSpec, GroupIndex, GroupSpec, ManagementSpec, Member, Mode, PolicyError, PolicySnapshot,
    PolicySpec, RuleSpec, Side,
};
use dataplane::wire::MacAddr;
use std::collections::{BTreeMap, HashMap};

pub use crate::validate::MAX_RULE_ID;

/// The compiled id of the `k`-th protocol expansion of user rule `user`.
pub const fn compiled_rule_id(user: u32, k: u8) -> u32 {
    (user << 8) | k as u32
}

/// The user rule id a compiled rule id came from.
pub const fn user_rule_id(compiled: u32) -> u32 {
    compiled >> 8
}

/// Compiled rule id <-> user rule id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleMap {
    by_user: BTreeMap<u32, Vec<u32>>,
    to_user: HashMap<u32, u32>,
}

impl RuleMap {
    fn insert(&mut self, user: u32, compiled: u32) {
        self.by_user.entry(user).or_default().push(compiled);
        self.to_user.insert(compiled, user);
    }

    /// The user rule a compiled rule came from (`None` if it is not in this compile).
    pub fn user_rule(&self, compiled: u32) -> Option<u32> {
        self.to_user.get(&compiled).copied()
    }

    /// The compiled ids of a user rule (empty if it is disabled or unknown).
    pub fn compiled_ids(&self, user: u32) -> &[u32] {
        self.by_user.get(&user).map_or(&[], Vec::as_slice)
    }

    /// The number of compiled rules.
    pub fn compiled_len(&self) -> usize {
        self.to_user.len()
    }

    /// User rule ids (enabled ones) with their compiled ids, by user id.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u32])> {
        self.by_user.iter().map(|(&u, c)| (u, c.as_slice()))
    }
}

/// How a group is made up, after resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    Selector,
    Macs,
    Ips,
}

/// A group after resolution: how many members it has now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub name: String,
    pub mode: Mode,
    pub kind: GroupKind,
    /// MACs (selector and MAC groups) or CIDRs (IP-set groups).
    pub members: usize,
}

/// A compiled model: the dataplane spec, the rule id map and the group summary.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub spec: PolicySpec,
    pub rules: RuleMap,
    pub groups: Vec<GroupSummary>,
}

/// Why a model could not become a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{0}")]
    Invalid(#[from] Problems),
    /// The dataplane rejected what this crate produced: a bug here, not in the model.
    #[error("internal error: the compiled policy was rejected by the dataplane:\n{0}")]
    Rejected(#[from] PolicyError),
}

impl Compiled {
    /// Builds the dataplane snapshot.
    pub fn snapshot(&self, generation: u64) -> Result<PolicySnapshot, CompileError> {
        Ok(PolicySnapshot::compile(&self.spec, generation)?)
    }
}

/// Validates and compiles a model, then builds its snapshot.
pub fn compile_snapshot(
    model: &Model,
    generation: u64,
) -> Result<(PolicySnapshot, Compiled), CompileError> {
    let compiled = compile(model)?;
    let snapshot = compiled.snapshot(generation)?;
    Ok((snapshot, compiled))
}

/// MAC endpoints in first-seen order, each with its group indexes.
#[derive(Default)]
struct MacEndpoints {
    index: HashMap<MacAddr, usize>,
    list: Vec<(MacAddr, Vec<GroupIndex>)>,
}

impl MacEndpoints {
    fn add(&mut self, mac: MacAddr, group: GroupIndex) {
        let i = *self.index.entry(mac).or_insert_with(|| {
            self.list.push((mac, Vec::new()));
            self.list.len() - 1
        });
        if let Some((_, groups)) = self.list.get_mut(i) {
            if groups.last() != Some(&group) {
                groups.push(group);
            }
        }
    }
}

/// Validates a model and compiles it into a [`PolicySpec`].
pub fn compile(model: &Model) -> Result<Compiled, Problems> {
    let checked = model.check()?;

    // Label index: (key, value) -> workload indexes, for selector groups.
    let mut by_label: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, w) in model.workloads.iter().enumerate() {
        for (k, v) in &w.labels {
            by_label.entry((k, v)).or_default().push(i);
        }
    }

    let mut macs = MacEndpoints::default();
    let mut endpoints = Vec::new();
    let mut groups = Vec::with_capacity(model.groups.len());
    for (g, (group, members)) in model.groups.iter().zip(&checked.groups).enumerate() {
        let g = g as GroupIndex;
        let (kind, count) = match members {
            Members::Selector(sel) => {
                let selected = select(&by_label, sel, model);
                for &w in &selected {
                    if let Some(&mac) = checked.workload_macs.get(w) {
                        macs.add(mac, g);
                    }
                }
                (GroupKind::Selector, selected.len())
            }
            Members::Macs(list) => {
                for &mac in list {
                    macs.add(mac, g);
                }
                (GroupKind::Macs, list.len())
            }
            Members::Ips(nets) => {
                for &net in nets {
                    endpoints.push(EndpointSpec {
                        member: Member::Net(net),
                        groups: vec![g],
                    });
                }
                (GroupKind::Ips, nets.len())
            }
        };
        groups.push(GroupSummary {
            name: group.name.clone(),
            mode: group.mode,
            kind,
            members: count,
        });
    }
    let mut mac_endpoints: Vec<EndpointSpec> = macs
        .list
        .into_iter()
        .map(|(mac, mut groups)| {
            groups.sort_unstable();
            groups.dedup();
            EndpointSpec {
                member: Member::Mac(mac),
                groups,
            }
        })
        .collect();

    // Validated: a side is "any" alone or names of groups that exist.
    let index: HashMap<&str, GroupIndex> = model
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.name.as_str(), i as GroupIndex))
        .collect();
    let side = |names: &[String]| {
        if names.iter().any(|n| n == "any") {
            Side::Any
        } else {
            Side::Groups(
                names
                    .iter()
                    .filter_map(|n| index.get(n.as_str()).copied())
                    .collect(),
            )
        }
    };
    mac_endpoints.append(&mut endpoints);

    let mut rules = Vec::new();
    let mut map = RuleMap::default();
    for (pos, (r, entries)) in model.rules.iter().zip(&checked.rule_entries).enumerate() {
        if !r.enabled {
            continue;
        }
        for (k, e) in entries.iter().enumerate() {
            let id = compiled_rule_id(r.id, k as u8);
            map.insert(r.id, id);
            rules.push(RuleSpec {
                id,
                order: pos as i64,
                src: side(&r.src),
                dst: side(&r.dst),
                proto: e.proto,
                ports: e.ports.clone(),
                action: r.action,
                comment: r.comment.clone(),
            });
        }
    }

    let management = checked
        .management
        .iter()
        .flat_map(|m| {
            m.entries.iter().map(move |e| ManagementSpec {
                net: m.net,
                macs: m.macs.clone(),
                proto: e.proto,
                ports: e.ports.clone(),
            })
        })
        .collect();

    let spec = PolicySpec {
        default_mode: model.default_mode,
        groups: model
            .groups
            .iter()
            .map(|g| GroupSpec {
                name: g.name.clone(),
                mode: g.mode,
            })
            .collect(),
        endpoints: mac_endpoints,
        rules,
        quarantine: checked.quarantine.clone(),
        management,
        blocklist: checked.blocklist.clone(),
    };
    Ok(Compiled {
        spec,
        rules: map,
        groups,
    })
}

/// The workloads a selector picks, in workload order: candidates from the key
/// with the fewest, filtered by the rest.
fn select(
    by_label: &HashMap<(&str, &str), Vec<usize>>,
    sel: &[(String, Vec<String>)],
    model: &Model,
) -> Vec<usize> {
    let candidates = |(k, vals): &(String, Vec<String>)| -> Vec<usize> {
        let mut out: Vec<usize> = vals
            .iter()
            .filter_map(|v| by_label.get(&(k.as_str(), v.as_str())))
            .flatten()
            .copied()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    };
    let Some(first) = sel.iter().min_by_key(|(k, vals)| {
        vals.iter()
            .filter_map(|v| by_label.get(&(k.as_str(), v.as_str())))
            .map(Vec::len)
            .sum::<usize>()
    }) else {
        return Vec::new();
    };
    candidates(first)
        .into_iter()
        .filter(|&i| {
            model
                .workloads
                .as_slice()
                .get(i)
                .is_some_and(|w| selector_matches(sel, &w.labels))
        })
        .collect()
}
