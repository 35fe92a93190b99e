//! Micro-benchmarks of the packet path. Groups and ids, for `cargo bench -p
//! bulkhead-bench -- FILTER`: `parse`, `fast_path/{1k,100k,1M}`,
//! `classify/{10,1k,10k,100k}`, `compile/100k`. Each reports a rate per packet,
//! lookup or rule (`Throughput::Elements`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use bulkhead_bench::{allow_udp_policy, flow_frames, policy, queries, udp_frame, workload_mac};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dataplane::io::mem::MemIo;
use dataplane::io::Port;
use dataplane::policy::{PolicySnapshot, SnapshotCell};
use dataplane::worker::{Worker, WorkerConfig};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;

fn parse(c: &mut Criterion) {
    let frame = udp_frame(
        workload_mac(1, 1),
        workload_mac(2, 2),
        Ipv4Addr::new(10, 0, 1, 2),
        Ipv4Addr::new(10, 0, 2, 3),
        40000,
        53,
    );
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("udp4_64B", |b| {
        b.iter(|| dataplane::wire::parse(black_box(&frame)))
    });
    g.finish();
}

/// Established flows through the worker: frames circulate A -> B -> back to A's
/// receive queue with no copy; each iteration is one poll of a 64-frame batch.
fn fast_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("fast_path");
    for (name, flows) in [("1k", 1_000usize), ("100k", 100_000), ("1M", 1_000_000)] {
        let snap =
            PolicySnapshot::compile(&allow_udp_policy(), 1).expect("fixture policy compiles");
        let cell = Arc::new(SnapshotCell::new(snap));
        let (sink, events) = dataplane::event::channel(1 << 10);
        let cfg = WorkerConfig {
            flow_capacity: flows,
            ..WorkerConfig::default()
        };
        let mut worker = Worker::new(cfg, cell, sink);
        let mut io = MemIo::new(flows, 128);
        for f in flow_frames(flows, 7) {
            io.inject(Port::A, &f).expect("frame fits");
        }
        // First pass: every flow is classified and inserted.
        let mut now = 1u64;
        while io.rx_pending(Port::A) > 0 {
            worker.poll(&mut io, now).expect("mem io");
            now += 1000;
        }
        io.loop_back(Port::B, Port::A);
        while events.try_recv().is_ok() {}
        assert_eq!(worker.flows().len(), flows, "every flow is in the table");

        g.throughput(Throughput::Elements(64));
        g.bench_function(name, |b| {
            b.iter(|| {
                now += 1000;
                let n = worker.poll(&mut io, now).expect("mem io");
                io.loop_back(Port::B, Port::A);
                n
            })
        });
        let s = worker.stats();
        assert_eq!(s.total_drops(), 0, "the fast path dropped nothing");
        assert_eq!(worker.flows().len(), flows, "no flow left the table");
    }
    g.finish();
}

fn classify(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    for (name, rules) in [
        ("10", 10usize),
        ("1k", 1_000),
        ("10k", 10_000),
        ("100k", 100_000),
    ] {
        let spec = policy(rules, 42);
        let snap = PolicySnapshot::compile(&spec, 1).expect("fixture policy compiles");
        let qs = queries(&spec, 1024, 9);
        g.throughput(Throughput::Elements(qs.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                for q in &qs {
                    black_box(snap.classify(black_box(q)));
                }
            })
        });
    }
    g.finish();
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    let spec = policy(100_000, 42);
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("100k", |b| {
        b.iter_batched(
            || (),
            |_| PolicySnapshot::compile(black_box(&spec), 1).expect("compiles"),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, parse, fast_path, classify, compile);
criterion_main!(benches);
