//! Threat intel on the control thread: what a feed reading puts in force,
//! and what a match does. A new flow to or from a listed address, or a DNS
//! answer for a listed name (or a name on its CNAME chain), raises an alert
//! about the workload on the other end; a `block` feed's domain blocks the
//! addresses it was answered with for their TTL and a grace period
//! (DNS-aware blocking), and a feed with `quarantine` quarantines the
//! workload (released only by a person).

use super::super::IntelView;
use super::State;
use crate::alerts::{Kind, NewAlert};
use crate::intel::feeds::Loaded;
use crate::intel::{Action, Match};
use crate::records::StoredDns;
use crate::time::Timestamp;
use dataplane::event::FlowRecord;
use dataplane::intel::EntryId;
use dataplane::policy::Action as Verdict;
use dataplane::wire::MacAddr;
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an address answered for a blocked domain stays blocked past
/// its TTL (a client may use an answer a little longer than it should).
pub(in crate::engine) const RESOLVED_GRACE_MS: i64 = 60_000;
/// Addresses blocked by DNS answers at most (a flood of answers for a
/// listed domain with random addresses must not grow the set without end);
/// past it, the ones closest to expiry make room.
pub(in crate::engine) const MAX_RESOLVED: usize = 65_536;
/// A TTL is taken as at most a day.
const MAX_TTL_MS: i64 = 86_400_000;
/// New blocked addresses are published at most this often: a flood of
/// answers costs one generation per interval, not one per answer.
pub(in crate::engine) const RESOLVED_PUBLISH_EVERY: Duration = Duration::from_millis(20);

/// An address blocked because DNS answered it for a blocked domain.
#[derive(Debug, Clone)]
pub(in crate::engine) struct ResolvedBlock {
    pub(in crate::engine) entry: EntryId,
    /// The listed domain and the name that was asked.
    pub(in crate::engine) listed: String,
    pub(in crate::engine) qname: String,
    pub(in crate::engine) expires_ms: i64,
}

/// The addresses blocked by DNS answers, and when they were last published.
#[derive(Debug, Default)]
pub(in crate::engine) struct ResolvedBlocks {
    pub(in crate::engine) by_ip: HashMap<IpAddr, ResolvedBlock>,
    pub(in crate::engine) dirty_since: Option<Instant>,
    pub(in crate::engine) published: Option<Instant>,
    /// The earliest expiry (ms), so that the loop does not sweep the map
    /// each time it turns (`None` when empty).
    pub(in crate::engine) next_expiry_ms: Option<i64>,
}

/// What a DNS answer matched, found before anything changes.
struct DnsHit {
    entry: EntryId,
    feed: crate::intel::Feed,
    severity: crate::intel::Severity,
    /// The entry as evidence ([`entry_json`]).
    entry_json: serde_json::Value,
    listed: String,
    /// The name on the chain that matched.
    matched: String,
    dns: StoredDns,
}

impl ResolvedBlocks {
    /// Keeps the blocks `keep` says to; whether some went.
    fn retain(&mut self, keep: impl FnMut(&IpAddr, &mut ResolvedBlock) -> bool) -> bool {
        let before = self.by_ip.len();
        self.by_ip.retain(keep);
        self.next_expiry_ms = self.by_ip.values().map(|b| b.expires_ms).min();
        self.by_ip.len() != before
    }
}

fn now_ms() -> i64 {
    Timestamp::now().millis()
}

fn entry_json(m: &Match<'_>) -> serde_json::Value {
    json!({
        "id": m.id,
        "feed": m.feed.name,
        "action": match m.feed.action { Action::Alert => "alert", Action::Block => "block" },
        "listed": m.listed.to_string(),
        "category": m.category,
        "severity": m.severity.to_string(),
        "added_ms": m.added_ms,
    })
}

pub(super) fn flow_json(r: &FlowRecord) -> serde_json::Value {
    json!({
        "src_mac": r.src_mac.to_string(),
        "src_ip": r.src_ip.to_string(),
        "src_port": r.src_port,
        "dst_mac": r.dst_mac.to_string(),
        "dst_ip": r.dst_ip.to_string(),
        "dst_port": r.dst_port,
        "proto": r.proto,
        "verdict": match r.verdict.action { Verdict::Allow => "allow", Verdict::Deny => "deny" },
    })
}

