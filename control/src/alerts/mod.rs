//! Alerts: one model for every source (threat intel now, anomaly detection
//! next). An alert names a workload by MAC (and its name then), a kind, an
//! indicator (what matched: a listed address or domain, a port), a severity,
//! a one-line summary and its evidence; people move it from open to
//! acknowledged to closed, and who did is kept.
//!
//! [`Alerter`] stands between the sources and the store, on the control
//! thread: the same kind for the same workload and indicator within the
//! window raises the count of the alert already open (written once a second,
//! not once a packet), and new alerts are rate-limited, so a flood raises a
//! handful of alerts and a counter of the rest, not millions of rows.

pub mod deliver;
#[cfg(any(test, feature = "test-support"))]
pub mod receiver;
pub mod webhook;

use crate::intel::Severity;
use crate::store::{Store, StoreError};
use dataplane::wire::MacAddr;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// What raised an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A flow to or from an address a feed lists.
    IntelIp,
    /// A DNS answer for a name a feed lists (or one on its CNAME chain).
    IntelDns,
    /// Found by retro-hunt: a workload resolved or contacted an entry
    /// before the entry was listed.
    IntelRetro,
    /// A workload probed many ports of a host, or many hosts on a port
    /// (`crate::detect::scan`).
    Scan,
    /// A group pair used a service never seen in its baseline
    /// (`crate::detect::first_seen`).
    FirstSeenService,
    /// A workload contacted many more peers than in its baseline
    /// (`crate::detect::fanout`).
    Fanout,
    /// A workload started many flows the policy denies
    /// (`crate::detect::burst`).
    DenyBurst,
    /// A client got many NXDOMAIN answers (`crate::detect::dns`).
    DnsNxdomain,
    /// A client asked for many never-seen names (`crate::detect::dns`).
    DnsNewNames,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::IntelIp,
        Kind::IntelDns,
        Kind::IntelRetro,
        Kind::Scan,
        Kind::FirstSeenService,
        Kind::Fanout,
        Kind::DenyBurst,
        Kind::DnsNxdomain,
        Kind::DnsNewNames,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::IntelIp => "intel-ip",
            Kind::IntelDns => "intel-dns",
            Kind::IntelRetro => "intel-retro",
            Kind::Scan => "scan",
            Kind::FirstSeenService => "first-seen-service",
            Kind::Fanout => "fan-out",
            Kind::DenyBurst => "deny-burst",
            Kind::DnsNxdomain => "dns-nxdomain",
            Kind::DnsNewNames => "dns-new-names",
        }
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("kind {s:?}: expected one of {}", names.join(", "))
            })
    }
}

/// Where an alert is in its handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Open,
    Acknowledged,
    Closed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Acknowledged => "acknowledged",
            State::Closed => "closed",
        }
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<State, String> {
        match s {
            "open" => Ok(State::Open),
            "acknowledged" => Ok(State::Acknowledged),
            "closed" => Ok(State::Closed),
            _ => Err(format!(
                "state {s:?}: expected open, acknowledged or closed"
            )),
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An alert as a source raises it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// When it happened, ms since the epoch.
    pub at_ms: i64,
    pub kind: Kind,
    pub severity: Severity,
    /// The workload it is about.
    pub mac: MacAddr,
    /// Its name then, if it has one.
    pub workload: Option<String>,
    /// What matched: a listed address, network or domain.
    pub indicator: String,
    pub summary: String,
    /// The records that show it (flow, DNS answer, the matching entry), as
    /// JSON.
    pub evidence: serde_json::Value,
}

/// An alert as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    /// Times it was raised (1, then each repeat within the window).
    pub count: u64,
    pub kind: Kind,
    pub severity: Severity,
    pub mac: String,
    pub workload: Option<String>,
    pub indicator: String,
    pub summary: String,
    pub evidence: serde_json::Value,
    pub state: State,
    /// Who last changed the state, and when (ms).
    pub state_by: Option<String>,
    pub state_ms: Option<i64>,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub state: Option<State>,
    pub kind: Option<Kind>,
    /// At least this severe.
    pub severity: Option<Severity>,
    pub mac: Option<String>,
    /// Last raised at or after (ms).
    pub since_ms: Option<i64>,
    /// Ids below this one (paging, newest first).
    pub before: Option<i64>,
    pub limit: usize,
}

/// How alerts are deduplicated and limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertConfig {
    /// A repeat within this long raises the count of the alert still open.
    pub window_ms: i64,
    /// New alerts a minute at most; past it they are counted, not stored.
    pub per_minute: u32,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            window_ms: 3_600_000,
            per_minute: 60,
        }
    }
}

