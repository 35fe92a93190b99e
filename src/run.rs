//! `bulkhead run --config FILE`: the appliance.
//!
//! Attaches the XDP program and AF_XDP sockets to the two data ports, starts the
//! control thread on the store (its live policy version, or the bootstrap policy
//! file committed as version 1), and forwards between the ports through the
//! worker until SIGTERM or SIGINT. SIGHUP commits the policy file as a new
//! version (a bad file is refused and the running policy kept). On stop the XDP
//! program is left attached, so the configured fail mode decides what the wire
//! does while bulkhead is down (`on_stop = "detach"` removes it instead); a crash
//! leaves it attached too. If the control thread dies, the worker forwards on
//! with the last policy and the log says so.

use anyhow::Context;
use control::engine::{Bootstrap, ControlHandle, Engine, EngineConfig};
use control::store::Store;
use dataplane::event::{Event, FlowRecord};
use dataplane::io::afxdp::{
    AfXdpConfig, AfXdpIo, BindPreference, FailMode, OnShutdown, XdpMode, XdpModePreference,
};
use dataplane::io::Port;
use dataplane::offload::Offloader;
use dataplane::policy::{self, Action, Reason, SnapshotCell};
use dataplane::worker::{
    DropReason, FragmentPolicy, NonIpPolicy, StatsBoard, Worker, WorkerConfig, WorkerStats,
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
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default)]
    pub api: crate::api_run::ApiSection,
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
            non_ip: "forward".into(),
            fragments: "drop".into(),
            stats_interval: 10,
            workers: 1,
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
}

/// Where the database lives unless the config says otherwise.
pub const DEFAULT_STORE: &str = "/var/lib/bulkhead/bulkhead.db";

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            store: PathBuf::from(DEFAULT_STORE),
            max_learned_workloads: EngineConfig::default().max_observed,
        }
    }
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

/// Reads and checks the policy file: it must compile, whether or not it
/// becomes the live version (it is what SIGHUP commits).
fn load_policy(path: &Path) -> anyhow::Result<control::Model> {
    let model = control::load_model(path)?;
    control::compile(&model)
        .with_context(|| format!("{}: policy does not compile", path.display()))?;
    Ok(model)
}

/// Opens the store, creating its directory if needed.
fn open_store(path: &Path) -> anyhow::Result<Store> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("control.store: cannot create {}", dir.display()))?;
    }
    Ok(Store::open(path)?)
}