impl State {
    /// Puts `loaded` in force: its block feeds' addresses are published
    /// in the overlay as the next generation (the rule tables are shared),
    /// so flows decided before, offloaded ones too, are decided again.
    /// Addresses blocked by earlier DNS answers are kept if their domain's
    /// feed still blocks it.
    pub(super) fn set_intel(&mut self, loaded: Loaded) -> u64 {
        let Loaded {
            intel,
            feeds,
            took_ms,
            ..
        } = loaded;
        let old = std::mem::replace(&mut self.intel, intel);
        self.garbage.push(Box::new(old));
        // DNS answers are read for the domains, with or without records.
        let recorder = self.recorder.get_or_insert_with(|| {
            crate::records::Recorder::dns_only(crate::records::Clock::Since(self.cfg.worker_epoch))
        });
        recorder.decode_dns();
        let intel = self.intel.clone();
        self.resolved_blocks.retain(|_, b| {
            intel
                .domain(&b.listed)
                .filter(|m| m.feed.action == Action::Block && m.listed.to_string() == b.listed)
                .map(|m| b.entry = m.id)
                .is_some()
        });
        let generation = self.publish_intel();
        if let Some(r) = self.recorder.as_mut() {
            r.set_intel(self.intel.clone(), generation);
        }
        let hunt = self.shared.intel.load().hunt.clone();
        let old = self.shared.intel.swap(Arc::new(IntelView {
            intel: self.intel.clone(),
            feeds,
            generation,
            published_ms: now_ms(),
            took_ms,
            hunt,
        }));
        self.garbage.push(Box::new(old));
        generation
    }

    /// What a retro-hunt found: alerts as any, and its report in the view.
    pub(super) fn hunted(&mut self, alerts: Vec<NewAlert>, report: super::super::HuntReport) {
        for a in alerts {
            self.alert(a);
        }
        let mut view = (**self.shared.intel.load()).clone();
        view.hunt = Some(report);
        let old = self.shared.intel.swap(Arc::new(view));
        self.garbage.push(Box::new(old));
    }

    /// Publishes the intel sets in force, the addresses blocked by DNS
    /// answers made again from their blocks, as the next generation.
    fn publish_intel(&mut self) -> u64 {
        self.resolved = Arc::new(
            self.resolved_blocks
                .by_ip
                .iter()
                .map(|(&ip, b)| (ip, b.entry))
                .collect(),
        );
        let generation = self.generation + 1;
        let snapshot =
            self.cell
                .load()
                .with_intel(self.intel.blocked(), self.resolved.clone(), generation);
        self.resolved_blocks.dirty_since = None;
        self.resolved_blocks.published = Some(Instant::now());
        self.install(snapshot)
    }

    /// A new flow: an alert if an end is listed (by a feed, or as an
    /// address a blocked domain resolved to), about the other end.
    pub(super) fn intel_flow(&mut self, r: &FlowRecord) {
        if self.intel.is_empty() && self.resolved_blocks.by_ip.is_empty() {
            return;
        }
        let intel = self.intel.clone();
        for (listed, other_mac, other_ip) in [
            (r.dst_ip, r.src_mac, r.src_ip),
            (r.src_ip, r.dst_mac, r.dst_ip),
        ] {
            // A feed's entry, or the blocked domain it was an answer of.
            let found = match intel.ip(listed) {
                Some(m) => Some((m, None)),
                None => self
                    .resolved_blocks
                    .by_ip
                    .get(&listed)
                    .and_then(|b| intel.domain(&b.listed).map(|m| (m, Some(b.qname.clone())))),
            };
            let Some((m, resolved)) = found else {
                continue;
            };
            let name = self.workload_name(other_mac);
            let summary = format!(
                "{} {} {listed}{}, listed by feed {}{}",
                name.as_deref().unwrap_or(&other_mac.to_string()),
                if listed == r.dst_ip {
                    "connected to"
                } else {
                    "was contacted by"
                },
                resolved
                    .as_deref()
                    .map(|q| format!(", an address of {q}"))
                    .unwrap_or_default(),
                m.feed.name,
                if r.verdict.action == Verdict::Deny {
                    ": blocked"
                } else {
                    ""
                },
            );
            self.alert(NewAlert {
                at_ms: now_ms(),
                kind: Kind::IntelIp,
                severity: m.severity,
                mac: other_mac,
                workload: name,
                indicator: m.listed.to_string(),
                summary,
                evidence: json!({
                    "flow": flow_json(r),
                    "entry": entry_json(&m),
                    "ip": other_ip.to_string(),
                    "resolved": resolved,
                }),
            });
            if m.feed.quarantine {
                let why = format!("intel feed {}: {listed}", m.feed.name);
                self.auto_quarantine(other_mac, &why);
            }
            return;
        }
    }

