//! The `[detect]` section: anomaly detection's thresholds.
//!
//! ```toml
//! [detect.scan]
//! enabled = true
//! window_secs = 60   # a source's failed attempts are counted over this
//! ports = 15         # distinct ports of one host: a port scan
//! hosts = 25         # distinct hosts on one port: a host sweep
//! ```

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSection {
    pub scan: ScanSection,
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
        let d = control::detect::ScanConfig::default();
        ScanSection {
            enabled: true,
            window_secs: d.window.as_secs(),
            ports: d.ports,
            hosts: d.hosts,
        }
    }
}

impl DetectSection {
    /// Scan detection's thresholds, checked (`None`: off).
    pub fn scan(&self) -> anyhow::Result<Option<control::detect::ScanConfig>> {
        let s = &self.scan;
        if !s.enabled {
            return Ok(None);
        }
        if !(1..=3600).contains(&s.window_secs) {
            anyhow::bail!("detect.scan.window_secs: 1 to 3600");
        }
        let max = control::detect::scan::MAX_TARGETS;
        for (name, v) in [("ports", s.ports), ("hosts", s.hosts)] {
            if !(2..=max).contains(&v) {
                anyhow::bail!("detect.scan.{name}: 2 to {max}");
            }
        }
        Ok(Some(control::detect::ScanConfig {
            window: Duration::from_secs(s.window_secs),
            ports: s.ports,
            hosts: s.hosts,
        }))
    }
}
