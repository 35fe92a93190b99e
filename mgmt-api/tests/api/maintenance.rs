//! Maintenance mode over real HTTPS: health answers 503 `misconfigured`
//! with the reasons, everything else 503 `unavailable`; a certificate that
//! cannot be loaded falls back to the self-signed one (and says so), and
//! that one is the same `bulkhead run` generates in the same directory.

use crate::common::{client_for, temp_dir};
use mgmt_api::maintenance::{self, MaintenanceConfig};
use serde_json::Value;
use std::net::SocketAddr;

fn config(dir: &std::path::Path, problems: &[&str]) -> MaintenanceConfig {
    MaintenanceConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        cert: None,
        key: None,
        cert_dir: dir.to_path_buf(),
        problems: problems.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn health_says_why_the_appliance_is_not_running() {
    let dir = temp_dir("maint");
    let problems = [
        "bulkhead.bogus: unknown key",
        "bulkhead.ports.b: no NIC has MAC 52:54:00:b4:00:99",
    ];
    let server = maintenance::start(config(&dir.0, &problems)).expect("start");
    let client = client_for(&server.cert_path);
    let base = format!("https://{}", server.addr);

    let resp = client
        .get(format!("{base}/api/v1/health"))
        .send()
        .expect("health");
    assert_eq!(resp.status().as_u16(), 503);
    let v: Value = resp.json().expect("json");
    assert_eq!(v["status"], "misconfigured");
    assert_eq!(v["control_running"], false);
    assert_eq!(v["problems"], serde_json::json!(problems));
    // The shape is the one clients read in normal operation.
    let typed: mgmt_api::routes::status::HealthView =
        serde_json::from_value(v).expect("a HealthView");
    assert_eq!(typed.problems.len(), 2);

    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/workloads"),
        (reqwest::Method::POST, "/api/v1/quarantines"),
        (reqwest::Method::GET, "/"),
    ] {
        let resp = client
            .request(method, format!("{base}{path}"))
            .bearer_auth("bh_anything")
            .send()
            .expect("request");
        assert_eq!(resp.status().as_u16(), 503, "{path}");
        let e: mgmt_api::ErrorBody = resp.json().expect("error body");
        assert_eq!(e.code, mgmt_api::error::ErrorCode::Unavailable);
        assert!(e.message.contains("ports.b: no NIC"), "{}", e.message);
    }
    let fingerprint = server.fingerprint.clone();
    server.shutdown();

    // The next start (bulkhead run, or maintenance again) keeps the same
    // self-signed certificate: a client's pin still holds.
    let mut cfg = config(&dir.0, &[]);
    cfg.cert = Some(dir.0.join("missing.pem"));
    cfg.key = Some(dir.0.join("missing.key"));
    let again = maintenance::start(cfg).expect("start with a bad certificate");
    assert_eq!(again.fingerprint, fingerprint);
    let v: Value = client_for(&again.cert_path)
        .get(format!("https://{}/api/v1/health", again.addr))
        .send()
        .expect("health")
        .json()
        .expect("json");
    let said = v["problems"].to_string();
    assert!(
        said.contains("missing.pem") && said.contains("self-signed"),
        "{said}"
    );
}
