//! The dry run: a window's observed traffic judged by today's policy (or
//! the verdicts recorded) and by a draft, and what would change, by group
//! pair and service: flows that pass today and the draft would deny (what
//! enforcing it breaks), flows denied today that it lets through, and flows
//! allowed today that it would flag (audit mode's would-deny).

use super::{Decision, Judge, Verdict};
use crate::records::{time_text, Observed, ObservedTraffic};
use dataplane::wire::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;

/// Changes listed at most per kind (the ones with the most flows first).
pub const MAX_CHANGES: usize = 1_000;
/// Example workload pairs given per change.
pub const MAX_EXAMPLES: usize = 3;

/// What the draft is judged against.
pub enum Today<'a> {
    /// Today's policy (the appliance's live one, or a file).
    Policy(&'a Judge),
    /// The verdicts the records hold.
    Recorded,
}

/// What a draft would change over a window of recorded traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DryRun {
    pub since: String,
    pub until: String,
    /// What "today" is: `live policy`, `recorded verdicts`, or a file.
    pub today: String,
    /// Flows judged, and of them the ones whose verdict would not change.
    pub flows: u64,
    pub unchanged_flows: u64,
    /// Flows that pass today and the draft would deny.
    pub breaks: Vec<Change>,
    /// Flows denied today that the draft would let through.
    pub opens: Vec<Change>,
    /// Flows allowed today that the draft would let through flagged
    /// (would-deny: audit mode, or learn mode's deny rules).
    pub flagged: Vec<Change>,
    /// A list was cut at [`MAX_CHANGES`], or the window held more traffic
    /// keys than are judged at once.
    pub truncated: bool,
}

/// Traffic from one group pair over one service whose verdict would change
/// one way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    /// The source's groups under the draft (empty: in none).
    pub src_groups: Vec<String>,
    pub dst_groups: Vec<String>,
    pub proto: u8,
    /// The responder's port; 0 for protocols without ports.
    pub port: u16,
    /// The built-in service it is, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub today: Decision,
    pub draft: Decision,
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Distinct (source, destination) pairs.
    pub pairs: u64,
    pub first_seen: String,
    pub last_seen: String,
    /// The pairs with the most flows.
    pub examples: Vec<Example>,
}

/// One workload pair behind a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Example {
    pub src: ExampleEnd,
    pub dst: ExampleEnd,
    pub flows: u64,
    pub last_seen: String,
}

/// An end: a workload (MAC and name), or an address no workload had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExampleEnd {
    pub mac: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub ip: Option<IpAddr>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Breaks,
    Opens,
    Flagged,
}

#[derive(PartialEq, Eq, Hash)]
struct ChangeKey {
    kind: Kind,
    src_groups: Vec<String>,
    dst_groups: Vec<String>,
    proto: u8,
    port: u16,
    today: Decision,
    draft: Decision,
}

type Pair = (MacAddr, Option<IpAddr>, MacAddr, Option<IpAddr>);

#[derive(Default)]
struct ChangeAgg {
    flows: u64,
    packets: u64,
    bytes: u64,
    first_ms: i64,
    last_ms: i64,
    /// Flows and last seen by pair.
    pairs: HashMap<Pair, (u64, i64, usize), ahash::RandomState>,
}

