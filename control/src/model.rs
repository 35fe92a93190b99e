//! The policy model: what an operator writes (YAML or TOML) and what the API edits.
//!
//! Addresses, MACs, protocols and ports are kept as the text the operator wrote;
//! [`Model::validate`](crate::validate) parses them and reports every problem with
//! its path in one pass. Syntax and type errors are reported by [`load_model`](crate::load_model) with
//! the file, line and column.
//!
//! ```yaml
//! default_mode: enforce            # mode of a workload in no group
//! workloads:                       # identity = MAC; labels drive group membership
//!   - { mac: "02:00:00:00:01:01", name: web-1, labels: { app: web, env: prod }, ips: [10.0.1.11] }
//!   - { mac: "02:00:00:00:03:01", name: jump-1, labels: { role: admin }, ips: [10.0.3.5] }
//! groups:                          # membership by exactly one of match / macs / ips
//!   - { name: web, match: { app: web, env: [prod, staging] } }  # all keys, any listed value
//!   - { name: db, match: { app: db } }   # mode defaults to enforce
//!   - { name: pinned, mode: audit, macs: ["02:00:00:00:05:01"] }
//!   - { name: internet, ips: [198.51.100.0/24] }
//! services:                        # a catalogue of built-ins (ssh, rdp, smb, dns, ...) is always there
//!   - { name: app-api, proto: tcp, ports: [8443, "9000-9010"] }
//!   - name: syslog
//!     entries: [{ proto: udp, ports: [514] }, { proto: tcp, ports: [6514] }]
//! rules:                           # ordered; first match wins
//!   - { id: 10, src: [web], dst: [db], services: [postgresql], action: allow }
//!   - { id: 20, src: [any], dst: [web], services: [{ proto: tcp, ports: [8080] }], action: deny, enabled: false }
//! management:                      # what quarantine never cuts: the management hosts, by name or MAC
//!   - { cidr: 10.0.3.0/24, workloads: [jump-1], services: [ssh] }
//! quarantine:
//!   - { mac: "02:00:00:00:01:02", reason: "EDR alert 4711", actor: alice, at: "2025-01-02T03:04:05Z" }
//! blocklist: [203.0.113.66/32]
//! assignment:                      # labels for MACs first seen on the wire
//!   strategy: first                # first matching rule (default) or merge (all, earlier wins per key)
//!   rules:
//!     - { mac_prefix: "02:00:00:00:01:*", labels: { app: web } }
//!     - { vlan: 20, cidr: 10.0.4.0/24, labels: { app: legacy } }
//! ```

use dataplane::policy::{parse_mac, Action, Mode};
use dataplane::wire::MacAddr;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

pub use crate::time::Timestamp;

/// The whole policy model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Model {
    /// The mode of a workload (or address) that is in no group.
    pub default_mode: Mode,
    pub workloads: Workloads,
    pub groups: Vec<Group>,
    /// User-defined services; the built-in catalogue needs no definition.
    pub services: Vec<ServiceDef>,
    /// Ordered: the first matching rule decides.
    pub rules: Vec<Rule>,
    /// Flows a quarantined workload may still have.
    pub management: Vec<Management>,
    pub quarantine: Vec<Quarantine>,
    /// Blocked CIDRs (or bare addresses).
    pub blocklist: Vec<String>,
    /// How MACs first seen on the wire get their labels.
    #[serde(skip_serializing_if = "Assignment::is_empty")]
    pub assignment: Assignment,
}

/// A workload: a MAC (its identity), a name and labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// `02:00:00:00:01:0a` (`:` or `-` separators).
    pub mac: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Values may be written as numbers or booleans; they are kept as text.
    #[serde(
        default,
        deserialize_with = "label_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Addresses known for this workload (declared, or learned from the wire).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// The VLAN it was seen on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    #[serde(default, skip_serializing_if = "Origin::is_declared")]
    pub origin: Origin,
    /// When it was first seen on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Timestamp>,
}

/// Where a workload came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Written by an operator (file or API).
    #[default]
    Declared,
    /// Imported from an inventory file.
    Imported,
    /// First seen on the wire; labelled by the assignment rules.
    Observed,
}

