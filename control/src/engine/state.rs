//! What the control thread owns, and how each command and event changes it.

use super::bindings::{AddressBook, Claim};
use super::handle::{
    Command, CommitOutcome, ControlError, QuarantineOutcome, ReleaseOutcome, RuleHits,
};
use super::learned::Ages;
use super::{set_text, EngineConfig, Judged, LiveView, Shared};
use crate::compile::{compile, user_rule_id, CompileError};
use crate::diff::{diff, PolicyDiff};
use crate::model::{Model, Origin, Quarantine, Timestamp};
use crate::store::render_model;
use crate::store::{
    ActiveQuarantine, QuarantineSource, Store, StoreError, Version, WorkloadRecord,
};
use dataplane::event::{Event, FlowRecord};
use dataplane::policy::{parse_mac, PolicySnapshot, Reason, SnapshotCell};
use dataplane::wire::MacAddr;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod detect;
mod intel;
mod learning;
mod quarantine;
mod recording;

pub(super) struct State {
    store: Store,
    cell: Arc<SnapshotCell>,
    shared: Arc<Shared>,
    cfg: EngineConfig,
    version: Version,
    /// The live version as committed.
    live: Model,
    /// What is compiled: `live` + learned workloads. Shared with the published
    /// [`LiveView`]; changed copy-on-write.
    effective: Arc<Model>,
    /// The quarantines in force (the store's), published as the snapshot's
    /// overlay: a quarantine or a release swaps the overlay, it never
    /// recompiles the rules nor copies the model.
    quarantines: Arc<Vec<Quarantine>>,
    /// Which MAC holds which address (the spoofing guard's bindings).
    addresses: AddressBook,
    /// When each learned workload was last seen.
    ages: Ages,
    /// The learned workloads changed without a publication since then: the
    /// view (`GET /workloads`) follows after the debounce.
    view_dirty_since: Option<Instant>,
    generation: u64,
    learned: usize,
    hits: BTreeMap<u32, RuleHits>,
    /// A relabelled workload waits for a republish since then.
    dirty_since: Option<Instant>,
    /// Workloads seen since the last write to the store, with when.
    seen: BTreeMap<MacAddr, Timestamp>,
    next_persist: Instant,
    /// What a publication replaced, freed after the answer went out: freeing a
    /// 100k-rule snapshot and model takes tens of milliseconds.
    garbage: Vec<Box<dyn Send>>,
    /// Flow records, when kept ([`super::EngineConfig::records`]).
    recorder: Option<crate::records::Recorder>,
    /// The threat intel in force, published as the snapshot's overlay: its
    /// block feeds' addresses and the addresses DNS answered for their
    /// domains.
    intel: Arc<crate::intel::Intel>,
    resolved: Arc<dataplane::policy::Resolved>,
    /// The addresses behind `resolved`: blocked by DNS answers, until when.
    resolved_blocks: intel::ResolvedBlocks,
    /// Alerts, deduplicated and rate-limited, into the store.
    alerter: crate::alerts::Alerter,
    /// Anomaly detection and its baselines.
    detect: detect::Detectors,
    next_alert_flush: Instant,
    /// Where new alerts are delivered (syslog), if anywhere.
    deliverer: Option<crate::alerts::deliver::Deliverer>,
}

fn store_err(e: StoreError) -> ControlError {
    match e {
        StoreError::NoSuchVersion(v) => ControlError::NoSuchVersion(v),
        other => ControlError::Store(other),
    }
}

fn compile_err(e: CompileError) -> ControlError {
    match e {
        CompileError::Invalid(p) => ControlError::Invalid(p),
        CompileError::Rejected(r) => ControlError::Internal(r.to_string()),
    }
}

/// The MACs a model's quarantine list names, canonical.
fn listed_macs(model: &Model) -> BTreeSet<String> {
    model
        .quarantine
        .iter()
        .filter_map(|q| parse_mac(&q.mac).map(|m| m.to_string()))
        .collect()
}

/// A quarantine in force as a model entry.
fn quarantine_entry(a: ActiveQuarantine) -> Quarantine {
    Quarantine {
        mac: a.mac,
        reason: a.reason,
        actor: Some(a.actor),
        at: Some(a.at),
    }
}

/// A MAC a workload can have: unicast and not all zeros.
fn is_workload_mac(mac: MacAddr) -> bool {
    mac.is_station()
}

/// A duration in the nanoseconds of [`Timestamp`].
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The outer VLAN of a record, if tagged.
fn outer_vlan(vlan: [u16; 2]) -> Option<u16> {
    (vlan[0] != 0).then_some(vlan[0])
}

