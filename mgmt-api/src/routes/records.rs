//! Flow records (viewer): the records store queried with the filters of
//! `bulkhead records flows`, parsed by the same code (`FlowParams`).

use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::state::{blocking, Caller, Shared};
use axum::extract::{Query, State};
use axum::Json;
use control::records::{
    rule_report, AddressHistory, AddressParams, BlastParams, BlastRadius, DnsParams, FlowParams,
    FlowRow, Graph, GraphParams, RecordsError, RecordsReader, Resolution, RuleReport, Traceback,
    TracebackParams, WindowParams, DEFAULT_LIMIT,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A page of flow records, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FlowPageView {
    pub flows: Vec<FlowRow>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The rows a page holds at most, as applied (a larger `limit` is capped).
    pub limit: usize,
}

pub(super) fn records_error(e: RecordsError) -> ApiError {
    match e {
        RecordsError::Missing { .. } | RecordsError::Foreign { .. } => {
            ApiError::new(ErrorCode::Unavailable, e.to_string())
        }
        other => ApiError::internal(other.to_string()),
    }
}

pub(super) fn now_ms() -> i64 {
    i64::try_from(control::time::Timestamp::now().0 / 1_000_000).unwrap_or(i64::MAX)
}

pub(super) fn records_path(st: &Shared) -> ApiResult<std::path::PathBuf> {
    st.records.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "flow records are off on this appliance ([records] enabled = false)",
        )
    })
}

/// The access graph of a window from the flow records (viewer): nodes
/// (workloads or groups, and external addresses) and edges by service and
/// verdict with flows, packets, bytes, first and last seen.
#[utoipa::path(get, path = "/api/v1/graph", tag = "records", params(GraphParams),
    responses((status = 200, body = Graph), (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "flow records are off on this appliance")))]
pub async fn graph(
    State(st): State<Shared>,
    _c: Caller,
    Query(q): Query<GraphParams>,
) -> ApiResult<Json<Graph>> {
    let query = q
        .query(now_ms())
        .map_err(|e| ApiError::bad_request(e.message).field(e.field))?;
    let path = records_path(&st)?;
    let g = blocking(move || {
        let reader = RecordsReader::open(&path).map_err(records_error)?;
        reader.graph(&query).map_err(records_error)
    })
    .await?;
    Ok(Json(g))
}

/// Flow records, newest first (viewer). Every filter narrows; see
/// `docs/api.md`.
#[utoipa::path(get, path = "/api/v1/flows", tag = "records", params(FlowParams),
    responses((status = 200, body = FlowPageView), (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "flow records are off on this appliance")))]
pub async fn flows(
    State(st): State<Shared>,
    _c: Caller,
    Query(q): Query<FlowParams>,
) -> ApiResult<Json<FlowPageView>> {
    let filter = q
        .filter(now_ms())
        .map_err(|e| ApiError::bad_request(e.message).field(e.field))?;
    let path = records_path(&st)?;
    let limit = match filter.limit {
        0 => DEFAULT_LIMIT,
        n => n,
    };
    let page = blocking(move || {
        let reader = RecordsReader::open(&path).map_err(records_error)?;
        reader.flows(&filter).map_err(records_error)
    })
    .await?;
    Ok(Json(FlowPageView {
        flows: page.flows,
        next: page.next.map(|c| c.to_string()),
        limit,
    }))
}

/// Rule use from the flow records (viewer): each rule of the live policy
/// with the flows it decided in the window, its would-denies and last hit,
/// never-hit rules marked, then rules the records name that the policy no
/// longer has. The window starts by default at the live version's commit.
#[utoipa::path(get, path = "/api/v1/rules/usage", tag = "records", params(WindowParams),
    responses((status = 200, body = RuleReport), (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "flow records are off on this appliance")))]
pub async fn rule_usage(
    State(st): State<Shared>,
    _c: Caller,
    Query(q): Query<WindowParams>,
) -> ApiResult<Json<RuleReport>> {
    let now = now_ms();
    let view = st.control.view();
    let live = view.version;
    let committed = st
        .store(move |s| {
            Ok(s.versions()?
                .into_iter()
                .find(|v| v.version == live)
                .map(|v| i64::try_from(v.created_at.0 / 1_000_000).unwrap_or(0)))
        })
        .await?
        .unwrap_or(now - 7 * 86_400_000);
    let (since, until) = q
        .window(
            now,
            committed.max(now - control::records::MAX_WINDOW_DAYS * 86_400_000),
        )
        .map_err(|e| ApiError::bad_request(e.message).field(e.field))?;
    let path = records_path(&st)?;
    let model = view.model.clone();
    let report = blocking(move || {
        let reader = RecordsReader::open(&path).map_err(records_error)?;
        let counts = reader.rule_counts(since, until).map_err(records_error)?;
        Ok(rule_report(Some(&model), &counts, since, until))
    })
    .await?;
    Ok(Json(report))
}

