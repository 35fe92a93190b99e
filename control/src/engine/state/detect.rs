//! Anomaly detection on the control thread: each new flow, failed attempt
//! and DNS answer goes to the detectors (`crate::detect`), what they find
//! becomes an alert about the source, deduplicated like any (one alert a
//! source, kind and indicator, its count raised by later finds), and, where
//! the config says so, a quarantine of the source. What the baselines learn
//! is written to the store once a second.

use super::intel::flow_json;
use super::State;
use crate::alerts::{Kind, NewAlert};
use crate::detect::burst::{BurstFound, DenyBurst};
use crate::detect::dns::{Answer, DnsDetector, DnsFound};
use crate::detect::fanout::{Fanout, FanoutFound};
use crate::detect::first_seen::{service_name, FirstSeen, Flow, NewService};
use crate::detect::{DetectConfig, DetectStatus, Probe, ScanDetector, ScanFound, ScanKind};
use crate::intel::Severity;
use crate::records::StoredDns;
use crate::store::{BaselineWrites, Store, StoreError};
use crate::time::Timestamp;
use dataplane::event::FlowRecord;
use dataplane::policy::{Action, Reason};
use dataplane::wire::MacAddr;
use serde_json::json;
use std::time::{Duration, Instant};

/// Who the detectors' quarantines are by.
pub const DETECT_ACTOR: &str = "detect";

/// Services a first use of which is a high-severity alert: remote
/// administration and file sharing, how an intruder moves sideways.
const LATERAL: [(u8, u16); 9] = [
    (6, 22),
    (6, 23),
    (6, 135),
    (6, 139),
    (6, 445),
    (6, 3389),
    (6, 5900),
    (6, 5985),
    (6, 5986),
];

/// The detectors that are on, with their baselines.
pub(in crate::engine) struct Detectors {
    cfg: DetectConfig,
    scan: Option<ScanDetector>,
    first_seen: Option<FirstSeen>,
    fanout: Option<Fanout>,
    burst: Option<DenyBurst>,
    dns: Option<DnsDetector>,
    next_write: Instant,
}

impl Detectors {
    /// The detectors `cfg` turns on, with the baselines `store` holds.
    pub(in crate::engine) fn new(
        cfg: DetectConfig,
        store: &Store,
    ) -> Result<Detectors, StoreError> {
        let stored = store.baselines()?;
        let mut first_seen = cfg.services.map(FirstSeen::new);
        if let Some(f) = first_seen.as_mut() {
            f.load(stored.groups, stored.services);
        }
        let mut fanout = cfg.fanout.map(Fanout::new);
        if let Some(f) = fanout.as_mut() {
            f.load(stored.fanout);
        }
        let mut dns = cfg.dns.map(DnsDetector::new);
        if let Some(d) = dns.as_mut() {
            d.load(stored.names_started_ms, stored.names);
        }
        Ok(Detectors {
            scan: cfg.scan.map(ScanDetector::new),
            burst: cfg.deny_burst.map(DenyBurst::new),
            first_seen,
            fanout,
            dns,
            cfg,
            next_write: Instant::now(),
        })
    }

