//! The control thread: it owns the model, applies commands from a
//! [`ControlHandle`], learns workloads from the dataplane's events and publishes
//! policy snapshots into the workers' [`SnapshotCell`].
//!
//! - Every change of what the dataplane must enforce (commit, rollback, reload,
//!   quarantine, release, a relabelled workload) compiles the effective model
//!   (live version + observed workloads + quarantines in force) and publishes
//!   it with the next generation. Workers re-decide established flows of an
//!   older generation on their next packet, so a quarantine cuts them.
//! - Stored first, published second: a command answers after its change is
//!   durable in the [`Store`] *and* the snapshot is published.
//! - Events: a MAC first seen on the wire (flow start, ARP) becomes a workload
//!   labelled by the assignment rules; relabelling republishes after a short
//!   debounce, so a burst of new MACs costs one compile. New MACs are capped
//!   ([`EngineConfig::max_observed`]): a MAC flood cannot exhaust memory.
//! - If the thread panics or stops, the workers keep the last snapshot and
//!   forward on; the failure is kept in [`StatusSnapshot`] and commands answer
//!   [`ControlError::Stopped`].

mod bindings;
mod handle;
mod intel_watch;
mod learned;
mod state;
mod status;
#[cfg(test)]
mod tests;

pub use handle::{
    CommitOutcome, ControlError, ControlHandle, QuarantineOutcome, ReleaseOutcome, Reload,
    RuleHits, FILE_ACTOR,
};
pub use intel_watch::{HuntPlan, HuntReport, IntelWatch};
pub use status::{
    CollectorStatus, FlowTally, IntelView, IpfixStatus, Judged, LiveView, RecordsStatus,
    StatusSnapshot, REASONS, VERDICTS,
};

/// The actor of the version a start commits into an empty store.
pub const BOOTSTRAP_ACTOR: &str = "bootstrap";

use crate::model::Model;
use crate::records::{Clock, Recorder, RecordsConfig, RecordsCounters, RecordsWriter};
use crate::store::Store;
use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use dataplane::event::Event;
use dataplane::policy::SnapshotCell;
use handle::Command;
use state::State;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Settings of the control thread.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// After a relabelled workload, wait this long for more before republishing.
    pub debounce: Duration,
    /// Workloads learned from the wire kept at most. When full, a new MAC
    /// takes the place of the learned workload seen least recently if that
    /// one has been idle `evict_idle`; otherwise it is counted in
    /// [`StatusSnapshot::observed_refused`] and not learned.
    pub max_observed: usize,
    pub evict_idle: Duration,
    /// Learned workloads not seen for this long are forgotten (in memory and
    /// in the store); they are learned again if they come back.
    pub learned_idle: Duration,
    /// Learned workloads are written to the store at most this often.
    pub persist_interval: Duration,
    /// Keep flow records, and where: the thread records every flow end.
    pub records: Option<RecordsPlan>,
    /// Export the flow records over IPFIX, and where.
    pub ipfix: Option<IpfixPlan>,
    /// The instant the workers' clock counts from (as
    /// [`RecordsPlan::worker_epoch`]): DNS answers read for threat intel
    /// without records get wall-clock times from it.
    pub worker_epoch: Instant,
    /// How alerts are deduplicated and limited.
    pub alerts: crate::alerts::AlertConfig,
    /// Where new alerts are delivered.
    pub delivery: crate::alerts::deliver::DeliveryConfig,
    /// Anomaly detection: which detectors, their thresholds and baselines.
    pub detect: crate::detect::DetectConfig,
}

/// Where the control thread exports flow records over IPFIX.
#[derive(Debug, Clone)]
pub struct IpfixPlan {
    pub config: crate::ipfix::IpfixConfig,
    /// As [`RecordsPlan::worker_epoch`].
    pub worker_epoch: Instant,
}

