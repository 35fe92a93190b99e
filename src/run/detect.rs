//! The `[detect]` section: anomaly detection's thresholds, baselines and
//! automatic response.
//!
//! ```toml
//! [detect]
//! baseline = "7d"     # how long a baseline learns before new counts as new
//! respond = []        # e.g. ["scan:medium", "first-seen-service:high"]:
//!                     # quarantine the source of such alerts (off by default)
//!
//! [detect.scan]
//! enabled = true
//! window_secs = 60   # a source's failed attempts are counted over this
//! ports = 15         # distinct ports of one host: a port scan
//! hosts = 25         # distinct hosts on one port: a host sweep
//!
//! [detect.first_seen]   # a group pair's service never seen in the baseline
//! enabled = true
//! per_source = 5        # new services alerted a source at most ...
//! per_secs = 600        # ... in this long (past it: a scan)
//!
//! [detect.fanout]       # distinct peers an hour against the busiest hour
//! enabled = true
//! peers = 64            # never alerted at or below this many
//! factor = 4            # nor at or below this many times the busiest hour
//!
//! [detect.deny_burst]
//! enabled = true
//! window_secs = 60
//! flows = 100           # denied flows one workload starts in the window
//!
//! [detect.dns]
//! enabled = true
//! window_secs = 300
//! nxdomain = 30         # NXDOMAIN answers to one client in the window
//! new_names = 50        # never-seen registered domains one client asks for
//!
//! [detect.groups.db]    # a group's own; a workload in several groups
//! baseline = "14d"      # gets the most lenient of them
//! fanout_peers = 16
//! deny_burst = 20
//! nxdomain = 10
//! new_names = 20
//! ```

use anyhow::Context;
use control::alerts::Kind;
use control::detect::{
    BurstConfig, DetectConfig, DnsConfig, FanoutConfig, GroupLimits, ScanConfig, ServicesConfig,
};
use control::intel::Severity;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSection {
    pub baseline: String,
    pub respond: Vec<String>,
    pub scan: ScanSection,
    pub first_seen: FirstSeenSection,
    pub fanout: FanoutSection,
    pub deny_burst: BurstSection,
    pub dns: DnsSection,
    pub groups: BTreeMap<String, GroupSection>,
}

