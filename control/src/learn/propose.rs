//! Rule proposals: the fewest group -> group rules that allow every
//! observed flow today's policy allows by no rule (learn's default, audit's
//! and enforce's default deny), each with the traffic behind it; and the
//! traffic that no group rule can allow (an end in no group) as labelling
//! gaps, not as an allow-any rule.
//!
//! The rules are chosen greedily (set cover): the group pair that covers
//! the most uncovered traffic keys first, a smaller pair on a tie; each
//! rule takes the services of the keys it covers, named by the built-in
//! catalogue where one holds them, else protocol and ports, contiguous
//! ports as a range and many high ports as one range.

use super::{Judge, Verdict};
use crate::learn::{Example, ExampleEnd};
use crate::model::{PortSpec, Rule, Scalar, ServiceRef};
use crate::records::{time_text, Observed, ObservedEnd, ObservedTraffic};
use dataplane::policy::Action;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

/// Proposals listed at most, and labelling gaps.
pub const MAX_PROPOSALS: usize = 1_000;
pub const MAX_GAPS: usize = 1_000;
/// Distinct ports of one protocol above 1023 past which a proposal takes
/// their whole span as one range.
pub const WIDE_PORTS: usize = 16;

/// The proposals for a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Proposals {
    pub since: String,
    pub until: String,
    /// The groups proposals were asked for (empty: all).
    pub scope: Vec<String>,
    /// Flows judged; of them allowed by a rule today, denied by a rule
    /// today (never proposed: a deny rule is a decision), and behind the
    /// proposals and the gaps.
    pub flows: u64,
    pub allowed_by_rule_flows: u64,
    pub denied_by_rule_flows: u64,
    /// Denied by the policy's blocklist (never proposed).
    pub blocked_flows: u64,
    pub proposed_flows: u64,
    pub gap_flows: u64,
    pub proposals: Vec<Proposal>,
    /// Ends in no group, with the traffic no group rule can allow.
    pub gaps: Vec<Gap>,
    /// A list was cut, or the window held more traffic keys than are read.
    pub truncated: bool,
}

/// One proposed rule and the traffic behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Proposal {
    /// Stable for the same rule: accept it by this id.
    pub id: String,
    pub src: String,
    pub dst: String,
    /// As a rule's services: built-in names, or `{proto, ports}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub services: Vec<ServiceRef>,
    /// The protocol/port pairs seen, as text (`tcp/5432`, `icmp`).
    pub seen: Vec<String>,
    pub flows: u64,
    pub bytes: u64,
    /// Distinct (source, destination) pairs.
    pub pairs: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub examples: Vec<Example>,
}

/// An end in no group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Gap {
    pub end: ExampleEnd,
    /// Flows to or from it that no rule allows, and its distinct peers.
    pub flows: u64,
    pub peers: u64,
    pub last_seen: String,
}

/// The keys today's policy allows by no rule whose ends are in the same
/// groups (by index): a rule between one of `src` and one of `dst` covers
/// them all.
struct Sig<'a> {
    src: Vec<usize>,
    dst: Vec<usize>,
    keys: Vec<&'a Observed>,
    flows: u64,
    covered: bool,
}

