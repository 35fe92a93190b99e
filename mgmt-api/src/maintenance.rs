//! Maintenance mode: the API's health alone, answering why the appliance is
//! not running (its day-0 configuration's problems, or why `bulkhead run`
//! kept failing), so a monitoring system or an operator sees the reason
//! over HTTPS instead of a port that does not answer.
//!
//! `GET /api/v1/health` answers 503 with a [`HealthView`] whose status is
//! `misconfigured` and whose `problems` list the reasons; every other path
//! answers 503 `unavailable` with the same reasons in its message. Nothing
//! is read or changed: there is no store, no token and no policy to serve.

use crate::error::ApiError;
use crate::routes::status::HealthView;
use crate::server::{serve_on_thread, ServerHandle, StartError};
use crate::tls;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// The status word of a health answer in maintenance mode.
pub const MISCONFIGURED: &str = "misconfigured";

/// Maintenance mode's settings.
#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    pub listen: SocketAddr,
    /// The configured certificate and key; when they are absent or cannot
    /// be loaded, the self-signed one in `cert_dir` (that `bulkhead run`
    /// generates and keeps too, so the fingerprint stays the same).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub cert_dir: PathBuf,
    /// Why the appliance is not running, one line each.
    pub problems: Vec<String>,
}

/// Starts maintenance mode on its own thread. Returns once it listens.
pub fn start(mut cfg: MaintenanceConfig) -> Result<ServerHandle, StartError> {
    let material = match tls::load_or_generate(
        cfg.cert.as_deref(),
        cfg.key.as_deref(),
        &cfg.cert_dir,
        cfg.listen,
    ) {
        Ok(m) => m,
        Err(e) if cfg.cert.is_some() || cfg.key.is_some() => {
            cfg.problems.push(format!(
                "the API certificate cannot be used ({e}); a self-signed one is served"
            ));
            tls::load_or_generate(None, None, &cfg.cert_dir, cfg.listen)?
        }
        Err(e) => return Err(e.into()),
    };
    serve_on_thread(cfg.listen, material, app(cfg.problems), 16)
}

/// The router: health and a 503 for everything else.
pub fn app(problems: Vec<String>) -> Router {
    let problems: Arc<[String]> = problems.into();
    let for_health = problems.clone();
    Router::new()
        .route(
            "/api/v1/health",
            get(move || {
                let problems = for_health.to_vec();
                async move { health(problems) }
            }),
        )
        .fallback(move || {
            let message = unavailable_message(&problems);
            async move { ApiError::new(crate::error::ErrorCode::Unavailable, message).into_response() }
        })
}

fn health(problems: Vec<String>) -> Response {
    let body = HealthView {
        status: MISCONFIGURED.to_string(),
        control_running: false,
        control_failure: Some("bulkhead is not running (maintenance mode)".to_string()),
        problems,
        ..HealthView::default()
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

fn unavailable_message(problems: &[String]) -> String {
    let mut m = String::from(
        "bulkhead is not running; the appliance serves only /api/v1/health until its \
         configuration is fixed:",
    );
    for p in problems {
        m.push_str("\n  ");
        m.push_str(p);
    }
    m
}
