//! The policy's draft, diff, commit, versions and rollback.

use super::doc::PolicyModel;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::state::{blocking, Caller, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use control::diff::PolicyDiff;
use control::engine::CommitOutcome;
use control::store::{Version, VersionInfo};
use control::Model;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One changed item of a diff.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeView {
    /// `added`, `removed` or `changed`.
    pub kind: String,
    /// `rules`, `groups`, `services`, `workloads`, ...
    pub section: String,
    /// The item: a rule id, a group name, a MAC ...
    pub key: String,
}

/// What the draft changes against the live policy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiffView {
    pub changes: Vec<ChangeView>,
}

impl From<PolicyDiff> for DiffView {
    fn from(d: PolicyDiff) -> Self {
        DiffView {
            changes: d
                .changes
                .into_iter()
                .map(|c| ChangeView {
                    kind: serde_json::to_value(c.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    section: c.section.to_string(),
                    key: c.key,
                })
                .collect(),
        }
    }
}

/// A commit's (or rollback's) outcome.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CommitView {
    /// The new live version.
    pub version: u64,
    /// The policy generation that carries it.
    pub generation: u64,
    pub compiled_rules: usize,
    pub publish_ms: f64,
}

impl From<CommitOutcome> for CommitView {
    fn from(c: CommitOutcome) -> Self {
        CommitView {
            version: c.version,
            generation: c.generation,
            compiled_rules: c.compiled_rules,
            publish_ms: c.publish_ms,
        }
    }
}

/// One entry of the version history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    pub version: u64,
    /// RFC 3339.
    pub created_at: String,
    pub actor: String,
    pub comment: String,
    pub compiled_rules: u64,
    pub rollback_of: Option<u64>,
    pub live: bool,
}

impl From<VersionInfo> for VersionView {
    fn from(v: VersionInfo) -> Self {
        VersionView {
            version: v.version.0,
            created_at: v.created_at.to_string(),
            actor: v.actor,
            comment: v.comment,
            compiled_rules: v.compiled_rules,
            rollback_of: v.rollback_of.map(|v| v.0),
            live: v.live,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// Why; kept with the version. At most 4096 characters.
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub comment: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version whose policy becomes live again (as a new version).
    #[serde(deserialize_with = "crate::json::integral_u64")]
    pub version: u64,
}

/// The longest commit comment kept, in characters.
const MAX_COMMENT: usize = 4096;

/// The draft, or the live policy when there is no draft (the policy model,
/// as in a policy file).
#[utoipa::path(get, path = "/api/v1/policy/draft", tag = "policy",
    responses((status = 200, description = "the policy model", body = PolicyModel)))]
pub async fn get_draft(State(st): State<Shared>, _c: Caller) -> ApiResult<Json<Model>> {
    Ok(Json(st.control(|h| h.draft()).await?))
}

/// Replaces the draft (admin). The model is validated: every problem is in
/// the message, the first one's path in `field`.
#[utoipa::path(put, path = "/api/v1/policy/draft", tag = "policy",
    request_body(content = PolicyModel, description = "the policy model", content_type = "application/json"),
    responses((status = 200, body = DiffView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_draft(
    State(st): State<Shared>,
    _c: Caller,
    ApiJson(model): ApiJson<Model>,
) -> ApiResult<Json<DiffView>> {
    Ok(Json(st.control(move |h| h.save_draft(model)).await?.into()))
}

/// Discards the draft (admin).
#[utoipa::path(delete, path = "/api/v1/policy/draft", tag = "policy",
    responses((status = 204), (status = 403, body = ErrorBody)))]
pub async fn delete_draft(State(st): State<Shared>, _c: Caller) -> ApiResult<StatusCode> {
    st.control(|h| h.discard_draft()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What the draft changes against the live policy.
#[utoipa::path(get, path = "/api/v1/policy/diff", tag = "policy",
    responses((status = 200, body = DiffView)))]
pub async fn get_diff(State(st): State<Shared>, _c: Caller) -> ApiResult<Json<DiffView>> {
    Ok(Json(st.control(|h| h.diff()).await?.into()))
}

/// Commits the draft as a new live version (admin).
#[utoipa::path(post, path = "/api/v1/policy/commit", tag = "policy",
    request_body = CommitRequest,
    responses((status = 200, body = CommitView), (status = 403, body = ErrorBody),
        (status = 409, description = "no draft", body = ErrorBody),
        (status = 422, description = "the comment is too long", body = ErrorBody)))]