/// Proposals for `traffic` against `today`, for the groups in `scope`
/// (either end in one; all groups when empty).
pub fn propose(
    traffic: &ObservedTraffic,
    today: &Judge,
    scope: &[String],
    (since_ms, until_ms): (i64, i64),
) -> Proposals {
    let mut out = Proposals {
        since: time_text(since_ms),
        until: time_text(until_ms),
        scope: scope.to_vec(),
        flows: 0,
        allowed_by_rule_flows: 0,
        denied_by_rule_flows: 0,
        blocked_flows: 0,
        proposed_flows: 0,
        gap_flows: 0,
        proposals: Vec::new(),
        gaps: Vec::new(),
        truncated: traffic.truncated,
    };
    let mut names: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut ids = |groups: Vec<String>| -> Vec<usize> {
        groups
            .into_iter()
            .map(|g| {
                let next = names.len();
                *index.entry(g.clone()).or_insert_with(|| {
                    names.push(g);
                    next
                })
            })
            .collect()
    };
    let mut sigs: Vec<Sig<'_>> = Vec::new();
    let mut sig_of: HashMap<(Vec<usize>, Vec<usize>), usize> = HashMap::new();
    let mut gaps: HashMap<&ObservedEnd, GapAgg> = HashMap::new();
    for o in &traffic.keys {
        let d = today.decide(o);
        let in_scope = |g: &[String]| scope.is_empty() || g.iter().any(|n| scope.contains(n));
        match (d.reason.as_str(), d.verdict) {
            ("default", _) => {}
            ("rule", Verdict::Allow) => {
                out.flows += o.flows;
                out.allowed_by_rule_flows += o.flows;
                continue;
            }
            ("rule", _) => {
                out.flows += o.flows;
                out.denied_by_rule_flows += o.flows;
                continue;
            }
            // The policy's blocklist: never proposed.
            _ => {
                out.flows += o.flows;
                out.blocked_flows += o.flows;
                continue;
            }
        }
        let (sg, dg) = (today.groups(&o.src), today.groups(&o.dst));
        if !scope.is_empty() && !in_scope(&sg) && !in_scope(&dg) {
            continue;
        }
        out.flows += o.flows;
        if sg.is_empty() || dg.is_empty() {
            out.gap_flows += o.flows;
            for (end, peer, empty) in [
                (&o.src, &o.dst, sg.is_empty()),
                (&o.dst, &o.src, dg.is_empty()),
            ] {
                if empty {
                    gaps.entry(end).or_default().add(o, peer);
                }
            }
            continue;
        }
        out.proposed_flows += o.flows;
        let key = (ids(sg), ids(dg));
        let at = *sig_of.entry(key.clone()).or_insert_with(|| {
            sigs.push(Sig {
                src: key.0,
                dst: key.1,
                keys: Vec::new(),
                flows: 0,
                covered: false,
            });
            sigs.len() - 1
        });
        if let Some(sig) = sigs.get_mut(at) {
            sig.keys.push(o);
            sig.flows += o.flows;
        }
    }
    let sizes: Vec<usize> = names.iter().map(|n| today.group_size(n)).collect();
    let mut proposals: Vec<Proposal> = cover(&mut sigs, &sizes, &names)
        .into_iter()
        .map(|((s, d), keys)| proposal(&names[s], &names[d], &keys))
        .collect();
    proposals.sort_by(|a, b| {
        b.flows
            .cmp(&a.flows)
            .then_with(|| (&a.src, &a.dst).cmp(&(&b.src, &b.dst)))
    });
    if proposals.len() > MAX_PROPOSALS {
        proposals.truncate(MAX_PROPOSALS);
        out.truncated = true;
    }
    out.proposals = proposals;
    let mut gaps: Vec<Gap> = gaps
        .into_iter()
        .map(|(end, g)| Gap {
            end: ExampleEnd::of(end),
            flows: g.flows,
            peers: u64::try_from(g.peers.len()).unwrap_or(u64::MAX),
            last_seen: time_text(g.last_ms),
        })
        .collect();
    gaps.sort_by(|a, b| {
        b.flows.cmp(&a.flows).then_with(|| {
            (&a.end.mac, &a.end.ip, &a.end.name).cmp(&(&b.end.mac, &b.end.ip, &b.end.name))
        })
    });
    if gaps.len() > MAX_GAPS {
        gaps.truncate(MAX_GAPS);
        out.truncated = true;
    }
    out.gaps = gaps;
    out
}

