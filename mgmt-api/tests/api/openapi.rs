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
    the_layers_answers_and_the_server_patterns_are_documented(&doc);
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

/// A `$ref` inside the document, resolved.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{r} does not resolve")),
        None => v,
    }
}

/// What the layers answer (401 and 429 for every call with a token, 400, 413
/// and 415 for every body) is in the document, and every MAC or token name
/// the server takes carries the pattern it checks.
fn the_layers_answers_and_the_server_patterns_are_documented(doc: &Value) {
    use mgmt_api::routes::doc::{MAC_PATTERN, TOKEN_NAME_PATTERN};
    let mut macs = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let responses = &op["responses"];
            let open = path == "/api/v1/health";
            for status in ["401", "429"] {
                assert_eq!(
                    responses.get(status).is_some(),
                    !open,
                    "{method} {path}: {status}"
                );
            }
            if !open {
                let limited = resolve(doc, &responses["429"]);
                assert!(
                    limited["headers"]["Retry-After"].is_object(),
                    "{method} {path}"
                );
                let body = resolve(doc, &limited["content"]["application/json"]["schema"]);
                assert_eq!(body["required"], serde_json::json!(["code", "message"]));
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(responses.get(status).is_some(), "{method} {path}: {status}");
                }
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                assert!(responses.get("400").is_some(), "{method} {path}: 400");
                match p["name"].as_str() {
                    Some("mac") => {
                        macs += 1;
                        assert_eq!(p["schema"]["pattern"], MAC_PATTERN, "{method} {path}");
                    }
                    Some("name") => {
                        assert_eq!(
                            p["schema"]["pattern"], TOKEN_NAME_PATTERN,
                            "{method} {path}"
                        )
                    }
                    _ => {}
                }
            }
        }
    }
    assert_eq!(
        macs, 5,
        "workloads/{{mac}}, quarantine/{{mac}}, quarantine/history?mac=, blast-radius?mac=, alerts?mac="
    );
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["QuarantineRequest"]["properties"]["mac"]["pattern"],
        MAC_PATTERN
    );
    assert_eq!(
        schemas["TokenRequest"]["properties"]["name"]["pattern"],
        TOKEN_NAME_PATTERN
    );
    assert_eq!(
        schemas["RuleView"]["properties"]["services"]["items"]["$ref"],
        "#/components/schemas/ServiceRef"
    );
    assert_eq!(
        doc["paths"]["/api/v1/policy/draft"]["put"]["requestBody"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/PolicyModel"
    );
}