/// What the alerter did since the start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertCounters {
    /// New alerts stored, by kind and severity.
    pub raised: HashMap<(Kind, Severity), u64>,
    /// Repeats folded into an alert already open.
    pub repeats: u64,
    /// New alerts not stored: over the rate limit.
    pub suppressed: u64,
    /// Writes that failed (the store said why in `last_error`).
    pub errors: u64,
}

/// What the dedup key remembers of an alert.
#[derive(Debug, Clone, Copy)]
struct Open {
    id: i64,
    last_ms: i64,
    /// Repeats not written yet.
    pending: u64,
}

type Key = (Kind, MacAddr, String);

/// Deduplication and rate limiting in front of the store.
#[derive(Debug)]
pub struct Alerter {
    cfg: AlertConfig,
    open: HashMap<Key, Open>,
    /// The rate limit's minute and what it let through in it.
    minute: i64,
    in_minute: u32,
    counters: AlertCounters,
    /// Alerts stored since the caller last took them (for delivery).
    fresh: Vec<i64>,
    /// Repeats counted since the last flush (of every key).
    pending: u64,
}

/// Dedup keys kept at most; past it the oldest are forgotten (a repeat of
/// a forgotten one is a new alert, rate-limited like any).
const MAX_KEYS: usize = 65_536;

impl Alerter {
    pub fn new(cfg: AlertConfig) -> Alerter {
        Alerter {
            cfg,
            open: HashMap::new(),
            minute: i64::MIN,
            in_minute: 0,
            counters: AlertCounters::default(),
            fresh: Vec::new(),
            pending: 0,
        }
    }

    pub fn counters(&self) -> &AlertCounters {
        &self.counters
    }

    /// Raises `a`: a repeat of an alert raised within the window is
    /// counted (written at the next [`Alerter::flush`]); a new one is
    /// stored now, unless the rate limit is spent. Returns the new alert's
    /// id, if one was stored.
    pub fn raise(&mut self, a: &NewAlert, store: &mut Store) -> Result<Option<i64>, StoreError> {
        let key = (a.kind, a.mac, a.indicator.clone());
        if let Some(o) = self.open.get_mut(&key) {
            if a.at_ms.saturating_sub(o.last_ms) <= self.cfg.window_ms {
                o.last_ms = o.last_ms.max(a.at_ms);
                o.pending += 1;
                self.pending += 1;
                self.counters.repeats += 1;
                return Ok(None);
            }
        }
        let minute = a.at_ms.div_euclid(60_000);
        if minute != self.minute {
            self.minute = minute;
            self.in_minute = 0;
        }
        if self.in_minute >= self.cfg.per_minute {
            self.counters.suppressed += 1;
            return Ok(None);
        }
        let id = match store.insert_alert(a) {
            Ok(id) => id,
            Err(e) => {
                self.counters.errors += 1;
                return Err(e);
            }
        };
        self.in_minute += 1;
        *self
            .counters
            .raised
            .entry((a.kind, a.severity))
            .or_default() += 1;
        if self.open.len() >= MAX_KEYS {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, o)| o.last_ms)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.open.remove(&k);
            }
        }
        self.open.insert(
            key,
            Open {
                id,
                last_ms: a.at_ms,
                pending: 0,
            },
        );
        self.fresh.push(id);
        Ok(Some(id))
    }

    /// Writes the repeats counted since the last flush (one transaction),
    /// and forgets keys whose window is over at `now_ms`. A repeat of an
    /// alert closed meanwhile is dropped with its key: the next one raises
    /// a new alert.
    pub fn flush(&mut self, store: &mut Store, now_ms: i64) -> Result<(), StoreError> {
        let bumps: Vec<(i64, u64, i64)> = self
            .open
            .values()
            .filter(|o| o.pending > 0)
            .map(|o| (o.id, o.pending, o.last_ms))
            .collect();
        if !bumps.is_empty() {
            let gone = match store.bump_alerts(&bumps) {
                Ok(gone) => gone,
                Err(e) => {
                    self.counters.errors += 1;
                    return Err(e);
                }
            };
            self.open.retain(|_, o| !gone.contains(&o.id));
            for o in self.open.values_mut() {
                o.pending = 0;
            }
        }
        self.pending = 0;
        let window = self.cfg.window_ms;
        self.open
            .retain(|_, o| now_ms.saturating_sub(o.last_ms) <= window);
        Ok(())
    }

    /// Whether repeats wait for a flush.
    pub fn pending(&self) -> bool {
        self.pending > 0
    }

    /// The ids of alerts stored since the last call.
    pub fn take_fresh(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.fresh)
    }
}

#[cfg(test)]
mod tests;