/// Where and how the control thread keeps flow records.
#[derive(Debug, Clone)]
pub struct RecordsPlan {
    /// The records store (created if absent).
    pub path: std::path::PathBuf,
    pub config: RecordsConfig,
    /// The instant the workers' clock counts from (their `now` is the
    /// nanoseconds since), so records get wall-clock times.
    pub worker_epoch: Instant,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            debounce: Duration::from_millis(200),
            max_observed: 65_536,
            evict_idle: Duration::from_secs(60),
            learned_idle: Duration::from_secs(24 * 3600),
            persist_interval: Duration::from_secs(5),
            records: None,
            ipfix: None,
            worker_epoch: Instant::now(),
            alerts: crate::alerts::AlertConfig::default(),
            delivery: crate::alerts::deliver::DeliveryConfig::default(),
            detect: crate::detect::DetectConfig::default(),
        }
    }
}

/// State shared between the thread and its handles.
pub(crate) struct Shared {
    running: AtomicBool,
    failure: Mutex<Option<String>>,
    last_error: Mutex<Option<String>>,
    generation: AtomicU64,
    publishes: AtomicU64,
    events: AtomicU64,
    learned: AtomicU64,
    refused: AtomicU64,
    forgotten: AtomicU64,
    claims_refused: AtomicU64,
    flows_ended: [[AtomicU64; REASONS.len()]; VERDICTS.len()],
    records: std::sync::OnceLock<Arc<RecordsCounters>>,
    ipfix: std::sync::OnceLock<Arc<crate::ipfix::IpfixCounters>>,
    view: ArcSwap<LiveView>,
    intel: ArcSwap<IntelView>,
    alerts: Mutex<crate::alerts::AlertCounters>,
    /// The alert delivery targets' counters, once delivery runs.
    delivery: std::sync::OnceLock<Vec<Arc<crate::alerts::deliver::TargetCounters>>>,
    /// Wakes the feed watcher, once one runs.
    intel_requests: std::sync::OnceLock<crossbeam_channel::Sender<intel_watch::WatchRequest>>,
}

