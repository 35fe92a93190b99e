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

mod config;
#[cfg(test)]
mod config_tests;
mod detect;
mod intel;
mod log;
mod workers;

pub use config::{load_config, DEFAULT_STORE};

use anyhow::Context;
use control::engine::{Bootstrap, ControlHandle, Engine, EngineConfig, Reload};
use control::store::Store;
use dataplane::event::Event;
use dataplane::io::afxdp::AfXdpIo;
use dataplane::pipeline::{self, Pipeline};
use dataplane::policy::SnapshotCell;
use dataplane::worker::StatsBoard;
use log::FlowLog;
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
                control.reload_intel();
                let outcome = load_policy(&path).and_then(|m| {
                    let comment = format!("reload of {}", path.display());
                    Ok(control.reload_file(m, &comment)?)
                });
                match outcome {
                    Ok(Reload::Committed(c)) => println!(
                        "policy reloaded: version {}, {} compiled rules, generation {}",
                        c.version, c.compiled_rules, c.generation
                    ),
                    Ok(Reload::Unchanged { version }) => println!(
                        "policy reload: {} is what version {version} committed, which is live; nothing to do",
                        path.display()
                    ),
                    Ok(Reload::KeptLive {
                        file_version,
                        live,
                        actor,
                    }) => println!(
                        "policy reload: {} has not changed since version {file_version}; the live \
                         version {live} (by {actor}) is kept. Edit the file to replace it, or roll \
                         back to version {file_version} through the API",
                        path.display()
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

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args.config)?;
    let io_cfg = config::io_config(&cfg)?;
    let worker_cfg = config::worker_config(&cfg)?;
    let file_model = load_policy(&cfg.policy.file)?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handler")?;
    }

    // Policy, control thread, API and flow tables first: the ports start
    // handing frames to the sockets the moment they are bound, and no frame
    // should wait for a 100k-rule compile or a flow table's allocation.
    let store = open_store(&cfg.control.store)?;
    let cell = Arc::new(SnapshotCell::default());
    let (sink, events) = dataplane::event::channel(1 << 14);
    let start = Instant::now();
    let records = cfg.records_plan(start);
    let ipfix = cfg.ipfix_plan(start)?;
    let records_path = records.as_ref().map(|p| p.path.clone());
    let (alerts, delivery) = cfg.alerts.plan()?;
    let detect = cfg.detect.config()?;
    let log_control = Arc::new(std::sync::OnceLock::new());
    let mut flow_log = FlowLog {
        second: 0,
        written: 0,
        held_back: 0,
        control: log_control.clone(),
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
            learned_idle: std::time::Duration::from_secs(cfg.control.learned_idle_secs),
            evict_idle: std::time::Duration::from_secs(cfg.control.evict_idle_secs),
            records,
            ipfix,
            worker_epoch: start,
            alerts,
            delivery,
            detect,
            ..EngineConfig::default()
        },
    )?;
    let control = engine.handle.clone();
    let _ = log_control.set(control.clone());
    println!(
        "policy: {}; {} compiled rules, generation {}",
        engine.origin,
        cell.load().rule_count(),
        cell.generation()
    );
    match &records_path {
        Some(path) => println!(
            "records: {} (kept {} days)",
            path.display(),
            cfg.records.max_age_days
        ),
        None => println!("records: off"),
    }
    reload_on_sighup(cfg.policy.file.clone(), control.clone())?;
    // Read before the ports are bound: the first packets meet the feeds.
    let state_dir = cfg
        .control
        .store
        .parent()
        .map_or_else(|| std::path::PathBuf::from("."), Path::to_path_buf);
    let hunt = records_path.clone().map(|path| control::engine::HuntPlan {
        records: path,
        window_ms: i64::try_from(cfg.records.max_age_days)
            .unwrap_or(i64::MAX)
            .saturating_mul(86_400_000),
    });
    let _intel = intel::start(&cfg.intel, &state_dir, &control, cfg.api.listen, hunt)?;
    let mut intel_generation = 0;
    let has_feeds = |c: &control::engine::ControlHandle| !c.intel().feeds.is_empty();
    if has_feeds(&control) {
        intel_generation = control.intel().generation;
        println!("{}", intel::line(&control));
    }

    let workers = cfg.dataplane.workers;
    let board = Arc::new(StatsBoard::new(workers));
    let _api = crate::api_run::start(
        &cfg.api,
        &cfg.control.store,
        records_path,
        control.clone(),
        board.clone(),
    )?;
    // The flow capacity is the total: each worker's table holds its share.
    let list = pipeline::workers(workers, &worker_cfg, &cell, sink);

    let io = AfXdpIo::open(&io_cfg)?;
    for setup in io.vlan_setup() {
        for off in &setup.turned_off {
            println!("vlan: turned off {off} (tags stay in the frame for XDP)");
        }
        if let Some(warning) = &setup.unchecked_peer {
            eprintln!("vlan: {warning}");
        }
    }
    let (xdp, bind) = io.mode();
    let (offload, why) = config::offload_choice(config::offload_setting(&cfg)?, xdp);
    // With offload, the kernel generation moves with each publication, before
    // the control thread answers: an offloaded flow is never forwarded on the
    // old policy after a commit or a quarantine has returned.
    let Pipeline { lanes, ports, .. } = Pipeline::assemble(io, list, &cell, offload, |g, e| {
        eprintln!("offload: writing the kernel generation of policy generation {g}: {e}");
    })?;
    let count = lanes.len();
    let crew = workers::Crew {
        stop: stop.clone(),
        board: board.clone(),
        start,
        pin: cfg.dataplane.pin_workers,
    };
    let threads = workers::spawn(&crew, lanes)?;
    let polling = match cfg.dataplane.busy_poll_us {
        0 => "need-wakeup".to_string(),
        us => format!("busy polling {us} us"),
    };
    println!("offload {why}");
    println!(
        "forwarding {} <-> {}: XDP {xdp}, AF_XDP {bind}, {polling}, fail-{}, {} flows, {count} worker(s){}",
        cfg.ports.a,
        cfg.ports.b,
        cfg.ports.fail_mode,
        worker_cfg.flow_capacity,
        if count > 1 {
            " (frames are handed to the worker that owns their flow)"
        } else {
            ""
        }
    );

    let mut control_running = true;
    let mut records_paused = false;
    let stats_every = Duration::from_secs(cfg.dataplane.stats_interval.max(1));
    let mut next_stats = stats_every;
    let mut failure = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if threads.iter().any(|t| t.is_finished()) {
            // A worker ended on its own: an I/O error. Stop the others too.
            stop.store(true, Ordering::Relaxed);
            break;
        }
        let status = control.status();
        if control_running && !status.running {
            control_running = false;
            println!(
                "control thread stopped ({}); forwarding continues with policy generation {}",
                status.failure.as_deref().unwrap_or("no reason given"),
                cell.generation()
            );
        }
        if has_feeds(&control) && control.intel().generation != intel_generation {
            intel_generation = control.intel().generation;
            println!("{}", intel::line(&control));
        }
        let paused = status.records.is_some_and(|r| r.paused);
        if paused != records_paused {
            records_paused = paused;
            if paused {
                println!(
                    "records: PAUSED, the records store's filesystem is below its reserve or \
                     full; records are dropped and counted, forwarding goes on"
                );
            } else {
                println!("records: resumed");
            }
        }
        if start.elapsed() >= next_stats {
            next_stats += stats_every;
            println!("{}, {}", log::board_line(&board), control_line(&control));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some(anyhow::anyhow!("a worker thread panicked"))),
        }
    }
    println!("{}", log::board_line(&board));
    let on_stop = cfg.ports.on_stop.clone();
    ports.shutdown().context("stopping the ports")?;
    control.stop();
    if engine.thread.join().is_err() {
        println!("control thread: could not be joined");
    }
    if let Some(r) = control.status().records {
        println!(
            "records: {} written, {} lost, {} expired; DNS: {} written, {} lost",
            r.written, r.lost, r.expired, r.dns_written, r.dns_lost
        );
    }
    if let Some(x) = control.status().ipfix {
        println!("{}", ipfix_line(&x));
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
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
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
    if let Some(r) = s.records {
        line += &format!(", records {} written", r.written);
        if r.dns_written > 0 {
            line += &format!(", {} DNS", r.dns_written);
        }
        if r.paused {
            line += " (PAUSED: the store's filesystem is below its reserve or full)";
        }
        if r.lost > 0 || r.dns_lost > 0 {
            line += &format!(
                ", {} LOST ({} DNS; {} write errors)",
                r.lost + r.dns_lost,
                r.dns_lost,
                r.errors
            );
        }
    }
    if let Some(x) = &s.ipfix {
        line += &format!(", {}", ipfix_line(x));
    }
    if let Some(e) = s.last_error {
        line += &format!(", last error: {e}");
    }
    line
}

/// The IPFIX exporter's part of the stats line: records exported, and what
/// each collector did not get.
fn ipfix_line(x: &control::engine::IpfixStatus) -> String {
    let mut line = format!("ipfix {} exported", x.exported);
    if x.dropped > 0 {
        line += &format!(", {} DROPPED (queue full)", x.dropped);
    }
    for c in &x.collectors {
        if !c.up || c.lost > 0 {
            let state = if c.up { "up" } else { "DOWN" };
            line += &format!(", {} {state}: {} records lost", c.collector, c.lost);
        }
    }
    line
}
