//! Threat-intel feeds managed through the API (admin): make a feed, add
//! and remove its entries, delete it; list a managed feed's entries
//! (viewer). A change is in force when the call answers: flows to a newly
//! listed address are cut by then, offloaded ones too; the retro-hunt of
//! what was added runs after (`GET /intel` shows it, alerts say what it
//! found). The config's feed files are not edited here.

use super::parse_param as parse;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::state::{Caller, Shared};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use control::intel::feeds::{
    EntryInput, ManagedDone, ManagedFeed, ManagedOp, MAX_CALL, MAX_CATEGORY, MAX_MANAGED,
};
use control::intel::{Action, Severity};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A feed to make.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedRequest {
    /// 1 to 64 letters, digits, `-`, `_` or `.`; not a feed of the config.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"
    )]
    pub name: String,
    /// `alert` (default) or `block`.
    #[schema(pattern = "^(alert|block)$")]
    pub action: Option<String>,
    /// Of entries that name none: `low`, `medium`, `high` (default),
    /// `critical`.
    #[schema(pattern = "^(low|medium|high|critical|[1-4])$")]
    pub severity: Option<String>,
    /// Quarantine a workload that resolves or contacts an entry.
    #[serde(default)]
    pub quarantine: bool,
    /// Accept absurd entries (`0.0.0.0/0`, `com`, the appliance's own
    /// networks).
    #[serde(default)]
    pub force: bool,
}

/// An entry to add.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryRequest {
    /// An address, a network (CIDR) or a domain (it and every name under
    /// it).
    #[schema(min_length = 1, max_length = 255)]
    pub indicator: String,
    #[schema(max_length = 64)]
    pub category: Option<String>,
    /// `low`, `medium`, `high`, `critical`; default: the feed's.
    #[schema(pattern = "^(low|medium|high|critical|[1-4])$")]
    pub severity: Option<String>,
}

/// Entries to add.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntriesRequest {
    /// 1 to 10,000 a call.
    #[schema(min_items = 1, max_items = 10000)]
    pub entries: Vec<EntryRequest>,
}

/// An entry the call did not take, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefusedEntry {
    pub indicator: String,
    pub why: String,
}

/// What a change did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedChange {
    pub feed: String,
    pub added: usize,
    /// Listed already: left as they were.
    pub already: usize,
    pub removed: usize,
    pub refused: Vec<RefusedEntry>,
    /// Indicators to remove that the feed does not list.
    pub not_found: Vec<String>,
    /// The policy generation that put the change in force.
    pub generation: u64,
}

fn change(feed: String, d: ManagedDone) -> FeedChange {
    FeedChange {
        feed,
        added: d.added,
        already: d.already,
        removed: d.removed,
        refused: d
            .refused
            .into_iter()
            .map(|(indicator, why)| RefusedEntry { indicator, why })
            .collect(),
        not_found: d.not_found,
        generation: d.generation,
    }
}

/// Makes a feed managed through the API (admin), empty; its entries are
/// added with `POST /intel/feeds/{feed}/entries`.
#[utoipa::path(post, path = "/api/v1/intel/feeds", tag = "intel",
    request_body = FeedRequest,
    responses((status = 201, body = FeedChange), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(st): State<Shared>,
    _c: Caller,
    ApiJson(body): ApiJson<FeedRequest>,
) -> ApiResult<(StatusCode, Json<FeedChange>)> {
    let feed = ManagedFeed {
        action: parse::<Action>(body.action.as_deref(), "action")?.unwrap_or(Action::Alert),
        severity: parse::<Severity>(body.severity.as_deref(), "severity")?
            .unwrap_or(Severity::High),
        name: body.name.clone(),
        quarantine: body.quarantine,
        force: body.force,
    };
    let done = st
        .control(move |h| h.manage_intel(ManagedOp::Create(feed)))
        .await?;
    Ok((StatusCode::CREATED, Json(change(body.name, done))))
}

