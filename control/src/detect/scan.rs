//! Scan detection: a source that probes many ports of one host (a port
//! scan) or many hosts on one port (a host sweep) within a window.
//!
//! Only failed attempts count, as Zeek's scan detection counts them, so
//! that a busy client of many services, or a monitoring system polling a
//! hundred hosts on one port, stays silent: a flow the policy denies (or
//! would deny, in audit), counted when it starts; a flow allowed but never
//! answered, or refused (a TCP reset within its first packets, no data),
//! counted when it ends. nmap's default scan through the appliance is a
//! thousand of those in seconds.
//!
//! Memory is bounded: sources tracked, targets a source, and what each
//! target remembers (the threshold's worth of distinct ports or hosts);
//! past the bound, new sources are not tracked (and counted).

use crate::services::service_text;
use dataplane::event::{EndReason, FlowRecord};
use dataplane::policy::Action;
use dataplane::wire::MacAddr;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Sources tracked at most.
pub const MAX_SOURCES: usize = 4096;
/// Hosts (for a port scan) or ports (for a host sweep) a source's window
/// tracks at most.
pub const MAX_TARGETS: usize = 1024;

/// Thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanConfig {
    pub window: Duration,
    /// Distinct ports of one host that make a port scan.
    pub ports: usize,
    /// Distinct hosts on one port that make a host sweep.
    pub hosts: usize,
}

impl Default for ScanConfig {
    /// Zeek's thresholds, in a shorter window: nmap's default scan crosses
    /// them in its first second.
    fn default() -> ScanConfig {
        ScanConfig {
            window: Duration::from_secs(60),
            ports: 15,
            hosts: 25,
        }
    }
}

/// What kind of scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKind {
    /// Many ports of one host.
    Ports,
    /// Many hosts on one port.
    Hosts,
}

impl ScanKind {
    /// The alert's indicator.
    pub fn name(self) -> &'static str {
        match self {
            ScanKind::Ports => "port-scan",
            ScanKind::Hosts => "host-sweep",
        }
    }
}

/// A failed attempt: who tried what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub src_mac: MacAddr,
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub proto: u8,
    /// 0 for protocols without ports.
    pub dst_port: u16,
    /// Denied (or would be) by the policy, rather than unanswered.
    pub denied: bool,
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;

impl Probe {
    /// A new flow the policy denies or would deny.
    pub fn at_start(r: &FlowRecord) -> Option<Probe> {
        let denied = r.verdict.action == Action::Deny || r.verdict.would_deny;
        denied.then(|| Probe::of(r, true))
    }

    /// An allowed flow that ended without an answer, or refused: a TCP
    /// reset within its first four packets and no data pushed. (A denied
    /// one was counted when it started.) Only a flow that ended on its
    /// own (idle, or its 5-tuple reused): one pushed out of a full table or
    /// flushed at a stop may just not have been answered yet.
    pub fn at_end(r: &FlowRecord, why: EndReason) -> Option<Probe> {
        let own = matches!(why, EndReason::Idle | EndReason::Reused);
        if !own || r.verdict.action == Action::Deny || r.verdict.would_deny {
            return None;
        }
        let unanswered = r.packets[1] == 0;
        let refused = r.proto == TCP
            && r.tcp_flags & RST != 0
            && r.tcp_flags & PSH == 0
            && r.packets[0].saturating_add(r.packets[1]) <= 4;
        (unanswered || refused).then(|| Probe::of(r, false))
    }

    fn of(r: &FlowRecord, denied: bool) -> Probe {
        Probe {
            src_mac: r.src_mac,
            src_ip: r.src_ip,
            dst_ip: r.dst_ip,
            proto: r.proto,
            dst_port: if matches!(r.proto, TCP | UDP) {
                r.dst_port
            } else {
                0
            },
            denied,
        }
    }
}

/// A scan found: the first time a source crosses a threshold in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanFound {
    pub kind: ScanKind,
    pub src_mac: MacAddr,
    pub src_ip: IpAddr,
    /// The host scanned (port scan), or `proto/port` swept (host sweep).
    pub target: String,
    /// The distinct ports or hosts seen, as text, in the order seen.
    pub seen: Vec<String>,
    /// Failed attempts in the window so far, and how many the policy denied.
    pub probes: u64,
    pub denied: u64,
    pub window: Duration,
}