pub async fn commit(
    State(st): State<Shared>,
    c: Caller,
    ApiJson(body): ApiJson<CommitRequest>,
) -> ApiResult<Json<CommitView>> {
    if body.comment.chars().count() > MAX_COMMENT {
        return Err(ApiError::invalid(format!(
            "the comment is longer than {MAX_COMMENT} characters"
        ))
        .field("comment"));
    }
    let actor = c.actor();
    let out = st.control(move |h| h.commit(&actor, &body.comment)).await?;
    Ok(Json(out.into()))
}

/// The version history, oldest first.
#[utoipa::path(get, path = "/api/v1/policy/versions", tag = "policy",
    responses((status = 200, body = Vec<VersionView>)))]
pub async fn versions(State(st): State<Shared>, _c: Caller) -> ApiResult<Json<Vec<VersionView>>> {
    let v = st.control(|h| h.versions()).await?;
    Ok(Json(v.into_iter().map(VersionView::from).collect()))
}

/// One version's policy model.
#[utoipa::path(get, path = "/api/v1/policy/versions/{version}", tag = "policy",
    params(("version" = u64, Path)),
    responses((status = 200, description = "the policy model", body = PolicyModel),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn version(
    State(st): State<Shared>,
    _c: Caller,
    Path(n): Path<String>,
) -> ApiResult<Json<Model>> {
    let n: u64 = n
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| n.parse().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::bad_request(format!("version {n:?} is not a number")).field("version")
        })?;
    Ok(Json(st.control(move |h| h.version(Version(n))).await?))
}

/// Makes an earlier version's policy live again, as a new version (admin).
#[utoipa::path(post, path = "/api/v1/policy/rollback", tag = "policy",
    request_body = RollbackRequest,
    responses((status = 200, body = CommitView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn rollback(
    State(st): State<Shared>,
    c: Caller,
    ApiJson(body): ApiJson<RollbackRequest>,
) -> ApiResult<Json<CommitView>> {
    let actor = c.actor();
    let out = st
        .control(move |h| h.rollback(Version(body.version), &actor))
        .await?;
    Ok(Json(out.into()))
}

/// The window of a dry run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// The window's start: RFC 3339, or an age like `14d` (default 14d).
    #[serde(default)]
    pub since: Option<String>,
    /// The window's end: RFC 3339, or an age (default now).
    #[serde(default)]
    pub until: Option<String>,
}

/// What the draft, with the modes it sets, would change over the traffic
/// the flow records saw (viewer): the flows that pass under the live policy
/// and the draft would deny, the reverse, and those it would flag, by group
/// pair and service, with counts and example workload pairs. Judged by the
/// dataplane's own classifier. Without a draft, the live policy is judged
/// against itself (nothing changes).
#[utoipa::path(post, path = "/api/v1/policy/draft/dry-run", tag = "policy",
    request_body = DryRunRequest,
    responses((status = 200, body = control::learn::DryRun), (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "flow records are off on this appliance")))]
pub async fn dry_run(
    State(st): State<Shared>,
    _c: Caller,
    ApiJson(body): ApiJson<DryRunRequest>,
) -> ApiResult<Json<control::learn::DryRun>> {
    let window = control::learn::window(body.since, body.until, super::records::now_ms())
        .map_err(|e| ApiError::bad_request(e.message).field(e.field))?;
    let path = super::records::records_path(&st)?;
    let judged = st.control(|h| h.judged()).await?;
    let run = blocking(move || {
        let judge = |m: &Model| {
            control::learn::Judge::new(m).map_err(|e| ApiError::internal(e.to_string()))
        };
        let live = judge(&judged.live)?;
        let draft = match &judged.draft {
            Some(d) => Some(judge(d)?),
            None => None,
        };
        let reader =
            control::records::RecordsReader::open(&path).map_err(super::records::records_error)?;
        let traffic = reader
            .observed(window.0, window.1)
            .map_err(super::records::records_error)?;
        Ok(control::learn::dry_run(
            &traffic,
            control::learn::Today::Policy(&live),
            "live policy",
            draft.as_ref().unwrap_or(&live),
            window,
        ))
    })
    .await?;
    Ok(Json(run))
}
