//! A real management API without ports, for conformance runs
//! (`mgmt-api/tests/schemathesis.sh`): the control thread on a store in DIR,
//! one worker's stats published every second, the server on 127.0.0.1 with
//! its generated certificate, and an admin token.
//!
//! ```text
//! cargo run -p bulkhead-mgmt-api --example api-server -- DIR [--port N] [--auth-failures N]
//! ```
//!
//! `--auth-failures N`: failed attempts an address may make per minute before
//! its further failures get 429 (default: the appliance's, 10). schemathesis's
//! `ignored_auth` check sends hundreds of invalid tokens and takes only 401
//! or 403 for an answer, so the conformance run raises it; the 429 past the
//! budget is in the document and tested over HTTPS in `tests/api/auth.rs`.
//!
//! Writes `DIR/admin.token` and `DIR/api.url` once it listens (the
//! certificate is `DIR/api-cert.pem`), then serves until killed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use control::engine::{Bootstrap, Engine, EngineConfig};
use control::store::Store;
use control::Model;
use dataplane::policy::SnapshotCell;
use dataplane::worker::{StatsBoard, StatsReport};
use mgmt_api::limit::Limits;
use mgmt_api::{ApiConfig, Role};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The sample policy the example server and the API tests share.
const POLICY: &str = include_str!("policy.yaml");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: api-server DIR [--port N] [--auth-failures N]";
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or(usage)?);
    let mut port: u16 = 0;
    let mut limits = Limits::default();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(usage)?;
        match flag.as_str() {
            "--port" => port = value.parse()?,
            "--auth-failures" => limits.max_failures = value.parse()?,
            _ => return Err(usage.into()),
        }
    }
    std::fs::create_dir_all(&dir)?;
    let store_path = dir.join("bulkhead.db");
    let mut store = Store::open(&store_path)?;
    let admin = mgmt_api::token::create(&mut store, "conformance", Role::Admin, "api-server")?;
    let engine = Engine::start(
        store,
        Bootstrap {
            model: Model::from_yaml_str(POLICY)?,
            source: "api-server example policy".into(),
        },
        Arc::new(SnapshotCell::default()),
        None,
        None,
        EngineConfig::default(),
    )?;
    let board = Arc::new(StatsBoard::new(1));
    // An empty records store, so that the flow queries answer (not 503).
    let records = dir.join("records.db");
    control::records::RecordsWriter::start(&records, Default::default())?.finish();
    let mut cfg = ApiConfig::new(([127, 0, 0, 1], port).into(), store_path);
    cfg.records = Some(records);
    cfg.limits = limits;
    let server = mgmt_api::start(cfg, engine.handle.clone(), board.clone())?;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    std::fs::write(dir.join("admin.token"), &admin)?;
    std::fs::write(dir.join("api.url"), &url)?;
    println!(
        "api-server: {url} (certificate {})",
        server.cert_path.display()
    );
    loop {
        board.publish(0, StatsReport::default());
        std::thread::sleep(Duration::from_secs(1));
    }
}
