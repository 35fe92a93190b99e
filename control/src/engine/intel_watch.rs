//! The feed watcher: a thread of its own (at nice 10, like the records
//! writer) that reads the threat-intel feeds and hands each new reading to
//! the control thread. Reading a million-line feed takes about a second:
//! never on the control thread, which must answer a quarantine meanwhile.

use super::handle::{ControlError, ControlHandle};
use crate::intel::feeds::{Loaded, Loader, ManagedDone, ManagedEntry, ManagedOp};
use crate::intel::{Indicator, Intel};
use crate::records::RecordsReader;
use crossbeam_channel::{RecvTimeoutError, Sender};
use dataplane::wire::MacAddr;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use std::time::Instant;

/// The running watcher. It stops when the control thread does.
pub struct IntelWatch {
    pub thread: JoinHandle<()>,
}

/// Where retro-hunt searches: the records store and how far back.
#[derive(Debug, Clone)]
pub struct HuntPlan {
    pub records: PathBuf,
    pub window_ms: i64,
}

/// What the last retro-hunt did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HuntReport {
    /// When it ran (ms since the epoch).
    pub at_ms: i64,
    /// Entries added by the reading, searched, and past the cap.
    pub added: usize,
    pub searched: usize,
    pub not_searched: usize,
    /// Alerts it raised (before deduplication).
    pub alerts: usize,
    pub took_ms: f64,
    pub error: Option<String>,
}

/// What the watcher is asked, besides its own polling.
pub(super) enum WatchRequest {
    /// Read every feed now.
    Reload,
    /// Change the API-managed feeds, put them in force, answer (then hunt
    /// what was added).
    Manage(ManagedOp, Sender<Result<ManagedDone, ControlError>>),
    /// A managed feed's entries: offset, limit.
    List(
        String,
        usize,
        usize,
        Sender<Result<(Vec<ManagedEntry>, usize), ControlError>>,
    ),
}

/// A resolution reaches the passive DNS that traceback reads up to ~6 s
/// after it happened (the records' batch, then the rollups' flush): the
/// entries a reading added are searched again this long after, over the
/// same window, so that a resolution made just before the entry was listed
/// is found too.
const REHUNT_AFTER: Duration = Duration::from_secs(8);

/// A second search due.
struct Rehunt {
    at: Instant,
    intel: Arc<Intel>,
    added: Vec<Indicator>,
    since_ms: i64,
    until_ms: i64,
    /// Workloads the first search alerted about, by indicator.
    found: HashSet<(String, MacAddr)>,
    report: HuntReport,
}

/// The retro-hunts of what readings added: the first search at once, the
/// second [`REHUNT_AFTER`] later.
struct Hunter {
    plan: Option<HuntPlan>,
    pending: Vec<Rehunt>,
}

impl Hunter {
    /// Hunts the entries a reading added in the records.
    fn hunt_added(
        &mut self,
        control: &ControlHandle,
        intel: &Arc<Intel>,
        added: Vec<Indicator>,
        over: usize,
    ) -> Result<(), ControlError> {
        let Some(plan) = self.plan.as_ref().filter(|_| !added.is_empty()) else {
            return Ok(());
        };
        let now = crate::time::Timestamp::now().millis();
        let since = now.saturating_sub(plan.window_ms);
        let mut report = HuntReport {
            at_ms: now,
            added: added.len() + over,
            not_searched: over,
            ..HuntReport::default()
        };
        let found = RecordsReader::open(&plan.records)
            .and_then(|r| crate::intel::hunt::hunt(&r, intel, &added, since, now));
        let alerts = match found {
            Ok(h) => {
                report.searched = h.entries;
                report.alerts = h.alerts.len();
                report.took_ms = h.took_ms;
                h.alerts
            }
            Err(e) => {
                report.error = Some(e.to_string());
                Vec::new()
            }
        };
        self.pending.push(Rehunt {
            at: Instant::now() + REHUNT_AFTER,
            intel: intel.clone(),
            found: alerts
                .iter()
                .map(|a| (a.indicator.clone(), a.mac))
                .collect(),
            added,
            since_ms: since,
            until_ms: now,
            report: report.clone(),
        });
        control.raise_alerts(alerts, report)
    }

    /// When the next second search is due.
    fn next(&self) -> Option<Instant> {
        self.pending.iter().map(|r| r.at).min()
    }

