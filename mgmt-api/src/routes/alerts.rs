//! Alerts: listed with filters (viewer), acknowledged and closed
//! (operator), counted in the metrics.

use super::records::now_ms;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::{Caller, Shared};
use axum::extract::{Path, Query, State};
use axum::Json;
use control::alerts::{Alert, AlertCounters, AlertFilter, Kind, State as AlertState};
use control::intel::Severity;
use control::time::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// An alert.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    pub id: i64,
    /// `intel-ip` (a flow to or from a listed address), `intel-dns` (a DNS
    /// answer for a listed name), `intel-retro` (found in the records
    /// when the entry was added: before it was listed), `scan` (a port
    /// scan or host sweep from the workload), `first-seen-service` (a group
    /// pair's service never seen in the baseline), `fan-out` (many more
    /// peers than the workload's busiest hour), `deny-burst` (many denied
    /// flows), `dns-nxdomain` or `dns-new-names` (a DGA's lookups).
    pub kind: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// `open`, `acknowledged` or `closed`.
    pub state: String,
    /// The workload it is about, and its name then.
    pub mac: String,
    pub workload: Option<String>,
    /// What matched: a listed address, network or domain.
    pub indicator: String,
    pub summary: String,
    /// First and last time raised (RFC 3339), and how often.
    pub first_at: String,
    pub last_at: String,
    pub count: u64,
    /// The flow or DNS answer and the matching entry.
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    /// Who last changed the state, and when.
    pub state_by: Option<String>,
    pub state_at: Option<String>,
}

fn rfc3339(ms: i64) -> String {
    Timestamp(u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)).to_string()
}

pub(crate) fn view(a: Alert) -> AlertView {
    AlertView {
        id: a.id,
        kind: a.kind.name().into(),
        severity: a.severity.to_string(),
        state: a.state.name().into(),
        mac: a.mac,
        workload: a.workload,
        indicator: a.indicator,
        summary: a.summary,
        first_at: rfc3339(a.first_ms),
        last_at: rfc3339(a.last_ms),
        count: a.count,
        evidence: a.evidence,
        state_by: a.state_by,
        state_at: a.state_ms.map(rfc3339),
    }
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
pub struct AlertQuery {
    /// `open`, `acknowledged` or `closed`.
    pub state: Option<String>,
    /// `intel-ip`, `intel-dns`, `intel-retro`, `scan`, `first-seen-service`,
    /// `fan-out`, `deny-burst`, `dns-nxdomain` or `dns-new-names`.
    pub kind: Option<String>,
    /// At least this severe: `low`, `medium`, `high`, `critical`.
    pub severity: Option<String>,
    /// The workload's MAC.
    #[param(pattern = "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$|^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5}$")]
    pub mac: Option<String>,
    /// Raised last at or after: RFC 3339, or a duration back from now
    /// (`24h`, `7d`).
    pub since: Option<String>,
    /// Ids below this one (the next page, newest first).
    pub before: Option<i64>,
    /// 1 to 1000, default 100.
    pub limit: Option<String>,
}

fn filter(q: &AlertQuery) -> ApiResult<AlertFilter> {
    let limit = super::limit_param(q.limit.as_deref())?;
    let mac = match q.mac.as_deref() {
        None => None,
        Some(m) => Some(super::inventory::mac_param(m, "mac")?.to_string()),
    };
    let since_ms = match q.since.as_deref() {
        None => None,
        Some(t) => Some(
            control::records::parse_time(t, now_ms())
                .map_err(|e| ApiError::bad_request(e).field("since"))?,
        ),
    };
    Ok(AlertFilter {
        state: super::parse_param::<AlertState>(q.state.as_deref(), "state")?,
        kind: super::parse_param::<Kind>(q.kind.as_deref(), "kind")?,
        severity: super::parse_param::<Severity>(q.severity.as_deref(), "severity")?,
        mac,
        since_ms,
        before: q.before,
        limit,
    })
}

/// Alerts, newest first (viewer), filtered by state, kind, least severity,
/// workload and time.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, body = Vec<AlertView>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(st): State<Shared>,
    _c: Caller,
    Query(q): Query<AlertQuery>,
) -> ApiResult<Json<Vec<AlertView>>> {
    let f = filter(&q)?;
    let alerts = st.store(move |s| Ok(s.alerts(&f)?)).await?;
    Ok(Json(alerts.into_iter().map(view).collect()))
}

/// One alert (viewer).
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts",
    params(("id" = u64, Path, description = "the alert's id")),
    responses((status = 200, body = AlertView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get(
    State(st): State<Shared>,
    _c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertView>> {
    let id = id_param(&id)?;
    let a = st.store(move |s| Ok(s.alert(id)?)).await?;
    a.map(|a| Json(view(a)))
        .ok_or_else(|| ApiError::not_found(format!("no alert {id}")))
}

fn id_param(id: &str) -> ApiResult<i64> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(format!("alert id {id:?}: digits only")).field("id"));
    }
    Ok(id.parse::<i64>().unwrap_or(i64::MAX))
}

