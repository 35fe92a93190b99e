//! Records store queries (issue 17) over a synthetic store of 30 days:
//!
//! - `records_query/workload_1h`: one workload's flows (as initiator, the
//!   API's `from=MAC`) in a 1-hour window, limit 100 (the API's default), at
//!   varied hours of the store and for varied workloads (a quarter of them
//!   among the 10 busiest, the rest any); goal p99 <= 50 ms;
//! - `records_query/graph_group_24h`: the group-level graph of the store's
//!   last 24 hours; goal <= 200 ms;
//! - `records_query/graph_workload_24h`: the same at workload level;
//! - `records_query/graph_group_30d`: the group-level graph of all 30 days;
//!   goal <= 500 ms (from rollups).
//!
//! The store: `BULKHEAD_RECORDS_STORE=FILE` (made by `records-gen`, 10M
//! records for the figures); unset, 1M records over 30 days are
//! generated into a temporary directory first (the same generator). Besides
//! criterion's mean, each query's p50 and p99 are printed: over 500 queries
//! (or 120 s) for `workload_1h`, over every timed iteration for the graphs.
//!
//! `BULKHEAD_RECORDS_STORE=/tmp/records.db cargo bench -p bulkhead-bench --bench records_query`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use bulkhead_bench::records::{generate, store_bytes, GenConfig};
use bulkhead_bench::Rng;
use control::records::{FlowFilter, FlowParams, GraphParams, GraphQuery, RecordsReader};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// `workload_1h` queries timed one by one for the percentiles.
const QUERIES: usize = 500;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

