//! Rule proposals from the flow records (viewer), and accepting them into
//! the draft (admin): never into the live policy.

use super::policy::DiffView;
use super::records::{now_ms, records_error, records_path};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::state::{blocking, Caller, Shared};
use axum::extract::{Query, State};
use axum::Json;
use control::learn::{propose, rules_of, Judge, Proposals};
use control::records::RecordsReader;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The window and scope of proposals (query string).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct ProposalParams {
    /// The window's start: RFC 3339, or an age like `14d` (default 14d).
    pub since: Option<String>,
    /// The window's end: RFC 3339, or an age (default now).
    pub until: Option<String>,
    /// Comma-separated groups: proposals for traffic with either end in
    /// one of them (default: all groups).
    pub groups: Option<String>,
}

/// Proposals to accept into the draft.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// The proposals' ids (from `GET /proposals` with the same window and
    /// groups).
    #[serde(default)]
    pub ids: Vec<String>,
    /// Every proposal of the window instead.
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub until: Option<String>,
    #[serde(default)]
    pub groups: Option<String>,
}

/// What accepting did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AcceptView {
    /// The rules added to the draft, by proposal id and rule id.
    pub accepted: Vec<AcceptedRule>,
    /// The draft's diff against the live policy now.
    pub diff: DiffView,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AcceptedRule {
    pub proposal: String,
    pub rule: u32,
}

/// The proposals of a window, judged against the live policy (with the
/// learned workloads), in the blocking pool.
async fn proposals_of(
    st: &Shared,
    since: Option<String>,
    until: Option<String>,
    groups: Option<String>,
) -> ApiResult<Proposals> {
    let window = control::learn::window(since, until, now_ms())
        .map_err(|e| ApiError::bad_request(e.message).field(e.field))?;
    let scope = control::learn::scope(groups.as_deref());
    let path = records_path(st)?;
    let live = st.control.view().model.clone();
    if let Some(unknown) = scope
        .iter()
        .find(|g| !live.groups.iter().any(|x| &x.name == *g))
    {
        return Err(
            ApiError::bad_request(format!("no group {unknown:?} in the live policy"))
                .field("groups"),
        );
    }
    blocking(move || {
        let judge = Judge::new(&live).map_err(|e| ApiError::internal(e.to_string()))?;
        let traffic = RecordsReader::open(&path)
            .map_err(records_error)?
            .observed(window.0, window.1)
            .map_err(records_error)?;
        Ok(propose(&traffic, &judge, &scope, window))
    })
    .await
}

/// Rule proposals (viewer): the fewest group -> group rules over services
/// that allow every flow of the window the live policy allows by no rule,
/// each with its flows, bytes, workload pairs, first and last seen and
/// examples; ends in no group as labelling gaps.
#[utoipa::path(get, path = "/api/v1/proposals", tag = "policy", params(ProposalParams),
    responses((status = 200, body = control::learn::Proposals), (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "flow records are off on this appliance")))]
pub async fn list(
    State(st): State<Shared>,
    _c: Caller,
    Query(q): Query<ProposalParams>,
) -> ApiResult<Json<Proposals>> {
    Ok(Json(proposals_of(&st, q.since, q.until, q.groups).await?))
}

/// Accepts proposals into the draft (admin): their rules are appended to
/// the draft (or to a copy of the live policy), after every rule already
/// there, so no flow a rule decides today changes. Commit the draft to
/// make them live.
#[utoipa::path(post, path = "/api/v1/proposals/accept", tag = "policy",
    request_body = AcceptRequest,
    responses((status = 200, body = AcceptView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "an id is not among the window's proposals"),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "flow records are off on this appliance")))]
pub async fn accept(
    State(st): State<Shared>,
    _c: Caller,
    ApiJson(body): ApiJson<AcceptRequest>,
) -> ApiResult<Json<AcceptView>> {
    if body.all != body.ids.is_empty() {
        return Err(ApiError::bad_request("give either ids or all: true").field("ids"));
    }
    let p = proposals_of(&st, body.since, body.until, body.groups).await?;
    let chosen: Vec<&control::learn::Proposal> = if body.all {
        p.proposals.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for id in &body.ids {
            match p.proposals.iter().find(|x| &x.id == id) {
                Some(x) => chosen.push(x),
                None => {
                    return Err(ApiError::not_found(format!(
                        "proposal {id:?} is not among the proposals of {} .. {}",
                        p.since, p.until
                    ))
                    .field("ids"))
                }
            }
        }
        chosen
    };
    let mut draft = st.control(|h| h.draft()).await?;
    let after = draft.rules.iter().map(|r| r.id).max().unwrap_or(0);
    let window = format!("{} .. {}", p.since, p.until);
    let rules = rules_of(&chosen, after, &window);
    let accepted = chosen
        .iter()
        .zip(&rules)
        .map(|(p, r)| AcceptedRule {
            proposal: p.id.clone(),
            rule: r.id,
        })
        .collect();
    draft.rules.extend(rules);
    let diff = st.control(move |h| h.save_draft(draft)).await?;
    Ok(Json(AcceptView {
        accepted,
        diff: diff.into(),
    }))
}