impl State {
    pub(super) fn new(
        store: Store,
        cell: Arc<SnapshotCell>,
        shared: Arc<Shared>,
        cfg: EngineConfig,
        version: Version,
        live: Model,
    ) -> Result<State, StoreError> {
        let mut effective = live.clone();
        let mut learned = 0;
        let mut ages = Ages::default();
        let mut stored = store.workloads()?;
        // The most recently seen first: a restart after a MAC flood keeps the
        // workloads that talked last, up to the cap.
        stored.sort_by_key(|w| std::cmp::Reverse(w.last_seen.0));
        let idle_since = Timestamp::now().0.saturating_sub(nanos(cfg.learned_idle));
        for w in stored {
            let Some(mac) = parse_mac(&w.mac) else {
                continue;
            };
            let declared = live.workloads.by_mac(mac).is_some();
            if w.origin != Origin::Observed
                || declared
                || learned >= cfg.max_observed
                || w.last_seen.0 < idle_since
            {
                continue;
            }
            ages.touch(mac, w.last_seen.0);
            effective.workloads.push(crate::model::Workload {
                mac: w.mac,
                name: w.name,
                labels: w.labels,
                origin: Origin::Observed,
                first_seen: Some(w.first_seen),
                ..Default::default()
            });
            learned += 1;
        }
        let alerts = cfg.alerts;
        let detect = detect::Detectors::new(cfg.detect.clone(), &store)?;
        let mut state = State {
            next_persist: Instant::now() + cfg.persist_interval,
            store,
            cell,
            shared,
            cfg,
            version,
            // As live already: learned workloads keep the labels they were stored with.
            live: live.clone(),
            effective: Arc::new(effective),
            quarantines: Arc::default(),
            addresses: AddressBook::default(),
            ages,
            view_dirty_since: None,
            generation: 0,
            learned,
            hits: BTreeMap::new(),
            dirty_since: None,
            seen: BTreeMap::new(),
            garbage: Vec::new(),
            recorder: None,
            intel: Arc::default(),
            resolved: Arc::default(),
            resolved_blocks: intel::ResolvedBlocks::default(),
            alerter: crate::alerts::Alerter::new(alerts),
            detect,
            next_alert_flush: Instant::now(),
            deliverer: None,
        };
        let effective = state.effective_for(&live)?;
        state.reconcile_quarantines(&live, version, "bootstrap")?;
        state.refresh_quarantines()?;
        state.adopt(version, live, effective);
        Ok(state)
    }

    /// The effective model `model` would have as the live version: it and the
    /// learned workloads it does not declare (relabelled if its assignment
    /// rules differ). Its own entries come first, so problems point at them.
    fn effective_for(&self, model: &Model) -> Result<Model, StoreError> {
        let mut effective = model.clone();
        for w in self.effective.workloads.iter() {
            let declared = parse_mac(&w.mac).is_some_and(|m| model.workloads.by_mac(m).is_some());
            if w.origin == Origin::Observed && !declared {
                effective.workloads.push(w.clone());
            }
        }
        if model.assignment != self.live.assignment {
            effective.reassign_observed();
        }
        Ok(effective)
    }

    /// The live model and the draft as [`super::ControlHandle::judged`] gives them.
    fn judged(&self) -> Result<Judged, ControlError> {
        let draft = self.store.draft().map_err(store_err)?;
        let draft = match draft {
            Some(d) => Some(self.effective_for(&d).map_err(store_err)?),
            None => None,
        };
        Ok(Judged {
            live: Arc::clone(&self.effective),
            draft,
        })
    }

    /// Makes `model` (with its effective form) the live version. Does not publish.
    fn adopt(&mut self, version: Version, model: Model, effective: Model) {
        self.learned = effective
            .workloads
            .iter()
            .filter(|w| w.origin == Origin::Observed)
            .count();
        self.addresses = AddressBook::of(&effective);
        let old = std::mem::replace(&mut self.effective, Arc::new(effective));
        self.garbage.push(Box::new(old));
        let old = std::mem::replace(&mut self.live, model);
        self.garbage.push(Box::new(old));
        self.version = version;
    }

    /// A freshly compiled snapshot with the overlay in force: the
    /// quarantines, the address bindings and the threat intel.
    fn with_overlay(&mut self, compiled: &PolicySnapshot) -> PolicySnapshot {
        self.addresses.dirty_since = None;
        let generation = compiled.generation();
        compiled
            .with_quarantine(self.quarantined_macs(), generation)
            .with_bindings(self.addresses.pairs())
            .with_intel(self.intel.blocked(), self.resolved.clone(), generation)
    }

