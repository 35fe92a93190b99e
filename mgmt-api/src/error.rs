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

/// The machine-readable kind of an error; each has one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Invalid,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadRequest,
        ErrorCode::Invalid,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The status this kind of error is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code as it appears in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code for a status when nothing more specific is known.
    pub fn for_status(status: StatusCode) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.status() == status)
            .unwrap_or(if status.is_client_error() {
                ErrorCode::BadRequest
            } else {
                ErrorCode::Internal
            })
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable and machine-readable; it decides the status.
    pub code: ErrorCode,
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
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: code.status(),
            body: ErrorBody {
                code,
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
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// The error for a status when nothing more specific is known (the
    /// status is kept as it is).
    pub fn from_status(status: StatusCode, message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorCode::for_status(status), message);
        e.status = status;
        e
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
            ControlError::Stopped(_) => ApiError::new(ErrorCode::Unavailable, e.to_string()),
            ControlError::Store(StoreError::NoSuchVersion(v)) => {
                ApiError::not_found(format!("policy version {v} does not exist")).field("version")
            }
            ControlError::Store(StoreError::BadMac(m)) => {
                ApiError::bad_request(format!("invalid MAC address {m:?}")).field("mac")
            }
            ControlError::Feed(f) => {
                use control::intel::feeds::ManagedError as M;
                let text = f.to_string();
                match f {
                    M::NoFeed(_) => ApiError::not_found(text).field("name"),
                    M::NotManaged(_) | M::Exists(_) => ApiError::conflict(text).field("name"),
                    M::Name(_) => ApiError::bad_request(text).field("name"),
                    M::Invalid(_) => ApiError::bad_request(text),
                    M::NotRunning => ApiError::new(ErrorCode::Unavailable, text),
                    M::Io { .. } => ApiError::internal(text),
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_status_and_a_status_finds_its_code() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::for_status(c.status()), c, "{c:?}");
        }
        assert_eq!(
            ErrorCode::for_status(StatusCode::IM_A_TEAPOT),
            ErrorCode::BadRequest
        );
        assert_eq!(
            ErrorCode::for_status(StatusCode::BAD_GATEWAY),
            ErrorCode::Internal
        );
        for c in ErrorCode::ALL {
            let text = serde_json::to_string(&c).expect("json");
            assert_eq!(text, format!("\"{c}\""), "serde and Display agree");
        }
    }
}
