//! The appliance's configuration file and what it turns into: the AF_XDP and
//! worker settings.

use anyhow::Context;
use control::engine::{EngineConfig, IpfixPlan, RecordsPlan};
use control::ipfix::IpfixConfig;
use control::records::RecordsConfig;
use dataplane::io::afxdp::{
    AfXdpConfig, BindPreference, FailMode, OnShutdown, XdpMode, XdpModePreference,
};
use dataplane::worker::{FragmentPolicy, NonIpPolicy, WorkerConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub ports: PortsConfig,
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    pub policy: PolicyConfig,
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default)]
    pub api: crate::api_run::ApiSection,
    #[serde(default)]
    pub records: RecordsSection,
    #[serde(default)]
    pub ipfix: IpfixSection,
    #[serde(default)]
    pub intel: super::intel::IntelSection,
    #[serde(default)]
    pub alerts: super::intel::AlertsSection,
    #[serde(default)]
    pub detect: super::detect::DetectSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortsConfig {
    /// Interface of segment A.
    pub a: String,
    /// Interface of segment B.
    pub b: String,
    /// What the wire does while bulkhead is not forwarding: "open" passes
    /// everything unfiltered, "closed" drops everything.
    #[serde(default = "default_fail_mode")]
    pub fail_mode: String,
    /// On a clean stop: "keep" the XDP program (the fail mode applies) or "detach" it.
    #[serde(default = "default_on_stop")]
    pub on_stop: String,
    /// "auto" (native, then generic), "native" or "generic".
    #[serde(default = "default_auto")]
    pub xdp_mode: String,
    /// "auto" (zero-copy, then copy), "zero-copy" or "copy".
    #[serde(default = "default_auto")]
    pub bind: String,
}

fn default_fail_mode() -> String {
    "closed".into()
}
fn default_on_stop() -> String {
    "keep".into()
}
fn default_auto() -> String {
    "auto".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneConfig {
    /// Live flows the flow table holds (allocated at start).
    pub flow_capacity: usize,
    /// Frames in the shared UMEM, and bytes per frame (2048 or 4096).
    pub frames: u32,
    pub chunk_size: u32,
    /// Frames taken from each port per poll.
    pub batch: usize,
    /// Frames that are neither IP nor ARP: "policy" (dropped where an end's
    /// group enforces, passed in audit and learn), "forward" or "drop".
    pub non_ip: String,
    /// Ethertypes passed whatever `non_ip` says: numbers (0x88cc) or names
    /// (lldp, lacp, mpls, pppoe, ...: see `ethertype_named`).
    pub non_ip_allow: Vec<String>,
    /// "drop" or "forward" later IP fragments whose first fragment was not seen.
    pub fragments: String,
    /// Seconds between stats lines in the log.
    pub stats_interval: u64,
    /// Worker threads, one per queue pair (queue i of both ports); each has
    /// its own flow table (`flow_capacity / workers` flows).
    pub workers: usize,
    /// Pin worker i to core i (modulo the cores there are).
    pub pin_workers: bool,
    /// 0: sleep until frames arrive (need-wakeup). N > 0: busy polling, N
    /// microseconds of device polling per syscall; the worker never sleeps.
    pub busy_poll_us: u32,
    /// The kernel tier: "on" (decided flows forwarded or dropped in the XDP
    /// program) or "off" (every frame through userspace). Absent: on where the
    /// program attached natively, off in generic mode.
    pub offload: Option<String>,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            flow_capacity: 1 << 18,
            frames: 4096,
            chunk_size: 2048,
            batch: 64,
            non_ip: "policy".into(),
            non_ip_allow: Vec::new(),
            fragments: "drop".into(),
            stats_interval: 10,
            workers: 1,
            pin_workers: true,
            busy_poll_us: 0,
            offload: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The bootstrap policy file (YAML or TOML).
    pub file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// The database: policy versions, quarantines, learned workloads, audit.
    pub store: PathBuf,
    /// Workloads learned from the wire kept at most (a MAC flood stops there).
    pub max_learned_workloads: usize,
    /// Seconds a learned workload stays unseen before it is forgotten.
    pub learned_idle_secs: u64,
    /// Seconds a learned workload must have been unseen before a new MAC may
    /// take its place when `max_learned_workloads` is reached.
    pub evict_idle_secs: u64,
}

/// `[records]`: the flow records store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordsSection {
    /// Keep a record of every flow (on by default).
    pub enabled: bool,
    /// The records store; default `records.db` beside the control store.
    pub store: Option<PathBuf>,
    /// Days a flow record is kept (by its last packet).
    pub max_age_days: u64,
    /// The store's size at most, in MiB: past it the oldest records go.
    pub max_size_mb: u64,
    /// Free MiB kept on the store's filesystem: below it records pause.
    pub reserve_mb: u64,
    /// Days the hourly rollups are kept.
    pub rollup_max_age_days: u64,
    /// A flow that lasts gets an interim record every this many seconds of
    /// its life while it carries packets (IPFIX's active timeout); 0: only
    /// at its end.
    pub interim_secs: u64,
}

