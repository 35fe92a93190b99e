//! Tokens and the audit log (admin).

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::state::{Caller, Shared};
use crate::token::{self, Role, TokenError, TokenView};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use control::store::AuditEntry;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// 1 to 64 characters from `a-z A-Z 0-9 . _ - @`.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    pub name: String,
    pub role: Role,
}

/// A new token: the only time its text is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    /// `bh_...`: keep it; it cannot be shown again.
    pub token: String,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
pub struct TokenQuery {
    /// List revoked tokens too.
    #[serde(default)]
    pub revoked: bool,
}

/// One audit entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// The token's name (or another actor for entries not from the API).
    pub actor: String,
    pub role: Option<String>,
    /// `POST /api/v1/quarantine`.
    pub action: String,
    /// The request body, shortened.
    pub detail: String,
    /// `ok`, or the error.
    pub result: String,
    /// The HTTP status answered.
    pub status: Option<u16>,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        AuditView {
            id: e.id,
            at: e.at.to_string(),
            actor: e.actor,
            role: e.role,
            action: e.action,
            detail: e.detail,
            result: e.result,
            status: e.status,
        }
    }
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// At most this many entries (default 100; 0 is taken as 1, anything
    /// over 1000 as 1000).
    #[param(value_type = Option<usize>, minimum = 0)]
    pub limit: Option<String>,
    /// Only entries with an id below this one (the next page).
    pub before: Option<i64>,
}

fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::BadName(_) => ApiError::invalid(e.to_string()).field("name"),
        TokenError::NameTaken(_) => ApiError::conflict(e.to_string()).field("name"),
        TokenError::Store(s) => ApiError::from(s),
        other => ApiError::internal(other.to_string()),
    }
}

/// Tokens (admin); never their text or hash.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "admin", params(TokenQuery),
    responses((status = 200, body = Vec<TokenView>), (status = 403, body = ErrorBody)))]
pub async fn list_tokens(
    State(st): State<Shared>,
    _c: Caller,
    Query(q): Query<TokenQuery>,
) -> ApiResult<Json<Vec<TokenView>>> {
    let list = st
        .store(move |s| token::list(s, q.revoked).map_err(token_error))
        .await?;
    Ok(Json(list))
}

/// Creates a token (admin); its text is in this answer only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "admin", request_body = TokenRequest,
    responses((status = 201, body = NewToken), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_token(
    State(st): State<Shared>,
    c: Caller,
    ApiJson(body): ApiJson<TokenRequest>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    let by = c.actor();
    let TokenRequest { name, role } = body;
    let created = st
        .store(move |s| {
            let t = token::create(s, &name, role, &by).map_err(token_error)?;
            Ok(NewToken {
                name,
                role,
                token: t,
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revokes a token (admin): it stops working at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "admin",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9._@-]{1,64}$")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(st): State<Shared>,
    c: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let by = c.actor();
    let shown = name.clone();
    let revoked = st.store(move |s| Ok(s.revoke_token(&name, &by)?)).await?;
    if revoked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no active token named {shown:?}")).field("name"))
    }
}

/// The audit log, newest first (admin).
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = Vec<AuditView>), (status = 403, body = ErrorBody)))]
pub async fn audit(
    State(st): State<Shared>,
    _c: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditView>>> {
    let limit = super::limit_param(q.limit.as_deref())?;
    let entries = st
        .store(move |s| Ok(s.audit_entries(limit, q.before)?))
        .await?;
    Ok(Json(entries.into_iter().map(AuditView::from).collect()))
}
