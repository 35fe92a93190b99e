//! Stats (dataplane + control thread), health, and `/metrics`.

use crate::error::{ApiError, ErrorBody};
use crate::state::{Caller, Shared};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dataplane::io::Port;
use dataplane::worker::{DropReason, StatsReport};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
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

fn port_name(p: Port) -> &'static str {
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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabels {
    worker: String,
    port: String,
    direction: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    worker: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    worker: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLabels {
    verdict: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

fn u(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The metrics text: built fresh from the board and the control status on
/// every scrape (nothing is sampled in between), plus the API's own counters.
pub fn render_metrics(
    st: &Shared,
    alert_states: &[(control::alerts::State, u64)],
) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("bulkhead");
    let packets = Family::<PortLabels, Counter>::default();
    let bytes = Family::<PortLabels, Counter>::default();
    let drops = Family::<DropLabels, Counter>::default();
    let socket_drops = Family::<DropLabels, Counter>::default();
    let live = Family::<WorkerLabel, Gauge>::default();
    let evictions = Family::<WorkerLabel, Counter>::default();
    let lost = Family::<WorkerLabel, Counter>::default();
    let spoofed = Family::<WorkerLabel, Counter>::default();
    let syn_refused = Family::<WorkerLabel, Counter>::default();
    let age = Family::<WorkerLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let ages = st.stats.ages();
    for (i, r) in st.stats.reports().iter().enumerate() {
        let worker = i.to_string();
        let w = WorkerLabel {
            worker: worker.clone(),
        };
        for p in Port::BOTH {
            let c = r.worker.port(p);
            for (dir, pk, by) in [
                ("rx", c.rx_packets, c.rx_bytes),
                ("tx", c.tx_packets, c.tx_bytes),
            ] {
                let l = PortLabels {
                    worker: worker.clone(),
                    port: port_name(p).to_string(),
                    direction: dir.to_string(),
                };
                packets.get_or_create(&l).inc_by(pk);
                bytes.get_or_create(&l).inc_by(by);
            }
        }
        for d in DropReason::ALL {
            drops
                .get_or_create(&DropLabels {
                    worker: worker.clone(),
                    reason: d.name().to_string(),
                })
                .inc_by(r.worker.drops(d));
        }
        for (reason, n) in r.io.socket.by_name() {
            socket_drops
                .get_or_create(&DropLabels {
                    worker: worker.clone(),
                    reason: reason.to_string(),
                })
                .inc_by(n);
        }
        live.get_or_create(&w).set(u(r.live_flows as u64));
        evictions.get_or_create(&w).inc_by(r.flows.evictions);
        lost.get_or_create(&w).inc_by(r.worker.events_lost);
        spoofed.get_or_create(&w).inc_by(r.worker.spoofed);
        syn_refused.get_or_create(&w).inc_by(r.worker.syn_refused);
        if let Some(Some(a)) = ages.get(i) {
            age.get_or_create(&w).set(a.as_secs_f64());
        }
    }
    reg.register("port_packets", "Frames per port and direction", packets);
    reg.register("port_bytes", "Bytes per port and direction", bytes);
    reg.register("drops", "Frames dropped, by reason", drops);
    reg.register(
        "socket_drops",
        "Frames the kernel dropped at the AF_XDP sockets before a worker saw them, by cause",
        socket_drops,
    );
    reg.register("live_flows", "Flows in the flow table", live);
    reg.register(
        "flow_evictions",
        "Live flows evicted to make room in a full flow table",
        evictions,
    );
    reg.register(
        "events_lost",
        "Dataplane events dropped because the channel to the control thread was full",
        lost,
    );
    reg.register(
        "spoofed",
        "Frames that claimed addresses another MAC holds (a live flow's, a bound IP)",
        spoofed,
    );
    reg.register(
        "syn_refused",
        "SYNs refused on a flow entry they did not open",
        syn_refused,
    );
    reg.register(
        "worker_report_age_seconds",
        "Seconds since the worker last published its counters",
        age,
    );
    let s = st.control.status();
    let generation = Gauge::<i64>::default();
    generation.set(u(s.generation));
    reg.register(
        "policy_generation",
        "The policy generation published last",
        generation,
    );
    let up = Gauge::<i64>::default();
    up.set(i64::from(s.running));
    reg.register("control_up", "1 while the control thread runs", up);
    let version = Gauge::<i64>::default();
    version.set(u(st.control.view().version.0));
    reg.register("policy_live_version", "The live policy version", version);
    let learned = Counter::<u64>::default();
    learned.inc_by(s.workloads_learned);
    reg.register(
        "workloads_learned",
        "Workloads learned from the wire",
        learned,
    );
    let claims = Counter::<u64>::default();
    claims.inc_by(s.address_claims_refused);
    reg.register(
        "address_claims_refused",
        "Observations claiming an address another workload holds (not learned)",
        claims,
    );
    let ended = Family::<FlowLabels, Counter>::default();
    for (verdict, reason, n) in s.flows_ended.iter() {
        ended
            .get_or_create(&FlowLabels {
                verdict: verdict.to_string(),
                reason: reason.to_string(),
            })
            .inc_by(n);
    }
    reg.register(
        "flows_ended",
        "Flows ended (as the control thread saw them), by verdict and by what decided it",
        ended,
    );
    if let Some(r) = s.records {
        for (name, help, v) in [
            (
                "records_written",
                "Flow records written to the records store",
                r.written,
            ),
            (
                "records_lost",
                "Flow records dropped: the writer was a queue behind or a write failed",
                r.lost,
            ),
            (
                "records_write_errors",
                "Batches of flow records whose write failed",
                r.errors,
            ),
            (
                "records_expired",
                "Flow records deleted by retention",
                r.expired,
            ),
            (
                "dns_records_written",
                "DNS responses written to the records store",
                r.dns_written,
            ),
            (
                "dns_records_lost",
                "DNS responses dropped: the writer was a queue behind or a write failed",
                r.dns_lost,
            ),
            (
                "dns_responses_decoded",
                "DNS responses seen on the wire and decoded",
                r.dns_decoder.responses,
            ),
        ] {
            let c = Counter::<u64>::default();
            c.inc_by(v);
            reg.register(name, help, c);
        }
        let dropped = Family::<ReasonLabel, Counter>::default();
        for (reason, n) in r.dns_decoder.by_reason() {
            dropped
                .get_or_create(&ReasonLabel {
                    reason: reason.to_string(),
                })
                .inc_by(n);
        }
        reg.register(
            "dns_messages_dropped",
            "DNS messages on the wire not recorded, by why (malformed, not-response, no-question, truncated, bad-length, gap, overflow, unsolicited)",
            dropped,
        );
        let paused = Gauge::<i64>::default();
        paused.set(i64::from(r.paused));
        reg.register(
            "records_paused",
            "1 while flow records are paused (the filesystem is below its reserve, or full)",
            paused,
        );
        let bytes = Gauge::<i64>::default();
        bytes.set(i64::try_from(r.bytes).unwrap_or(i64::MAX));
        reg.register(
            "records_store_bytes",
            "Bytes of the records store in use",
            bytes,
        );
    }
    if let Some(x) = &s.ipfix {
        super::ipfix::register(&mut reg, x);
    }
    super::intel::register(&mut reg, &st.control.intel());
    super::alerts::register(&mut reg, &st.control.alert_counters(), alert_states);
    super::alerts::register_delivery(&mut reg, &st.control.delivery());
    reg.register(
        "api_requests",
        "Management API requests answered, by HTTP status",
        st.requests.clone(),
    );
    let auth = st.limiter.stats();
    let failures = Counter::<u64>::default();
    failures.inc_by(auth.failures);
    reg.register(
        "api_auth_failures",
        "Failed authentication attempts answered 401 (within their address's budget)",
        failures,
    );
    let refused = Counter::<u64>::default();
    refused.inc_by(auth.refused);
    reg.register(
        "api_auth_refused",
        "Failed authentication attempts answered 429 (their address spent its budget)",
        refused,
    );
    let tracked = Gauge::<i64>::default();
    tracked.set(u(auth.tracked as u64));
    reg.register(
        "api_auth_tracked_addresses",
        "Client addresses with failed attempts tracked by the limiter",
        tracked,
    );
    let evicted = Counter::<u64>::default();
    evicted.inc_by(auth.evictions);
    reg.register(
        "api_auth_evictions",
        "Client addresses the limiter forgot to stay within its bound",
        evicted,
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}

/// Prometheus text format. A viewer token is needed unless the config allows
/// scrapes without one (`api.metrics_unauthenticated`).
pub async fn metrics(State(st): State<Shared>, req: Request) -> Response {
    if !st.metrics_unauthenticated {
        let creds = crate::middleware::credentials(&req);
        if let Err(e) = crate::middleware::authenticate(&st, creds).await {
            return e.into_response();
        }
    }
    // Counted in the store; a failure leaves the gauges at zero, never the
    // scrape without metrics.
    let states = st
        .store(|s| Ok(s.alert_states()?))
        .await
        .unwrap_or_default();
    match render_metrics(&st, &states) {
        Ok(text) => {
            let mut r = text.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        Err(_) => ApiError::internal("the metrics could not be encoded").into_response(),
    }
}