/// SIGHUP: commit the policy file as a new version, on a thread of its own so
/// the packet path never waits for a compile.
fn reload_on_sighup(path: PathBuf, control: ControlHandle) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .context("install signal handler")?;
    std::thread::Builder::new()
        .name("bulkhead-sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                let outcome = load_policy(&path).and_then(|m| {
                    let comment = format!("reload of {}", path.display());
                    Ok(control.replace(m, "SIGHUP", &comment)?)
                });
                match outcome {
                    Ok(c) => println!(
                        "policy reloaded: version {}, {} compiled rules, generation {}",
                        c.version, c.compiled_rules, c.generation
                    ),
                    Err(e) => println!(
                        "policy reload refused, keeping generation {}: {e:#}",
                        control.status().generation
                    ),
                }
            }
        })
        .context("start the SIGHUP thread")?;
    Ok(())
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
    io.busy_poll_us = cfg.dataplane.busy_poll_us;
    io.busy_poll_budget = cfg.dataplane.batch.clamp(1, 1024) as u32;
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
    let file_model = load_policy(&cfg.policy.file)?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handler")?;
    }

    let mut io = AfXdpIo::open(&io_cfg)?;
    let (xdp, bind) = io.mode();
    let polling = match cfg.dataplane.busy_poll_us {
        0 => "need-wakeup".to_string(),
        us => format!("busy polling {us} us"),
    };
    println!(
        "forwarding {} <-> {}: XDP {xdp}, AF_XDP {bind}, {polling}, fail-{}, {} flows",
        cfg.ports.a, cfg.ports.b, cfg.ports.fail_mode, worker_cfg.flow_capacity
    );

    let store = open_store(&cfg.control.store)?;
    let cell = Arc::new(SnapshotCell::default());
    let (sink, events) = dataplane::event::channel(1 << 14);
    let start = Instant::now();
    let mut flow_log = FlowLog {
        second: 0,
        written: 0,
        held_back: 0,
    };
    let engine = Engine::start(
        store,
        Bootstrap {
            model: file_model,
            source: cfg.policy.file.display().to_string(),
        },
        cell.clone(),
        Some(events),
        Some(Box::new(move |e: &Event| {
            flow_log.event(e, start.elapsed())
        })),
        EngineConfig {
            max_observed: cfg.control.max_learned_workloads,
            ..EngineConfig::default()
        },
    )?;
    let control = engine.handle.clone();
    println!(
        "policy: {}; {} compiled rules, generation {}",
        engine.origin,
        cell.load().rule_count(),
        cell.generation()
    );
    reload_on_sighup(cfg.policy.file.clone(), control.clone())?;

    let board = Arc::new(StatsBoard::new(1));
    let _api = crate::api_run::start(&cfg.api, &cfg.control.store, control.clone(), board.clone())?;
    let mut worker = Worker::new(worker_cfg, cell.clone(), sink);
    let (offload, why) = offload_choice(offload_setting(&cfg)?, xdp);
    match io.take_offload() {
        Some(map) if offload => worker.set_offload(Offloader::new(Box::new(map))),
        _ => {}
    }
    println!("offload {why}");
    let mut control_running = true;
    let mut next_stats = Duration::from_secs(cfg.dataplane.stats_interval.max(1));
    let mut next_report = Duration::ZERO;
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let now = start.elapsed().as_nanos() as u64;
        let n = match worker.poll(&mut io, now) {
            Ok(n) => n,
            Err(e) => break Err(anyhow::Error::new(e).context("packet I/O failed")),
        };
        if n == 0 {
            if let Err(e) = io.poll_wait(Duration::from_millis(20)) {
                break Err(anyhow::Error::new(e).context("waiting for packets failed"));
            }
        }
        let elapsed = start.elapsed();
        if elapsed >= next_report {
            next_report = elapsed + Duration::from_millis(250);
            board.publish(0, worker.report());
            let status = control.status();
            if control_running && !status.running {
                control_running = false;
                println!(
                    "control thread stopped ({}); forwarding continues with policy generation {}",
                    status.failure.as_deref().unwrap_or("no reason given"),
                    cell.generation()
                );
            }
        }
        if elapsed >= next_stats {
            next_stats += Duration::from_secs(cfg.dataplane.stats_interval.max(1));
            println!(
                "{}, free frames {}, {:?}, {}",
                stats_line(&worker.stats(), worker.flows().len()),
                io.free_frames(),
                io.stats(),
                control_line(&control)
            );
        }
    };
    println!("{}", stats_line(&worker.stats(), worker.flows().len()));
    let on_stop = cfg.ports.on_stop.clone();
    io.shutdown().context("stopping the ports")?;
    control.stop();
    if engine.thread.join().is_err() {
        println!("control thread: could not be joined");
    }
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

/// The control thread's part of the stats line.
fn control_line(control: &ControlHandle) -> String {
    let s = control.status();
    let state = if s.running { "running" } else { "STOPPED" };
    let mut line = format!(
        "control {state}, generation {}, {} publishes, {} workloads learned",
        s.generation, s.publishes, s.workloads_learned
    );
    if s.observed_refused > 0 {
        line += &format!(", {} new MACs refused (cap)", s.observed_refused);
    }
    if let Some(e) = s.last_error {
        line += &format!(", last error: {e}");
    }
    line
}
