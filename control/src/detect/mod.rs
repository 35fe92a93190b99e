//! Anomaly detection over the flows and DNS answers the control thread
//! sees, never on the packet path: each detector takes what the workers
//! report (a new flow, a flow's end, a DNS answer) and says when a workload
//! behaves like an attacker or unlike itself. What it finds becomes an
//! alert of the shared model (`crate::alerts`), deduplicated and
//! rate-limited like any.
//!
//! - [`scan`]: one source probing many ports of a host, or many hosts on
//!   one port.
//! - [`first_seen`]: a group pair and service never seen in the baseline.
//! - [`fanout`]: a workload contacting many more peers than in its busiest
//!   hour of the baseline.
//! - [`burst`]: many denied flows from one workload.
//! - [`dns`]: many NXDOMAIN answers or never-seen names for one client.
//!
//! The baselines ([`first_seen`], [`fanout`], [`dns`]) are kept in the
//! control store (`crate::store::baseline`), so a restart keeps them.

pub mod burst;
pub mod config;
pub mod dns;
pub mod fanout;
pub mod first_seen;
pub mod scan;
pub mod status;

pub use config::{
    BurstConfig, DetectConfig, DnsConfig, FanoutConfig, GroupLimits, Limits, ServicesConfig,
};
pub use scan::{Probe, ScanConfig, ScanDetector, ScanFound, ScanKind};
pub use status::DetectStatus;

#[cfg(test)]
mod tests;
