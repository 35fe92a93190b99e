//! Stats (dataplane + control thread) and health; `/metrics` is in [`super::metrics`].

use crate::error::ErrorBody;
use crate::state::{Caller, Shared};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dataplane::io::Port;
use dataplane::worker::{DropReason, StatsReport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::ToSchema;

/// A worker's report is stale past this age: health says degraded.
pub const STALE_REPORT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PortView {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct FlowTableView {
    pub live: usize,
    pub capacity: usize,
    pub inserts: u64,
    pub evictions: u64,
    pub expirations: u64,
}

/// One worker's last report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    /// Milliseconds since the worker published it (absent: never).
    pub report_age_ms: Option<u64>,
    /// By port: `a`, `b`.
    pub ports: BTreeMap<String, PortView>,
    /// By reason: `rule-deny`, `default-deny`, `quarantine`, ...
    pub drops: BTreeMap<String, u64>,
    /// What the kernel dropped at the worker's AF_XDP sockets before the
    /// worker saw it, by cause: `rx-ring-full`, `fill-ring-empty`,
    /// `rx-dropped` (every undelivered frame), `rx-invalid`, `tx-invalid`.
    pub socket_drops: BTreeMap<String, u64>,
    pub flows_created: u64,
    pub reclassified: u64,
    pub events_lost: u64,
    /// Frames that claimed addresses another MAC holds (a live flow's, a
    /// bound IP), each reported as a `spoof` event.
    pub spoofed: u64,
    /// DNS answers held back for threat intel until their addresses were
    /// blocked (also counted in `drops.intel`).
    pub dns_held: u64,
    /// SYNs refused on an entry they did not open.
    pub syn_refused: u64,
    pub flow_table: FlowTableView,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ControlView {
    pub running: bool,
    /// Why it stopped, if it did not stop on request.
    pub failure: Option<String>,
    pub live_version: u64,
    /// The policy generation published last.
    pub generation: u64,
    pub publishes: u64,
    pub events: u64,
    pub workloads_learned: u64,
    pub observed_refused: u64,
    /// Learned workloads forgotten (idle, or making room under the cap).
    pub learned_forgotten: u64,
    /// Observations claiming an address another workload holds, not learned.
    pub address_claims_refused: u64,
    pub last_error: Option<String>,
    /// The flow records' writer; absent when records are off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<RecordsView>,
    /// The IPFIX exporter; absent when it does not export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipfix: Option<super::ipfix::IpfixView>,
}

/// What the flow records' writer did since the start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RecordsView {
    pub written: u64,
    /// Dropped: the writer was a queue behind, or a write failed.
    pub lost: u64,
    /// Batches whose write failed (a full disk, a damaged file).
    pub write_errors: u64,
    /// Deleted by retention.
    pub expired: u64,
    /// Records are paused: the filesystem is below its reserve, or full.
    pub paused: bool,
    /// Bytes of the store in use.
    pub bytes: u64,
    /// DNS records written to the store.
    #[serde(default)]
    pub dns_written: u64,
    /// DNS records dropped, as flow records are.
    #[serde(default)]
    pub dns_lost: u64,
    /// DNS messages seen that were not stored, by why (malformed,
    /// not-response, no-question, truncated, bad-length, gap, overflow,
    /// unsolicited).
    #[serde(default)]
    pub dns_dropped: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    pub workers: Vec<WorkerView>,
    pub control: ControlView,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// `ok`, `degraded`, or `misconfigured` (maintenance mode: bulkhead is
    /// not running, `problems` says why).
    pub status: String,
    pub control_running: bool,
    pub control_failure: Option<String>,
    /// The oldest worker report's age in milliseconds (absent: no report yet).
    pub worker_report_age_ms: Option<u64>,
    pub generation: u64,
    /// Flow records: `ok`, `paused` (the store's filesystem is below its
    /// reserve or full; forwarding is not affected, so the status stays
    /// `ok`), or absent when records are off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
    /// Why the appliance is not running (maintenance mode only): the
    /// day-0 configuration's problems, or why `bulkhead run` failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

pub(super) fn port_name(p: Port) -> &'static str {
    match p {
        Port::A => "a",
        Port::B => "b",
    }
}

fn worker_view(r: &StatsReport, age: Option<Duration>) -> WorkerView {
    let s = &r.worker;
    WorkerView {
        report_age_ms: age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
        ports: Port::BOTH
            .iter()
            .map(|&p| {
                let c = s.port(p);
                (
                    port_name(p).to_string(),
                    PortView {
                        rx_packets: c.rx_packets,
                        rx_bytes: c.rx_bytes,
                        tx_packets: c.tx_packets,
                        tx_bytes: c.tx_bytes,
                    },
                )
            })
            .collect(),
        drops: DropReason::ALL
            .iter()
            .map(|&d| (d.name().to_string(), s.drops(d)))
            .collect(),
        socket_drops: r
            .io
            .socket
            .by_name()
            .iter()
            .map(|&(name, n)| (name.to_string(), n))
            .collect(),
        flows_created: s.flows_created,
        reclassified: s.reclassified,
        events_lost: s.events_lost,
        spoofed: s.spoofed,
        dns_held: s.dns_held,
        syn_refused: s.syn_refused,
        flow_table: FlowTableView {
            live: r.live_flows,
            capacity: r.flow_capacity,
            inserts: r.flows.inserts,
            evictions: r.flows.evictions,
            expirations: r.flows.expirations,
        },
    }
}

fn stats_view(st: &Shared) -> StatsView {
    let ages = st.stats.ages();
    let workers = st
        .stats
        .reports()
        .iter()
        .enumerate()
        .map(|(i, r)| worker_view(r, ages.get(i).copied().flatten()))
        .collect();
    let s = st.control.status();
    StatsView {
        workers,
        control: ControlView {
            running: s.running,
            failure: s.failure,
            live_version: st.control.view().version.0,
            generation: s.generation,
            publishes: s.publishes,
            events: s.events,
            workloads_learned: s.workloads_learned,
            observed_refused: s.observed_refused,
            learned_forgotten: s.learned_forgotten,
            address_claims_refused: s.address_claims_refused,
            last_error: s.last_error,
            records: s.records.map(|r| RecordsView {
                written: r.written,
                lost: r.lost,
                write_errors: r.errors,
                expired: r.expired,
                paused: r.paused,
                bytes: r.bytes,
                dns_written: r.dns_written,
                dns_lost: r.dns_lost,
                dns_dropped: r
                    .dns_decoder
                    .by_reason()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            }),
            ipfix: s.ipfix.map(super::ipfix::view),
        },
    }
}

/// Dataplane counters (per worker) and the control thread's status.
#[utoipa::path(get, path = "/api/v1/stats", tag = "status",
    responses((status = 200, body = StatsView), (status = 401, body = ErrorBody)))]
pub async fn stats(State(st): State<Shared>, _c: Caller) -> Json<StatsView> {
    Json(stats_view(&st))
}

/// Liveness, without a token: 200 when the control thread runs and every
/// worker reported within 5 s, else 503 with the same body.
#[utoipa::path(get, path = "/api/v1/health", tag = "status", security(()),
    responses((status = 200, body = HealthView), (status = 503, body = HealthView)))]
pub async fn health(State(st): State<Shared>) -> Response {
    let s = st.control.status();
    let ages = st.stats.ages();
    let oldest = if ages.iter().any(Option::is_none) {
        None
    } else {
        ages.iter().flatten().max().copied()
    };
    let fresh = oldest.is_some_and(|a| a <= STALE_REPORT);
    let ok = s.running && fresh;
    let body = HealthView {
        status: if ok { "ok" } else { "degraded" }.to_string(),
        control_running: s.running,
        control_failure: s.failure,
        worker_report_age_ms: oldest.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
        generation: s.generation,
        records: s
            .records
            .map(|r| if r.paused { "paused" } else { "ok" }.to_string()),
        problems: Vec::new(),
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}
