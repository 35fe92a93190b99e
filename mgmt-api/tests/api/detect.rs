//! Anomaly detection's state over the API (viewer) and forgetting the
//! baselines (admin only).

use crate::common::{json, metric, Bed};
use reqwest::Method;

#[test]
fn detection_state_is_read_by_a_viewer_and_reset_by_an_admin_only() {
    let bed = Bed::start();
    let v = json(bed.get("/api/v1/detect", &bed.viewer), 200);
    assert_eq!(v["baseline_secs"], 7 * 86_400);
    assert_eq!(v["scan"]["ports"], 15);
    assert_eq!(v["first_seen"]["services"], 0);
    assert_eq!(v["dns"]["learning"], true, "no answer yet: learning");
    assert!(v["respond"].as_array().unwrap().is_empty(), "{v}");
    let reset = |token: &str| {
        bed.req(Method::POST, "/api/v1/detect/baseline/reset", token)
            .send()
            .unwrap()
    };
    assert_eq!(reset(&bed.viewer).status().as_u16(), 403);
    assert_eq!(reset(&bed.operator).status().as_u16(), 403);
    let after = json(reset(&bed.admin), 200);
    assert_eq!(after["first_seen"]["services"], 0);
    // The reset is in the audit log.
    let audit = json(bed.get("/api/v1/audit", &bed.admin), 200);
    assert!(
        audit.to_string().contains("/detect/baseline/reset"),
        "{audit}"
    );
}

#[test]
fn detection_is_on_the_metrics() {
    let bed = Bed::start();
    let text = bed.get("/metrics", &bed.viewer).text().expect("metrics");
    for (name, want) in [
        ("bulkhead_detect_tracked{detector=\"scan\"}", 0.0),
        ("bulkhead_detect_tracked{detector=\"first-seen\"}", 0.0),
        ("bulkhead_detect_tracked{detector=\"dns\"}", 0.0),
        ("bulkhead_detect_untracked_total{detector=\"fan-out\"}", 0.0),
        (
            "bulkhead_detect_untracked_total{detector=\"deny-burst\"}",
            0.0,
        ),
        // No answer yet: the DNS names' baseline is learning.
        ("bulkhead_detect_learning{detector=\"dns\"}", 1.0),
        ("bulkhead_detect_first_seen_suppressed_total", 0.0),
    ] {
        assert_eq!(metric(&text, name), want, "{name}");
    }
}