    /// DNS responses just decoded: alerts, blocked answers, quarantines.
    pub(super) fn intel_dns(&mut self, responses: &[StoredDns]) {
        if self.intel.is_empty() {
            return;
        }
        let intel = self.intel.clone();
        let mut hits = Vec::new();
        for d in responses {
            let names = std::iter::once(d.response.qname.as_str()).chain(
                d.response.answers.iter().flat_map(|a| {
                    let target = match &a.data {
                        crate::dns::AnswerData::Cname(c) => Some(c.as_str()),
                        crate::dns::AnswerData::Addr(_) => None,
                    };
                    std::iter::once(a.name.as_str()).chain(target)
                }),
            );
            let found = names
                .filter_map(|n| intel.domain(n).map(|m| (n, m)))
                .min_by_key(
                    // A block feed's match first.
                    |(_, m)| m.feed.action != Action::Block,
                );
            if let Some((name, m)) = found {
                hits.push(DnsHit {
                    entry: m.id,
                    feed: m.feed.clone(),
                    severity: m.severity,
                    entry_json: entry_json(&m),
                    listed: m.listed.to_string(),
                    matched: name.to_string(),
                    dns: d.clone(),
                });
            }
        }
        for h in hits {
            self.dns_hit(h);
        }
    }

    fn dns_hit(&mut self, h: DnsHit) {
        let (feed, severity) = (&h.feed, h.severity);
        let r = &h.dns.response;
        let now = now_ms();
        let mut blocked = Vec::new();
        if feed.action == Action::Block {
            for a in &r.answers {
                let crate::dns::AnswerData::Addr(ip) = a.data else {
                    continue;
                };
                if !dataplane::intel::blockable(ip) {
                    continue;
                }
                let ttl = i64::from(a.ttl).saturating_mul(1000).min(MAX_TTL_MS);
                let expires_ms = now.saturating_add(ttl).saturating_add(RESOLVED_GRACE_MS);
                self.block_resolved(
                    ip,
                    ResolvedBlock {
                        entry: h.entry,
                        listed: h.listed.clone(),
                        qname: r.qname.clone(),
                        expires_ms,
                    },
                );
                blocked.push(ip.to_string());
            }
        }
        let client = &h.dns.client;
        let name = (!client.name.is_empty()).then(|| client.name.clone());
        let answers: Vec<serde_json::Value> = r
            .answers
            .iter()
            .map(|a| match &a.data {
                crate::dns::AnswerData::Addr(ip) => {
                    json!({"name": a.name, "ttl": a.ttl, "addr": ip.to_string()})
                }
                crate::dns::AnswerData::Cname(c) => {
                    json!({"name": a.name, "ttl": a.ttl, "cname": c})
                }
            })
            .collect();
        let summary = format!(
            "{} resolved {}{}, listed by feed {}{}",
            name.as_deref().unwrap_or(&client.mac.to_string()),
            r.qname,
            if h.matched != r.qname {
                format!(" (via {})", h.matched)
            } else {
                String::new()
            },
            feed.name,
            if blocked.is_empty() {
                String::new()
            } else {
                format!(": {} blocked", blocked.join(", "))
            },
        );
        self.alert(NewAlert {
            at_ms: h.dns.time_ms,
            kind: Kind::IntelDns,
            severity,
            mac: client.mac,
            workload: name,
            indicator: h.listed.clone(),
            summary,
            evidence: json!({
                "dns": {
                    "time_ms": h.dns.time_ms,
                    "client_ip": r.client_ip.to_string(),
                    "server_ip": r.server_ip.to_string(),
                    "qname": r.qname,
                    "qtype": r.qtype,
                    "rcode": r.rcode,
                    "answers": answers,
                },
                "matched": h.matched,
                "blocked": blocked,
                "entry": h.entry_json,
            }),
        });
        if feed.quarantine {
            self.auto_quarantine(
                client.mac,
                &format!("intel feed {}: resolved {}", feed.name, r.qname),
            );
        }
    }

