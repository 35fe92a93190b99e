//! The typed handle the API and the CLI call: each method sends one command to
//! the control thread and waits for its answer. Reads of the live state that
//! must not queue behind a commit ([`ControlHandle::view`],
//! [`ControlHandle::status`]) are served from shared memory instead.

use super::{Judged, Shared, StatusSnapshot, BOOTSTRAP_ACTOR};
use crate::diff::PolicyDiff;
use crate::intel::feeds::Loaded;
use crate::model::Model;
use crate::store::{ActiveQuarantine, QuarantineEvent, StoreError, Version, VersionInfo};
use crate::validate::Problems;
use crossbeam_channel::{Receiver, Sender};
use dataplane::wire::MacAddr;
use serde::Serialize;
use std::sync::Arc;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the control thread is not running{}", .0.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Stopped(Option<String>),
    #[error("{0}")]
    Invalid(#[from] Problems),
    #[error("invalid MAC address {0:?}")]
    BadMac(String),
    #[error("policy version {0} does not exist")]
    NoSuchVersion(Version),
    #[error("there is no draft to commit")]
    NoDraft,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Feed(#[from] crate::intel::feeds::ManagedError),
    /// The dataplane refused what compile produced: a bug, not bad input.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The answer to a quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineOutcome {
    /// Canonical form.
    pub mac: String,
    /// It was already quarantined: nothing changed.
    pub already: bool,
    /// No workload with this MAC is known yet (a pre-emptive quarantine).
    pub unknown_workload: bool,
    /// The policy generation that carries the quarantine.
    pub generation: u64,
}

/// The answer to a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseOutcome {
    pub mac: String,
    /// `false`: it was not quarantined, nothing changed.
    pub released: bool,
    pub generation: u64,
}

/// The answer to a commit, a rollback or a reload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommitOutcome {
    pub version: u64,
    pub generation: u64,
    /// Rules in the dataplane's compiled form.
    pub compiled_rules: usize,
    /// Milliseconds from the start of the command to the published snapshot.
    pub publish_ms: f64,
}

/// The actor of versions committed from the policy file by a reload.
pub const FILE_ACTOR: &str = "SIGHUP";

/// What a reload of the policy file did ([`ControlHandle::reload_file`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Reload {
    /// The file changed since it was last committed: it is the new version.
    Committed(CommitOutcome),
    /// The file is what version `version` committed, and that is live:
    /// nothing written.
    Unchanged { version: u64 },
    /// The file is what version `file_version` committed, but a later
    /// version (`live`, by `actor`: through the API, a rollback) is live:
    /// it is kept, not replaced by a file nobody changed.
    KeptLive {
        file_version: u64,
        live: u64,
        actor: String,
    },
}

/// How often a user rule decided a new flow, from the dataplane's flow events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RuleHits {
    /// Flows it decided.
    pub flows: u64,
    /// Flows audit or learn mode let through although this rule denies them.
    pub would_deny: u64,
    /// Unix time in nanoseconds of the last hit (0: never).
    pub last_hit: u64,
}

