//! The `[api]` section of the appliance config and starting the management
//! API beside the worker: its own thread and tokio runtime, so the packet
//! path never waits for it.
//!
//! ```toml
//! [api]
//! listen = "127.0.0.1:8443"     # the management address only
//! # cert = "/etc/bulkhead/api.pem"  # PEM chain + key; without them a
//! # key = "/etc/bulkhead/api.key"   # self-signed one is kept next to the store
//! # metrics_unauthenticated = false
//! # enabled = true
//! ```

use control::engine::ControlHandle;
use dataplane::worker::StatsBoard;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Serve `/metrics` without a token (on the management address only).
    pub metrics_unauthenticated: bool,
}

/// The default management address is loopback only, until configured.
impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            cert: None,
            key: None,
            metrics_unauthenticated: false,
        }
    }
}

/// Starts the API if enabled; the log says where and with which certificate.
pub fn start(
    section: &ApiSection,
    store: &Path,
    records: Option<std::path::PathBuf>,
    control: ControlHandle,
    board: Arc<StatsBoard>,
) -> anyhow::Result<Option<mgmt_api::ServerHandle>> {
    if !section.enabled {
        println!("api: disabled ([api] enabled = false)");
        return Ok(None);
    }
    let mut cfg = mgmt_api::ApiConfig::new(section.listen, store.to_path_buf());
    cfg.cert = section.cert.clone();
    cfg.key = section.key.clone();
    cfg.metrics_unauthenticated = section.metrics_unauthenticated;
    cfg.records = records;
    let server = mgmt_api::start(cfg, control, board)?;
    println!(
        "api: https://{} ({} certificate {}), SHA-256 fingerprint {}",
        server.addr,
        if server.generated {
            "generated self-signed"
        } else {
            "using"
        },
        server.cert_path.display(),
        server.fingerprint
    );
    Ok(Some(server))
}
