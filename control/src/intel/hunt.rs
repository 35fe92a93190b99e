//! Retro-hunt: when entries are added to a feed, the records of the
//! retention window are searched for them (a traceback each), and every
//! workload that resolved or contacted one *before* it was listed becomes
//! an `intel-retro` alert with what the traceback found. This closes the
//! gap between the malicious act and the indicator arriving.

use super::{Indicator, Intel};
use crate::alerts::{Kind, NewAlert};
use crate::records::{RecordsError, RecordsReader, Target, TracebackPage, TracedWorkload};
use serde_json::json;

/// Workloads alerted per entry at most (the traceback's page).
pub const MAX_WORKLOADS: usize = 25;
/// Resolutions and contacts kept in an alert's evidence at most.
const EVIDENCE: usize = 5;

/// What one retro-hunt found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hunt {
    pub alerts: Vec<NewAlert>,
    /// Entries searched.
    pub entries: usize,
    /// Milliseconds it took.
    pub took_ms: f64,
}

fn target(i: &Indicator) -> Target {
    match i {
        Indicator::Domain(d) => Target::Domain {
            name: d.clone(),
            exact: false,
        },
        Indicator::Net(n) => Target::Net(*n),
    }
}

fn summary(w: &TracedWorkload, listed: &str, feed: &str) -> String {
    let who = w
        .identity_then
        .as_ref()
        .map(|i| i.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| w.mac.clone());
    match (w.resolutions.first(), w.contacts.first()) {
        (Some(r), _) => format!(
            "{who} resolved {} at {}, before feed {feed} listed {listed}",
            r.qname, r.time
        ),
        (None, Some(c)) => format!(
            "{who} contacted {} at {}, before feed {feed} listed {listed}",
            c.ip, c.first
        ),
        (None, None) => format!("{who} reached {listed} before feed {feed} listed it"),
    }
}

/// Searches `reader`'s records in `[since_ms, until_ms]` for each of
/// `added` (entries of `intel`); `now_ms` is the alerts' time.
pub fn hunt(
    reader: &RecordsReader,
    intel: &Intel,
    added: &[Indicator],
    since_ms: i64,
    until_ms: i64,
) -> Result<Hunt, RecordsError> {
    let started = std::time::Instant::now();
    let mut out = Hunt::default();
    for indicator in added {
        let m = match indicator {
            Indicator::Domain(d) => intel.domain(d),
            Indicator::Net(n) => intel.ip(n.addr()),
        };
        let Some(m) = m else { continue };
        let (feed, severity, listed) = (m.feed.name.clone(), m.severity, indicator.to_string());
        let page = TracebackPage {
            limit: MAX_WORKLOADS,
            after: None,
        };
        let tb = reader.traceback_page(&target(indicator), since_ms, until_ms, page)?;
        out.entries += 1;
        for w in tb.workloads {
            let Ok(mac) = w.mac.parse() else { continue };
            let workload = w
                .identity_then
                .as_ref()
                .map(|i| i.name.clone())
                .filter(|n| !n.is_empty());
            out.alerts.push(NewAlert {
                at_ms: until_ms,
                kind: Kind::IntelRetro,
                severity,
                mac,
                workload,
                indicator: listed.clone(),
                summary: summary(&w, &listed, &feed),
                evidence: json!({
                    "entry": {"feed": feed, "listed": listed, "category": m.category},
                    "resolutions": w.resolutions.iter().take(EVIDENCE).collect::<Vec<_>>(),
                    "more_resolutions": w.resolutions.len().saturating_sub(EVIDENCE) as u64 + w.more_resolutions,
                    "contacts": w.contacts.iter().take(EVIDENCE).collect::<Vec<_>>(),
                    "addresses": w.addresses,
                    "identity_now": w.identity_now,
                }),
            });
        }
    }
    out.took_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(out)
}
