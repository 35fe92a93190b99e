//! Anomaly detection over the flows the control thread sees, never on the
//! packet path: each detector takes what the workers report (a new flow, a
//! flow's end) and says when a workload behaves like an attacker. What it
//! finds becomes an alert of the shared model (`crate::alerts`), deduplicated
//! and rate-limited like any.
//!
//! [`scan`]: one source probing many ports of a host, or many hosts on one
//! port.

pub mod scan;

pub use scan::{Probe, ScanConfig, ScanDetector, ScanFound, ScanKind};
