//! Control-plane benchmarks: `control/compile_model/100k` (validate and compile a
//! 100k-rule model into the dataplane spec, then the snapshot) and
//! `control/commit/100k` (a whole commit through the control thread's handle:
//! validate, render, store in one SQLite transaction with fsync, compile the
//! effective model, publish the snapshot; timed until the call returns).
//!
//! `cargo bench -p bulkhead-bench --bench control`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use bulkhead_bench::model::model;
use control::engine::{Bootstrap, Engine, EngineConfig};
use control::store::Store;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dataplane::policy::SnapshotCell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RULES: u32 = 100_000;

fn compile_model(c: &mut Criterion) {
    let mut g = c.benchmark_group("control/compile_model");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(RULES)));
    let m = model(RULES, false);
    g.bench_function("100k", |b| {
        b.iter_batched(
            || (),
            |_| control::compile_snapshot(black_box(&m), 1).expect("fixture compiles"),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn commit(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("bulkhead-bench-commit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = Store::open(&dir.join("bench.db")).expect("store");
    let cell = Arc::new(SnapshotCell::default());
    let engine = Engine::start(
        store,
        Bootstrap {
            model: model(RULES, false),
            source: "the benchmark model".into(),
        },
        cell.clone(),
        None,
        None,
        EngineConfig::default(),
    )
    .expect("engine");
    let h = engine.handle.clone();
    let models = [model(RULES, true), model(RULES, false)];

    let mut g = c.benchmark_group("control/commit");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(RULES)));
    let mut n = 0usize;
    g.bench_function("100k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let m = models[n % 2].clone();
                n += 1;
                let t = Instant::now();
                let out = h.replace(m, "bench", "commit benchmark").expect("commit");
                total += t.elapsed();
                assert_eq!(cell.generation(), out.generation);
            }
            total
        })
    });
    g.finish();
    h.stop();
    let _ = engine.thread.join();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, compile_model, commit);
criterion_main!(benches);
