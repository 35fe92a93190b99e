//! `/metrics`: the Prometheus text, built fresh on every scrape from the
//! workers' board, the control thread's status, detection's state and the
//! API's own counters (nothing is sampled in between).

use super::status::port_name;
use crate::error::ApiError;
use crate::state::Shared;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use dataplane::io::Port;
use dataplane::worker::DropReason;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
    detect: Option<&control::detect::DetectStatus>,
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
    if let Some(d) = detect {
        super::detect::register(&mut reg, d);
    }
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
    // From the control thread; if it is down the scrape goes on without it.
    let detect = st.control(|h| h.detect()).await.ok();
    match render_metrics(&st, &states, detect.as_ref()) {
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