fn lock_text(m: &Mutex<Option<String>>) -> Option<String> {
    match m.lock() {
        Ok(g) => g.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn set_text(m: &Mutex<Option<String>>, v: Option<String>) {
    match m.lock() {
        Ok(mut g) => *g = v,
        Err(poisoned) => *poisoned.into_inner() = v,
    }
}

impl Shared {
    fn failure(&self) -> Option<String> {
        lock_text(&self.failure)
    }

    fn snapshot(&self) -> StatusSnapshot {
        StatusSnapshot {
            running: self.running.load(Ordering::Acquire),
            failure: self.failure(),
            generation: self.generation.load(Ordering::Relaxed),
            publishes: self.publishes.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            workloads_learned: self.learned.load(Ordering::Relaxed),
            observed_refused: self.refused.load(Ordering::Relaxed),
            learned_forgotten: self.forgotten.load(Ordering::Relaxed),
            address_claims_refused: self.claims_refused.load(Ordering::Relaxed),
            flows_ended: FlowTally(
                self.flows_ended
                    .each_ref()
                    .map(|row| row.each_ref().map(|c| c.load(Ordering::Relaxed))),
            ),
            last_error: lock_text(&self.last_error),
            records: self.records.get().map(|c| RecordsStatus {
                written: c.written.load(Ordering::Relaxed),
                lost: c.lost.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
                expired: c.expired.load(Ordering::Relaxed),
                paused: c.paused.load(Ordering::Relaxed),
                bytes: c.bytes.load(Ordering::Relaxed),
                dns_written: c.dns_written.load(Ordering::Relaxed),
                dns_lost: c.dns_lost.load(Ordering::Relaxed),
                dns_decoder: c.dns_decoder(),
            }),
            ipfix: self.ipfix.get().map(|c| IpfixStatus::of(c)),
        }
    }
}

/// The policy that becomes version 1 when the store has no live version yet.
pub struct Bootstrap {
    pub model: Model,
    /// Where it came from (a file name), for the version's comment and the log.
    pub source: String,
}

/// Reads the dataplane's events off the control thread's hands, e.g. for a log.
pub type EventTap = Box<dyn FnMut(&Event) + Send>;

/// The running control thread.
pub struct Engine {
    pub handle: ControlHandle,
    pub thread: JoinHandle<()>,
    /// Where the live policy came from, for the log.
    pub origin: String,
}

/// Why the control thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{what}: {source}")]
    Invalid {
        what: String,
        source: crate::compile::CompileError,
    },
    #[error("the live policy cannot be published: {0}")]
    Publish(ControlError),
    #[error("cannot start the control thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Records(#[from] crate::records::RecordsError),
    #[error(transparent)]
    Ipfix(#[from] crate::ipfix::IpfixError),
    #[error(transparent)]
    Delivery(#[from] crate::alerts::deliver::DeliveryError),
}

impl Engine {
    /// Loads the live policy (see [`Bootstrap`]), the learned workloads and the
    /// quarantines in force from `store`, publishes the first snapshot into
    /// `cell` and starts the thread. `events` is the dataplane's event channel;
    /// `tap` sees every event the thread handles.
    pub fn start(
        mut store: Store,
        bootstrap: Bootstrap,
        cell: Arc<SnapshotCell>,
        events: Option<Receiver<Event>>,
        tap: Option<EventTap>,
        cfg: EngineConfig,
    ) -> Result<Engine, StartError> {
        let (version, live, origin) = match store.live()? {
            Some((v, m)) => (
                v,
                m,
                format!("live version {v} from {}", store.path().display()),
            ),
            None => {
                let Bootstrap { model, source } = bootstrap;
                let compiled = crate::compile(&model).map_err(|e| StartError::Invalid {
                    what: source.clone(),
                    source: e.into(),
                })?;
                let v = store.commit(
                    BOOTSTRAP_ACTOR,
                    &format!("from {source}"),
                    &model,
                    &compiled,
                )?;
                (v, model, format!("{source}, committed as version {v}"))
            }
        };
        let placeholder = LiveView {
            model: Arc::new(Model::default()),
            quarantines: Arc::default(),
            version,
            generation: 0,
        };
        let shared = Arc::new(Shared {
            running: AtomicBool::new(true),
            failure: Mutex::new(None),
            last_error: Mutex::new(None),
            generation: AtomicU64::new(0),
            publishes: AtomicU64::new(0),
            events: AtomicU64::new(0),
            learned: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            forgotten: AtomicU64::new(0),
            claims_refused: AtomicU64::new(0),
            flows_ended: Default::default(),
            records: std::sync::OnceLock::new(),
            ipfix: std::sync::OnceLock::new(),
            view: ArcSwap::from_pointee(placeholder),
            intel: ArcSwap::default(),
            alerts: Mutex::default(),
            delivery: std::sync::OnceLock::new(),
            intel_requests: std::sync::OnceLock::new(),
        });
        let exporter = match &cfg.ipfix {
            Some(plan) => {
                let x = crate::ipfix::Exporter::start(plan.config.clone())?;
                let _ = shared.ipfix.set(x.counters());
                Some((x, plan.worker_epoch))
            }
            None => None,
        };
        let recorder = match (&cfg.records, exporter) {
            (Some(plan), exporter) => {
                let writer = RecordsWriter::start(&plan.path, plan.config.clone())?;
                let _ = shared.records.set(writer.counters());
                let mut r = Recorder::new(writer, Clock::Since(plan.worker_epoch));
                if let Some((x, _)) = exporter {
                    r.export_to(x);
                }
                Some(r)
            }
            (None, Some((x, epoch))) => Some(Recorder::export_only(x, Clock::Since(epoch))),
            (None, None) => None,
        };
        let deliverer = if cfg.delivery.is_empty() {
            None
        } else {
            let d = crate::alerts::deliver::Deliverer::start(&cfg.delivery)?;
            let _ = shared.delivery.set(d.counters());
            Some(d)
        };
        let mut state = State::new(store, cell, shared.clone(), cfg, version, live)?;
        state.set_recorder(recorder);
        state.set_deliverer(deliverer);
        state.publish().map_err(StartError::Publish)?;
        let (tx, rx) = crossbeam_channel::bounded(64);
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("bulkhead-control".into())
            .spawn(move || run_thread(state, rx, events, tap, thread_shared))
            .map_err(StartError::Thread)?;
        Ok(Engine {
            handle: ControlHandle { tx, shared },
            thread,
            origin,
        })
    }
}

/// The thread body: the loop, with a panic turned into a recorded failure.
fn run_thread(
    state: State,
    commands: Receiver<Command>,
    events: Option<Receiver<Event>>,
    tap: Option<EventTap>,
    shared: Arc<Shared>,
) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        event_loop(state, commands, events, tap)
    }));
    if let Err(panic) = outcome {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        set_text(&shared.failure, Some(format!("panicked: {msg}")));
    }
    shared.running.store(false, Ordering::Release);
}

