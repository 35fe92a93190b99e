//! The recorder: the worker's flow events turned into stored records (the
//! identity of each end as the policy knows it then, the user rule's id,
//! wall-clock times), batched to the [`RecordsWriter`]. It runs where the
//! events are read: the control thread of `bulkhead run`, or a replay.

use super::{Identity, RecordKind, RecordsCounters, RecordsWriter, StoredFlow};
use crate::compile::user_rule_id;
use crate::model::Model;
use dataplane::event::{Event, FlowRecord};
use dataplane::policy::{PolicySnapshot, Reason};
use dataplane::wire::MacAddr;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records handed to the writer at once.
const BATCH: usize = 1_000;
/// A batch is handed over at the latest this long after its first record.
const HOLD: Duration = Duration::from_secs(1);

/// What the worker's times (nanoseconds) are.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// Nanoseconds since `epoch`, the instant the worker's clock started
    /// (`bulkhead run`).
    Since(Instant),
    /// Nanoseconds since the Unix epoch (a capture's timestamps).
    Unix,
}

/// Builds [`StoredFlow`]s from events and batches them to the writer.
pub struct Recorder {
    writer: RecordsWriter,
    /// Wall-clock milliseconds at the worker clock's zero.
    zero_ms: i64,
    /// Never drop a batch: wait for the writer (a replay has time).
    lossless: bool,
    /// The model the names below came from.
    model: Option<Arc<Model>>,
    names: HashMap<MacAddr, (String, BTreeMap<String, String>)>,
    batch: Vec<StoredFlow>,
    since: Option<Instant>,
}

impl Recorder {
    /// A recorder that drops (and counts) a batch the writer has no room for:
    /// the control thread never waits.
    pub fn new(writer: RecordsWriter, clock: Clock) -> Recorder {
        let zero_ms = match clock {
            Clock::Since(epoch) => {
                super::writer::now_ms().saturating_sub(epoch.elapsed().as_millis() as i64)
            }
            Clock::Unix => 0,
        };
        Recorder {
            writer,
            zero_ms,
            lossless: false,
            model: None,
            names: HashMap::new(),
            batch: Vec::with_capacity(BATCH),
            since: None,
        }
    }

    /// A recorder that waits for the writer rather than drop a batch (a replay).
    pub fn lossless(writer: RecordsWriter, clock: Clock) -> Recorder {
        let mut r = Recorder::new(writer, clock);
        r.lossless = true;
        r
    }

    pub fn counters(&self) -> Arc<RecordsCounters> {
        self.writer.counters()
    }

    /// Records `event` if it ends a flow. Identities come from `model` (names
    /// and labels by MAC) and `snapshot` (the groups each end is in).
    pub fn record(&mut self, event: &Event, model: &Arc<Model>, snapshot: &PolicySnapshot) {
        let Event::FlowEnd(flow, why) = event else {
            return;
        };
        self.learn_names(model);
        let stored = StoredFlow {
            flow: FlowRecord {
                verdict: dataplane::policy::Verdict {
                    reason: match flow.verdict.reason {
                        Reason::Rule(id) => Reason::Rule(user_rule_id(id)),
                        other => other,
                    },
                    ..flow.verdict
                },
                ..*flow
            },
            first_ms: self.wall_ms(flow.first_seen),
            last_ms: self.wall_ms(flow.last_seen),
            src: self.identity(flow.src_mac, flow.src_ip, snapshot),
            dst: self.identity(flow.dst_mac, flow.dst_ip, snapshot),
            kind: RecordKind::Ended(*why),
        };
        self.batch.push(stored);
        self.since.get_or_insert_with(Instant::now);
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    /// Hands the batch over if it has waited long enough.
    pub fn tick(&mut self) {
        if self.since.is_some_and(|t| t.elapsed() >= HOLD) {
            self.flush();
        }
    }

    /// Hands the batch over now.
    pub fn flush(&mut self) {
        self.since = None;
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        if !self.lossless {
            self.writer.submit(batch);
            return;
        }
        let mut batch = batch;
        while let Err(back) = self.writer.try_submit(batch) {
            batch = back;
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Flushes, lets the writer write everything, and stops it (what
    /// dropping the recorder does).
    pub fn finish(self) {
        drop(self);
    }

    /// Wall-clock milliseconds of a worker time.
    fn wall_ms(&self, worker_ns: u64) -> i64 {
        self.zero_ms
            .saturating_add(i64::try_from(worker_ns / 1_000_000).unwrap_or(i64::MAX))
    }

    fn learn_names(&mut self, model: &Arc<Model>) {
        if self.model.as_ref().is_some_and(|m| Arc::ptr_eq(m, model)) {
            return;
        }
        self.names = model
            .workloads
            .iter()
            .filter_map(|w| {
                let mac = w.mac.parse::<MacAddr>().ok()?;
                Some((mac, (w.name.clone(), w.labels.clone())))
            })
            .collect();
        self.model = Some(model.clone());
    }

    fn identity(&self, mac: MacAddr, ip: std::net::IpAddr, snap: &PolicySnapshot) -> Identity {
        let (name, labels) = self.names.get(&mac).cloned().unwrap_or_default();
        Identity {
            mac,
            name,
            labels,
            groups: snap
                .endpoint_groups(mac, ip)
                .into_iter()
                .map(str::to_string)
                .collect(),
        }
    }
}

impl Drop for Recorder {
    /// The batch goes to the writer; the writer, dropped next, writes what it
    /// was given and stops.
    fn drop(&mut self) {
        self.flush();
    }
}
