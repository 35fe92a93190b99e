//! What the control thread publishes for readers that must not wait on it:
//! the live view, the threat intel in force, the status with the IPFIX and
//! records counters.

use super::HuntReport;
use crate::model::Model;
use crate::store::Version;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The live state as last published, for readers that must not wait on the thread.
#[derive(Debug, Clone)]
pub struct LiveView {
    /// The live version plus learned workloads (its `quarantine` list is the
    /// live version's own; [`LiveView::quarantines`] is what is in force).
    pub model: Arc<Model>,
    /// The quarantines in force: the policy's and the commands'.
    pub quarantines: Arc<Vec<crate::model::Quarantine>>,
    pub version: Version,
    pub generation: u64,
}

/// The models a dry run judges ([`super::ControlHandle::judged`]).
#[derive(Debug, Clone)]
pub struct Judged {
    /// The live version plus learned workloads.
    pub live: Arc<Model>,
    /// The draft plus learned workloads; `None` without a draft.
    pub draft: Option<Model>,
}

/// The threat intel in force, for readers that must not wait on the thread.
#[derive(Debug, Clone, Default)]
pub struct IntelView {
    pub intel: Arc<crate::intel::Intel>,
    /// What each feed's last reading did.
    pub feeds: Vec<crate::intel::feeds::FeedStatus>,
    /// The generation that put it in force (0: never set).
    pub generation: u64,
    /// When, ms since the epoch.
    pub published_ms: i64,
    /// How long reading the feeds took.
    pub took_ms: f64,
    /// The last retro-hunt, if one ran.
    pub hunt: Option<HuntReport>,
}

/// Counters and health of the control thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSnapshot {
    pub running: bool,
    /// Why it stopped, when it did not stop on request (a panic message).
    pub failure: Option<String>,
    pub generation: u64,
    pub publishes: u64,
    pub events: u64,
    pub workloads_learned: u64,
    pub observed_refused: u64,
    /// Learned workloads forgotten: idle too long, or making room under the cap.
    pub learned_forgotten: u64,
    /// Observations that claimed an address another workload holds: the
    /// address was not learned for the claimant (see `engine::bindings`).
    pub address_claims_refused: u64,
    /// Flows ended since the start, by verdict and reason ([`FlowTally`]).
    pub flows_ended: FlowTally,
    /// The last compile or store error met while applying events, if any.
    pub last_error: Option<String>,
    /// The flow records' writer, when records are kept.
    pub records: Option<RecordsStatus>,
    /// The IPFIX exporter, when it exports.
    pub ipfix: Option<IpfixStatus>,
}

/// What the IPFIX exporter did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpfixStatus {
    /// Records encoded for the collectors.
    pub exported: u64,
    /// Records dropped: the exporter was a queue behind.
    pub dropped: u64,
    pub collectors: Vec<CollectorStatus>,
}

/// What one collector got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectorStatus {
    /// `udp://host:port` or `tcp://host:port`.
    pub collector: String,
    pub messages: u64,
    pub records: u64,
    pub bytes: u64,
    /// Records it did not get: it was down, refused them, or was slow.
    pub lost: u64,
    pub errors: u64,
    /// TCP connections made.
    pub connects: u64,
    /// The last send (or connect) worked.
    pub up: bool,
}

impl IpfixStatus {
    pub(super) fn of(c: &crate::ipfix::IpfixCounters) -> IpfixStatus {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IpfixStatus {
            exported: n(&c.exported),
            dropped: n(&c.dropped),
            collectors: c
                .collectors
                .iter()
                .map(|k| CollectorStatus {
                    collector: k.name.clone(),
                    messages: n(&k.messages),
                    records: n(&k.records),
                    bytes: n(&k.bytes),
                    lost: n(&k.lost_records),
                    errors: n(&k.errors),
                    connects: n(&k.connects),
                    up: k.up.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

/// Verdicts as counted: `allow`, `deny`, `would-deny`.
pub const VERDICTS: [&str; 3] = ["allow", "deny", "would-deny"];
/// Reasons as counted (and as the records name them).
pub use crate::records::REASONS;

/// Flows ended, by `[verdict][reason]` (indexes into [`VERDICTS`], [`REASONS`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowTally(pub [[u64; REASONS.len()]; VERDICTS.len()]);

impl FlowTally {
    /// `(verdict, reason, flows)` for every pair.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        VERDICTS.iter().enumerate().flat_map(move |(v, verdict)| {
            REASONS
                .iter()
                .enumerate()
                .map(move |(r, reason)| (*verdict, *reason, self.0[v][r]))
        })
    }
}

/// What the records writer did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordsStatus {
    pub written: u64,
    /// Dropped: the writer was a queue behind, or a write failed.
    pub lost: u64,
    /// Batches whose write failed (a full disk, a damaged file).
    pub errors: u64,
    /// Deleted by retention.
    pub expired: u64,
    /// Paused: the filesystem is below its reserve, or full.
    pub paused: bool,
    /// Bytes of the store in use.
    pub bytes: u64,
    /// DNS records written, and dropped as flow records are.
    pub dns_written: u64,
    pub dns_lost: u64,
    /// DNS responses decoded and messages dropped by why.
    pub dns_decoder: crate::dns::DnsCounters,
}