impl Origin {
    fn is_declared(&self) -> bool {
        *self == Origin::Declared
    }
}

/// The workload list, indexed by MAC. Serialized as a plain list.
///
/// Entries with an invalid MAC are kept (validation reports them) but not indexed;
/// of duplicate MACs the first is indexed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Vec<Workload>", into = "Vec<Workload>")]
pub struct Workloads {
    list: Vec<Workload>,
    index: HashMap<MacAddr, usize>,
}

impl Workloads {
    pub fn new() -> Self {
        Self::default()
    }

    /// The workload with this MAC.
    pub fn by_mac(&self, mac: MacAddr) -> Option<&Workload> {
        self.index.get(&mac).and_then(|&i| self.list.get(i))
    }

    pub fn as_slice(&self) -> &[Workload] {
        &self.list
    }

    /// Appends a workload (even one whose MAC is invalid or already present:
    /// validation reports those).
    pub fn push(&mut self, w: Workload) {
        if let Some(mac) = parse_mac(&w.mac) {
            self.index.entry(mac).or_insert(self.list.len());
        }
        self.list.push(w);
    }

    /// Replaces the workload with `w`'s MAC, or appends it. `false` if the MAC is invalid.
    pub fn upsert(&mut self, w: Workload) -> bool {
        let Some(mac) = parse_mac(&w.mac) else {
            return false;
        };
        match self.index.get(&mac).and_then(|&i| self.list.get_mut(i)) {
            Some(slot) => *slot = w,
            None => self.push(w),
        }
        true
    }

    /// Removes the workload with this MAC (the first, if there are duplicates).
    pub fn remove(&mut self, mac: MacAddr) -> Option<Workload> {
        let i = self.index.get(&mac).copied()?;
        let w = self.list.remove(i);
        self.reindex();
        Some(w)
    }

    /// Removes the workload with this MAC in O(1): the last workload takes
    /// its place (the order of the rest changes). For learned workloads,
    /// which come after the declared ones and are never duplicates.
    pub(crate) fn swap_remove(&mut self, mac: MacAddr) -> Option<Workload> {
        let i = self.index.remove(&mac)?;
        if i >= self.list.len() {
            return None;
        }
        let w = self.list.swap_remove(i);
        let last = self.list.len();
        if let Some(moved) = self.list.get(i).and_then(|m| parse_mac(&m.mac)) {
            if self.index.get(&moved) == Some(&last) {
                self.index.insert(moved, i);
            }
        }
        Some(w)
    }

    /// Mutable access by MAC; the caller must not change the MAC.
    pub(crate) fn by_mac_mut(&mut self, mac: MacAddr) -> Option<&mut Workload> {
        let i = *self.index.get(&mac)?;
        self.list.get_mut(i)
    }

    /// Mutable access to every workload; the caller must not change MACs.
    pub(crate) fn iter_mut(&mut self) -> std::slice::IterMut<'_, Workload> {
        self.list.iter_mut()
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (i, w) in self.list.iter().enumerate() {
            if let Some(mac) = parse_mac(&w.mac) {
                self.index.entry(mac).or_insert(i);
            }
        }
    }
}

impl std::ops::Deref for Workloads {
    type Target = [Workload];
    fn deref(&self) -> &[Workload] {
        &self.list
    }
}

