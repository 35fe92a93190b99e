//! Quarantine by MAC: the list in force, quarantine, release, history.

use super::inventory::{mac_param, MacSegment};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::state::{Caller, Shared};
use axum::extract::{Query, State};
use axum::Json;
use control::store::{ActiveQuarantine, QuarantineAction, QuarantineEvent, QuarantineSource};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A quarantine in force.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuarantineView {
    pub mac: String,
    /// The workload's name, if one is known.
    pub name: Option<String>,
    pub reason: Option<String>,
    pub actor: String,
    /// RFC 3339.
    pub at: String,
    /// `command` (API, CLI: stays until released) or `policy` (the live
    /// policy's `quarantine:` list).
    pub source: String,
}

/// One quarantine or release.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuarantineEventView {
    pub id: i64,
    pub mac: String,
    /// `quarantine` or `release`.
    pub action: String,
    pub reason: Option<String>,
    pub actor: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuarantineRequest {
    /// `02:00:00:00:01:0a` (`:` or `-`).
    #[schema(
        pattern = "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$|^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5}$"
    )]
    pub mac: String,
    /// Why (an alert id, a ticket); kept in the history. At most 1024
    /// characters.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuarantineResult {
    pub mac: String,
    /// It was quarantined already: nothing changed.
    pub already: bool,
    /// No workload with this MAC is known yet (a pre-emptive quarantine).
    pub unknown_workload: bool,
    /// The policy generation that carries the quarantine.
    pub generation: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReleaseResult {
    pub mac: String,
    /// `false`: it was not quarantined; nothing changed.
    pub released: bool,
    pub generation: u64,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// Only this MAC's events.
    #[param(pattern = "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$|^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5}$")]
    pub mac: Option<String>,
}

/// The longest reason kept, in characters.
const MAX_REASON: usize = 1024;

fn view(q: ActiveQuarantine, names: &control::model::Workloads) -> QuarantineView {
    let name = dataplane::policy::parse_mac(&q.mac)
        .and_then(|m| names.by_mac(m))
        .map(|w| w.name.clone())
        .filter(|n| !n.is_empty());
    QuarantineView {
        mac: q.mac,
        name,
        reason: q.reason,
        actor: q.actor,
        at: q.at.to_string(),
        source: match q.source {
            QuarantineSource::Command => "command",
            QuarantineSource::Policy => "policy",
        }
        .to_string(),
    }
}

fn event_view(e: QuarantineEvent) -> QuarantineEventView {
    QuarantineEventView {
        id: e.id,
        mac: e.mac,
        action: match e.action {
            QuarantineAction::Quarantine => "quarantine",
            QuarantineAction::Release => "release",
        }
        .to_string(),
        reason: e.reason,
        actor: e.actor,
        at: e.at.to_string(),
    }
}

/// The quarantines in force.
#[utoipa::path(get, path = "/api/v1/quarantine", tag = "quarantine",
    responses((status = 200, body = Vec<QuarantineView>)))]
pub async fn list(State(st): State<Shared>, _c: Caller) -> ApiResult<Json<Vec<QuarantineView>>> {
    let active = st.control(|h| h.quarantines()).await?;
    let live = st.control.view();
    Ok(Json(
        active
            .into_iter()
            .map(|q| view(q, &live.model.workloads))
            .collect(),
    ))
}

/// Quarantines a workload by MAC (operator): all its traffic is dropped,
/// established flows included, but for the management exceptions. Idempotent.
#[utoipa::path(post, path = "/api/v1/quarantine", tag = "quarantine",
    request_body = QuarantineRequest,
    responses((status = 200, body = QuarantineResult), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add(
    State(st): State<Shared>,
    c: Caller,
    ApiJson(body): ApiJson<QuarantineRequest>,
) -> ApiResult<Json<QuarantineResult>> {
    let mac = mac_param(&body.mac, "mac")?;
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON)
    {
        return Err(ApiError::invalid(format!(
            "the reason is longer than {MAX_REASON} characters"
        ))
        .field("reason"));
    }
    let reason = body
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    let actor = c.actor();
    let out = st
        .control(move |h| h.quarantine(mac, reason, &actor))
        .await?;
    Ok(Json(QuarantineResult {
        mac: out.mac,
        already: out.already,
        unknown_workload: out.unknown_workload,
        generation: out.generation,
    }))
}

/// Releases a quarantined workload (operator). Idempotent.
#[utoipa::path(delete, path = "/api/v1/quarantine/{mac}", tag = "quarantine",
    params(("mac" = String, Path, description = "e.g. 02:00:00:00:01:0a or 02-00-00-00-01-0a",
        pattern = "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$|^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5}$")),
    responses((status = 200, body = ReleaseResult), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn release(
    State(st): State<Shared>,
    c: Caller,
    MacSegment(mac): MacSegment,
) -> ApiResult<Json<ReleaseResult>> {
    let mac = mac_param(&mac, "mac")?;
    let actor = c.actor();
    let out = st
        .control(move |h| h.release(mac, Some("released over the API".into()), &actor))
        .await?;
    Ok(Json(ReleaseResult {
        mac: out.mac,
        released: out.released,
        generation: out.generation,
    }))
}

/// Quarantines and releases, oldest first; `?mac=` for one workload's.
#[utoipa::path(get, path = "/api/v1/quarantine/history", tag = "quarantine",
    params(HistoryQuery),
    responses((status = 200, body = Vec<QuarantineEventView>), (status = 400, body = ErrorBody)))]
pub async fn history(
    State(st): State<Shared>,
    _c: Caller,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<Vec<QuarantineEventView>>> {
    let mac = q.mac.as_deref().map(|m| mac_param(m, "mac")).transpose()?;
    let events = st.control(move |h| h.quarantine_history(mac)).await?;
    Ok(Json(events.into_iter().map(event_view).collect()))
}
