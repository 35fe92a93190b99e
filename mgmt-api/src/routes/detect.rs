//! Anomaly detection: which detectors run, with what thresholds, and each
//! baseline's state (viewer); forgetting the baselines (admin).

use crate::error::{ApiResult, ErrorBody};
use crate::state::{Caller, Shared};
use axum::extract::State;
use axum::Json;
use control::detect::DetectStatus;

/// Anomaly detection's state: each detector (absent when off) with its
/// thresholds, each group's baseline (learning until when), the baselines'
/// sizes, and what the memory bounds left untracked.
#[utoipa::path(get, path = "/api/v1/detect", tag = "alerts",
    responses((status = 200, body = DetectStatus)))]
pub async fn status(State(st): State<Shared>, _c: Caller) -> ApiResult<Json<DetectStatus>> {
    Ok(Json(st.control(|h| h.detect()).await?))
}

/// Forgets every baseline (admin), in the control store too: each group,
/// workload and the DNS names learn again from their next flow or answer,
/// for their window, and nothing is new until then. For after a
/// migration, a re-addressing or a policy overhaul. Answers the state
/// after.
#[utoipa::path(post, path = "/api/v1/detect/baseline/reset", tag = "alerts",
    responses((status = 200, body = DetectStatus), (status = 403, body = ErrorBody)))]
pub async fn reset(State(st): State<Shared>, _c: Caller) -> ApiResult<Json<DetectStatus>> {
    st.control(|h| h.reset_baselines()).await?;
    Ok(Json(st.control(|h| h.detect()).await?))
}