    /// What detection is doing, at `now_ms`.
    pub(in crate::engine) fn status(&self, now_ms: i64) -> DetectStatus {
        use crate::detect::status::*;
        use crate::records::time_text;
        let cfg = &self.cfg;
        let learns = |start: i64, window: i64| {
            let until = start.saturating_add(window);
            (time_text(until), now_ms < until)
        };
        let first_seen = self.first_seen.as_ref().map(|f| {
            let mut groups: Vec<GroupBaseline> = f
                .groups()
                .map(|(g, at)| {
                    let (learns_until, learning) = learns(at, cfg.limits([g]).baseline_ms);
                    GroupBaseline {
                        group: g.to_string(),
                        started: time_text(at),
                        learns_until,
                        learning,
                    }
                })
                .collect();
            groups.sort_by(|a, b| a.group.cmp(&b.group));
            FirstSeenStatus {
                services: f.len(),
                groups,
                suppressed: f.suppressed,
                full: f.full,
            }
        });
        let dns = self.dns.as_ref().zip(cfg.dns).map(|(d, c)| {
            let window = cfg.defaults().baseline_ms;
            let learning = d.started_ms().map(|s| learns(s, window));
            DnsStatus {
                window_secs: c.window.as_secs(),
                nxdomain: c.nxdomain,
                new_names: c.new_names,
                names: d.len(),
                started: d.started_ms().map(time_text),
                learns_until: learning.as_ref().map(|l| l.0.clone()),
                learning: learning.is_none_or(|l| l.1),
                untracked: d.untracked,
            }
        });
        DetectStatus {
            baseline_secs: cfg.baseline.as_secs(),
            scan: self.scan.as_ref().zip(cfg.scan).map(|(s, c)| ScanStatus {
                window_secs: c.window.as_secs(),
                ports: c.ports,
                hosts: c.hosts,
                sources: s.sources(),
                untracked: s.untracked,
            }),
            first_seen,
            fanout: self
                .fanout
                .as_ref()
                .zip(cfg.fanout)
                .map(|(f, c)| FanoutStatus {
                    peers: c.peers,
                    factor: c.factor,
                    workloads: f.baselines(),
                    untracked: f.untracked,
                }),
            deny_burst: self
                .burst
                .as_ref()
                .zip(cfg.deny_burst)
                .map(|(b, c)| BurstStatus {
                    window_secs: c.window.as_secs(),
                    flows: c.flows,
                    untracked: b.untracked,
                }),
            dns,
            respond: cfg
                .respond
                .iter()
                .map(|(k, s)| format!("{}:{s}", k.name()))
                .collect(),
        }
    }

    pub(in crate::engine) fn wants_dns(&self) -> bool {
        self.dns.is_some()
    }

    fn reads_flows(&self) -> bool {
        self.first_seen.is_some() || self.fanout.is_some() || self.burst.is_some()
    }

    fn writes(&mut self) -> BaselineWrites {
        let (names_started_ms, names) = self
            .dns
            .as_mut()
            .map(DnsDetector::take_writes)
            .unwrap_or_default();
        BaselineWrites {
            services: self
                .first_seen
                .as_mut()
                .map(FirstSeen::take_writes)
                .unwrap_or_default(),
            fanout: self
                .fanout
                .as_mut()
                .map(Fanout::take_writes)
                .unwrap_or_default(),
            names_started_ms,
            names,
        }
    }
}

fn now_ms() -> i64 {
    Timestamp::now().millis()
}

impl State {
    /// Counts `probe` (a failed attempt), and alerts if it completes a scan.
    pub(super) fn scan(&mut self, probe: Option<Probe>) {
        let (Some(p), Some(detector)) = (probe, self.detect.scan.as_mut()) else {
            return;
        };
        if let Some(found) = detector.probe(&p, Instant::now()) {
            let alert = self.scan_alert(found);
            self.detected(alert);
        }
    }

    /// A new flow: its source's services, peers and denied flows.
    pub(super) fn detect_flow(&mut self, r: &FlowRecord) {
        if !self.detect.reads_flows()
            || !r.src_mac.is_station()
            || matches!(r.verdict.reason, Reason::Quarantine | Reason::Intel(_))
        {
            return;
        }
        let now = now_ms();
        let snapshot = self.cell.load();
        let src = snapshot.endpoint_groups(r.src_mac, r.src_ip);
        let limits = self.detect.cfg.limits(src.iter().copied());
        let denied = r.verdict.action == Action::Deny || r.verdict.would_deny;
        let mut found = Vec::new();
        if let Some(f) = self.detect.first_seen.as_mut() {
            let dst = snapshot.endpoint_groups(r.dst_mac, r.dst_ip);
            let cfg = &self.detect.cfg;
            let flow = Flow {
                src_mac: r.src_mac,
                src: &src,
                dst: &dst,
                proto: r.proto,
                port: r.dst_port,
                now_ms: now,
            };
            if let Some(new) = f.flow(&flow, |g| cfg.limits([g]).baseline_ms) {
                found.push(self.first_seen_alert(r, new, now));
            }
        }
        if let Some(f) = self.detect.fanout.as_mut() {
            if let Some(fan) = f.contact(
                r.src_mac,
                r.dst_ip,
                now,
                limits.fanout_peers,
                limits.baseline_ms,
            ) {
                found.push(self.fanout_alert(r, fan, now));
            }
        }
        if let Some(b) = self.detect.burst.as_mut().filter(|_| denied) {
            let service = (
                r.proto,
                crate::detect::first_seen::keyed_port(r.proto, r.dst_port),
            );
            if let Some(burst) = b.denied(r.src_mac, r.dst_ip, service, now, limits.deny_burst) {
                found.push(self.burst_alert(r, burst, now));
            }
        }
        drop(snapshot);
        for a in found {
            self.detected(a);
        }
    }

