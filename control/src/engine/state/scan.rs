//! Scan detection on the control thread: each failed attempt a flow event
//! shows goes to the detector (`crate::detect::scan`), and a scan it finds
//! becomes a `scan` alert about the source, deduplicated like any (one
//! alert a source and kind, its count raised by each later window).

use super::State;
use crate::alerts::{Kind, NewAlert};
use crate::detect::{Probe, ScanFound, ScanKind};
use crate::intel::Severity;
use serde_json::json;
use std::time::Instant;

impl State {
    /// Counts `probe` (a failed attempt), and alerts if it completes a scan.
    pub(super) fn scan(&mut self, probe: Option<Probe>) {
        let (Some(p), Some(detector)) = (probe, self.scan.as_mut()) else {
            return;
        };
        if let Some(found) = detector.probe(&p, Instant::now()) {
            let alert = self.scan_alert(found);
            self.alert(alert);
        }
    }

    fn scan_alert(&self, f: ScanFound) -> NewAlert {
        let name = self.workload_name(f.src_mac);
        let who = name.clone().unwrap_or_else(|| f.src_mac.to_string());
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
            at_ms: crate::time::Timestamp::now().millis(),
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
}
