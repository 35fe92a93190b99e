//! The bulkhead management API: HTTPS (axum over rustls) on the management
//! address, bearer tokens with roles, an audit trail of every mutating call,
//! an OpenAPI document, Prometheus metrics and a small web console.
//!
//! - [`server::start`] runs it on its own thread with a tokio runtime, given
//!   the control thread's [`control::engine::ControlHandle`] and the workers'
//!   [`dataplane::worker::StatsBoard`]. Calls into the control thread and the
//!   store block, so handlers make them on tokio's blocking pool.
//! - [`token`]: `bh_` tokens, stored as SHA-256, roles viewer < operator < admin.
//! - [`error`]: the one error shape `{code, message, field}`.
//! - [`tls`]: the configured certificate, or a self-signed one kept on disk.
//! - [`maintenance`]: the health alone, saying why the appliance is not running.
#![deny(unsafe_code)]

mod console;
pub mod error;
mod json;
pub mod limit;
pub mod maintenance;
mod middleware;
pub mod routes;
pub mod server;
pub mod state;
pub mod tls;
pub mod token;

pub use error::{ApiError, ErrorBody};
pub use server::{build, start, state as app_state, ApiConfig, ServerHandle, StartError};
pub use token::Role;
