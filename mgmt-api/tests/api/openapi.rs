//! The OpenAPI document: served, every documented operation routed, and the
//! committed copy (`docs/openapi.json`) the same as what the server builds.
//! `BULKHEAD_UPDATE_OPENAPI=1 cargo test -p bulkhead-mgmt-api` rewrites it.

use crate::common::{json, Bed};
use reqwest::Method;
use serde_json::Value;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

#[test]
fn the_served_document_matches_the_router_and_the_committed_copy() {
    let bed = Bed::start();
    let doc = json(
        bed.client
            .get(bed.url("/api/v1/openapi.json"))
            .send()
            .expect("doc"),
        200,
    );
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 15, "{}", paths.len());
    // Every documented operation is routed: the router answers something
    // other than "no such endpoint" or 405.
    for (path, item) in paths {
        for method in ["get", "put", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let concrete = path
                .replace("{mac}", "02:00:00:00:01:01")
                .replace("{version}", "1")
                .replace("{name}", "nobody");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let resp = bed.req(m, &concrete, &bed.admin).send().expect("request");
            let status = resp.status().as_u16();
            let text = resp.text().unwrap_or_default();
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                !(status == 404 && text.contains(mgmt_api::routes::NO_ROUTE)),
                "{method} {path} is documented but not routed"
            );
        }
    }
    // Only the documented resources exist (no stubs of later issues).
    for later in [
        "flows",
        "dns",
        "traceback",
        "graph",
        "alerts",
        "intel",
        "learning",
    ] {
        assert!(!paths.keys().any(|p| p.contains(later)), "{later}");
    }
    let pretty = serde_json::to_string_pretty(&doc).expect("render") + "\n";
    if std::env::var_os("BULKHEAD_UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &pretty).expect("write docs/openapi.json");
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(COMMITTED)
            .expect("docs/openapi.json (BULKHEAD_UPDATE_OPENAPI=1 writes it)"),
    )
    .expect("committed JSON");
    assert_eq!(
        committed, doc,
        "docs/openapi.json is stale: run BULKHEAD_UPDATE_OPENAPI=1 cargo test -p bulkhead-mgmt-api --test api openapi"
    );
}