/// One source's window.
#[derive(Debug)]
struct Source {
    started: Instant,
    /// Distinct (proto, port) a host, until a port scan is found.
    by_host: HashMap<IpAddr, Vec<(u8, u16)>>,
    /// Distinct hosts a (proto, port), until a host sweep is found.
    by_port: HashMap<(u8, u16), Vec<IpAddr>>,
    probes: u64,
    denied: u64,
    found: [bool; 2],
}

impl Source {
    fn new(now: Instant) -> Source {
        Source {
            started: now,
            by_host: HashMap::new(),
            by_port: HashMap::new(),
            probes: 0,
            denied: 0,
            found: [false; 2],
        }
    }
}

/// Adds `item` to the distinct items of `key` (if `map` has room for the
/// key); the items if there are now `threshold` of them.
fn distinct<K: std::hash::Hash + Eq, T: PartialEq + Copy>(
    map: &mut HashMap<K, Vec<T>>,
    key: K,
    item: T,
    threshold: usize,
) -> Option<Vec<T>> {
    if map.len() >= MAX_TARGETS && !map.contains_key(&key) {
        return None;
    }
    let items = map.entry(key).or_default();
    if !items.contains(&item) {
        items.push(item);
    }
    (items.len() >= threshold).then(|| items.clone())
}

/// Failed attempts by source, in windows; see the module's documentation.
#[derive(Debug)]
pub struct ScanDetector {
    cfg: ScanConfig,
    sources: HashMap<MacAddr, Source>,
    /// Probes of sources not tracked (the table was full).
    pub untracked: u64,
}

impl ScanDetector {
    pub fn new(cfg: ScanConfig) -> ScanDetector {
        ScanDetector {
            cfg,
            sources: HashMap::new(),
            untracked: 0,
        }
    }

    /// Sources tracked now.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Counts `p` at `now`; a scan if this probe made a source cross a
    /// threshold for the first time in its window (once a kind a window).
    pub fn probe(&mut self, p: &Probe, now: Instant) -> Option<ScanFound> {
        let window = self.cfg.window;
        if !self.sources.contains_key(&p.src_mac) && self.sources.len() >= MAX_SOURCES {
            self.sources
                .retain(|_, s| now.saturating_duration_since(s.started) < window);
            if self.sources.len() >= MAX_SOURCES {
                self.untracked += 1;
                return None;
            }
        }
        let s = self
            .sources
            .entry(p.src_mac)
            .or_insert_with(|| Source::new(now));
        if now.saturating_duration_since(s.started) >= window {
            *s = Source::new(now);
        }
        s.probes += 1;
        s.denied += u64::from(p.denied);
        let service = (p.proto, p.dst_port);
        let mut found = None;
        if !s.found[0] {
            if let Some(ports) = distinct(&mut s.by_host, p.dst_ip, service, self.cfg.ports) {
                s.found[0] = true;
                s.by_host = HashMap::new();
                found = Some((
                    ScanKind::Ports,
                    p.dst_ip.to_string(),
                    ports
                        .iter()
                        .map(|&(pr, port)| service_text(pr, port))
                        .collect(),
                ));
            }
        }
        if !s.found[1] && found.is_none() {
            if let Some(hosts) = distinct(&mut s.by_port, service, p.dst_ip, self.cfg.hosts) {
                s.found[1] = true;
                s.by_port = HashMap::new();
                found = Some((
                    ScanKind::Hosts,
                    service_text(p.proto, p.dst_port),
                    hosts.iter().map(IpAddr::to_string).collect(),
                ));
            }
        }
        let (kind, target, seen) = found?;
        Some(ScanFound {
            kind,
            src_mac: p.src_mac,
            src_ip: p.src_ip,
            target,
            seen,
            probes: s.probes,
            denied: s.denied,
            window,
        })
    }
}

#[cfg(test)]
mod tests;
