//! `bulkhead run --config FILE`: the appliance.
//!
//! Attaches the XDP program and AF_XDP sockets to the two data ports, loads the
//! bootstrap policy, and forwards between the ports through the worker until
//! SIGTERM or SIGINT. SIGHUP reloads the policy file (a bad file is refused and
//! the running policy kept). On stop the XDP program is left attached, so the
//! configured fail mode decides what the wire does while bulkhead is down
//! (`on_stop = "detach"` removes it instead); a crash leaves it attached too.

use anyhow::Context;
use dataplane::event::{Event, FlowRecord};
use dataplane::io::afxdp::{
    AfXdpConfig, AfXdpIo, BindPreference, FailMode, OnShutdown, XdpMode, XdpModePreference,
};
use dataplane::io::Port;
use dataplane::offload::Offloader;
use dataplane::policy::{self, Action, PolicySnapshot, Reason, SnapshotCell};
use dataplane::worker::{
    DropReason, FragmentPolicy, NonIpPolicy, Worker, WorkerConfig, WorkerStats,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The appliance's configuration (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
}

/// The configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub ports: PortsConfig,
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    pub policy: PolicyConfig,
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
    /// "forward" or "drop" frames that are neither IP nor ARP.
    pub non_ip: String,
    /// "drop" or "forward" later IP fragments whose first fragment was not seen.
    pub fragments: String,
    /// Seconds between stats lines in the log.
    pub stats_interval: u64,
    /// Worker threads; one per port pair for now.
    pub workers: usize,
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
            non_ip: "forward".into(),
            fragments: "drop".into(),
            stats_interval: 10,
            workers: 1,
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

fn one_of<T: Copy>(field: &str, value: &str, choices: &[(&str, T)]) -> anyhow::Result<T> {
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
    let cfg: Config = policy::parse_toml(&text, &path.display().to_string())?;
    if cfg.dataplane.workers != 1 {
        anyhow::bail!(
            "{}: dataplane.workers = {}: one worker per port pair is supported for now",
            path.display(),
            cfg.dataplane.workers
        );
    }
    Ok(cfg)
}

fn load_policy(path: &Path, generation: u64) -> anyhow::Result<PolicySnapshot> {
    let model = control::load_model(path)?;
    let (snapshot, _) = control::compile_snapshot(&model, generation)
        .with_context(|| format!("{}: policy does not compile", path.display()))?;
    Ok(snapshot)
}

fn io_config(cfg: &Config) -> anyhow::Result<AfXdpConfig> {
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
    io.chunk_size = cfg.dataplane.chunk_size;
    // The maps are prepared unless offload is off for sure; the kernel tier only
    // starts when the worker gets them (see `offload_choice`).
    io.offload = offload_setting(cfg)? != Some(false);
    io.offload_entries = u32::try_from(cfg.dataplane.flow_capacity.max(1)).unwrap_or(u32::MAX);
    Ok(io)
}

/// `dataplane.offload`: `Some(on)`, or `None` when absent (decided by XDP mode).
fn offload_setting(cfg: &Config) -> anyhow::Result<Option<bool>> {
    cfg.dataplane
        .offload
        .as_deref()
        .map(|v| one_of("dataplane.offload", v, &[("on", true), ("off", false)]))
        .transpose()
}

