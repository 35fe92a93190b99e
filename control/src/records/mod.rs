//! The records store: flow records and DNS responses with the workload
//! identity they had, and the address history, in an embedded database of
//! its own beside the policy store, so that writing records never makes a
//! commit, a quarantine or an API call wait.
//!
//! - [`RecordsWriter`] owns the database on a thread of its own and takes
//!   [`Batch`]es (flows, DNS responses, addresses seen) over a bounded
//!   queue: [`RecordsWriter::submit`]
//!   never blocks; a batch that finds the queue full is dropped and counted
//!   ([`RecordsCounters::lost`]), so the records can fall behind but never
//!   grow without bound or slow anything else.
//! - An identity (MAC, name, labels, groups) is stored once per version and
//!   referenced by the flows (`identities` table).
//! - Retention by age runs continuously on the writer thread, oldest first.
//! - Rollups and the forensic tables (passive DNS, address history,
//!   contacts) are derived from the records by the writer (`rollup.rs`,
//!   `derived.rs`) and read by the graph, the rule report and the forensic
//!   queries (`forensics/`: traceback, blast radius, addresses, DNS).
//!
//! Schema in [`schema`]; SQLite in WAL mode (`docs/decisions.md`, "Flow
//! records").

mod addresses;
mod checkpoint;
mod day_rollup;
mod derived;
mod dns_rows;
mod filter;
mod forensics;
mod graph;
mod group_rollup;
mod insert;
mod many;
mod names;
mod nodes;
mod observed;
mod query;
mod recorder;
mod rollup;
mod rules;
mod schema;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_forensics;
#[cfg(test)]
mod tests_rollups;
#[cfg(test)]
mod tests_schema;

pub use addresses::{AddressSeen, AddressSource};
pub use dns_rows::{reversed, AnswerRow, StoredDns};
pub use filter::{
    parse_time, Cursor, FlowFilter, FlowParams, ParamError, ReasonFilter, Side, VerdictFilter,
    DEFAULT_LIMIT, MAX_LIMIT, MAX_WINDOW_DAYS,
};
pub use forensics::{
    AddressHistory, AddressParams, AddressSpan, Attempt, BlastParams, BlastRadius, Contact,
    DnsParams, DnsQuery, IdentityView, PassiveDns, Reached, Resolution, Target, Traceback,
    TracebackCursor, TracebackPage, TracebackParams, TracedWorkload, MAX_DEPTH, SHARED_NAMES,
};
pub use graph::{Edge, Graph, GraphParams, GraphQuery, Level, Node, MAX_EDGES};
pub use nodes::Network;
pub use observed::{Observed, ObservedEnd, ObservedTraffic, MAX_OBSERVED};
pub(crate) use query::time_text;
pub use query::{EndView, FlowPage, FlowRow, RecordsReader};
pub use recorder::{Clock, Recorder};
pub use rules::{rule_report, RuleCounts, RuleReport, RuleUse, WindowParams};
#[cfg(test)]
use writer::now_ms as writer_now_ms;
pub(crate) use writer::{below_the_packet_path, now_ms};
pub use writer::{Batch, RecordsConfig, RecordsCounters, RecordsWriter};

use dataplane::event::{EndReason, FlowRecord};
use dataplane::flow::FlowState;
use dataplane::policy::{Mode, Reason};
use dataplane::wire::MacAddr;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// Why the records store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("records store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("records store {path}: schema version {found} is newer than this bulkhead knows ({known}); use a newer bulkhead")]
    Newer {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("records store {path}: no such file")]
    Missing { path: PathBuf },
    #[error("records store {path}: not a bulkhead records store")]
    Foreign { path: PathBuf },
    #[error("records store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("records query: {0}")]
    Query(String),
    #[error("records store: the writer thread: {0}")]
    Thread(String),
}

/// A workload's identity as it was when the flow was seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub mac: MacAddr,
    /// Empty for a MAC no workload has.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Group names, in policy order.
    pub groups: Vec<String>,
}