impl Default for DetectSection {
    fn default() -> Self {
        DetectSection {
            baseline: "7d".into(),
            respond: Vec::new(),
            scan: ScanSection::default(),
            first_seen: FirstSeenSection::default(),
            fanout: FanoutSection::default(),
            deny_burst: BurstSection::default(),
            dns: DnsSection::default(),
            groups: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanSection {
    pub enabled: bool,
    pub window_secs: u64,
    pub ports: usize,
    pub hosts: usize,
}

impl Default for ScanSection {
    fn default() -> Self {
        let d = ScanConfig::default();
        ScanSection {
            enabled: true,
            window_secs: d.window.as_secs(),
            ports: d.ports,
            hosts: d.hosts,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirstSeenSection {
    pub enabled: bool,
    pub per_source: u32,
    pub per_secs: u64,
}

impl Default for FirstSeenSection {
    fn default() -> Self {
        let d = ServicesConfig::default();
        FirstSeenSection {
            enabled: true,
            per_source: d.per_source,
            per_secs: d.per.as_secs(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FanoutSection {
    pub enabled: bool,
    pub peers: u32,
    pub factor: u32,
}

impl Default for FanoutSection {
    fn default() -> Self {
        let d = FanoutConfig::default();
        FanoutSection {
            enabled: true,
            peers: d.peers,
            factor: d.factor,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BurstSection {
    pub enabled: bool,
    pub window_secs: u64,
    pub flows: u32,
}

impl Default for BurstSection {
    fn default() -> Self {
        let d = BurstConfig::default();
        BurstSection {
            enabled: true,
            window_secs: d.window.as_secs(),
            flows: d.flows,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSection {
    pub enabled: bool,
    pub window_secs: u64,
    pub nxdomain: u32,
    pub new_names: u32,
}

impl Default for DnsSection {
    fn default() -> Self {
        let d = DnsConfig::default();
        DnsSection {
            enabled: true,
            window_secs: d.window.as_secs(),
            nxdomain: d.nxdomain,
            new_names: d.new_names,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSection {
    pub baseline: Option<String>,
    pub fanout_peers: Option<u32>,
    pub deny_burst: Option<u32>,
    pub nxdomain: Option<u32>,
    pub new_names: Option<u32>,
}

fn window(key: &str, secs: u64) -> anyhow::Result<Duration> {
    if !(1..=86_400).contains(&secs) {
        anyhow::bail!("{key}: 1 to 86400");
    }
    Ok(Duration::from_secs(secs))
}

fn at_least(key: &str, v: u32, least: u32) -> anyhow::Result<u32> {
    if v < least {
        anyhow::bail!("{key}: at least {least}");
    }
    Ok(v)
}

/// A baseline window: `7d`, `36h`, `30s`; at most a year.
fn baseline(key: &str, text: &str) -> anyhow::Result<Duration> {
    let d = humantime::parse_duration(text.trim())
        .with_context(|| format!("{key}: {text:?} is not a duration like 7d, 36h or 30s"))?;
    if d > Duration::from_secs(366 * 86_400) {
        anyhow::bail!("{key}: at most a year");
    }
    Ok(d)
}

/// `kind:severity` (the least severity that quarantines), or `kind` (any).
fn response(key: &str, text: &str) -> anyhow::Result<(Kind, Severity)> {
    let (kind, severity) = match text.split_once(':') {
        Some((k, s)) => (k, Some(s)),
        None => (text, None),
    };
    let kind: Kind = kind
        .trim()
        .parse()
        .map_err(|e: String| anyhow::anyhow!("{key}: {e}"))?;
    let severity = match severity {
        Some(s) => s
            .trim()
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{key}: {e}"))?,
        None => Severity::Low,
    };
    Ok((kind, severity))
}

impl DetectSection {
    /// Scan detection's thresholds, checked (`None`: off).
    pub fn scan(&self) -> anyhow::Result<Option<ScanConfig>> {
        let s = &self.scan;
        if !s.enabled {
            return Ok(None);
        }
        let max = control::detect::scan::MAX_TARGETS;
        for (name, v) in [("ports", s.ports), ("hosts", s.hosts)] {
            if !(2..=max).contains(&v) {
                anyhow::bail!("detect.scan.{name}: 2 to {max}");
            }
        }
        Ok(Some(ScanConfig {
            window: window("detect.scan.window_secs", s.window_secs)?,
            ports: s.ports,
            hosts: s.hosts,
        }))
    }

    /// Every detector's settings, checked.
    pub fn config(&self) -> anyhow::Result<DetectConfig> {
        let f = &self.first_seen;
        let services = f
            .enabled
            .then(|| -> anyhow::Result<ServicesConfig> {
                Ok(ServicesConfig {
                    per_source: at_least("detect.first_seen.per_source", f.per_source, 1)?,
                    per: window("detect.first_seen.per_secs", f.per_secs)?,
                })
            })
            .transpose()?;
        let o = &self.fanout;
        let fanout = o
            .enabled
            .then(|| -> anyhow::Result<FanoutConfig> {
                Ok(FanoutConfig {
                    peers: at_least("detect.fanout.peers", o.peers, 2)?,
                    factor: at_least("detect.fanout.factor", o.factor, 1)?,
                })
            })
            .transpose()?;
        let b = &self.deny_burst;
        let deny_burst = b
            .enabled
            .then(|| -> anyhow::Result<BurstConfig> {
                Ok(BurstConfig {
                    window: window("detect.deny_burst.window_secs", b.window_secs)?,
                    flows: at_least("detect.deny_burst.flows", b.flows, 2)?,
                })
            })
            .transpose()?;
        let d = &self.dns;
        let dns = d
            .enabled
            .then(|| -> anyhow::Result<DnsConfig> {
                Ok(DnsConfig {
                    window: window("detect.dns.window_secs", d.window_secs)?,
                    nxdomain: at_least("detect.dns.nxdomain", d.nxdomain, 2)?,
                    new_names: at_least("detect.dns.new_names", d.new_names, 2)?,
                })
            })
            .transpose()?;
        let mut groups = BTreeMap::new();
        for (name, g) in &self.groups {
            let key = |k: &str| format!("detect.groups.{name}.{k}");
            groups.insert(
                name.clone(),
                GroupLimits {
                    baseline: g
                        .baseline
                        .as_deref()
                        .map(|t| baseline(&key("baseline"), t))
                        .transpose()?,
                    fanout_peers: g
                        .fanout_peers
                        .map(|v| at_least(&key("fanout_peers"), v, 2))
                        .transpose()?,
                    deny_burst: g
                        .deny_burst
                        .map(|v| at_least(&key("deny_burst"), v, 2))
                        .transpose()?,
                    nxdomain: g
                        .nxdomain
                        .map(|v| at_least(&key("nxdomain"), v, 2))
                        .transpose()?,
                    new_names: g
                        .new_names
                        .map(|v| at_least(&key("new_names"), v, 2))
                        .transpose()?,
                },
            );
        }
        let respond = self
            .respond
            .iter()
            .enumerate()
            .map(|(i, r)| response(&format!("detect.respond[{i}]"), r))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(DetectConfig {
            scan: self.scan()?,
            services,
            fanout,
            deny_burst,
            dns,
            baseline: baseline("detect.baseline", &self.baseline)?,
            groups,
            respond,
        })
    }
}