impl Default for RecordsSection {
    fn default() -> Self {
        RecordsSection {
            enabled: true,
            store: None,
            max_age_days: 7,
            max_size_mb: 2048,
            reserve_mb: 128,
            rollup_max_age_days: 400,
            interim_secs: 60,
        }
    }
}

/// `[ipfix]`: flow records exported to collectors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpfixSection {
    /// `udp://HOST[:PORT]`, `tcp://HOST[:PORT]` or `HOST[:PORT]` (UDP, port
    /// 4739); none: no export.
    pub collectors: Vec<String>,
    /// The observation domain id of every message.
    pub observation_domain: u32,
    /// A flow that lasts is reported every this many seconds while it
    /// carries packets (each record carries what it carried since the last).
    pub active_timeout_secs: u64,
    /// A flow whose packets stop is reported this many seconds after its
    /// last one (it stays in the firewall's table under its own timeouts);
    /// 0: only at the active timeout and at its end.
    pub idle_timeout_secs: u64,
    /// UDP: templates are sent again this often.
    pub template_refresh_secs: u64,
    /// Send workload names, groups, the rule id, the verdict's reason and
    /// mode as enterprise-specific elements.
    pub enterprise_elements: bool,
    /// The enterprise number those elements are under (default: 32473, the
    /// number RFC 5612 reserves for documentation: set your own).
    pub enterprise_number: u32,
    /// Bytes of a message at most (keep a UDP datagram under the path MTU).
    pub max_message: usize,
    /// Records waiting for the exporter at most; past it they are dropped
    /// and counted.
    pub queue: usize,
}

impl Default for IpfixSection {
    fn default() -> Self {
        let d = IpfixConfig::default();
        IpfixSection {
            collectors: Vec::new(),
            observation_domain: d.observation_domain,
            active_timeout_secs: 60,
            idle_timeout_secs: 15,
            template_refresh_secs: d.template_refresh.as_secs(),
            enterprise_elements: false,
            enterprise_number: 32473,
            max_message: d.max_message,
            queue: d.queue,
        }
    }
}

