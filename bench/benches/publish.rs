//! Publish-to-worker latency: how long after a commit returns do the worker's
//! packets get the new policy?
//!
//! A worker thread forwards an established TCP flow (workload 0 -> workload 500,
//! tcp/5432, decided by rule 1) over the in-memory backend, one packet a poll,
//! flat out. The main thread commits, through the control thread's handle,
//! models that alternately deny and allow rule 1, and notes when the worker's
//! verdict for the flow flips. Reported: the time from the commit's return to
//! the first packet decided by the new policy (0 when the worker had it before
//! the call returned: publication happens before the answer), and the whole
//! commit call, as p50 / p99 / max. Printed, not asserted.
//!
//! `cargo bench -p bulkhead-bench --bench publish`

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
    let mac = |i| parse_mac(&model_mac(i)).expect("fixture MAC").0;
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(0), mac(500))
        .ipv4([10, 0, 0, 1], [10, 0, 1, 244], 64)
        .tcp(40000, 5432, 1, 65535)
        .ack(1)
        .write(&mut out, &[0u8; 6])
        .expect("build frame");
    out
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn fmt(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn run(rules: u32, trials: usize) {
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
            model: models[1].clone(),
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
    // The starting state: denied.
    let (_, first) = flips
        .recv_timeout(Duration::from_secs(5))
        .expect("worker runs");
    assert!(!first, "rule 1 starts as deny");

    let mut after_return = Vec::with_capacity(trials);
    let mut call = Vec::with_capacity(trials);
    for t in 0..trials {
        let allow = t % 2 == 0;
        let m = models[usize::from(!allow)].clone();
        let started = Instant::now();
        h.replace(m, "bench", "publish benchmark").expect("commit");
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
    println!(
        "publish/{rules} rules, {trials} commits: worker on the new policy after the commit returned: p50 {} p99 {} max {}; commit call: p50 {} p99 {} max {}",
        fmt(pct(&after_return, 0.5)),
        fmt(pct(&after_return, 0.99)),
        fmt(pct(&after_return, 1.0)),
        fmt(pct(&call, 0.5)),
        fmt(pct(&call, 0.99)),
        fmt(pct(&call, 1.0)),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: keep that short.
    let full = std::env::args().any(|a| a == "--bench");
    if full {
        run(100, 200);
        run(100_000, 20);
    } else {
        run(100, 4);
    }
}