/// Greedy set cover of the signatures by group pairs: the pair covering
/// the most uncovered keys (then flows; then the fewest members: the more
/// specific pair; then the first by name) first, until every key is
/// covered. Scores only fall as signatures are covered, so the pairs wait
/// in a heap with the score they had when pushed: a popped pair whose
/// score fell since goes back with its new one (lazy greedy), and each
/// round costs a few heap operations, not a pass over every pair.
fn cover<'a>(
    sigs: &mut [Sig<'a>],
    sizes: &[usize],
    names: &[String],
) -> Vec<((usize, usize), Vec<&'a Observed>)> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    type Pair = (usize, usize);
    let mut score: HashMap<Pair, (u64, u64)> = HashMap::new();
    let mut by_pair: HashMap<Pair, Vec<usize>> = HashMap::new();
    for (i, sig) in sigs.iter().enumerate() {
        for &s in &sig.src {
            for &d in &sig.dst {
                let e = score.entry((s, d)).or_default();
                e.0 += sig.keys.len() as u64;
                e.1 += sig.flows;
                by_pair.entry((s, d)).or_default().push(i);
            }
        }
    }
    // Names are distinct: their rank orders pairs as the names do.
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| names[a].cmp(&names[b]));
    let mut rank = vec![0usize; names.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r;
    }
    let size =
        |(s, d): Pair| sizes.get(s).copied().unwrap_or(0) + sizes.get(d).copied().unwrap_or(0);
    let entry = |pair: Pair, (keys, flows): (u64, u64)| {
        let by_name = (
            rank.get(pair.0).copied().unwrap_or(usize::MAX),
            rank.get(pair.1).copied().unwrap_or(usize::MAX),
        );
        (keys, flows, Reverse(size(pair)), Reverse(by_name), pair)
    };
    let mut heap: BinaryHeap<_> = score
        .iter()
        .filter(|(_, v)| v.0 > 0)
        .map(|(&pair, &v)| entry(pair, v))
        .collect();
    let mut out = Vec::new();
    while let Some((keys, flows, _, _, pair)) = heap.pop() {
        let now = score.get(&pair).copied().unwrap_or_default();
        if now != (keys, flows) {
            if now.0 > 0 {
                heap.push(entry(pair, now));
            }
            continue;
        }
        let mut keys = Vec::new();
        for &i in by_pair.get(&pair).map_or(&[][..], Vec::as_slice) {
            let Some(sig) = sigs.get_mut(i) else { continue };
            if sig.covered {
                continue;
            }
            sig.covered = true;
            keys.extend(sig.keys.iter().copied());
            for &s in &sig.src {
                for &d in &sig.dst {
                    if let Some(e) = score.get_mut(&(s, d)) {
                        e.0 -= sig.keys.len() as u64;
                        e.1 -= sig.flows;
                    }
                }
            }
        }
        out.push((pair, keys));
    }
    out
}

#[derive(Default)]
struct GapAgg {
    flows: u64,
    last_ms: i64,
    peers: BTreeSet<(String, Option<std::net::IpAddr>)>,
}

impl GapAgg {
    fn add(&mut self, o: &Observed, peer: &ObservedEnd) {
        self.flows += o.flows;
        self.last_ms = self.last_ms.max(o.last_ms);
        self.peers.insert((peer.mac.to_string(), peer.ip));
    }
}

fn proposal(src: &str, dst: &str, keys: &[&Observed]) -> Proposal {
    let mut ports: BTreeMap<u8, BTreeSet<u16>> = BTreeMap::new();
    let mut pairs: HashMap<_, (u64, i64, usize)> = HashMap::new();
    let (mut flows, mut bytes, mut first, mut last) = (0u64, 0u64, i64::MAX, i64::MIN);
    for (at, o) in keys.iter().enumerate() {
        ports.entry(o.proto).or_default().insert(o.port);
        flows += o.flows;
        bytes += o.bytes;
        first = first.min(o.first_ms);
        last = last.max(o.last_ms);
        let p = pairs
            .entry((o.src.mac, o.src.ip, o.dst.mac, o.dst.ip))
            .or_insert((0, i64::MIN, at));
        p.0 += o.flows;
        p.1 = p.1.max(o.last_ms);
    }
    let seen = ports
        .iter()
        .flat_map(|(&proto, set)| {
            set.iter()
                .map(move |&port| crate::services::service_text(proto, port))
        })
        .collect();
    let services = services(&ports);
    let examples = super::dry_run::examples(
        pairs
            .values()
            .filter_map(|&(flows, last_ms, at)| Some((flows, last_ms, *keys.get(at)?))),
    );
    Proposal {
        id: proposal_id(src, dst, &services),
        src: src.to_string(),
        dst: dst.to_string(),
        services,
        seen,
        flows,
        bytes,
        pairs: u64::try_from(pairs.len()).unwrap_or(u64::MAX),
        first_seen: time_text(first),
        last_seen: time_text(last),
        examples,
    }
}