/// Commands to the control thread; each carries the channel for its answer.
pub(super) enum Command {
    Quarantine {
        mac: MacAddr,
        reason: Option<String>,
        actor: String,
        reply: Sender<Result<QuarantineOutcome, ControlError>>,
    },
    Release {
        mac: MacAddr,
        reason: Option<String>,
        actor: String,
        reply: Sender<Result<ReleaseOutcome, ControlError>>,
    },
    Quarantines(Sender<Result<Vec<ActiveQuarantine>, ControlError>>),
    QuarantineHistory(
        Option<MacAddr>,
        Sender<Result<Vec<QuarantineEvent>, ControlError>>,
    ),
    Draft(Sender<Result<Model, ControlError>>),
    Judged(Sender<Result<Judged, ControlError>>),
    SaveDraft(Box<Model>, Sender<Result<PolicyDiff, ControlError>>),
    DiscardDraft(Sender<Result<(), ControlError>>),
    Diff(Sender<Result<PolicyDiff, ControlError>>),
    Commit {
        actor: String,
        comment: String,
        reply: Sender<Result<CommitOutcome, ControlError>>,
    },
    /// Commit a whole model at once (a reloaded policy file).
    Replace {
        model: Box<Model>,
        actor: String,
        comment: String,
        reply: Sender<Result<CommitOutcome, ControlError>>,
    },
    Versions(Sender<Result<Vec<VersionInfo>, ControlError>>),
    Version(Version, Sender<Result<Model, ControlError>>),
    Rollback {
        version: Version,
        actor: String,
        reply: Sender<Result<CommitOutcome, ControlError>>,
    },
    RuleHits(Sender<Result<Vec<(u32, RuleHits)>, ControlError>>),
    /// New threat intel (feeds read again).
    Intel(Box<Loaded>, Sender<Result<u64, ControlError>>),
    /// Alerts found off the control thread (retro-hunt), and its report.
    RaiseAlerts(
        Vec<crate::alerts::NewAlert>,
        Box<super::intel_watch::HuntReport>,
        Sender<Result<(), ControlError>>,
    ),
    /// Anomaly detection's state.
    Detect(Sender<Result<crate::detect::DetectStatus, ControlError>>),
    /// Forget every detection baseline.
    ResetBaselines(Sender<Result<(), ControlError>>),
    /// Stop the thread (as on shutdown).
    Stop,
    /// Panic inside the thread: for the test that the dataplane survives it.
    #[cfg(test)]
    Crash,
}

/// The handle to the control thread. Cheap to clone; every clone talks to the
/// same thread.
#[derive(Clone)]
pub struct ControlHandle {
    pub(super) tx: Sender<Command>,
    pub(super) shared: Arc<Shared>,
}

/// One call: send, then wait for the answer (or learn that the thread is gone).
fn call<T>(
    h: &ControlHandle,
    make: impl FnOnce(Sender<Result<T, ControlError>>) -> Command,
) -> Result<T, ControlError> {
    let (reply, rx): (_, Receiver<Result<T, ControlError>>) = crossbeam_channel::bounded(1);
    if h.tx.send(make(reply)).is_err() {
        return Err(h.stopped());
    }
    rx.recv().unwrap_or_else(|_| Err(h.stopped()))
}

impl ControlHandle {
    fn stopped(&self) -> ControlError {
        ControlError::Stopped(self.shared.failure())
    }

    /// The live state as last published: effective model (with observed
    /// workloads and the quarantines in force), live version, generation.
    pub fn view(&self) -> Arc<super::LiveView> {
        self.shared.view.load_full()
    }

    /// Whether the thread runs, and its counters.
    pub fn status(&self) -> StatusSnapshot {
        self.shared.snapshot()
    }

    /// Quarantines a workload by MAC: all its traffic is dropped, established
    /// flows included, except the management exceptions. Idempotent; a MAC not
    /// seen yet may be quarantined (the answer says so).
    pub fn quarantine(
        &self,
        mac: MacAddr,
        reason: Option<String>,
        actor: &str,
    ) -> Result<QuarantineOutcome, ControlError> {
        call(self, |reply| Command::Quarantine {
            mac,
            reason,
            actor: actor.to_string(),
            reply,
        })
    }

    /// Ends a quarantine; the workload gets its normal policy back. Idempotent.
    pub fn release(
        &self,
        mac: MacAddr,
        reason: Option<String>,
        actor: &str,
    ) -> Result<ReleaseOutcome, ControlError> {
        call(self, |reply| Command::Release {
            mac,
            reason,
            actor: actor.to_string(),
            reply,
        })
    }

    /// Anomaly detection: the detectors, their thresholds and baselines.
    pub fn detect(&self) -> Result<crate::detect::DetectStatus, ControlError> {
        call(self, Command::Detect)
    }