    /// Runs the second searches that are due: alerts about workloads the
    /// first one did not find.
    fn due(&mut self, control: &ControlHandle) -> Result<(), ControlError> {
        let now = Instant::now();
        let (due, later): (Vec<Rehunt>, Vec<Rehunt>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|r| r.at <= now);
        self.pending = later;
        let Some(plan) = self.plan.as_ref() else {
            return Ok(());
        };
        for r in due {
            let found = RecordsReader::open(&plan.records).and_then(|reader| {
                crate::intel::hunt::hunt(&reader, &r.intel, &r.added, r.since_ms, r.until_ms)
            });
            let Ok(h) = found else { continue };
            let new: Vec<_> = h
                .alerts
                .into_iter()
                .filter(|a| !r.found.contains(&(a.indicator.clone(), a.mac)))
                .collect();
            if new.is_empty() {
                continue;
            }
            let mut report = r.report;
            report.alerts += new.len();
            report.took_ms += h.took_ms;
            control.raise_alerts(new, report)?;
        }
        Ok(())
    }
}

/// Puts a reading in force, tells `published` (its generation, or why
/// not), then hunts what it added in the records.
fn apply(
    control: &ControlHandle,
    loaded: Loaded,
    hunter: &mut Hunter,
    published: impl FnOnce(Result<u64, &ControlError>),
) -> Result<(), ControlError> {
    let (intel, added, over) = (
        loaded.intel.clone(),
        loaded.added.clone(),
        loaded.added_over,
    );
    let put = control.set_intel(loaded);
    published(put.as_ref().copied());
    put?;
    hunter.hunt_added(control, &intel, added, over)
}

/// An API change to the managed feeds: made, read and in force before the
/// answer; the hunt of what it added after.
fn manage(
    control: &ControlHandle,
    loader: &mut Loader,
    op: ManagedOp,
    reply: Sender<Result<ManagedDone, ControlError>>,
    hunter: &mut Hunter,
) -> Result<(), ControlError> {
    let mut done = match loader.manage(op) {
        Ok(done) => done,
        Err(e) => {
            let _ = reply.send(Err(e.into()));
            return Ok(());
        }
    };
    apply(control, loader.load_managed(), hunter, |put| {
        let _ = reply.send(match put {
            Ok(generation) => {
                done.generation = generation;
                Ok(done)
            }
            Err(e) => Err(ControlError::Internal(e.to_string())),
        });
    })
}

impl IntelWatch {
    /// Reads the feeds once and puts them in force before it returns (the
    /// first packets already meet them), then watches them: every `every`,
    /// a feed file that changed makes a new reading, and so do
    /// [`ControlHandle::reload_intel`] and a change to the API-managed
    /// feeds ([`ControlHandle::manage_intel`]).
    pub fn start(
        mut loader: Loader,
        control: ControlHandle,
        every: Duration,
        hunt: Option<HuntPlan>,
    ) -> Result<IntelWatch, ControlError> {
        let mut hunter = Hunter {
            plan: hunt,
            pending: Vec::new(),
        };
        apply(&control, loader.load(), &mut hunter, |_| {})?;
        let (tx, rx) = crossbeam_channel::bounded(64);
        // A second watcher would find the trigger taken: it still polls.
        let _ = control.shared.intel_requests.set(tx);
        let thread = std::thread::Builder::new()
            .name("bulkhead-intel".into())
            .spawn(move || {
                crate::records::below_the_packet_path();
                let mut next_poll = Instant::now() + every;
                loop {
                    let wake = hunter.next().map_or(next_poll, |r| r.min(next_poll));
                    let request = match rx.recv_deadline(wake) {
                        Ok(r) => Some(r),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    if !control
                        .shared
                        .running
                        .load(std::sync::atomic::Ordering::Acquire)
                    {
                        return;
                    }
                    let done = match request {
                        None if Instant::now() >= next_poll => {
                            next_poll = Instant::now() + every;
                            match loader.poll(false) {
                                Some(loaded) => apply(&control, loaded, &mut hunter, |_| {}),
                                None => Ok(()),
                            }
                        }
                        None => Ok(()),
                        Some(WatchRequest::Reload) => {
                            apply(&control, loader.load(), &mut hunter, |_| {})
                        }
                        Some(WatchRequest::Manage(op, reply)) => {
                            manage(&control, &mut loader, op, reply, &mut hunter)
                        }
                        Some(WatchRequest::List(feed, offset, limit, reply)) => {
                            let _ = reply.send(
                                loader
                                    .managed_list(&feed, offset, limit)
                                    .map_err(ControlError::from),
                            );
                            Ok(())
                        }
                    };
                    let again = hunter.due(&control);
                    if let Err(ControlError::Stopped(_)) = done.and(again) {
                        return;
                    }
                }
            })
            .map_err(|e| ControlError::Internal(format!("cannot start the feed watcher: {e}")))?;
        Ok(IntelWatch { thread })
    }
}
