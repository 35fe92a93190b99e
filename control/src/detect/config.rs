//! What the detectors look for: each one's thresholds (or off), the
//! baseline window, per-group overrides, and which alerts quarantine their
//! source on their own.

use super::ScanConfig;
use crate::alerts::Kind;
use crate::intel::Severity;
use std::collections::BTreeMap;
use std::time::Duration;

/// Every detector's settings; `None`: that detector is off.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectConfig {
    pub scan: Option<ScanConfig>,
    /// First-seen services between groups.
    pub services: Option<ServicesConfig>,
    pub fanout: Option<FanoutConfig>,
    pub deny_burst: Option<BurstConfig>,
    pub dns: Option<DnsConfig>,
    /// How long a group's (or a workload's, or the DNS names') baseline
    /// learns before anything new counts as new.
    pub baseline: Duration,
    /// Overrides by group name.
    pub groups: BTreeMap<String, GroupLimits>,
    /// Alerts that quarantine their source when raised: a kind and the
    /// least severity that does. Off unless listed.
    pub respond: Vec<(Kind, Severity)>,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            scan: Some(ScanConfig::default()),
            services: Some(ServicesConfig::default()),
            fanout: Some(FanoutConfig::default()),
            deny_burst: Some(BurstConfig::default()),
            dns: Some(DnsConfig::default()),
            baseline: Duration::from_secs(7 * 86_400),
            groups: BTreeMap::new(),
            respond: Vec::new(),
        }
    }
}

/// First-seen services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServicesConfig {
    /// New services alerted a source at most in [`ServicesConfig::per`]; past
    /// it they are neither alerted nor learned (a scan is the scan
    /// detector's).
    pub per_source: u32,
    pub per: Duration,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            per_source: 5,
            per: Duration::from_secs(600),
        }
    }
}

/// Fan-out against the workload's own baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutConfig {
    /// Distinct peers an hour a workload may contact before it is counted
    /// at all, whatever its baseline.
    pub peers: u32,
    /// ... and at most this many times its busiest hour of the baseline.
    pub factor: u32,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            peers: 64,
            factor: 4,
        }
    }
}

/// Bursts of denied (or would-deny) flows from one workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurstConfig {
    pub window: Duration,
    /// Denied flow starts in the window that make a burst.
    pub flows: u32,
}

impl Default for BurstConfig {
    fn default() -> Self {
        BurstConfig {
            window: Duration::from_secs(60),
            flows: 100,
        }
    }
}

/// DNS: NXDOMAIN answers and never-seen names, by client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsConfig {
    pub window: Duration,
    /// NXDOMAIN answers to one client in the window.
    pub nxdomain: u32,
    /// Distinct registered domains, never answered before, one client asked
    /// for in the window.
    pub new_names: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            window: Duration::from_secs(300),
            nxdomain: 30,
            new_names: 50,
        }
    }
}

/// A group's overrides; unset ones keep the appliance's. A workload in
/// several groups gets, for each, the most lenient of its groups' (the
/// longest baseline, the highest threshold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupLimits {
    pub baseline: Option<Duration>,
    pub fanout_peers: Option<u32>,
    pub deny_burst: Option<u32>,
    pub nxdomain: Option<u32>,
    pub new_names: Option<u32>,
}

/// What applies to one workload (or one group pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub baseline_ms: i64,
    pub fanout_peers: u32,
    pub deny_burst: u32,
    pub nxdomain: u32,
    pub new_names: u32,
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl GroupLimits {
    fn over(&self, d: Limits) -> Limits {
        Limits {
            baseline_ms: self.baseline.map_or(d.baseline_ms, millis),
            fanout_peers: self.fanout_peers.unwrap_or(d.fanout_peers),
            deny_burst: self.deny_burst.unwrap_or(d.deny_burst),
            nxdomain: self.nxdomain.unwrap_or(d.nxdomain),
            new_names: self.new_names.unwrap_or(d.new_names),
        }
    }
}

impl Limits {
    fn lenient(self, o: Limits) -> Limits {
        Limits {
            baseline_ms: self.baseline_ms.max(o.baseline_ms),
            fanout_peers: self.fanout_peers.max(o.fanout_peers),
            deny_burst: self.deny_burst.max(o.deny_burst),
            nxdomain: self.nxdomain.max(o.nxdomain),
            new_names: self.new_names.max(o.new_names),
        }
    }
}

impl DetectConfig {
    /// The appliance's own limits (a detector that is off: never reached).
    pub fn defaults(&self) -> Limits {
        Limits {
            baseline_ms: millis(self.baseline),
            fanout_peers: self.fanout.map_or(u32::MAX, |f| f.peers),
            deny_burst: self.deny_burst.map_or(u32::MAX, |b| b.flows),
            nxdomain: self.dns.map_or(u32::MAX, |d| d.nxdomain),
            new_names: self.dns.map_or(u32::MAX, |d| d.new_names),
        }
    }

    /// The limits for an end in `groups`: each group's (its overrides, else
    /// the appliance's), the most lenient of them; the appliance's for an
    /// end in no group.
    pub fn limits<'a>(&self, groups: impl IntoIterator<Item = &'a str>) -> Limits {
        let d = self.defaults();
        if self.groups.is_empty() {
            return d;
        }
        groups
            .into_iter()
            .map(|g| self.groups.get(g).map_or(d, |o| o.over(d)))
            .reduce(Limits::lenient)
            .unwrap_or(d)
    }
}
