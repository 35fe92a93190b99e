//! Records store ingest: `records/ingest/100k`, 100,000 flow records handed to
//! the writer in batches of 1,000 (as the control thread batches them) and
//! timed until the writer has committed them all, into a store that grows
//! across iterations; reported as records a second (the figure: at
//! least 300k/s on this 2-core machine). Prints the store's bytes per
//! million records at the end.
//!
//! `cargo bench -p bulkhead-bench --bench records`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use control::records::{Identity, RecordKind, RecordsConfig, RecordsWriter, StoredFlow};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::event::{EndReason, FlowRecord};
use dataplane::flow::FlowState;
use dataplane::policy::{Action, Mode, Reason, Verdict};
use dataplane::wire::MacAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RECORDS: u64 = 100_000;
const BATCH: u64 = 1_000;
/// Workloads the records are spread over.
const WORKLOADS: u64 = 1_000;

fn identity(i: u64) -> Identity {
    Identity {
        mac: MacAddr([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
        name: format!("wl-{i}"),
        labels: [("app".to_string(), format!("app-{}", i % 20))].into(),
        groups: vec![format!("group-{}", i % 20)],
    }
}

fn flow(n: u64, now_ms: i64, ids: &[Identity]) -> StoredFlow {
    let (s, d) = (n % WORKLOADS, (n * 7 + 3) % WORKLOADS);
    let (src, dst) = (ids[s as usize].clone(), ids[d as usize].clone());
    let deny = n.is_multiple_of(10);
    StoredFlow {
        flow: FlowRecord {
            src_mac: src.mac,
            dst_mac: dst.mac,
            src_ip: format!("10.{}.{}.{}", s >> 16, (s >> 8) & 255, s & 255)
                .parse()
                .unwrap(),
            dst_ip: format!("10.{}.{}.{}", d >> 16, (d >> 8) & 255, d & 255)
                .parse()
                .unwrap(),
            proto: 6,
            src_port: 32768 + (n % 28000) as u16,
            dst_port: [443, 5432, 22, 445][(n % 4) as usize],
            vlan: [0, 0],
            verdict: Verdict {
                action: if deny { Action::Deny } else { Action::Allow },
                reason: if deny {
                    Reason::Default
                } else {
                    Reason::Rule(10)
                },
                mode: Mode::Enforce,
                would_deny: false,
            },
            generation: 1,
            state: FlowState::Closed,
            first_seen: 0,
            last_seen: 0,
            packets: [12, 10],
            bytes: [1_400, 9_800],
        },
        first_ms: now_ms - 2_000,
        last_ms: now_ms,
        src,
        dst,
        kind: RecordKind::Ended(EndReason::Idle),
        opens: true,
    }
}

fn ingest(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("bulkhead-bench-records-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("records.db");
    let writer = RecordsWriter::start(&path, RecordsConfig::default()).unwrap();
    let counters = writer.counters();
    let ids: Vec<Identity> = (0..WORKLOADS).map(identity).collect();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // The batches are built outside the timing: the control thread builds
    // them anyway; what is measured is the writer.
    let batches: Vec<Vec<StoredFlow>> = (0..RECORDS / BATCH)
        .map(|b| {
            (b * BATCH..(b + 1) * BATCH)
                .map(|n| flow(n, now_ms, &ids))
                .collect()
        })
        .collect();

    let mut g = c.benchmark_group("records/ingest");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(RECORDS));
    g.bench_function("100k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let todo = batches.clone();
                let target = counters.written.load(Ordering::Relaxed) + RECORDS;
                let start = Instant::now();
                for mut batch in todo {
                    // Wait for room: a lost batch would make the figure
                    // meaningless.
                    while let Err(back) = writer.try_submit(batch) {
                        batch = back;
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
                while counters.written.load(Ordering::Relaxed) < target {
                    std::thread::sleep(Duration::from_micros(100));
                }
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
    let written = counters.written.load(Ordering::Relaxed);
    drop(writer);
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .sum();
    println!(
        "records/ingest: {written} records, {} lost, store {:.1} MiB = {:.1} MiB per million records",
        counters.lost.load(Ordering::Relaxed),
        bytes as f64 / 1048576.0,
        bytes as f64 / 1048576.0 / (written as f64 / 1e6)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, ingest);
criterion_main!(benches);