/// Judges `traffic` (the records of `[since_ms, until_ms]`) by `today` and
/// by `draft`.
pub fn dry_run(
    traffic: &ObservedTraffic,
    today: Today<'_>,
    today_name: &str,
    draft: &Judge,
    (since_ms, until_ms): (i64, i64),
) -> DryRun {
    let mut changes: HashMap<ChangeKey, ChangeAgg, ahash::RandomState> = HashMap::default();
    let mut flows = 0u64;
    let mut unchanged = 0u64;
    for (at, o) in traffic.keys.iter().enumerate() {
        flows = flows.saturating_add(o.flows);
        let t = match today {
            Today::Policy(judge) => judge.decide(o),
            Today::Recorded => Decision {
                verdict: Verdict::recorded(o.allowed, o.would_deny),
                reason: "recorded".into(),
                rule: None,
            },
        };
        let d = draft.decide(o);
        let kind = match (t.verdict, d.verdict) {
            (a, b) if a.passes() && !b.passes() => Kind::Breaks,
            (a, b) if !a.passes() && b.passes() => Kind::Opens,
            (Verdict::Allow, Verdict::WouldDeny) => Kind::Flagged,
            _ => {
                unchanged = unchanged.saturating_add(o.flows);
                continue;
            }
        };
        let key = ChangeKey {
            kind,
            src_groups: draft.groups(&o.src),
            dst_groups: draft.groups(&o.dst),
            proto: o.proto,
            port: o.port,
            today: t,
            draft: d,
        };
        let agg = changes.entry(key).or_insert_with(|| ChangeAgg {
            first_ms: i64::MAX,
            last_ms: i64::MIN,
            ..ChangeAgg::default()
        });
        agg.add(o, at);
    }
    let mut out = DryRun {
        since: time_text(since_ms),
        until: time_text(until_ms),
        today: today_name.to_string(),
        flows,
        unchanged_flows: unchanged,
        breaks: Vec::new(),
        opens: Vec::new(),
        flagged: Vec::new(),
        truncated: traffic.truncated,
    };
    for (key, agg) in changes {
        let kind = key.kind;
        let change = agg.finish(key, traffic);
        match kind {
            Kind::Breaks => out.breaks.push(change),
            Kind::Opens => out.opens.push(change),
            Kind::Flagged => out.flagged.push(change),
        }
    }
    for list in [&mut out.breaks, &mut out.opens, &mut out.flagged] {
        list.sort_by(|a, b| {
            b.flows
                .cmp(&a.flows)
                .then_with(|| (&a.src_groups, &a.dst_groups).cmp(&(&b.src_groups, &b.dst_groups)))
                .then_with(|| (a.proto, a.port).cmp(&(b.proto, b.port)))
                .then_with(|| (&a.today, &a.draft).cmp(&(&b.today, &b.draft)))
        });
        if list.len() > MAX_CHANGES {
            list.truncate(MAX_CHANGES);
            out.truncated = true;
        }
    }
    out
}

/// The busiest pairs as examples, from (flows, last seen, a key of the
/// pair): the most flows first, then the latest.
pub(super) fn examples<'a>(pairs: impl Iterator<Item = (u64, i64, &'a Observed)>) -> Vec<Example> {
    let mut ranked: Vec<_> = pairs.collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    ranked
        .into_iter()
        .take(MAX_EXAMPLES)
        .map(|(flows, last_ms, o)| Example {
            src: ExampleEnd::of(&o.src),
            dst: ExampleEnd::of(&o.dst),
            flows,
            last_seen: time_text(last_ms),
        })
        .collect()
}

impl ExampleEnd {
    pub(super) fn of(e: &crate::records::ObservedEnd) -> ExampleEnd {
        ExampleEnd {
            mac: e.mac.to_string(),
            name: e.name.to_string(),
            ip: e.ip,
        }
    }
}

impl ChangeAgg {
    fn add(&mut self, o: &Observed, at: usize) {
        self.flows = self.flows.saturating_add(o.flows);
        self.packets = self.packets.saturating_add(o.packets);
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.first_ms = self.first_ms.min(o.first_ms);
        self.last_ms = self.last_ms.max(o.last_ms);
        let pair = (o.src.mac, o.src.ip, o.dst.mac, o.dst.ip);
        let p = self.pairs.entry(pair).or_insert((0, i64::MIN, at));
        p.0 = p.0.saturating_add(o.flows);
        p.1 = p.1.max(o.last_ms);
    }

    fn finish(self, key: ChangeKey, traffic: &ObservedTraffic) -> Change {
        let pairs = self.pairs.len();
        let examples = examples(
            self.pairs
                .into_values()
                .filter_map(|(flows, last_ms, at)| Some((flows, last_ms, traffic.keys.get(at)?))),
        );
        Change {
            service: crate::services::builtin_for(key.proto, key.port).map(str::to_string),
            src_groups: key.src_groups,
            dst_groups: key.dst_groups,
            proto: key.proto,
            port: key.port,
            today: key.today,
            draft: key.draft,
            flows: self.flows,
            packets: self.packets,
            bytes: self.bytes,
            pairs: u64::try_from(pairs).unwrap_or(u64::MAX),
            first_seen: time_text(self.first_ms),
            last_seen: time_text(self.last_ms),
            examples,
        }
    }
}
