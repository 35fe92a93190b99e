//! How soon the worker's packets follow the control plane, measured in one
//! process with the real control thread, store and worker (in-memory ports):
//!
//! - `publish`: a worker thread forwards an established TCP flow (workload 0 ->
//!   workload 500, tcp/5432, decided by rule 1), one packet a poll, flat out.
//!   The main thread commits, through the control thread's handle, models that
//!   alternately deny and allow rule 1 (or quarantines workload 0 by MAC and
//!   releases it), and notes when the worker's verdict for the flow flips.
//!   Reported: the time from the call's return to the first packet decided by
//!   the new policy (0 when the worker had it before the call returned:
//!   publication happens before the answer), and the call itself, as
//!   p50 / p99 / max.
//! - `swap`: a worker forwards 64 allowed flows flat out while another thread
//!   compiles and publishes a new snapshot of the same 100k-rule policy every
//!   100 ms for 10 s; every frame must still be forwarded (drops are counted).
//!
//! Printed, not asserted. `cargo bench -p bulkhead-bench --bench publish`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use bulkhead_bench::model::{model, model_mac};
use control::engine::{Bootstrap, Engine, EngineConfig};
use control::store::Store;
use dataplane::io::mem::MemIo;
use dataplane::io::Port;
use dataplane::policy::{parse_mac, SnapshotCell};
use dataplane::worker::{Worker, WorkerConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A TCP ACK segment from workload 0 to workload 500 on port 5432.
fn frame() -> Vec<u8> {
    frame_from(40000)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn fmt(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// What each trial does to the flow's verdict.
#[derive(Clone, Copy, PartialEq)]
enum Change {
    /// Commit a model that denies (then allows) rule 1.
    Commit,
    /// Quarantine workload 0 by MAC (then release it).
    Quarantine,
}

fn run(rules: u32, trials: usize, change: Change) {
    let dir = std::env::temp_dir().join(format!(
        "bulkhead-bench-publish-{}-{rules}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = Store::open(&dir.join("bench.db")).expect("store");
    let cell = Arc::new(SnapshotCell::default());
    // Rule 1 denies in `model(_, false)` and allows in `model(_, true)`.
    let models = [model(rules, true), model(rules, false)];
    let engine = Engine::start(
        store,
        Bootstrap {
            model: models[usize::from(change == Change::Commit)].clone(),
            source: "the benchmark model".into(),
        },
        cell.clone(),
        None,
        None,
        EngineConfig::default(),
    )
    .expect("engine");
    let h = engine.handle.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let (flips_tx, flips) = crossbeam_channel::unbounded::<(Instant, bool)>();
    let worker_stop = stop.clone();
    let worker_cell = cell.clone();
    let worker = std::thread::spawn(move || {
        let (sink, _events) = dataplane::event::channel(16);
        let mut worker = Worker::new(WorkerConfig::default(), worker_cell, sink);
        let mut io = MemIo::new(64, 2048);
        let frame = frame();
        let start = Instant::now();
        let mut last = None;
        while !worker_stop.load(Ordering::Relaxed) {
            io.inject(Port::A, &frame).expect("inject");
            worker
                .poll(&mut io, start.elapsed().as_nanos() as u64)
                .expect("poll");
            let forwarded = io.tx_pending(Port::B) > 0;
            io.drain_tx(Port::B, |_| {});
            if last != Some(forwarded) {
                let _ = flips_tx.send((Instant::now(), forwarded));
                last = Some(forwarded);
            }
        }
    });
    // The starting state: denied for commits, allowed for quarantines.
    let (_, first) = flips
        .recv_timeout(Duration::from_secs(5))
        .expect("worker runs");
    assert_eq!(first, change == Change::Quarantine);
    let mac0 = parse_mac(&model_mac(0)).expect("fixture MAC");

    let mut after_return = Vec::with_capacity(trials);
    let mut call = Vec::with_capacity(trials);
    for t in 0..trials {
        let (allow, started) = match change {
            Change::Commit => {
                let allow = t % 2 == 0;
                let m = models[usize::from(!allow)].clone();
                let started = Instant::now();
                h.replace(m, "bench", "publish benchmark").expect("commit");
                (allow, started)
            }
            Change::Quarantine => {
                let allow = t % 2 == 1;
                let started = Instant::now();
                if allow {
                    h.release(mac0, None, "bench").expect("release");
                } else {
                    h.quarantine(mac0, Some("bench".into()), "bench")
                        .expect("quarantine");
                }
                (allow, started)
            }
        };
        let returned = Instant::now();
        let (seen, forwarded) = flips
            .recv_timeout(Duration::from_secs(5))
            .expect("the worker's verdict flips");
        assert_eq!(forwarded, allow);
        after_return.push(seen.saturating_duration_since(returned));
        call.push(returned - started);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();
    h.stop();
    let _ = engine.thread.join();
    let _ = std::fs::remove_dir_all(&dir);

    after_return.sort();
    call.sort();
    let what = match change {
        Change::Commit => "commits",
        Change::Quarantine => "quarantines and releases",
    };
    println!(
        "publish/{rules} rules, {trials} {what}: worker on the new policy after the call returned: p50 {} p99 {} max {}; the call: p50 {} p99 {} max {}",
        fmt(pct(&after_return, 0.5)),
        fmt(pct(&after_return, 0.99)),
        fmt(pct(&after_return, 1.0)),
        fmt(pct(&call, 0.5)),
        fmt(pct(&call, 0.99)),
        fmt(pct(&call, 1.0)),
    );
}

/// Swaps: a worker forwards `flows` allowed flows flat out while another
/// thread publishes a freshly compiled snapshot of the same `rules`-rule
/// policy every `every`, for `secs`. Every frame must still be forwarded.
fn swap_under_load(rules: u32, flows: u16, every: Duration, secs: u64) {
    let m = model(rules, true);
    let spec = control::compile(&m).expect("fixture compiles").spec;
    let first = dataplane::policy::PolicySnapshot::compile(&spec, 1).expect("snapshot");
    let cell = Arc::new(SnapshotCell::new(first));
    let stop = Arc::new(AtomicBool::new(false));
    let (worker_stop, worker_cell) = (stop.clone(), cell.clone());
    let worker = std::thread::spawn(move || {
        let (sink, _events) = dataplane::event::channel(16);
        let mut worker = Worker::new(WorkerConfig::default(), worker_cell, sink);
        let mut io = MemIo::new(256, 2048);
        let frames: Vec<Vec<u8>> = (0..flows).map(|f| frame_from(40000 + f)).collect();
        let start = Instant::now();
        let (mut sent, mut forwarded) = (0u64, 0u64);
        while !worker_stop.load(Ordering::Relaxed) {
            for f in frames.iter().take(64) {
                io.inject(Port::A, f).expect("inject");
            }
            sent += frames.len().min(64) as u64;
            worker
                .poll(&mut io, start.elapsed().as_nanos() as u64)
                .expect("poll");
            forwarded += io.tx_pending(Port::B) as u64;
            io.drain_tx(Port::B, |_| {});
        }
        (sent, forwarded, worker.stats().reclassified)
    });
    // Compile the next snapshot, then publish it on the next tick: the swaps
    // keep their cadence as long as a compile takes less than `every`.
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut generation = 1;
    let mut compile_ms = Vec::new();
    let mut late = 0;
    let mut tick = start;
    while tick < end {
        let t = Instant::now();
        let snap =
            dataplane::policy::PolicySnapshot::compile(&spec, generation + 1).expect("snapshot");
        compile_ms.push(t.elapsed());
        tick += every;
        match tick.checked_duration_since(Instant::now()) {
            Some(wait) => std::thread::sleep(wait),
            None => late += 1,
        }
        cell.publish(snap);
        generation += 1;
    }
    let achieved = start.elapsed() / (generation - 1).max(1) as u32;
    stop.store(true, Ordering::Relaxed);
    let (sent, forwarded, reclassified) = worker.join().expect("worker");
    compile_ms.sort();
    println!(
        "swap/{rules} rules: {} snapshots published every {} ms (aimed at {} ms; {late} late; compile p50 {}) under load: {sent} frames, {forwarded} forwarded, {} dropped, {reclassified} flow re-decisions",
        generation - 1,
        achieved.as_millis(),
        every.as_millis(),
        fmt(pct(&compile_ms, 0.5)),
        sent - forwarded,
    );
}

/// A TCP ACK of workload 0 -> workload 500 on port 5432 from `sport`.
fn frame_from(sport: u16) -> Vec<u8> {
    let mac = |i| parse_mac(&model_mac(i)).expect("fixture MAC").0;
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(0), mac(500))
        .ipv4([10, 0, 0, 1], [10, 0, 1, 244], 64)
        .tcp(sport, 5432, 1, 65535)
        .ack(1)
        .write(&mut out, &[0u8; 6])
        .expect("build frame");
    out
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: keep that short.
    let full = std::env::args().any(|a| a == "--bench");
    // `cargo bench -p bulkhead-bench --bench publish -- quarantine` runs only
    // the parts named (commit, quarantine, swap).
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |part: &str| named.is_empty() || named.iter().any(|n| n == part);
    if full {
        if wanted("commit") {
            run(100, 200, Change::Commit);
            run(100_000, 20, Change::Commit);
        }
        if wanted("quarantine") {
            run(100, 200, Change::Quarantine);
            run(100_000, 100, Change::Quarantine);
        }
        if wanted("swap") {
            swap_under_load(100_000, 64, Duration::from_millis(100), 10);
        }
    } else {
        run(100, 4, Change::Commit);
        run(100, 4, Change::Quarantine);
        swap_under_load(100, 8, Duration::from_millis(20), 1);
    }
}