    /// DNS answers: NXDOMAIN and never-seen names by client.
    pub(super) fn detect_dns(&mut self, responses: &[StoredDns]) {
        if self.detect.dns.is_none() {
            return;
        }
        let mut found = Vec::new();
        for d in responses {
            let client = d.response.client_mac;
            let limits = self
                .detect
                .cfg
                .limits(d.client.groups.iter().map(String::as_str));
            let Some(det) = self.detect.dns.as_mut() else {
                return;
            };
            let a = Answer {
                client,
                qname: &d.response.qname,
                rcode: d.response.rcode,
                now_ms: d.time_ms,
            };
            if let Some(f) = det.answer(&a, limits.nxdomain, limits.new_names, limits.baseline_ms) {
                found.push(self.dns_alert(d, f));
            }
        }
        for a in found {
            self.detected(a);
        }
    }

    /// Forgets every baseline, in the store and here: each learns again
    /// from its next flow (after a migration, a re-addressing, a policy
    /// overhaul). The detectors' windows start again too.
    pub(super) fn reset_baselines(&mut self) -> Result<(), StoreError> {
        self.store.clear_baselines()?;
        let cfg = self.detect.cfg.clone();
        self.detect = Detectors::new(cfg, &self.store)?;
        Ok(())
    }

    /// Writes what the baselines learned, at most once a second.
    pub(super) fn tick_detect(&mut self, now: Instant) {
        if now < self.detect.next_write {
            return;
        }
        self.detect.next_write = now + Duration::from_secs(1);
        let writes = self.detect.writes();
        if writes.is_empty() {
            return;
        }
        if let Err(e) = self.store.write_baselines(&writes, now_ms()) {
            super::set_text(
                &self.shared.last_error,
                Some(format!("storing detection baselines: {e}")),
            );
        }
    }

    /// Raises a detector's alert; quarantines its source if the config
    /// says this kind and severity do (once, when the alert is new: a
    /// person releases it).
    fn detected(&mut self, mut a: NewAlert) {
        let respond = self
            .detect
            .cfg
            .respond
            .iter()
            .any(|&(kind, least)| kind == a.kind && a.severity >= least)
            && !self.cell.load().is_quarantined(a.mac);
        if respond {
            a.summary.push_str("; quarantined automatically");
            if let Some(e) = a.evidence.as_object_mut() {
                e.insert("response".into(), json!("quarantine"));
            }
        }
        let Some(id) = self.alert(a.clone()) else {
            return;
        };
        if respond {
            let reason = format!("{} alert {id}: {}", a.kind.name(), a.indicator);
            self.quarantine_by(a.mac, &reason, DETECT_ACTOR);
        }
    }

    fn who(&self, mac: MacAddr) -> (Option<String>, String) {
        let name = self.workload_name(mac);
        let who = name.clone().unwrap_or_else(|| mac.to_string());
        (name, who)
    }

    fn scan_alert(&self, f: ScanFound) -> NewAlert {
        let (name, who) = self.who(f.src_mac);
        let what = match f.kind {
            ScanKind::Ports => format!("probed {} ports of {}", f.seen.len(), f.target),
            ScanKind::Hosts => format!("probed {} hosts on {}", f.seen.len(), f.target),
        };
        let summary = format!(
            "{who} ({}) {what} within {} s: {} failed attempts, {} denied by policy",
            f.src_ip,
            f.window.as_secs(),
            f.probes,
            f.denied
        );
        NewAlert {
            at_ms: now_ms(),
            kind: Kind::Scan,
            severity: Severity::Medium,
            mac: f.src_mac,
            workload: name,
            indicator: f.kind.name().to_string(),
            summary,
            evidence: json!({
                "scan": f.kind.name(),
                "src_ip": f.src_ip.to_string(),
                "target": f.target,
                "seen": f.seen,
                "failed_attempts": f.probes,
                "denied": f.denied,
                "window_secs": f.window.as_secs(),
            }),
        }
    }

