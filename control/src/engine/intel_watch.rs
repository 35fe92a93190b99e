//! The feed watcher: a thread of its own (at nice 10, like the records
//! writer) that reads the threat-intel feeds and hands each new reading to
//! the control thread. Reading a million-line feed takes about a second:
//! never on the control thread, which must answer a quarantine meanwhile.

use super::handle::{ControlError, ControlHandle};
use crate::intel::feeds::{Loaded, Loader, ManagedDone, ManagedOp};
use crate::intel::{Entry, Indicator, Intel};
use crate::records::RecordsReader;
use crossbeam_channel::{RecvTimeoutError, Sender};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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
        Sender<Result<(Vec<Entry>, usize), ControlError>>,
    ),
}

/// Puts a reading in force, then hunts what it added in the records.
fn apply(
    control: &ControlHandle,
    loaded: Loaded,
    hunt: Option<&HuntPlan>,
) -> Result<(), ControlError> {
    let (intel, added, over) = (
        loaded.intel.clone(),
        loaded.added.clone(),
        loaded.added_over,
    );
    control.set_intel(loaded)?;
    hunt_added(control, &intel, added, over, hunt)
}

/// An API change to the managed feeds: made, read and in force before the
/// answer; the hunt of what it added after.
fn manage(
    control: &ControlHandle,
    loader: &mut Loader,
    op: ManagedOp,
    reply: Sender<Result<ManagedDone, ControlError>>,
    hunt: Option<&HuntPlan>,
) -> Result<(), ControlError> {
    let mut done = match loader.manage(op) {
        Ok(done) => done,
        Err(e) => {
            let _ = reply.send(Err(e.into()));
            return Ok(());
        }
    };
    let loaded = loader.load();
    let (intel, added, over) = (
        loaded.intel.clone(),
        loaded.added.clone(),
        loaded.added_over,
    );
    match control.set_intel(loaded) {
        Ok(generation) => {
            done.generation = generation;
            let _ = reply.send(Ok(done));
        }
        Err(e) => {
            let _ = reply.send(Err(ControlError::Internal(e.to_string())));
            return Err(e);
        }
    }
    hunt_added(control, &intel, added, over, hunt)
}

/// Hunts the entries a reading added in the records.
fn hunt_added(
    control: &ControlHandle,
    intel: &Arc<Intel>,
    added: Vec<Indicator>,
    over: usize,
    hunt: Option<&HuntPlan>,
) -> Result<(), ControlError> {
    let Some(plan) = hunt.filter(|_| !added.is_empty()) else {
        return Ok(());
    };
    let now = crate::time::Timestamp::now().millis();
    let mut report = HuntReport {
        at_ms: now,
        added: added.len() + over,
        not_searched: over,
        ..HuntReport::default()
    };
    let found = RecordsReader::open(&plan.records).and_then(|r| {
        crate::intel::hunt::hunt(&r, intel, &added, now.saturating_sub(plan.window_ms), now)
    });
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
    control.raise_alerts(alerts, report)
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
        apply(&control, loader.load(), hunt.as_ref())?;
        let (tx, rx) = crossbeam_channel::bounded(64);
        // A second watcher would find the trigger taken: it still polls.
        let _ = control.shared.intel_requests.set(tx);
        let thread = std::thread::Builder::new()
            .name("bulkhead-intel".into())
            .spawn(move || {
                crate::records::below_the_packet_path();
                loop {
                    let request = match rx.recv_timeout(every) {
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
                        None => match loader.poll(false) {
                            Some(loaded) => apply(&control, loaded, hunt.as_ref()),
                            None => Ok(()),
                        },
                        Some(WatchRequest::Reload) => apply(&control, loader.load(), hunt.as_ref()),
                        Some(WatchRequest::Manage(op, reply)) => {
                            manage(&control, &mut loader, op, reply, hunt.as_ref())
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
                    if let Err(ControlError::Stopped(_)) = done {
                        return;
                    }
                }
            })
            .map_err(|e| ControlError::Internal(format!("cannot start the feed watcher: {e}")))?;
        Ok(IntelWatch { thread })
    }
}
