//! The layers around the handlers:
//! - [`guard`] (API routes that need a token): bearer authentication with
//!   failed attempts limited per address, and the audit trail of every
//!   mutating call;
//! - [`outer`] (everything): error bodies in the one JSON shape whatever
//!   produced them, security headers, and request counting for `/metrics`.

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::json::{declared_too_large, read_body};
use crate::limit::Verdict;
use crate::state::{Caller, Shared, StatusLabel};
use crate::token::{self, Role};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use control::store::ApiAudit;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

/// The client's address (set by the accept loop).
pub fn peer_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn is_mutating(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The most of a request body the audit trail keeps.
const AUDIT_DETAIL: usize = 1024;

/// A bounded, printable summary of a request body.
pub fn summarize(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().filter(|c| !c.is_control()).collect();
    if out.len() > AUDIT_DETAIL {
        let mut cut = AUDIT_DETAIL;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(&format!("… ({} bytes)", body.len()));
    }
    out
}

/// What authentication needs from a request: the client's IP and the bearer token.
pub fn credentials(req: &Request) -> (IpAddr, Option<String>) {
    (peer_ip(req), bearer(req).map(str::to_string))
}

/// Authenticates: the token is checked first (against every active hash, in
/// constant time), so a valid token is never refused because of earlier
/// failures from its address; only failures go to the limiter, which answers
/// 401 within the address's budget and 429 (with `Retry-After`) past it.
pub async fn authenticate(
    st: &Shared,
    (ip, presented): (IpAddr, Option<String>),
) -> Result<Caller, ApiError> {
    let Some(presented) = presented else {
        return Err(ApiError::unauthorized(
            "a bearer token is needed (Authorization: Bearer bh_...)",
        ));
    };
    let found = if token::well_formed(&presented) {
        st.store(move |s| {
            let active = s.active_token_hashes()?;
            Ok(token::find(&presented, &active).and_then(|t| {
                Role::parse(&t.role).map(|role| Caller {
                    name: t.name.clone(),
                    role,
                })
            }))
        })
        .await?
    } else {
        None
    };
    if let Some(caller) = found {
        return Ok(caller);
    }
    match st.limiter.fail(ip, Instant::now()) {
        Verdict::Counted { count, blocked } => {
            // At most `max_failures` lines per address and window: the
            // refused ones past the budget are only counted (`/metrics`).
            println!(
                "api: authentication failed from {ip} ({count} in the current window){}",
                if blocked {
                    "; further failures from this address are refused for a while"
                } else {
                    ""
                }
            );
            Err(ApiError::unauthorized("invalid or revoked token"))
        }
        Verdict::Refused { retry_after } => {
            let mut e = ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many failed authentication attempts from {ip}; \
                     invalid tokens are refused for {retry_after} s more"
                ),
            );
            e.retry_after = Some(retry_after);
            Err(e)
        }
    }
}

/// Bearer authentication, then the handler; mutating calls are audited.
pub async fn guard(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let caller = match authenticate(&st, credentials(&req)).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let mut req = req;
    req.extensions_mut().insert(caller.clone());
    if !is_mutating(req.method()) {
        return next.run(req).await;
    }
    let action = format!("{} {}", req.method(), req.uri().path());
    let (parts, body) = req.into_parts();
    let bytes = if declared_too_large(&parts.headers, st.max_body) {
        Err(ApiError::too_large(st.max_body))
    } else {
        read_body(body, st.max_body).await
    };
    let (detail, resp) = match bytes {
        Ok(bytes) => {
            let detail = summarize(&bytes);
            let req = Request::from_parts(parts, Body::from(bytes));
            (detail, next.run(req).await)
        }
        Err(e) => ("(body not read)".to_string(), e.into_response()),
    };
    let status = resp.status();
    let (resp, result) = if status.is_success() {
        (resp, "ok".to_string())
    } else {
        let (parts, body) = resp.into_parts();
        let bytes = read_body(body, 64 * 1024).await.unwrap_or_default();
        let result = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| format!("{}: {}", b.code, b.message))
            .unwrap_or_else(|_| summarize(&bytes));
        (Response::from_parts(parts, Body::from(bytes)), result)
    };
    let entry = (
        caller.name,
        caller.role,
        action,
        detail,
        result,
        status.as_u16(),
    );
    let recorded = st
        .store(move |s| {
            let (actor, role, action, detail, result, status) = entry;
            s.append_api_audit(&ApiAudit {
                actor: &actor,
                role: role.as_str(),
                action: &action,
                detail: &detail,
                result: &result,
                status,
            })?;
            Ok(())
        })
        .await;
    if let Err(e) = recorded {
        println!("api: audit entry not stored: {}", e.body.message);
    }
    resp
}

/// The last layer: JSON errors, headers, counting.
pub async fn outer(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let is_api = req.uri().path().starts_with("/api/");
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut resp = if status.as_u16() >= 400 && !is_json {
        let allow = resp.headers().get(header::ALLOW).cloned();
        let (_, body) = resp.into_parts();
        let text = read_body(body, 16 * 1024).await.unwrap_or_default();
        let mut message = String::from_utf8_lossy(&text).trim().to_string();
        if message.is_empty() {
            message = status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_string();
        }
        let mut r = ApiError::from_status(status, message).into_response();
        if let Some(a) = allow {
            r.headers_mut().insert(header::ALLOW, a);
        }
        r
    } else {
        resp
    };
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    if is_api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    st.requests
        .get_or_create(&StatusLabel {
            status: resp.status().as_u16().to_string(),
        })
        .inc();
    resp
}

/// Refuses (403) a caller below `role`. Each group of routes declares its role
/// at the router ([`crate::routes::api`]), so a handler cannot forget the check;
/// a request that reached it without a caller (which `guard` prevents) is
/// refused too.
pub async fn at_least(role: Role, req: Request, next: Next) -> Response {
    let allowed = match req.extensions().get::<Caller>() {
        Some(c) => c.require(role),
        None => Err(ApiError::unauthorized("no authenticated caller")),
    };
    match allowed {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_bounded_and_printable() {
        assert_eq!(summarize(b"{\"a\":\n1}"), "{\"a\":1}");
        let long = "é".repeat(2000);
        let s = summarize(long.as_bytes());
        assert!(s.len() < AUDIT_DETAIL + 32);
        assert!(s.ends_with("(4000 bytes)"));
    }
}