/// The store to query, and a temporary directory to delete afterwards.
fn store() -> (PathBuf, Option<PathBuf>) {
    if let Some(p) = std::env::var_os("BULKHEAD_RECORDS_STORE") {
        return (PathBuf::from(p), None);
    }
    let dir = std::env::temp_dir().join(format!(
        "bulkhead-bench-records-query-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("records.db");
    let cfg = GenConfig {
        days: 30,
        records: 1_000_000,
        workloads: 1_000,
        seed: 17,
        end_ms: now_ms(),
        dns: 0,
        moving_pct: 0,
    };
    let r = generate(&path, &cfg, |_| {}).unwrap();
    println!(
        "records_query: BULKHEAD_RECORDS_STORE unset: generated {} records in {:.1} s into {}",
        r.written,
        r.elapsed.as_secs_f64(),
        path.display()
    );
    (path, Some(dir))
}

/// What the queries are drawn from: the store's time span, its workloads'
/// MACs and the 10 busiest of its last 6 hours.
struct Shape {
    first_ms: i64,
    last_ms: i64,
    records: i64,
    workloads: Vec<String>,
    busy: Vec<String>,
}

fn shape(path: &Path) -> Shape {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let (first_ms, last_ms, records): (i64, i64, i64) = c
        .query_row(
            "SELECT min(last_ms), max(last_ms), max(id) FROM flows",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let mac = |v: i64| {
        let b = v.to_be_bytes();
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[2], b[3], b[4], b[5], b[6], b[7]
        )
    };
    let macs = |sql: &str, args: &[i64]| -> Vec<String> {
        let mut s = c.prepare(sql).unwrap();
        s.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|m| mac(m.unwrap()))
            .collect()
    };
    Shape {
        first_ms,
        last_ms,
        records,
        workloads: macs(
            "SELECT DISTINCT mac FROM identities WHERE name <> '' ORDER BY mac",
            &[],
        ),
        busy: macs(
            "SELECT f.src_mac FROM flows f JOIN identities s ON s.id = f.src_id
             WHERE f.last_ms >= ?1 AND s.name <> ''
             GROUP BY f.src_mac ORDER BY count(*) DESC LIMIT 10",
            &[last_ms - 6 * HOUR],
        ),
    }
}

/// p50, p99 and max of `t` in ms.
fn percentiles(t: &mut [Duration]) -> (f64, f64, f64) {
    t.sort_unstable();
    let at = |q: f64| {
        let i = ((t.len() as f64 * q).ceil() as usize).clamp(1, t.len()) - 1;
        t[i].as_secs_f64() * 1e3
    };
    (at(0.50), at(0.99), at(1.0))
}

fn report(name: &str, t: &mut [Duration], extra: &str) {
    if t.is_empty() {
        return;
    }
    let (p50, p99, max) = percentiles(t);
    println!(
        "{name}: {} queries: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms{extra}",
        t.len()
    );
}

/// `n` one-workload 1-hour queries (API parameters, as `GET /v1/flows`
/// would take them), `from` or `to` side.
fn workload_filters(s: &Shape, n: usize, to: bool, seed: u64) -> Vec<FlowFilter> {
    let mut rng = Rng::new(seed);
    let span = (s.last_ms - s.first_ms - HOUR).max(1) as u64;
    (0..n)
        .map(|_| {
            let mac = if rng.below(4) == 0 && !s.busy.is_empty() {
                s.busy[rng.below(s.busy.len() as u64) as usize].clone()
            } else {
                s.workloads[rng.below(s.workloads.len() as u64) as usize].clone()
            };
            let since = s.first_ms + rng.below(span) as i64;
            let (from, to) = if to {
                (None, Some(mac))
            } else {
                (Some(mac), None)
            };
            FlowParams {
                from,
                to,
                since: Some(rfc3339(since)),
                until: Some(rfc3339(since + HOUR)),
                ..FlowParams::default()
            }
            .filter(s.last_ms)
            .unwrap()
        })
        .collect()
}

/// Time `filters` one by one, for at most `budget`.
fn time_each(
    reader: &RecordsReader,
    filters: &[FlowFilter],
    budget: Duration,
) -> (Vec<Duration>, usize) {
    let start = Instant::now();
    let mut times = Vec::new();
    let mut rows = 0;
    for f in filters {
        let t = Instant::now();
        rows += reader.flows(f).unwrap().flows.len();
        times.push(t.elapsed());
        if start.elapsed() > budget {
            break;
        }
    }
    (times, rows)
}

fn graph_query(s: &Shape, level: &str, days: i64) -> GraphQuery {
    GraphParams {
        level: Some(level.into()),
        since: Some(rfc3339(s.last_ms - days * DAY)),
        until: Some(rfc3339(s.last_ms)),
    }
    .query(s.last_ms)
    .unwrap()
}

fn queries(c: &mut Criterion) {
    let (path, temp) = store();
    let s = shape(&path);
    println!(
        "records_query: store {} ({} records, {:.1} MiB, {:.1} days, {} workloads; busiest {:?})",
        path.display(),
        s.records,
        store_bytes(&path) as f64 / 1_048_576.0,
        (s.last_ms - s.first_ms) as f64 / DAY as f64,
        s.workloads.len(),
        &s.busy[..s.busy.len().min(3)]
    );
    let reader = RecordsReader::open(&path).unwrap();

    // Percentiles first, query by query.
    let from = workload_filters(&s, QUERIES, false, 1);
    let (mut t, rows) = time_each(&reader, &from, Duration::from_secs(120));
    let n = t.len();
    report(
        "records_query/workload_1h (from)",
        &mut t,
        &format!(", {:.1} rows a query", rows as f64 / n.max(1) as f64),
    );
    let to = workload_filters(&s, QUERIES, true, 2);
    let (mut t, rows) = time_each(&reader, &to, Duration::from_secs(60));
    let n = t.len();
    report(
        "records_query/workload_1h (to)",
        &mut t,
        &format!(", {:.1} rows a query", rows as f64 / n.max(1) as f64),
    );

    let mut g = c.benchmark_group("records_query");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(10));
    g.sampling_mode(SamplingMode::Flat);
    let mut next = 0;
    g.bench_function("workload_1h", |b| {
        b.iter(|| {
            next = (next + 1) % from.len();
            reader.flows(&from[next]).unwrap()
        })
    });
    for (name, level, days) in [
        ("graph_group_24h", "group", 1),
        ("graph_workload_24h", "workload", 1),
        ("graph_group_30d", "group", 30),
    ] {
        if days > 1 {
            g.measurement_time(Duration::from_secs(1));
        }
        let q = graph_query(&s, level, days);
        let mut times = Vec::new();
        let mut edges = 0;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let graph = reader.graph(&q).unwrap();
                    let e = t.elapsed();
                    edges = graph.edges.len();
                    times.push(e);
                    total += e;
                }
                total
            })
        });
        report(
            &format!("records_query/{name}"),
            &mut times,
            &format!(", {edges} edges (warm-up runs included)"),
        );
    }
    g.finish();
    drop(reader);
    if let Some(dir) = temp {
        let _ = std::fs::remove_dir_all(dir);
    }
}

criterion_group!(benches, queries);
criterion_main!(benches);