fn param_error(e: control::records::ParamError) -> ApiError {
    ApiError::bad_request(e.message).field(e.field)
}

/// Traceback (viewer): the workloads that resolved a domain (or a name under
/// it) or contacted an address or network in the window, each by identity
/// then and now, with the addresses it held, its resolutions (answers,
/// TTLs, CNAME chain) and its flows to the answered addresses after them.
/// A page of `limit` workloads (default 25), first seen first; `next` is
/// the `cursor` of the following page. Contacts to an answer many other
/// names share (`shared_answers`) count only for workloads that resolved
/// the name.
#[utoipa::path(get, path = "/api/v1/traceback", tag = "records", params(TracebackParams),
    responses((status = 200, body = Traceback), (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "flow records are off on this appliance")))]
pub async fn traceback(
    State(st): State<Shared>,
    _c: Caller,
    Query(q): Query<TracebackParams>,
) -> ApiResult<Json<Traceback>> {
    let (target, since, until, page) = q.query(now_ms()).map_err(param_error)?;
    let path = records_path(&st)?;
    let t = blocking(move || {
        let reader = RecordsReader::open(&path).map_err(records_error)?;
        reader
            .traceback_page(&target, since, until, page)
            .map_err(records_error)
    })
    .await?;
    Ok(Json(t))
}

/// Blast radius (viewer): breadth first over the allowed flows a workload
/// began after `since`, causally (a hop from B counts only for flows B began
/// after the path reached it): each workload or external address reached
/// with its depth, first contact, path, services and bytes; denied
/// attempts apart.
#[utoipa::path(get, path = "/api/v1/blast-radius", tag = "records", params(BlastParams),
    responses((status = 200, body = BlastRadius), (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "flow records are off on this appliance")))]
pub async fn blast_radius(
    State(st): State<Shared>,
    _c: Caller,
    Query(q): Query<BlastParams>,
) -> ApiResult<Json<BlastRadius>> {
    let (mac, since, until, depth) = q.query(now_ms()).map_err(param_error)?;
    let path = records_path(&st)?;
    let b = blocking(move || {
        let reader = RecordsReader::open(&path).map_err(records_error)?;
        reader
            .blast_radius(mac, since, until, depth)
            .map_err(records_error)
    })
    .await?;
    Ok(Json(b))
}

/// Address history (viewer): which MACs held an address over the window
/// (ARP, DHCP, flows, DNS), or with `at` the holder then.
#[utoipa::path(get, path = "/api/v1/addresses", tag = "records", params(AddressParams),
    responses((status = 200, body = AddressHistory), (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "flow records are off on this appliance")))]
pub async fn addresses(
    State(st): State<Shared>,
    _c: Caller,
    Query(q): Query<AddressParams>,
) -> ApiResult<Json<AddressHistory>> {
    let (ip, at, since, until) = q.query(now_ms()).map_err(param_error)?;
    let path = records_path(&st)?;
    let h = blocking(move || {
        let reader = RecordsReader::open(&path).map_err(records_error)?;
        reader
            .addresses(ip, at, since, until)
            .map_err(records_error)
    })
    .await?;
    Ok(Json(h))
}

/// DNS responses kept raw, newest first (viewer): by name and the names
/// under it, client MAC, response code, window.
#[utoipa::path(get, path = "/api/v1/dns", tag = "records", params(DnsParams),
    responses((status = 200, body = Vec<Resolution>), (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "flow records are off on this appliance")))]
pub async fn dns(
    State(st): State<Shared>,
    _c: Caller,
    Query(q): Query<DnsParams>,
) -> ApiResult<Json<Vec<Resolution>>> {
    let query = q.query(now_ms()).map_err(param_error)?;
    let path = records_path(&st)?;
    let rows = blocking(move || {
        let reader = RecordsReader::open(&path).map_err(records_error)?;
        reader.dns(&query).map_err(records_error)
    })
    .await?;
    Ok(Json(rows))
}