/// Events handled between two looks at the command queue: commands never wait
/// behind a long event backlog.
const EVENT_BURST: usize = 256;

/// How long the loop lets events gather after handling some (a flow's
/// events reach the store, the graph and the detectors this much later at
/// most; the workers' queue holds 16,384).
const EVENT_COALESCE: Duration = Duration::from_micros(500);

fn event_loop(
    mut state: State,
    commands: Receiver<Command>,
    events: Option<Receiver<Event>>,
    mut tap: Option<EventTap>,
) {
    let events = events.unwrap_or_else(crossbeam_channel::never);
    let mut on_event = |state: &mut State, e: &Event| {
        if let Some(t) = tap.as_mut() {
            t(e);
        }
        state.event(e);
    };
    let mut events_open = true;
    loop {
        // Commands first.
        loop {
            match commands.try_recv() {
                Ok(Command::Stop) => {
                    // What the stopped workers sent last (their flows'
                    // ends) is still recorded.
                    for e in events.try_iter() {
                        on_event(&mut state, &e);
                    }
                    state.persist_learned();
                    return;
                }
                Ok(cmd) => state.apply(cmd),
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                // Every handle is gone: nobody can command us any more, but the
                // dataplane still sends events; keep serving them.
                Err(crossbeam_channel::TryRecvError::Disconnected) => break,
            }
        }
        let mut handled = 0;
        while events_open && handled < EVENT_BURST {
            match events.try_recv() {
                Ok(e) => {
                    on_event(&mut state, &e);
                    handled += 1;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => events_open = false,
            }
        }
        state.collect_garbage();
        state.tick(Instant::now());
        if handled == EVENT_BURST {
            continue;
        }
        if handled > 0 {
            // Events came, and the queue is empty: let the workers queue
            // more before looking again (a command still wakes us at once)
            // instead of a wake-up, and on a shared core a context switch,
            // per event (bench/RESULTS.md, new flows per second). Idle,
            // the select below sleeps until the next event.
            let mut sel = crossbeam_channel::Select::new();
            sel.recv(&commands);
            let _ = sel.ready_timeout(EVENT_COALESCE);
            continue;
        }
        let wait = state.next_deadline(Instant::now());
        let events_rx = if events_open {
            events.clone()
        } else {
            crossbeam_channel::never()
        };
        crossbeam_channel::select! {
            recv(commands) -> cmd => match cmd {
                Ok(Command::Stop) => {
                    for e in events.try_iter() {
                        on_event(&mut state, &e);
                    }
                    state.persist_learned();
                    return;
                }
                Ok(cmd) => state.apply(cmd),
                Err(_) => {
                    if !events_open {
                        state.persist_learned();
                        return;
                    }
                    // No handle left: only events now.
                    match events.recv_timeout(wait) {
                        Ok(e) => on_event(&mut state, &e),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => events_open = false,
                    }
                }
            },
            recv(events_rx) -> e => match e {
                Ok(e) => on_event(&mut state, &e),
                Err(_) => events_open = false,
            },
            default(wait) => {}
        }
    }
}
