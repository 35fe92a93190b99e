//! Anomaly detection: which detectors run, with what thresholds, and each
//! baseline's state (viewer); forgetting the baselines (admin).

use crate::error::{ApiResult, ErrorBody};
use crate::state::{Caller, Shared};
use axum::extract::State;
use axum::Json;
use control::detect::DetectStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DetectorLabel {
    detector: String,
}

/// Detection on `/metrics`: for each detector that is on, its baseline's
/// or window's size, what its memory bound left untracked, and whether it
/// is still learning, so a dashboard shows a detector gone blind (its
/// tables full) or never out of learning. Nothing when detection is off.
pub(crate) fn register(reg: &mut Registry, d: &DetectStatus) {
    let size = Family::<DetectorLabel, Gauge>::default();
    let untracked = Family::<DetectorLabel, Counter>::default();
    let learning = Family::<DetectorLabel, Gauge>::default();
    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    let label = |name: &str| DetectorLabel {
        detector: name.to_string(),
    };
    if let Some(s) = &d.scan {
        size.get_or_create(&label("scan")).set(n(s.sources));
        untracked.get_or_create(&label("scan")).inc_by(s.untracked);
    }
    if let Some(f) = &d.first_seen {
        size.get_or_create(&label("first-seen")).set(n(f.services));
        untracked.get_or_create(&label("first-seen")).inc_by(f.full);
        learning.get_or_create(&label("first-seen")).set(n(f
            .groups
            .iter()
            .filter(|g| g.learning)
            .count()));
    }
    if let Some(f) = &d.fanout {
        size.get_or_create(&label("fan-out")).set(n(f.workloads));
        untracked
            .get_or_create(&label("fan-out"))
            .inc_by(f.untracked);
    }
    if let Some(b) = &d.deny_burst {
        untracked
            .get_or_create(&label("deny-burst"))
            .inc_by(b.untracked);
    }
    if let Some(s) = &d.dns {
        size.get_or_create(&label("dns")).set(n(s.names));
        untracked.get_or_create(&label("dns")).inc_by(s.untracked);
        learning
            .get_or_create(&label("dns"))
            .set(i64::from(s.learning));
    }
    reg.register(
        "detect_tracked",
        "What a detector tracks now: scan sources in a window, first-seen group pair services, fan-out workloads with a baseline, DNS registered domains known",
        size,
    );
    reg.register(
        "detect_untracked",
        "Events a detector could not track because its table was full (first-seen: services or groups not learned)",
        untracked,
    );
    reg.register(
        "detect_learning",
        "Baselines still learning: first-seen groups learning, DNS names 1 while learning",
        learning,
    );
    if let Some(f) = &d.first_seen {
        let suppressed = Counter::<u64>::default();
        suppressed.inc_by(f.suppressed);
        reg.register(
            "detect_first_seen_suppressed",
            "New services not alerted because their source was past its limit (a scan)",
            suppressed,
        );
    }
}