/// Deletes a feed managed through the API (admin): its entries are lifted.
#[utoipa::path(delete, path = "/api/v1/intel/feeds/{feed}", tag = "intel",
    params(("feed" = String, Path, description = "the feed", pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    responses((status = 200, body = FeedChange), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(st): State<Shared>,
    _c: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<FeedChange>> {
    let n = name.clone();
    let done = st
        .control(move |h| h.manage_intel(ManagedOp::Delete(n)))
        .await?;
    Ok(Json(change(name, done)))
}

/// Adds entries to a feed managed through the API (admin). In force at the
/// answer; each added entry is then hunted in the records (retro-hunt).
/// Entries that do not parse or are absurd are refused one by one, with
/// why; the rest are added.
#[utoipa::path(post, path = "/api/v1/intel/feeds/{feed}/entries", tag = "intel",
    params(("feed" = String, Path, description = "the feed", pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    request_body = EntriesRequest,
    responses((status = 200, body = FeedChange), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn add(
    State(st): State<Shared>,
    _c: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<EntriesRequest>,
) -> ApiResult<Json<FeedChange>> {
    if body.entries.is_empty() || body.entries.len() > MAX_CALL {
        return Err(
            ApiError::bad_request(format!("1 to {MAX_CALL} entries a call")).field("entries"),
        );
    }
    let mut entries = Vec::with_capacity(body.entries.len());
    for (i, e) in body.entries.into_iter().enumerate() {
        if e.indicator.is_empty() || e.indicator.len() > 255 {
            return Err(ApiError::bad_request("an indicator of 1 to 255 characters")
                .field(format!("entries[{i}].indicator")));
        }
        if e.category
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_CATEGORY)
        {
            return Err(ApiError::bad_request(format!(
                "a category of at most {MAX_CATEGORY} characters"
            ))
            .field(format!("entries[{i}].category")));
        }
        entries.push(EntryInput {
            severity: parse::<Severity>(e.severity.as_deref(), &format!("entries[{i}].severity"))?,
            indicator: e.indicator,
            category: e.category,
        });
    }
    let feed = name.clone();
    let done = st
        .control(move |h| h.manage_intel(ManagedOp::Add { feed, entries }))
        .await?;
    Ok(Json(change(name, done)))
}

/// Removes one entry from a feed managed through the API (admin): the
/// indicator as listed (a network's `/` written `%2F`).
#[utoipa::path(delete, path = "/api/v1/intel/feeds/{feed}/entries/{indicator}", tag = "intel",
    params(("feed" = String, Path, description = "the feed", pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"),
        ("indicator" = String, Path, description = "an address, network or domain")),
    responses((status = 200, body = FeedChange), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(st): State<Shared>,
    _c: Caller,
    Path((name, indicator)): Path<(String, String)>,
) -> ApiResult<Json<FeedChange>> {
    let feed = name.clone();
    let done = st
        .control(move |h| {
            h.manage_intel(ManagedOp::Remove {
                feed,
                indicators: vec![indicator],
            })
        })
        .await?;
    Ok(Json(change(name, done)))
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
pub struct EntriesQuery {
    /// Entries skipped (the next page: the previous offset plus its count);
    /// at most 1,000,000 (a managed feed's size).
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u32>,
    /// 1 to 1000, default 100.
    pub limit: Option<String>,
}

/// An entry of a managed feed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EntryView {
    pub indicator: String,
    pub category: Option<String>,
    /// `null`: the feed's.
    pub severity: Option<String>,
    /// When it was added (RFC 3339; kept across restarts). Absent for an
    /// entry of a file written before the time was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EntriesPage {
    pub feed: String,
    /// Entries the feed holds.
    pub total: usize,
    pub offset: u32,
    pub entries: Vec<EntryView>,
}

/// A managed feed's entries, in the order they were added (viewer).
#[utoipa::path(get, path = "/api/v1/intel/feeds/{feed}/entries", tag = "intel",
    params(("feed" = String, Path, description = "the feed", pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"), EntriesQuery),
    responses((status = 200, body = EntriesPage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn list(
    State(st): State<Shared>,
    _c: Caller,
    Path(name): Path<String>,
    Query(q): Query<EntriesQuery>,
) -> ApiResult<Json<EntriesPage>> {
    let limit = super::limit_param(q.limit.as_deref())?;
    let offset = q.offset.unwrap_or(0);
    if usize::try_from(offset).map_or(true, |o| o > MAX_MANAGED) {
        return Err(
            ApiError::bad_request(format!("offset: at most {MAX_MANAGED}")).field("offset"),
        );
    }
    let skip = usize::try_from(offset).unwrap_or(usize::MAX);
    let feed = name.clone();
    let (entries, total) = st
        .control(move |h| h.managed_entries(&feed, skip, limit))
        .await?;
    Ok(Json(EntriesPage {
        feed: name,
        total,
        offset,
        entries: entries
            .into_iter()
            .map(|m| EntryView {
                indicator: m.entry.indicator.to_string(),
                category: m.entry.category,
                severity: m.entry.severity.map(|s| s.to_string()),
                added_at: m.added_ms.map(super::intel::rfc3339),
            })
            .collect(),
    }))
}