    fn first_seen_alert(&self, r: &FlowRecord, new: NewService, at_ms: i64) -> NewAlert {
        let (name, who) = self.who(r.src_mac);
        let peer = self
            .workload_name(r.dst_mac)
            .unwrap_or_else(|| r.dst_ip.to_string());
        let service = service_name(new.proto, new.port);
        let pairs: Vec<String> = new
            .pairs
            .iter()
            .map(|(s, d)| format!("{s} -> {d}"))
            .collect();
        let verdict = match (r.verdict.action, r.verdict.would_deny) {
            (Action::Deny, _) => "denied",
            (Action::Allow, true) => "allowed, would be denied",
            (Action::Allow, false) => "allowed",
        };
        let lateral = LATERAL.contains(&(new.proto, new.port));
        NewAlert {
            at_ms,
            kind: Kind::FirstSeenService,
            severity: if lateral {
                Severity::High
            } else {
                Severity::Medium
            },
            mac: r.src_mac,
            workload: name,
            indicator: format!("{} {service}", pairs.first().map_or("", String::as_str)),
            summary: format!(
                "{who} ({}) used {service} to {peer} ({}): first time from {} ({verdict})",
                r.src_ip,
                r.dst_ip,
                pairs.join(", ")
            ),
            evidence: json!({
                "service": service,
                "pairs": pairs,
                "flow": flow_json(r),
                "would_deny": r.verdict.would_deny,
            }),
        }
    }

    fn fanout_alert(&self, r: &FlowRecord, f: FanoutFound, at_ms: i64) -> NewAlert {
        let (name, who) = self.who(f.mac);
        let examples: Vec<String> = f.examples.iter().map(ToString::to_string).collect();
        NewAlert {
            at_ms,
            kind: Kind::Fanout,
            severity: Severity::Medium,
            mac: f.mac,
            workload: name,
            indicator: "fan-out".into(),
            summary: format!(
                "{who} ({}) contacted {} distinct peers this hour: more than {} \
                 (its busiest hour of the baseline: {})",
                r.src_ip, f.peers, f.threshold, f.peak
            ),
            evidence: json!({
                "peers": f.peers,
                "threshold": f.threshold,
                "baseline_peak": f.peak,
                "examples": examples,
                "flow": flow_json(r),
            }),
        }
    }

    fn burst_alert(&self, r: &FlowRecord, b: BurstFound, at_ms: i64) -> NewAlert {
        let (name, who) = self.who(b.mac);
        let services: Vec<serde_json::Value> = b
            .services
            .iter()
            .map(|&((proto, port), n)| json!({"service": service_name(proto, port), "flows": n}))
            .collect();
        let hosts: Vec<String> = b.hosts.iter().map(ToString::to_string).collect();
        NewAlert {
            at_ms,
            kind: Kind::DenyBurst,
            severity: Severity::Medium,
            mac: b.mac,
            workload: name,
            indicator: "deny-burst".into(),
            summary: format!(
                "{who} ({}) started {} flows the policy denies within {} s",
                r.src_ip,
                b.flows,
                b.window_ms / 1000
            ),
            evidence: json!({
                "flows": b.flows,
                "window_secs": b.window_ms / 1000,
                "services": services,
                "hosts": hosts,
                "flow": flow_json(r),
            }),
        }
    }

    fn dns_alert(&self, d: &StoredDns, f: DnsFound) -> NewAlert {
        let (kind, client, count, names, window_ms, what) = match f {
            DnsFound::Nxdomain {
                client,
                count,
                names,
                window_ms,
            } => (
                Kind::DnsNxdomain,
                client,
                count,
                names,
                window_ms,
                "NXDOMAIN answers",
            ),
            DnsFound::NewNames {
                client,
                count,
                names,
                window_ms,
            } => (
                Kind::DnsNewNames,
                client,
                count,
                names,
                window_ms,
                "never-seen domains asked for",
            ),
        };
        let (name, who) = self.who(client);
        NewAlert {
            at_ms: d.time_ms,
            kind,
            severity: Severity::Medium,
            mac: client,
            workload: name,
            indicator: kind.name().into(),
            summary: format!(
                "{who} ({}): {count} {what} within {} s, as a DGA does",
                d.response.client_ip,
                window_ms / 1000
            ),
            evidence: json!({
                "count": count,
                "names": names,
                "window_secs": window_ms / 1000,
                "server": d.response.server_ip.to_string(),
                "last_query": d.response.qname,
            }),
        }
    }
}