    /// Compiles the effective model and publishes it with the next generation.
    pub(super) fn publish(&mut self) -> Result<u64, ControlError> {
        let generation = self.generation + 1;
        let compiled = compile(&self.effective).map_err(ControlError::Invalid)?;
        let snapshot = compiled.snapshot(generation).map_err(compile_err)?;
        self.garbage.push(Box::new(compiled));
        self.dirty_since = None;
        let snapshot = self.with_overlay(&snapshot);
        Ok(self.install(snapshot))
    }

    /// Publishes the address bindings learned since the last publication, in
    /// the overlay of the live snapshot (same generation: bindings decide new
    /// flows only).
    fn publish_bindings(&mut self) -> u64 {
        self.addresses.dirty_since = None;
        let snapshot = self.cell.load().with_bindings(self.addresses.pairs());
        self.install(snapshot)
    }

    /// Publishes a snapshot of the effective model and the quarantines in force.
    fn install(&mut self, snapshot: PolicySnapshot) -> u64 {
        let generation = snapshot.generation();
        let old = self.cell.replace(snapshot);
        self.garbage.push(Box::new(old));
        self.generation = generation;
        self.shared.generation.store(generation, Ordering::Relaxed);
        self.shared.publishes.fetch_add(1, Ordering::Relaxed);
        self.refresh_view();
        generation
    }

    /// Shows the effective model and the quarantines in force to readers.
    fn refresh_view(&mut self) {
        self.view_dirty_since = None;
        let old = self.shared.view.swap(Arc::new(LiveView {
            model: self.effective.clone(),
            quarantines: self.quarantines.clone(),
            version: self.version,
            generation: self.generation,
        }));
        self.garbage.push(Box::new(old));
    }

    /// Frees what publications replaced.
    pub(super) fn collect_garbage(&mut self) {
        self.garbage.clear();
    }

    pub(super) fn apply(&mut self, cmd: Command) {
        // A reply that finds its caller gone is dropped: nothing to tell.
        match cmd {
            Command::Quarantine {
                mac,
                reason,
                actor,
                reply,
            } => {
                let _ = reply.send(self.quarantine(mac, reason, &actor));
            }
            Command::Release {
                mac,
                reason,
                actor,
                reply,
            } => {
                let _ = reply.send(self.release(mac, reason, &actor));
            }
            Command::Quarantines(reply) => {
                let _ = reply.send(self.store.active_quarantines().map_err(store_err));
            }
            Command::QuarantineHistory(mac, reply) => {
                let mac = mac.map(|m| m.to_string());
                let _ = reply.send(
                    self.store
                        .quarantine_history(mac.as_deref())
                        .map_err(store_err),
                );
            }
            Command::Draft(reply) => {
                let draft = self.store.draft().map_err(store_err);
                let _ = reply.send(draft.map(|d| d.unwrap_or_else(|| self.live.clone())));
            }
            Command::Judged(reply) => {
                let _ = reply.send(self.judged());
            }
            Command::SaveDraft(model, reply) => {
                let _ = reply.send(self.save_draft(*model));
            }
            Command::DiscardDraft(reply) => {
                let _ = reply.send(self.store.discard_draft().map_err(store_err));
            }
            Command::Diff(reply) => {
                let d = self.store.draft().map_err(store_err);
                let _ = reply.send(d.map(|d| d.map(|d| diff(&self.live, &d)).unwrap_or_default()));
            }
            Command::Commit {
                actor,
                comment,
                reply,
            } => {
                let _ = reply.send(self.commit(&actor, &comment));
            }
            Command::Replace {
                model,
                actor,
                comment,
                reply,
            } => {
                let _ = reply.send(self.replace(*model, &actor, &comment));
            }
            Command::Versions(reply) => {
                let _ = reply.send(self.store.versions().map_err(store_err));
            }
            Command::Version(v, reply) => {
                let m = self.store.version(v).map_err(store_err);
                let _ = reply.send(m.and_then(|m| m.ok_or(ControlError::NoSuchVersion(v))));
            }
            Command::Rollback {
                version,
                actor,
                reply,
            } => {
                let _ = reply.send(self.rollback(version, &actor));
            }
            Command::RuleHits(reply) => {
                let list = self
                    .live
                    .rules
                    .iter()
                    .map(|r| (r.id, self.hits.get(&r.id).copied().unwrap_or_default()))
                    .collect();
                let _ = reply.send(Ok(list));
            }
            Command::Intel(loaded, reply) => {
                let _ = reply.send(Ok(self.set_intel(*loaded)));
            }
            Command::RaiseAlerts(alerts, report, reply) => {
                self.hunted(alerts, *report);
                let _ = reply.send(Ok(()));
            }
            Command::Detect(reply) => {
                let _ = reply.send(Ok(self.detect.status(Timestamp::now().millis())));
            }
            Command::ResetBaselines(reply) => {
                let _ = reply.send(self.reset_baselines().map_err(store_err));
            }
            #[cfg(test)]
            Command::Crash => panic!("crash requested by a test"),
            // Handled by the loop.
            Command::Stop => {}
        }
    }