    /// Forgets every detection baseline (in the store too): each learns
    /// again from its next flow, for its window.
    pub fn reset_baselines(&self) -> Result<(), ControlError> {
        call(self, Command::ResetBaselines)
    }

    /// The quarantines in force.
    pub fn quarantines(&self) -> Result<Vec<ActiveQuarantine>, ControlError> {
        call(self, Command::Quarantines)
    }

    /// Quarantines and releases, oldest first: of one MAC, or of all.
    pub fn quarantine_history(
        &self,
        mac: Option<MacAddr>,
    ) -> Result<Vec<QuarantineEvent>, ControlError> {
        call(self, |reply| Command::QuarantineHistory(mac, reply))
    }

    /// The draft, or the live policy when there is no draft.
    pub fn draft(&self) -> Result<Model, ControlError> {
        call(self, Command::Draft)
    }

    /// The models a dry run judges: the live one and the draft (the live
    /// one when there is no draft), each with the learned workloads, as a
    /// commit would publish them.
    pub fn judged(&self) -> Result<Judged, ControlError> {
        call(self, Command::Judged)
    }

    /// Replaces the draft. An invalid model is refused with every problem.
    /// Returns the draft's diff against the live policy.
    pub fn save_draft(&self, model: Model) -> Result<PolicyDiff, ControlError> {
        call(self, |reply| Command::SaveDraft(Box::new(model), reply))
    }

    pub fn discard_draft(&self) -> Result<(), ControlError> {
        call(self, Command::DiscardDraft)
    }

    /// The draft against the live policy (empty without a draft).
    pub fn diff(&self) -> Result<PolicyDiff, ControlError> {
        call(self, Command::Diff)
    }

    /// Commits the draft: stored as a new version in one transaction, then
    /// published; the answer comes after the snapshot is published.
    pub fn commit(&self, actor: &str, comment: &str) -> Result<CommitOutcome, ControlError> {
        call(self, |reply| Command::Commit {
            actor: actor.to_string(),
            comment: comment.to_string(),
            reply,
        })
    }

    /// Commits `model` as a new version (the draft is left alone).
    pub fn replace(
        &self,
        model: Model,
        actor: &str,
        comment: &str,
    ) -> Result<CommitOutcome, ControlError> {
        call(self, |reply| Command::Replace {
            model: Box::new(model),
            actor: actor.to_string(),
            comment: comment.to_string(),
            reply,
        })
    }

    /// The policy file, read again (SIGHUP): committed only if it differs
    /// from what the file last committed (at bootstrap or an earlier
    /// reload). An unchanged file writes no version, and never replaces a
    /// policy changed since through the API.
    pub fn reload_file(&self, model: Model, comment: &str) -> Result<Reload, ControlError> {
        let versions = self.versions()?;
        let from_file = versions
            .iter()
            .filter(|v| v.actor == FILE_ACTOR || v.actor == BOOTSTRAP_ACTOR)
            .max_by_key(|v| v.version);
        if let Some(last) = from_file {
            if self.version(last.version)? == model {
                let live = versions.iter().find(|v| v.live);
                return Ok(match live {
                    Some(l) if l.version != last.version => Reload::KeptLive {
                        file_version: last.version.0,
                        live: l.version.0,
                        actor: l.actor.clone(),
                    },
                    _ => Reload::Unchanged {
                        version: last.version.0,
                    },
                });
            }
        }
        Ok(Reload::Committed(self.replace(model, FILE_ACTOR, comment)?))
    }

    pub fn versions(&self) -> Result<Vec<VersionInfo>, ControlError> {
        call(self, Command::Versions)
    }

    pub fn version(&self, v: Version) -> Result<Model, ControlError> {
        call(self, |reply| Command::Version(v, reply))
    }