/// A rule's services for the ports seen, by protocol: built-in names where
/// one holds the port, the rest as contiguous ranges, and more than
/// [`WIDE_PORTS`] ports above 1023 as their whole span.
fn services(ports: &BTreeMap<u8, BTreeSet<u16>>) -> Vec<ServiceRef> {
    let mut named = BTreeSet::new();
    let mut out = Vec::new();
    for (&proto, set) in ports {
        let mut rest = Vec::new();
        for &port in set {
            match crate::services::builtin_for(proto, port) {
                Some(name) => {
                    named.insert(name);
                }
                None => rest.push(port),
            }
        }
        if rest.is_empty() {
            continue;
        }
        let proto_text = match proto {
            6 => Scalar::Text("tcp".into()),
            17 => Scalar::Text("udp".into()),
            1 => Scalar::Text("icmp".into()),
            58 => Scalar::Text("icmpv6".into()),
            n => Scalar::Int(i64::from(n)),
        };
        let has_ports = matches!(proto, 6 | 17);
        if !has_ports {
            out.push(ServiceRef::Inline(PortSpec {
                proto: proto_text,
                ports: Vec::new(),
            }));
            continue;
        }
        let high: Vec<u16> = rest.iter().copied().filter(|&p| p > 1023).collect();
        let mut ranges: Vec<(u16, u16)> = Vec::new();
        let wide = high.len() > WIDE_PORTS;
        for &p in &rest {
            if wide && p > 1023 {
                continue;
            }
            match ranges.last_mut() {
                Some(r) if r.1.checked_add(1) == Some(p) => r.1 = p,
                _ => ranges.push((p, p)),
            }
        }
        if let (true, Some(lo), Some(hi)) = (wide, high.first(), high.last()) {
            ranges.push((*lo, *hi));
        }
        let ports = ranges
            .into_iter()
            .map(|(lo, hi)| {
                if lo == hi {
                    Scalar::Int(i64::from(lo))
                } else {
                    Scalar::Text(format!("{lo}-{hi}"))
                }
            })
            .collect();
        out.push(ServiceRef::Inline(PortSpec {
            proto: proto_text,
            ports,
        }));
    }
    let mut all: Vec<ServiceRef> = named
        .into_iter()
        .map(|n| ServiceRef::Name(n.to_string()))
        .collect();
    all.extend(out);
    all
}

fn proposal_id(src: &str, dst: &str, services: &[ServiceRef]) -> String {
    let mut h = std::hash::DefaultHasher::new();
    (src, dst).hash(&mut h);
    serde_json::to_string(services)
        .unwrap_or_default()
        .hash(&mut h);
    format!("p-{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// The rules `accepted` proposals make, numbered after `after` (the largest
/// rule id in use), ten apart.
pub fn rules_of(accepted: &[&Proposal], after: u32, window: &str) -> Vec<Rule> {
    accepted
        .iter()
        .enumerate()
        .map(|(i, p)| Rule {
            id: after.saturating_add(10 * (u32::try_from(i).unwrap_or(u32::MAX) + 1)),
            src: vec![p.src.clone()],
            dst: vec![p.dst.clone()],
            services: p.services.clone(),
            action: Action::Allow,
            enabled: true,
            comment: Some(format!(
                "proposed {}: {} flows, {} pairs seen {window}",
                p.id, p.flows, p.pairs
            )),
        })
        .collect()
}