impl Identity {
    /// A MAC with no workload behind it.
    pub fn unknown(mac: MacAddr) -> Identity {
        Identity {
            mac,
            ..Identity::default()
        }
    }
}

/// Why a record was written: the flow ended (and how), or it is an interim
/// record of a flow still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Ended(EndReason),
    Interim,
}

/// One flow record as stored: the dataplane's record with the identities of
/// both ends and wall-clock times.
///
/// A flow that lives past the workers' interim period has several records:
/// interim ones while it runs, then its end. Each record's packets and bytes
/// are those since the flow's previous record, so sums over records are the
/// traffic; `opens` marks the first record of a flow, so counting flows is
/// counting records that open one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFlow {
    /// The worker's record. Its rule id is the user rule's (the recorder maps
    /// compiled ids back); its times are the worker's clock, `first_ms` and
    /// `last_ms` are the wall clock's; its counters are this record's share.
    pub flow: FlowRecord,
    /// The first record of its flow.
    pub opens: bool,
    /// Milliseconds since the Unix epoch.
    pub first_ms: i64,
    pub last_ms: i64,
    /// Shared: the recorder makes an end's identity once per policy
    /// generation, not once per record.
    pub src: std::sync::Arc<Identity>,
    pub dst: std::sync::Arc<Identity>,
    pub kind: RecordKind,
    /// With reason intel: the feed and what its entry lists (`c2
    /// 203.0.113.66`), as the intel in force when it was recorded says.
    pub intel: Option<std::sync::Arc<str>>,
}

/// What decided a flow, as stored (and as the queries and the counters
/// name it).
pub const REASONS: [&str; 6] = [
    "rule",
    "default",
    "quarantine",
    "blocklist",
    "management",
    "intel",
];

/// Names as stored (and as the queries take them).
pub(crate) fn reason_name(r: Reason) -> (&'static str, Option<u32>) {
    match r {
        Reason::Rule(id) => ("rule", Some(id)),
        Reason::Quarantine => ("quarantine", None),
        Reason::Management => ("management", None),
        Reason::Blocklist => ("blocklist", None),
        Reason::Default => ("default", None),
        // Entry ids are positions in the intel loaded then: the record
        // keeps the entry in words (`StoredFlow::intel`).
        Reason::Intel(_) => ("intel", None),
    }
}

pub(crate) fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Learn => "learn",
        Mode::Audit => "audit",
        Mode::Enforce => "enforce",
    }
}

pub(crate) fn state_name(s: FlowState) -> &'static str {
    match s {
        FlowState::SynSent => "synsent",
        FlowState::SynReceived => "synreceived",
        FlowState::Established => "established",
        FlowState::FinWait => "finwait",
        FlowState::Closing => "closing",
        FlowState::TimeWait => "timewait",
        FlowState::Closed => "closed",
        FlowState::Unreplied => "unreplied",
        FlowState::Replied => "replied",
    }
}

pub(crate) fn kind_name(k: RecordKind) -> &'static str {
    match k {
        RecordKind::Interim => "interim",
        RecordKind::Ended(EndReason::Idle) => "idle",
        RecordKind::Ended(EndReason::Evicted) => "evicted",
        RecordKind::Ended(EndReason::Reused) => "reused",
        RecordKind::Ended(EndReason::Flushed) => "flushed",
    }
}

/// An address as stored: 16 bytes, IPv4 as `::ffff:a.b.c.d`.
pub(crate) fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A counter as SQLite's signed integer (saturating).
pub(crate) fn sat(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored count (SQLite's signed integer) as a count: a negative one,
/// which only a damaged store holds, is 0.
pub(crate) fn count_at(r: &rusqlite::Row<'_>, at: usize) -> Result<u64, rusqlite::Error> {
    Ok(u64::try_from(r.get::<_, i64>(at)?).unwrap_or(0))
}

/// A MAC as stored: its 48 bits as an integer.
pub(crate) fn mac_int(m: MacAddr) -> i64 {
    let b = m.0;
    i64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// A stored MAC (the low 48 bits of the integer).
pub(crate) fn mac_of(v: i64) -> MacAddr {
    let b = v.to_be_bytes();
    MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
}