    fn save_draft(&mut self, model: Model) -> Result<PolicyDiff, ControlError> {
        compile(&model)?;
        self.store.save_draft(&model).map_err(store_err)?;
        Ok(diff(&self.live, &model))
    }

    /// Makes `model` live: compiles it once with the learned workloads and the
    /// quarantines in force (an invalid model is refused before anything is
    /// stored), `persist`s it as a version, then publishes.
    fn go_live(
        &mut self,
        model: Model,
        actor: &str,
        persist: impl FnOnce(&mut Store, &Model, usize) -> Result<Version, StoreError>,
    ) -> Result<CommitOutcome, ControlError> {
        let started = Instant::now();
        let effective = self.effective_for(&model).map_err(store_err)?;
        let compiled = compile(&effective)?;
        let generation = self.generation + 1;
        let snapshot = compiled.snapshot(generation).map_err(compile_err)?;
        let compiled_rules = snapshot.rule_count();
        let version =
            persist(&mut self.store, &model, compiled.rules.compiled_len()).map_err(store_err)?;
        self.garbage.push(Box::new(compiled));
        self.reconcile_quarantines(&model, version, actor)
            .map_err(store_err)?;
        self.refresh_quarantines().map_err(store_err)?;
        self.adopt(version, model, effective);
        self.dirty_since = None;
        let snapshot = self.with_overlay(&snapshot);
        let generation = self.install(snapshot);
        Ok(CommitOutcome {
            version: version.0,
            generation,
            compiled_rules,
            publish_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Stores `model` as a new live version and publishes it.
    fn commit_model(
        &mut self,
        model: Model,
        actor: &str,
        comment: &str,
        clear_draft: bool,
    ) -> Result<CommitOutcome, ControlError> {
        self.go_live(model, actor, |store, model, rules| {
            let text = render_model(model)?;
            store.commit_rendered(actor, comment, &text, rules as u64, None, clear_draft)
        })
    }

    fn commit(&mut self, actor: &str, comment: &str) -> Result<CommitOutcome, ControlError> {
        let draft = self
            .store
            .draft()
            .map_err(store_err)?
            .ok_or(ControlError::NoDraft)?;
        self.commit_model(draft, actor, comment, true)
    }

    fn replace(
        &mut self,
        model: Model,
        actor: &str,
        comment: &str,
    ) -> Result<CommitOutcome, ControlError> {
        self.commit_model(model, actor, comment, false)
    }

    fn rollback(&mut self, to: Version, actor: &str) -> Result<CommitOutcome, ControlError> {
        let model = self
            .store
            .version(to)
            .map_err(store_err)?
            .ok_or(ControlError::NoSuchVersion(to))?;
        self.go_live(model, actor, |store, _, _| store.rollback(to, actor))
    }

    /// Time-driven work: the debounced republish and writing learned workloads.
    pub(super) fn tick(&mut self, now: Instant) {
        self.tick_records();
        self.tick_intel(now);
        self.tick_detect(now);
        if self
            .addresses
            .dirty_since
            .is_some_and(|t| now.duration_since(t) >= self.cfg.debounce)
            && self.dirty_since.is_none()
        {
            self.publish_bindings();
        }
        if self
            .dirty_since
            .is_some_and(|t| now.duration_since(t) >= self.cfg.debounce)
        {
            match self.publish() {
                Ok(_) => set_text(&self.shared.last_error, None),
                Err(e) => {
                    // Keep the last snapshot; try again only on the next change.
                    self.dirty_since = None;
                    set_text(
                        &self.shared.last_error,
                        Some(format!("republish after relabelling: {e}")),
                    );
                }
            }
        }
        if now >= self.next_persist {
            self.persist_learned();
            self.age_out();
            self.next_persist = now + self.cfg.persist_interval;
        }
        if self
            .view_dirty_since
            .is_some_and(|t| now.duration_since(t) >= self.cfg.debounce)
            && self.dirty_since.is_none()
        {
            self.refresh_view();
        }
    }

    /// How long the loop may sleep before [`State::tick`] has work.
    pub(super) fn next_deadline(&self, now: Instant) -> Duration {
        let mut wait = self.next_persist.saturating_duration_since(now);
        for t in [
            self.dirty_since,
            self.addresses.dirty_since,
            self.view_dirty_since,
        ]
        .into_iter()
        .flatten()
        {
            wait = wait.min((t + self.cfg.debounce).saturating_duration_since(now));
        }
        if let Some(w) = self.intel_deadline(now) {
            wait = wait.min(w);
        }
        wait.min(Duration::from_secs(1))
    }
}