impl Config {
    /// Where and how flow records are exported; `None` without collectors.
    pub fn ipfix_plan(
        &self,
        worker_epoch: std::time::Instant,
    ) -> anyhow::Result<Option<IpfixPlan>> {
        let x = &self.ipfix;
        if x.collectors.is_empty() {
            return Ok(None);
        }
        let collectors = x
            .collectors
            .iter()
            .map(|c| c.parse().with_context(|| "ipfix.collectors".to_string()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let config = IpfixConfig {
            collectors,
            observation_domain: x.observation_domain,
            template_refresh: std::time::Duration::from_secs(x.template_refresh_secs),
            idle_timeout: self.idle_report(),
            enterprise: x.enterprise_elements.then_some(x.enterprise_number),
            queue: x.queue,
            max_message: x.max_message,
            ..IpfixConfig::default()
        };
        config.check()?;
        Ok(Some(IpfixPlan {
            config,
            worker_epoch,
        }))
    }

    /// How often a running flow is reported: the shortest of the records'
    /// interim period and the IPFIX active timeout of those in use (zero:
    /// only at its end).
    pub fn interim_every(&self) -> std::time::Duration {
        let periods = [
            (self.records.enabled, self.records.interim_secs),
            (
                !self.ipfix.collectors.is_empty(),
                self.ipfix.active_timeout_secs,
            ),
        ];
        periods
            .iter()
            .filter(|(on, secs)| *on && *secs > 0)
            .map(|(_, secs)| std::time::Duration::from_secs(*secs))
            .min()
            .unwrap_or(std::time::Duration::ZERO)
    }

    /// How long a flow's packets must have stopped for it to be reported
    /// (the IPFIX idle timeout; zero without an export).
    pub fn idle_report(&self) -> std::time::Duration {
        if self.ipfix.collectors.is_empty() {
            return std::time::Duration::ZERO;
        }
        std::time::Duration::from_secs(self.ipfix.idle_timeout_secs)
    }

    /// Where flow records go, and how long they stay; `None` when off.
    pub fn records_plan(&self, worker_epoch: std::time::Instant) -> Option<RecordsPlan> {
        let r = &self.records;
        if !r.enabled {
            return None;
        }
        let path = r.store.clone().unwrap_or_else(|| {
            self.control
                .store
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("records.db")
        });
        Some(RecordsPlan {
            path,
            config: RecordsConfig {
                max_age: std::time::Duration::from_secs(r.max_age_days.saturating_mul(86_400)),
                rollup_max_age: std::time::Duration::from_secs(
                    r.rollup_max_age_days.saturating_mul(86_400),
                ),
                max_bytes: r.max_size_mb.saturating_mul(1 << 20),
                reserve_bytes: r.reserve_mb.saturating_mul(1 << 20),
                ..RecordsConfig::default()
            },
            worker_epoch,
        })
    }
}

/// Where the database lives unless the config says otherwise.
pub const DEFAULT_STORE: &str = "/var/lib/bulkhead/bulkhead.db";

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            store: PathBuf::from(DEFAULT_STORE),
            max_learned_workloads: EngineConfig::default().max_observed,
            learned_idle_secs: EngineConfig::default().learned_idle.as_secs(),
            evict_idle_secs: EngineConfig::default().evict_idle.as_secs(),
        }
    }
}

pub(super) fn one_of<T: Copy>(
    field: &str,
    value: &str,
    choices: &[(&str, T)],
) -> anyhow::Result<T> {
    choices
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .with_context(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            format!("{field} = {value:?}: expected one of {}", names.join(", "))
        })
}

/// Read and check the configuration file.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let cfg: Config = control::load::parse_toml(&text, &path.display().to_string())?;
    if !(1..=64).contains(&cfg.dataplane.workers) {
        anyhow::bail!(
            "{}: dataplane.workers = {}: expected 1 to 64 (one per queue pair)",
            path.display(),
            cfg.dataplane.workers
        );
    }
    Ok(cfg)
}

/// The AF_XDP settings of the configuration.
pub(super) fn io_config(cfg: &Config) -> anyhow::Result<AfXdpConfig> {
    let p = &cfg.ports;
    let mut io = AfXdpConfig::new(&p.a, &p.b);
    io.fail_mode = one_of(
        "ports.fail_mode",
        &p.fail_mode,
        &[("open", FailMode::Open), ("closed", FailMode::Closed)],
    )?;
    io.on_shutdown = one_of(
        "ports.on_stop",
        &p.on_stop,
        &[
            ("keep", OnShutdown::LeaveAttached),
            ("detach", OnShutdown::Detach),
        ],
    )?;
    io.xdp_mode = one_of(
        "ports.xdp_mode",
        &p.xdp_mode,
        &[
            ("auto", XdpModePreference::Auto),
            ("native", XdpModePreference::Native),
            ("generic", XdpModePreference::Generic),
        ],
    )?;
    io.bind = one_of(
        "ports.bind",
        &p.bind,
        &[
            ("auto", BindPreference::Auto),
            ("zero-copy", BindPreference::ZeroCopy),
            ("copy", BindPreference::Copy),
        ],
    )?;
    io.frames = cfg.dataplane.frames;
    io.queues = cfg.dataplane.workers as u32;
    io.chunk_size = cfg.dataplane.chunk_size;
    io.busy_poll_us = cfg.dataplane.busy_poll_us;
    io.busy_poll_budget = cfg.dataplane.batch.clamp(1, 1024) as u32;
    // The maps are prepared unless offload is off for sure; the kernel tier only
    // starts when the worker gets them (see `offload_choice`).
    io.offload = offload_setting(cfg)? != Some(false);
    io.offload_entries = u32::try_from(cfg.dataplane.flow_capacity.max(1)).unwrap_or(u32::MAX);
    Ok(io)
}

