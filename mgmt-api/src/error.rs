//! The one error shape of the API: `{code, message, field}` with a 4xx status
//! for anything a request did wrong.
//!
//! - 400 `bad_request`: the request cannot be read: malformed JSON, a wrong
//!   type, an unknown field, a MAC or a number that does not parse (`field` is
//!   the path of the offending value, e.g. `rules[0].action`).
//! - 422 `invalid`: well-formed but refused: the policy model's validation
//!   problems (`field` is the first problem's path; `message` lists them all,
//!   one per line), a reason or a token name out of bounds.
//! - 401 `unauthorized`, 403 `forbidden`, 404 `not_found`, 405
//!   `method_not_allowed`, 409 `conflict` (no draft to commit, a token name in
//!   use), 413 `payload_too_large`, 415 `unsupported_media_type`, 429
//!   `rate_limited`.
//! - 503 `unavailable`: the control thread is not running (not the request's
//!   fault); 500 `internal`: a bug or a store failure.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use control::engine::ControlError;
use control::store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: `bad_request`, `invalid`, `unauthorized`,
    /// `forbidden`, `not_found`, `method_not_allowed`, `conflict`,
    /// `payload_too_large`, `unsupported_media_type`, `rate_limited`,
    /// `unavailable`, `internal`.
    pub code: String,
    /// For people.
    pub message: String,
    /// The request field at fault (`mac`, `rules[3].services[0]`), if one is.
    pub field: Option<String>,
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                code: code.to_string(),
                message: message.into(),
                field: None,
            },
            retry_after: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// The code for a status when nothing more specific is known.
    pub fn from_status(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_client_error() => "bad_request",
            _ => "internal",
        };
        Self::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"bulkhead\""),
            );
        }
        resp
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Invalid(problems) => {
                let field = problems.0.first().map(|p| p.path.clone());
                let mut err = ApiError::invalid(problems.to_string());
                err.body.field = field;
                err
            }
            ControlError::BadMac(m) => {
                ApiError::bad_request(format!("invalid MAC address {m:?}")).field("mac")
            }
            ControlError::NoSuchVersion(v) => {
                ApiError::not_found(format!("policy version {v} does not exist")).field("version")
            }
            ControlError::NoDraft => ApiError::conflict("there is no draft to commit"),
            ControlError::Stopped(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
            ControlError::Store(StoreError::NoSuchVersion(v)) => {
                ApiError::not_found(format!("policy version {v} does not exist")).field("version")
            }
            ControlError::Store(StoreError::BadMac(m)) => {
                ApiError::bad_request(format!("invalid MAC address {m:?}")).field("mac")
            }
            ControlError::Store(StoreError::Invalid(control::CompileError::Invalid(p))) => {
                ApiError::from(ControlError::Invalid(p))
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::from(ControlError::Store(e))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
