//! What detection is doing, for the API's `GET /detect`: which detectors
//! are on with what thresholds, each baseline's state (learning until when,
//! or in force), its size, and what the bounds left untracked.

use serde::{Deserialize, Serialize};

/// Detection's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DetectStatus {
    /// The appliance's baseline window, seconds (a group may have its own).
    pub baseline_secs: u64,
    pub scan: Option<ScanStatus>,
    pub first_seen: Option<FirstSeenStatus>,
    pub fanout: Option<FanoutStatus>,
    pub deny_burst: Option<BurstStatus>,
    pub dns: Option<DnsStatus>,
    /// Alerts that quarantine their source: `kind:least severity`.
    pub respond: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScanStatus {
    pub window_secs: u64,
    pub ports: usize,
    pub hosts: usize,
    /// Sources in a window now.
    pub sources: usize,
    /// Failed attempts of sources not tracked (the table was full).
    pub untracked: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FirstSeenStatus {
    /// Group pair services in the baseline.
    pub services: usize,
    /// Each group's baseline, by name.
    pub groups: Vec<GroupBaseline>,
    /// New services not alerted: their source was past its limit (a scan).
    pub suppressed: u64,
    /// Services or groups not learned: the baseline was full.
    pub full: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupBaseline {
    pub group: String,
    /// RFC 3339: its first flow.
    pub started: String,
    /// RFC 3339: when it stops (stopped) learning.
    pub learns_until: String,
    pub learning: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FanoutStatus {
    pub peers: u32,
    pub factor: u32,
    /// Workloads with a baseline.
    pub workloads: usize,
    pub untracked: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BurstStatus {
    pub window_secs: u64,
    pub flows: u32,
    pub untracked: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DnsStatus {
    pub window_secs: u64,
    pub nxdomain: u32,
    pub new_names: u32,
    /// Registered domains known.
    pub names: usize,
    /// RFC 3339: the names' baseline's first answer, if any yet.
    pub started: Option<String>,
    pub learns_until: Option<String>,
    pub learning: bool,
    pub untracked: u64,
}