/// `dataplane.offload`: `Some(on)`, or `None` when absent (decided by XDP mode).
pub(super) fn offload_setting(cfg: &Config) -> anyhow::Result<Option<bool>> {
    cfg.dataplane
        .offload
        .as_deref()
        .map(|v| one_of("dataplane.offload", v, &[("on", true), ("off", false)]))
        .transpose()
}

/// Whether the kernel tier runs, and why (for the log).
pub(super) fn offload_choice(setting: Option<bool>, xdp: XdpMode) -> (bool, &'static str) {
    match (setting, xdp) {
        (Some(true), XdpMode::Native) => (true, "on"),
        (Some(true), XdpMode::Generic) => (
            true,
            "on (configured; XDP runs in generic mode here, so the kernel tier saves less)",
        ),
        (Some(false), _) => (false, "off (configured)"),
        (None, XdpMode::Native) => (true, "on (XDP attached natively)"),
        (None, XdpMode::Generic) => (
            false,
            "off: XDP runs in generic (skb) mode here, where the kernel has already built an skb \
             for every frame and a devmap redirect sends that skb out again, so the kernel tier \
             saves little over AF_XDP and is untested there; set dataplane.offload = \"on\" to force it",
        ),
    }
}

pub(super) fn worker_config(cfg: &Config) -> anyhow::Result<WorkerConfig> {
    let d = &cfg.dataplane;
    Ok(WorkerConfig {
        batch_size: d.batch.clamp(1, 1024),
        flow_capacity: d.flow_capacity.max(1),
        non_ip: one_of(
            "dataplane.non_ip",
            &d.non_ip,
            &[
                ("policy", NonIpPolicy::Policy),
                ("forward", NonIpPolicy::Forward),
                ("drop", NonIpPolicy::Drop),
            ],
        )?,
        non_ip_allow: d
            .non_ip_allow
            .iter()
            .map(|t| {
                ethertype(t).ok_or_else(|| {
                    anyhow::anyhow!(
                        "dataplane.non_ip_allow: {t:?} is not an ethertype (a number from \
                         0x0600, e.g. 0x88cc, or one of: {})",
                        ETHERTYPE_NAMES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect::<anyhow::Result<Vec<u16>>>()?,
        fragments: one_of(
            "dataplane.fragments",
            &d.fragments,
            &[
                ("drop", FragmentPolicy::Drop),
                ("forward", FragmentPolicy::Forward),
            ],
        )?,
        // Interim reports feed the records and the IPFIX export only.
        interim_every: cfg.interim_every(),
        idle_report: cfg.idle_report(),
        ..WorkerConfig::default()
    })
}

/// Ethertypes by name, for `dataplane.non_ip_allow`.
const ETHERTYPE_NAMES: [(&str, u16); 7] = [
    ("lldp", 0x88cc),
    ("lacp", 0x8809),
    ("mpls", 0x8847),
    ("mpls-multicast", 0x8848),
    ("pppoe-discovery", 0x8863),
    ("pppoe", 0x8864),
    ("eapol", 0x888e),
];

/// An ethertype from its name or number (decimal or 0x hex); a number must be
/// an ethertype (0x0600 and up), not an 802.3 length.
fn ethertype(text: &str) -> Option<u16> {
    let t = text.trim().to_ascii_lowercase();
    if let Some(&(_, v)) = ETHERTYPE_NAMES.iter().find(|(n, _)| *n == t) {
        return Some(v);
    }
    let v = match t.strip_prefix("0x") {
        Some(hex) => u16::from_str_radix(hex, 16).ok()?,
        None => t.parse().ok()?,
    };
    (v >= 0x0600).then_some(v)
}
