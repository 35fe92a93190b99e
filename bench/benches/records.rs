//! Records store ingest: `records/ingest/100k`, 100,000 flow records handed to
//! the writer in batches of 1,000 (as the control thread batches them) and
//! timed until the writer has committed them all, into a store that grows
//! across iterations; reported as records a second (the figure: at
//! least 300k/s on this 2-core machine). Prints the store's bytes per
//! million records at the end.
//!
//! `records/recorder/100k`: what the control thread spends to make records:
//! 100,000 flow ends of 1,000 workloads turned into stored records (names,
//! labels, groups looked up, times converted), batched to a writer.
//!
//! `records/ingest_dns/100k` (issue 20): 100,000 DNS responses of the
//! synthetic stores' kind (`bulkhead_bench::records::dns::sample`: 1,000
//! workloads, CNAME chains, NXDOMAIN, internal names), DNS-only batches of
//! 1,000, timed until the writer has committed them (raw rows, with the
//! passive DNS and address rows it derives written every 5 s as for flows);
//! the figure: at least 100k/s.
//!
//! `cargo bench -p bulkhead-bench --bench records`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use control::records::{
    Batch, Identity, RecordKind, RecordsConfig, RecordsWriter, StoredDns, StoredFlow,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::event::{EndReason, FlowRecord};
use dataplane::flow::FlowState;
use dataplane::policy::{Action, Mode, Reason, Verdict};
use dataplane::wire::MacAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
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

fn flow(n: u64, now_ms: i64, ids: &[Arc<Identity>]) -> StoredFlow {
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
            tcp_flags: 0,
            orig_port: dataplane::io::Port::A,
        },
        first_ms: now_ms - 2_000,
        last_ms: now_ms,
        src,
        dst,
        kind: RecordKind::Ended(EndReason::Idle),
        opens: true,
        intel: None,
    }
}

fn ingest(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("bulkhead-bench-records-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("records.db");
    let writer = RecordsWriter::start(&path, RecordsConfig::default()).unwrap();
    let counters = writer.counters();
    // Shared, as the recorder hands them out (one `Arc` an identity).
    let ids: Vec<Arc<Identity>> = (0..WORKLOADS).map(|i| Arc::new(identity(i))).collect();
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

fn ingest_dns(c: &mut Criterion) {
    let dir =
        std::env::temp_dir().join(format!("bulkhead-bench-records-dns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("records.db");
    let writer = RecordsWriter::start(&path, RecordsConfig::default()).unwrap();
    let counters = writer.counters();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Built outside the timing, as for flows: the recorder builds them.
    let responses = bulkhead_bench::records::dns::sample(WORKLOADS as u32, RECORDS, 20, now_ms);
    let batches: Vec<Vec<StoredDns>> = responses
        .chunks(BATCH as usize)
        .map(<[StoredDns]>::to_vec)
        .collect();

    let mut round = 0;
    let mut g = c.benchmark_group("records/ingest_dns");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(RECORDS));
    g.bench_function("100k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // An hour later each time, as a live recorder's responses
                // come: the same times again would land inside the time
                // index instead of at its end.
                round += 1;
                let mut todo = batches.clone();
                for d in todo.iter_mut().flatten() {
                    d.time_ms += round * 3_600_000;
                }
                let target = counters.dns_written.load(Ordering::Relaxed) + RECORDS;
                let start = Instant::now();
                for dns in todo {
                    bulkhead_bench::records::submit(
                        &writer,
                        Batch {
                            dns,
                            ..Batch::default()
                        },
                    );
                }
                while counters.dns_written.load(Ordering::Relaxed) < target {
                    std::thread::sleep(Duration::from_micros(100));
                }
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
    let written = counters.dns_written.load(Ordering::Relaxed);
    drop(writer);
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .sum();
    println!(
        "records/ingest_dns: {written} responses, {} lost, store {:.1} MiB = {:.1} MiB per million responses",
        counters.dns_lost.load(Ordering::Relaxed),
        bytes as f64 / 1048576.0,
        bytes as f64 / 1048576.0 / (written.max(1) as f64 / 1e6)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn recorder(c: &mut Criterion) {
    use control::records::{Clock, Recorder};
    use dataplane::event::Event;
    let dir = std::env::temp_dir().join(format!("bulkhead-bench-recorder-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A model of 1,000 workloads in 500 groups, as the control thread has it.
    let model = std::sync::Arc::new(bulkhead_bench::model::model(1000, false));
    let (snapshot, _) = control::compile::compile_snapshot(&model, 1).unwrap();
    let mac = |i: u32| {
        bulkhead_bench::model::model_mac(i % 1000)
            .parse::<MacAddr>()
            .unwrap()
    };
    let events: Vec<Event> = (0..RECORDS as u32)
        .map(|n| {
            let (s, d) = (n % 1000, (n * 7 + 3) % 1000);
            Event::FlowEnd(
                FlowRecord {
                    src_mac: mac(s),
                    dst_mac: mac(d),
                    src_ip: format!("10.0.{}.{}", s >> 8, s & 255).parse().unwrap(),
                    dst_ip: format!("10.0.{}.{}", d >> 8, d & 255).parse().unwrap(),
                    proto: 6,
                    src_port: 32768 + (n % 28000) as u16,
                    dst_port: 5432,
                    vlan: [0, 0],
                    verdict: Verdict {
                        action: Action::Allow,
                        reason: Reason::Rule(10 << 8),
                        mode: Mode::Enforce,
                        would_deny: false,
                    },
                    generation: 1,
                    state: FlowState::Closed,
                    first_seen: u64::from(n) * 1_000,
                    last_seen: u64::from(n) * 1_000 + 500,
                    packets: [12, 10],
                    bytes: [1_400, 9_800],
                    tcp_flags: 0,
                    orig_port: dataplane::io::Port::A,
                },
                EndReason::Idle,
            )
        })
        .collect();
    let mut g = c.benchmark_group("records/recorder");
    g.sample_size(10);
    g.throughput(Throughput::Elements(RECORDS));
    g.bench_function("100k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                // A writer with a queue too short to matter: batches it cannot
                // take are dropped, so what is timed is the recorder alone.
                let path = dir.join(format!("r-{i}.db"));
                let writer = RecordsWriter::start(
                    &path,
                    RecordsConfig {
                        queue_batches: 1,
                        ..RecordsConfig::default()
                    },
                )
                .unwrap();
                let mut r = Recorder::new(writer, Clock::Unix);
                let start = Instant::now();
                for e in &events {
                    r.record(e, &model, &snapshot);
                }
                total += start.elapsed();
                drop(r);
                let _ = std::fs::remove_file(&path);
            }
            total
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, ingest, ingest_dns, recorder);
criterion_main!(benches);