async fn set_state(
    st: Shared,
    c: Caller,
    id: String,
    state: AlertState,
) -> ApiResult<Json<AlertView>> {
    let id = id_param(&id)?;
    let actor = c.actor();
    let a = st
        .store(move |s| Ok(s.set_alert_state(id, state, &actor, now_ms())?))
        .await?;
    a.map(|a| Json(view(a)))
        .ok_or_else(|| ApiError::not_found(format!("no alert {id}")))
}

/// Acknowledges an alert (operator): someone is on it. Repeats still count.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/ack", tag = "alerts",
    params(("id" = u64, Path, description = "the alert's id")),
    responses((status = 200, body = AlertView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn ack(
    State(st): State<Shared>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertView>> {
    set_state(st, c, id, AlertState::Acknowledged).await
}

/// Closes an alert (operator): a repeat after this raises a new alert.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/close", tag = "alerts",
    params(("id" = u64, Path, description = "the alert's id")),
    responses((status = 200, body = AlertView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn close(
    State(st): State<Shared>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertView>> {
    set_state(st, c, id, AlertState::Closed).await
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RaisedLabel {
    kind: String,
    severity: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: String,
}

/// `bulkhead_alerts_delivery_*` metrics, by target (`syslog+udp://...`,
/// `webhook+https://...`).
pub(crate) fn register_delivery(
    reg: &mut Registry,
    targets: &[std::sync::Arc<control::alerts::deliver::TargetCounters>],
) {
    if targets.is_empty() {
        return;
    }
    use std::sync::atomic::Ordering::Relaxed;
    let sent = Family::<TargetLabel, Counter>::default();
    let dropped = Family::<TargetLabel, Counter>::default();
    let errors = Family::<TargetLabel, Counter>::default();
    let retries = Family::<TargetLabel, Counter>::default();
    let up = Family::<TargetLabel, Gauge>::default();
    for t in targets {
        let l = TargetLabel {
            target: t.name.clone(),
        };
        sent.get_or_create(&l).inc_by(t.sent.load(Relaxed));
        dropped.get_or_create(&l).inc_by(t.dropped.load(Relaxed));
        errors.get_or_create(&l).inc_by(t.errors.load(Relaxed));
        retries.get_or_create(&l).inc_by(t.retries.load(Relaxed));
        up.get_or_create(&l).set(i64::from(t.up.load(Relaxed)));
    }
    reg.register("alerts_delivered", "Alerts sent to a delivery target", sent);
    reg.register(
        "alerts_delivery_dropped",
        "Alerts a delivery target did not get (its queue was full, or the send failed)",
        dropped,
    );
    reg.register(
        "alerts_delivery_errors",
        "Failed sends and connects to a delivery target",
        errors,
    );
    reg.register(
        "alerts_delivery_retries",
        "Sends to a delivery target tried again (webhooks: a timeout, 429, 5xx)",
        retries,
    );
    reg.register(
        "alerts_delivery_up",
        "1 when the last send to a delivery target worked",
        up,
    );
}

/// `bulkhead_alerts_*` metrics: raised by kind and severity, repeats,
/// suppressed, write errors, and alerts by state (from the store).
pub(crate) fn register(reg: &mut Registry, c: &AlertCounters, states: &[(AlertState, u64)]) {
    let raised = Family::<RaisedLabel, Counter>::default();
    for kind in Kind::ALL {
        for severity in Severity::ALL {
            let n = c.raised.get(&(kind, severity)).copied().unwrap_or(0);
            raised
                .get_or_create(&RaisedLabel {
                    kind: kind.name().into(),
                    severity: severity.to_string(),
                })
                .inc_by(n);
        }
    }
    reg.register(
        "alerts_raised",
        "New alerts stored since the start, by kind and severity",
        raised,
    );
    for (name, help, n) in [
        (
            "alerts_repeats",
            "Repeats folded into an alert already open (its count)",
            c.repeats,
        ),
        (
            "alerts_suppressed",
            "New alerts not stored: over the rate limit",
            c.suppressed,
        ),
        ("alerts_write_errors", "Alert writes that failed", c.errors),
    ] {
        let counter = Counter::<u64>::default();
        counter.inc_by(n);
        reg.register(name, help, counter);
    }
    let by_state = Family::<StateLabel, Gauge>::default();
    for s in [
        AlertState::Open,
        AlertState::Acknowledged,
        AlertState::Closed,
    ] {
        let n = states.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n);
        by_state
            .get_or_create(&StateLabel {
                state: s.name().into(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    reg.register("alerts", "Alerts in the store, by state", by_state);
}