    fn block_resolved(&mut self, ip: IpAddr, b: ResolvedBlock) {
        let set = &mut self.resolved_blocks;
        let known = set.by_ip.get(&ip).is_some_and(|old| old.entry == b.entry);
        if !known && set.by_ip.len() >= MAX_RESOLVED {
            let soonest = set
                .by_ip
                .iter()
                .min_by_key(|(_, b)| b.expires_ms)
                .map(|(&ip, _)| ip);
            if let Some(ip) = soonest {
                set.by_ip.remove(&ip);
            }
        }
        let expires = b.expires_ms;
        set.next_expiry_ms = Some(set.next_expiry_ms.map_or(expires, |t| t.min(expires)));
        match set.by_ip.get_mut(&ip) {
            Some(old) if old.entry == b.entry => old.expires_ms = old.expires_ms.max(expires),
            _ => {
                set.by_ip.insert(ip, b);
                set.dirty_since.get_or_insert_with(Instant::now);
            }
        }
    }

    /// Time-driven intel work: new blocked answers published (at most every
    /// [`RESOLVED_PUBLISH_EVERY`]), expired ones dropped, alert repeats
    /// written.
    pub(super) fn tick_intel(&mut self, now: Instant) {
        let ms = now_ms();
        let set = &mut self.resolved_blocks;
        if set.next_expiry_ms.is_some_and(|t| t <= ms) && set.retain(|_, b| b.expires_ms > ms) {
            set.dirty_since.get_or_insert(now);
        }
        let due = self
            .resolved_blocks
            .published
            .is_none_or(|p| now.duration_since(p) >= RESOLVED_PUBLISH_EVERY);
        if self.resolved_blocks.dirty_since.is_some() && due {
            self.publish_intel();
        }
        if self.alerter.pending() && now >= self.next_alert_flush {
            self.next_alert_flush = now + Duration::from_secs(1);
            if let Err(e) = self.alerter.flush(&mut self.store, ms) {
                super::set_text(&self.shared.last_error, Some(format!("alerts: {e}")));
            }
            self.share_alert_counters();
        }
    }

    /// When [`State::tick_intel`] has work next.
    pub(super) fn intel_deadline(&self, now: Instant) -> Option<Duration> {
        let publish = self.resolved_blocks.dirty_since.map(|_| {
            self.resolved_blocks.published.map_or(Duration::ZERO, |p| {
                (p + RESOLVED_PUBLISH_EVERY).saturating_duration_since(now)
            })
        });
        let flush = self
            .alerter
            .pending()
            .then(|| self.next_alert_flush.saturating_duration_since(now));
        let expiry = self
            .resolved_blocks
            .next_expiry_ms
            .map(|t| Duration::from_millis(u64::try_from(t.saturating_sub(now_ms())).unwrap_or(0)));
        [publish, flush, expiry].into_iter().flatten().min()
    }

    pub(super) fn workload_name(&self, mac: MacAddr) -> Option<String> {
        self.effective
            .workloads
            .by_mac(mac)
            .map(|w| w.name.clone())
            .filter(|n| !n.is_empty())
    }

    /// Raises `a`; the new alert's id if one was stored (not a repeat, not
    /// over the rate limit).
    pub(super) fn alert(&mut self, a: NewAlert) -> Option<i64> {
        let stored = match self.alerter.raise(&a, &mut self.store) {
            Ok(Some(id)) => {
                if let Some(d) = &self.deliverer {
                    d.offer(id, &a);
                }
                Some(id)
            }
            Ok(None) => None,
            Err(e) => {
                super::set_text(&self.shared.last_error, Some(format!("alerts: {e}")));
                None
            }
        };
        self.share_alert_counters();
        stored
    }

    fn share_alert_counters(&self) {
        if let Ok(mut c) = self.shared.alerts.lock() {
            c.clone_from(self.alerter.counters());
        }
    }

    /// Quarantines `mac` for intel, unless it already is (by anyone).
    fn auto_quarantine(&mut self, mac: MacAddr, reason: &str) {
        self.quarantine_by(mac, reason, INTEL_ACTOR);
    }

    /// Quarantines `mac` on its own (intel, a detector), unless it already
    /// is (by anyone); a failure is the status' last error.
    pub(super) fn quarantine_by(&mut self, mac: MacAddr, reason: &str, actor: &str) {
        if !mac.is_station() || self.cell.load().is_quarantined(mac) {
            return;
        }
        if let Err(e) = self.quarantine(mac, Some(reason.to_string()), actor) {
            super::set_text(
                &self.shared.last_error,
                Some(format!("{actor} quarantine of {mac}: {e}")),
            );
        }
    }
}

/// The actor of quarantines threat intel puts in force.
pub const INTEL_ACTOR: &str = "intel";