    /// Makes version `v`'s policy live again, as a new version.
    pub fn rollback(&self, v: Version, actor: &str) -> Result<CommitOutcome, ControlError> {
        call(self, |reply| Command::Rollback {
            version: v,
            actor: actor.to_string(),
            reply,
        })
    }

    /// Hits per user rule id (rules never hit are listed with zeros), by id.
    pub fn rule_hits(&self) -> Result<Vec<(u32, RuleHits)>, ControlError> {
        call(self, Command::RuleHits)
    }

    /// Puts new threat intel in force: its block feeds' addresses are
    /// published beside the rules as the next generation (the rules are
    /// not recompiled), so flows to a newly listed address are cut, offloaded
    /// ones too, before the answer. Returns the generation.
    pub fn set_intel(&self, loaded: Loaded) -> Result<u64, ControlError> {
        call(self, |reply| Command::Intel(Box::new(loaded), reply))
    }

    /// Raises alerts found off the control thread (deduplicated, limited
    /// and delivered as any), and keeps the retro-hunt's report.
    pub fn raise_alerts(
        &self,
        alerts: Vec<crate::alerts::NewAlert>,
        report: super::intel_watch::HuntReport,
    ) -> Result<(), ControlError> {
        call(self, |reply| {
            Command::RaiseAlerts(alerts, Box::new(report), reply)
        })
    }

    /// The threat intel in force and what its feeds' last reading did.
    pub fn intel(&self) -> Arc<super::IntelView> {
        self.shared.intel.load_full()
    }

    /// What the alerter did since the start.
    pub fn alert_counters(&self) -> crate::alerts::AlertCounters {
        match self.shared.alerts.lock() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// What each alert delivery target did (empty without targets).
    pub fn delivery(&self) -> Vec<Arc<crate::alerts::deliver::TargetCounters>> {
        self.shared.delivery.get().cloned().unwrap_or_default()
    }

    /// Asks the feed watcher to read every feed now (false: none runs).
    pub fn reload_intel(&self) -> bool {
        use super::intel_watch::WatchRequest;
        self.shared
            .intel_requests
            .get()
            .is_some_and(|tx| tx.try_send(WatchRequest::Reload).is_ok() || tx.is_full())
    }

    /// Changes the feeds managed through the API; returns once the change
    /// is in force (its generation published: flows to a newly listed
    /// address are cut, offloaded ones too). The retro-hunt of what was
    /// added runs after.
    pub fn manage_intel(
        &self,
        op: crate::intel::feeds::ManagedOp,
    ) -> Result<crate::intel::feeds::ManagedDone, ControlError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.to_watcher(super::intel_watch::WatchRequest::Manage(op, reply))?;
        answer
            .recv()
            .map_err(|_| crate::intel::feeds::ManagedError::NotRunning)?
    }

    /// A managed feed's entries from `offset`, at most `limit`, and how
    /// many it holds.
    pub fn managed_entries(
        &self,
        feed: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<crate::intel::feeds::ManagedEntry>, usize), ControlError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.to_watcher(super::intel_watch::WatchRequest::List(
            feed.to_string(),
            offset,
            limit,
            reply,
        ))?;
        answer
            .recv()
            .map_err(|_| crate::intel::feeds::ManagedError::NotRunning)?
    }

    fn to_watcher(&self, r: super::intel_watch::WatchRequest) -> Result<(), ControlError> {
        let tx = self
            .shared
            .intel_requests
            .get()
            .ok_or(crate::intel::feeds::ManagedError::NotRunning)?;
        tx.send(r)
            .map_err(|_| crate::intel::feeds::ManagedError::NotRunning.into())
    }

    /// Asks the thread to stop; it finishes the command it is on.
    pub fn stop(&self) {
        let _ = self.tx.send(Command::Stop);
    }

    /// Makes the control thread panic. Only in this crate's tests of what
    /// survives it: the appliance has no way to ask for it.
    #[cfg(test)]
    pub(crate) fn crash_for_test(&self) {
        let _ = self.tx.send(Command::Crash);
    }
}