impl PartialEq for Workloads {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl From<Vec<Workload>> for Workloads {
    fn from(list: Vec<Workload>) -> Self {
        let mut w = Workloads {
            list,
            index: HashMap::new(),
        };
        w.reindex();
        w
    }
}

impl From<Workloads> for Vec<Workload> {
    fn from(w: Workloads) -> Self {
        w.list
    }
}

impl FromIterator<Workload> for Workloads {
    fn from_iter<I: IntoIterator<Item = Workload>>(iter: I) -> Self {
        Workloads::from(iter.into_iter().collect::<Vec<_>>())
    }
}

/// A named group of workloads (or addresses) and its mode. Membership is by
/// exactly one of `match`, `macs` and `ips`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    #[serde(default)]
    pub mode: Mode,
    /// Every workload whose labels match all keys (any of the listed values).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, LabelValues>>,
    /// An explicit list of MACs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macs: Option<Vec<String>>,
    /// CIDRs (or bare addresses), for what lies outside the segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ips: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A selector's value for one label key: one value, or any of several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelValues {
    One(#[serde(deserialize_with = "label_value")] String),
    AnyOf(#[serde(deserialize_with = "label_values")] Vec<String>),
}

/// A label value as written: text, or a number or boolean kept as text.
#[derive(Deserialize)]
#[serde(untagged)]
enum LabelScalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl From<LabelScalar> for String {
    fn from(v: LabelScalar) -> String {
        match v {
            LabelScalar::Text(s) => s,
            LabelScalar::Int(n) => n.to_string(),
            LabelScalar::Float(f) => f.to_string(),
            LabelScalar::Bool(b) => b.to_string(),
        }
    }
}

fn label_value<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    LabelScalar::deserialize(d).map(String::from)
}

fn label_values<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<LabelScalar>::deserialize(d)?;
    Ok(v.into_iter().map(String::from).collect())
}

fn label_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let m = BTreeMap::<String, LabelScalar>::deserialize(d)?;
    Ok(m.into_iter().map(|(k, v)| (k, String::from(v))).collect())
}

impl LabelValues {
    pub fn as_slice(&self) -> &[String] {
        match self {
            LabelValues::One(v) => std::slice::from_ref(v),
            LabelValues::AnyOf(v) => v,
        }
    }
}

/// A number or a string, kept as written until validation (protocols and ports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(i64),
    Text(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Text(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<&str> for Scalar {
    fn from(s: &str) -> Self {
        Scalar::Text(s.to_string())
    }
}

impl From<i64> for Scalar {
    fn from(n: i64) -> Self {
        Scalar::Int(n)
    }
}

/// One protocol and its destination ports (empty = every port; only tcp/udp take ports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// tcp | udp | icmp | icmpv6 | any | 0..=255
    pub proto: Scalar,
    /// `445`, `"8000-8080"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Scalar>,
}

/// A named service: either `proto` (+ `ports`), or several `entries`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Scalar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<PortSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A service in a rule: a name (user-defined or built-in), or inline `{proto, ports}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ServiceRef {
    Name(String),
    Inline(PortSpec),
}

impl From<&str> for ServiceRef {
    fn from(s: &str) -> Self {
        ServiceRef::Name(s.to_string())
    }
}

/// One ordered rule: `src` groups to `dst` groups over `services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable and user-visible; at most [`MAX_RULE_ID`](crate::compile::MAX_RULE_ID).
    pub id: u32,
    /// Group names, or `["any"]`.
    pub src: Vec<String>,
    /// Group names, or `["any"]`.
    pub dst: Vec<String>,
    /// Service names (or `any`), or inline `{proto, ports}`.
    pub services: Vec<ServiceRef>,
    pub action: Action,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// A management exception: a quarantined workload may still talk to the
/// management hosts at addresses in `cidr` over `services`. The hosts are
/// named by MAC (`macs`) or by declared workload name (`workloads`), at least
/// one: an exception by address alone would let any host that takes a
/// management address through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub macs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<String>,
    pub services: Vec<ServiceRef>,
}

/// A quarantined workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quarantine {
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// Labels for MACs first seen on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Assignment {
    pub strategy: Strategy,
    pub rules: Vec<AssignmentRule>,
}

impl Assignment {
    fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.strategy == Strategy::First
    }
}

/// How assignment rules combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The first matching rule gives all the labels.
    #[default]
    First,
    /// Every matching rule adds its labels; for a key set by several, the earliest wins.
    Merge,
}

/// An assignment rule: the given criteria (at least one) must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentRule {
    /// `02:00:00:00:01:*`, `00:50:56` (an OUI) or `02:00:00:00:01:00/40`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// The workload has an address in this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(deserialize_with = "label_map")]
    pub labels: BTreeMap<String, String>,
}
