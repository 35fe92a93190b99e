//! Automatic membership: MACs first seen on the wire become workloads, labelled
//! by the model's assignment rules; groups select workloads by labels.
//!
//! Assignment rules are tried in order. With [`Strategy::First`] (the default) the
//! first rule whose criteria all match gives the labels; with [`Strategy::Merge`]
//! every matching rule adds its labels, and for a key set by several rules the
//! earliest rule wins. Only workloads of origin [`Origin::Observed`] are labelled
//! (and relabelled when a new address or VLAN is learned); declared and imported
//! workloads keep the labels they were given.

use crate::model::{Assignment, Model, Origin, Strategy, Timestamp, Workload};
use crate::validate::{parse_cidr, CheckedAssignment, Members};
use dataplane::policy::parse_mac;
use dataplane::wire::MacAddr;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Addresses a workload learns from the wire at most: a MAC behind which many
/// addresses appear (a router, or a spoofing host) must not grow without bound.
pub const MAX_LEARNED_IPS: usize = 64;

/// Whether [`Model::observe`] would learn anything new about `w`.
pub fn would_learn(w: &Workload, ip: Option<IpAddr>, vlan: Option<u16>) -> bool {
    let new_ip = ip.is_some_and(|ip| {
        w.ips.len() < MAX_LEARNED_IPS && !w.ips.iter().any(|k| k.trim().parse::<IpAddr>() == Ok(ip))
    });
    new_ip || vlan.is_some_and(|v| w.vlan != Some(v))
}

/// What [`Model::observe`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    /// The MAC was not known: a workload was added.
    pub new: bool,
    /// An address or VLAN not known before was recorded.
    pub learned: bool,
    /// The workload's labels changed (so its groups, and the compiled policy, may change).
    pub relabelled: bool,
}

impl Observation {
    /// Whether the compiled policy may differ now.
    pub fn policy_may_change(&self) -> bool {
        self.relabelled
    }
}

impl Model {
    /// Records a MAC seen on the wire (with its address and VLAN when known). A MAC
    /// never seen becomes a workload of origin `observed`, labelled by the
    /// assignment rules; a known one learns new addresses and, if it was observed,
    /// is relabelled. Assignment rules that do not parse are skipped here
    /// ([`Model::validate`] reports them).
    pub fn observe(
        &mut self,
        mac: MacAddr,
        ip: Option<IpAddr>,
        vlan: Option<u16>,
        now: Timestamp,
    ) -> Observation {
        let mut obs = Observation::default();
        let w = match self.workloads.by_mac_mut(mac) {
            Some(w) => w,
            None => {
                obs.new = true;
                self.workloads.push(Workload {
                    mac: mac.to_string(),
                    origin: Origin::Observed,
                    first_seen: Some(now),
                    ..Workload::default()
                });
                match self.workloads.by_mac_mut(mac) {
                    Some(w) => w,
                    None => return obs,
                }
            }
        };
        if let Some(ip) = ip {
            if w.ips.len() < MAX_LEARNED_IPS
                && !w.ips.iter().any(|k| k.trim().parse::<IpAddr>() == Ok(ip))
            {
                w.ips.push(ip.to_string());
                obs.learned = true;
            }
        }
        if let Some(v) = vlan {
            if w.vlan != Some(v) {
                w.vlan = Some(v);
                obs.learned = true;
            }
        }
        if w.origin == Origin::Observed && (obs.new || obs.learned) {
            let labels = assign(mac, w, &self.assignment);
            if labels != w.labels {
                w.labels = labels;
                obs.relabelled = true;
            }
        }
        obs
    }

    /// Labels every workload of origin `observed` anew from the assignment rules
    /// (after the rules changed); returns how many got different labels.
    pub fn reassign_observed(&mut self) -> usize {
        let assignment = self.assignment.clone();
        let mut changed = 0;
        for w in self.workloads.iter_mut() {
            if w.origin != Origin::Observed {
                continue;
            }
            let Some(mac) = parse_mac(&w.mac) else {
                continue;
            };
            let labels = assign(mac, w, &assignment);
            if labels != w.labels {
                w.labels = labels;
                changed += 1;
            }
        }
        changed
    }

    /// The indexes of the workloads a group holds (selector and MAC groups; IP-set
    /// groups hold addresses, not workloads).
    pub fn group_workloads(&self, members: &Members) -> Vec<usize> {
        match members {
            Members::Selector(_) => self
                .workloads
                .iter()
                .enumerate()
                .filter(|(_, w)| members.selects(&w.labels))
                .map(|(i, _)| i)
                .collect(),
            Members::Macs(macs) => self
                .workloads
                .iter()
                .enumerate()
                .filter(|(_, w)| parse_mac(&w.mac).is_some_and(|m| macs.contains(&m)))
                .map(|(i, _)| i)
                .collect(),
            Members::Ips(_) => Vec::new(),
        }
    }
}

/// The assignment rules parsed, index-aligned (a rule with a bad part never matches).
fn parsed_assignment(assignment: &Assignment) -> Vec<Option<CheckedAssignment>> {
    assignment
        .rules
        .iter()
        .map(|a| {
            Some(CheckedAssignment {
                mac_prefix: match &a.mac_prefix {
                    Some(p) => Some(p.parse().ok()?),
                    None => None,
                },
                vlan: a.vlan,
                cidr: match &a.cidr {
                    Some(c) => Some(parse_cidr(c)?),
                    None => None,
                },
            })
        })
        .collect()
}

impl CheckedAssignment {
    /// Whether every given criterion matches (a rule with none matches nothing).
    pub fn matches(&self, mac: MacAddr, vlan: Option<u16>, ips: &[IpAddr]) -> bool {
        let any = self.mac_prefix.is_some() || self.vlan.is_some() || self.cidr.is_some();
        any && self.mac_prefix.is_none_or(|p| p.contains(mac))
            && self.vlan.is_none_or(|v| vlan == Some(v))
            && self
                .cidr
                .is_none_or(|c| ips.iter().any(|ip| c.contains(ip)))
    }
}

fn assign(mac: MacAddr, w: &Workload, assignment: &Assignment) -> BTreeMap<String, String> {
    let parsed = parsed_assignment(assignment);
    let ips: Vec<IpAddr> = w.ips.iter().filter_map(|s| s.trim().parse().ok()).collect();
    let mut labels = BTreeMap::new();
    for (a, rule) in parsed.iter().zip(&assignment.rules) {
        let Some(a) = a else { continue };
        if !a.matches(mac, w.vlan, &ips) {
            continue;
        }
        for (k, v) in &rule.labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if assignment.strategy == Strategy::First {
            break;
        }
    }
    labels
}