/// Whether the kernel tier runs, and why (for the log).
fn offload_choice(setting: Option<bool>, xdp: XdpMode) -> (bool, &'static str) {
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

fn worker_config(cfg: &Config) -> anyhow::Result<WorkerConfig> {
    let d = &cfg.dataplane;
    Ok(WorkerConfig {
        batch_size: d.batch.clamp(1, 1024),
        flow_capacity: d.flow_capacity.max(1),
        non_ip: one_of(
            "dataplane.non_ip",
            &d.non_ip,
            &[
                ("forward", NonIpPolicy::Forward),
                ("drop", NonIpPolicy::Drop),
            ],
        )?,
        fragments: one_of(
            "dataplane.fragments",
            &d.fragments,
            &[
                ("drop", FragmentPolicy::Drop),
                ("forward", FragmentPolicy::Forward),
            ],
        )?,
        ..WorkerConfig::default()
    })
}

/// One line for a flow: what, who, why.
fn describe(r: &FlowRecord) -> String {
    let reason = match r.verdict.reason {
        Reason::Rule(id) => format!("rule {}", control::compile::user_rule_id(id)),
        Reason::Quarantine => "quarantine".into(),
        Reason::Management => "management exception".into(),
        Reason::Blocklist => "blocklist".into(),
        Reason::Default => "default".into(),
    };
    format!(
        "proto {} {}:{} -> {}:{} src-mac {} by {} ({:?})",
        r.proto,
        r.src_ip,
        r.src_port,
        r.dst_ip,
        r.dst_port,
        policy::format_mac(r.src_mac),
        reason,
        r.verdict.mode
    )
    .to_lowercase()
}

/// Flow lines in the log, at most `PER_SECOND` a second: a scan or a flood must
/// not turn the log into the bottleneck. What is held back is counted and said.
struct FlowLog {
    second: u64,
    written: u32,
    held_back: u64,
}

impl FlowLog {
    const PER_SECOND: u32 = 50;

    fn event(&mut self, e: &Event, now: Duration) {
        let line = match e {
            Event::FlowStart(r) if r.verdict.action == Action::Deny => {
                format!("deny {}", describe(r))
            }
            Event::WouldDeny(r) => format!("would-deny {}", describe(r)),
            Event::Reclassified(r) => {
                let v = if r.verdict.action == Action::Deny {
                    "deny"
                } else {
                    "allow"
                };
                format!("reclassified {v} {}", describe(r))
            }
            _ => return,
        };
        let second = now.as_secs();
        if second != self.second {
            if self.held_back > 0 {
                println!(
                    "({} more flow lines held back in the last second)",
                    self.held_back
                );
            }
            (self.second, self.written, self.held_back) = (second, 0, 0);
        }
        if self.written < Self::PER_SECOND {
            self.written += 1;
            println!("{line}");
        } else {
            self.held_back += 1;
        }
    }
}

fn stats_line(s: &WorkerStats, flows: usize) -> String {
    let drops: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| s.drops(**r) > 0)
        .map(|r| format!("{} {}", r.name(), s.drops(*r)))
        .collect();
    let (a, b, o) = (s.port(Port::A), s.port(Port::B), &s.offload);
    format!(
        "stats: A rx {} tx {}, B rx {} tx {}, flows {} live {} created, drops [{}], events lost {}, \
         tiers: kernel forwarded {} pkts {} B dropped {} pkts {} B, userspace {} pkts {} B, \
         offload entries live {} installed {} removed {} evicted {} full {} invalidated {}",
        a.rx_packets,
        a.tx_packets,
        b.rx_packets,
        b.tx_packets,
        flows,
        s.flows_created,
        drops.join(", "),
        s.events_lost,
        o.tier.forwarded_packets,
        o.tier.forwarded_bytes,
        o.tier.dropped_packets,
        o.tier.dropped_bytes,
        a.rx_packets + b.rx_packets,
        a.rx_bytes + b.rx_bytes,
        o.live,
        o.installed,
        o.removed,
        o.evicted,
        o.full,
        o.invalidated,
    )
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args.config)?;
    let io_cfg = io_config(&cfg)?;
    let worker_cfg = worker_config(&cfg)?;
    let mut generation = 1;
    let snapshot = load_policy(&cfg.policy.file, generation)?;
    println!(
        "policy {}: {} compiled rules, generation {generation}",
        cfg.policy.file.display(),
        snapshot.rule_count()
    );
    let cell = Arc::new(SnapshotCell::new(snapshot));

    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handler")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .context("install signal handler")?;

    let mut io = AfXdpIo::open(&io_cfg)?;
    let (xdp, bind) = io.mode();
    println!(
        "forwarding {} <-> {}: XDP {xdp}, AF_XDP {bind}, fail-{}, {} flows",
        cfg.ports.a, cfg.ports.b, cfg.ports.fail_mode, worker_cfg.flow_capacity
    );
    let (sink, events) = dataplane::event::channel(1 << 14);
    let mut worker = Worker::new(worker_cfg, cell.clone(), sink);
    let (offload, why) = offload_choice(offload_setting(&cfg)?, xdp);
    match io.take_offload() {
        Some(map) if offload => worker.set_offload(Offloader::new(Box::new(map))),
        _ => {}
    }
    println!("offload {why}");
    let start = Instant::now();
    let mut flow_log = FlowLog {
        second: 0,
        written: 0,
        held_back: 0,
    };
    let mut next_stats = Duration::from_secs(cfg.dataplane.stats_interval.max(1));
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        if hup.swap(false, Ordering::Relaxed) {
            match load_policy(&cfg.policy.file, generation + 1) {
                Ok(s) => {
                    generation += 1;
                    println!(
                        "policy reloaded: {} compiled rules, generation {generation}",
                        s.rule_count()
                    );
                    cell.publish(s);
                }
                Err(e) => println!("policy reload refused, keeping generation {generation}: {e:#}"),
            }
        }
        let now = start.elapsed().as_nanos() as u64;
        let n = match worker.poll(&mut io, now) {
            Ok(n) => n,
            Err(e) => break Err(anyhow::Error::new(e).context("packet I/O failed")),
        };
        for e in events.try_iter() {
            flow_log.event(&e, start.elapsed());
        }
        if n == 0 {
            if let Err(e) = io.poll_wait(Duration::from_millis(20)) {
                break Err(anyhow::Error::new(e).context("waiting for packets failed"));
            }
        }
        if start.elapsed() >= next_stats {
            next_stats += Duration::from_secs(cfg.dataplane.stats_interval.max(1));
            println!(
                "{}, free frames {}, {:?}",
                stats_line(&worker.stats(), worker.flows().len()),
                io.free_frames(),
                io.stats()
            );
        }
    };
    println!("{}", stats_line(&worker.stats(), worker.flows().len()));
    let on_stop = cfg.ports.on_stop.clone();
    io.shutdown().context("stopping the ports")?;
    println!(
        "stopped ({}: {})",
        if on_stop == "detach" {
            "XDP detached"
        } else {
            "XDP left attached"
        },
        format_args!("fail-{}", cfg.ports.fail_mode)
    );
    result
}
