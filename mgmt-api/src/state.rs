//! What every handler shares, and the way off the async executor for calls
//! that block (the control thread's commands, the store).

use crate::error::{ApiError, ApiResult};
use crate::limit::Limiter;
use crate::token::Role;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use control::engine::{ControlError, ControlHandle};
use control::store::Store;
use dataplane::worker::StatsBoard;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::{Arc, Mutex};

/// The label of `bulkhead_api_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

pub struct AppState {
    pub control: ControlHandle,
    pub stats: Arc<StatsBoard>,
    /// The API's own connection to the store (tokens, audit); WAL lets it
    /// read and write beside the control thread's.
    pub store: Mutex<Store>,
    pub limiter: Limiter,
    pub requests: Family<StatusLabel, Counter>,
    pub metrics_unauthenticated: bool,
    pub max_body: usize,
    /// The flow records store, when records are kept.
    pub records: Option<std::path::PathBuf>,
    /// Live tails of the records open now (`routes::follow`).
    pub tails: std::sync::atomic::AtomicUsize,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// Runs `f` on the store on the blocking pool.
    pub async fn store<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Store) -> ApiResult<T> + Send + 'static,
    ) -> ApiResult<T> {
        let st = self.clone();
        blocking(move || {
            let mut guard = match st.store.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            f(&mut guard)
        })
        .await
    }

    /// Runs a control thread call on the blocking pool.
    pub async fn control<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&ControlHandle) -> Result<T, ControlError> + Send + 'static,
    ) -> ApiResult<T> {
        let h = self.control.clone();
        blocking(move || f(&h).map_err(ApiError::from)).await
    }
}

/// `spawn_blocking`, with a panic in `f` turned into a 500.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("handler failed: {e}"))))
}

/// The authenticated caller, put in the request by the auth middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Refuses with 403 unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> ApiResult<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "token {:?} has role {}; this needs {role}",
                self.name, self.role
            )))
        }
    }

    /// The actor recorded in policy versions and quarantine history.
    pub fn actor(&self) -> String {
        format!("api:{}", self.name)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("a bearer token is needed"))
    }
}
