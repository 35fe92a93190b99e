//! Forensic queries (issue 20) over a synthetic store of 30 days with DNS
//! responses, moving addresses and a planted C2 incident
//! (`bulkhead_bench::records::dns`):
//!
//! - `forensics/traceback_domain`: a traceback of a registrable domain and
//!   every name under it over the 30 days: a tenth the planted C2 domains,
//!   a fifth the 20 most asked, the rest any domain asked (uniform over the
//!   distinct ones); goal p99 <= 50 ms;
//! - `forensics/traceback_ip`: a traceback of one address over the 30 days:
//!   a tenth the C2 addresses, a fifth the 20 busiest internet addresses,
//!   half any internet address flows went to, a fifth workloads' addresses;
//! - `forensics/blast_radius_d3_30d` and `forensics/blast_radius_d3_24h`:
//!   the blast radius to depth 3 from a workload over the 30 days, and over
//!   a 24-hour window at a random point of them: a tenth of the origins the
//!   C2 victims, a fifth the 10 busiest sources, the rest any workload; goal
//!   <= 200 ms.
//!
//! The store: `BULKHEAD_RECORDS_STORE=FILE` (made by `records-gen --dns N
//! --moving PCT`, 10M flow records and 1M DNS responses for the issue's
//! figures); unset, 1M flow records and 100k DNS responses over 30 days,
//! 20% of the workloads moving, are generated into a temporary directory
//! first. Besides criterion's mean, each query's p50, p99 and max are
//! printed over up to 300 queries timed one by one (at most 120 s a kind).
//!
//! `BULKHEAD_RECORDS_STORE=/tmp/forensics.db cargo bench -p bulkhead-bench --bench forensics`
//! (`BULKHEAD_FORENSICS_ONLY=traceback` for the kinds whose names begin so).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use bulkhead_bench::records::dns::{C2_DOMAINS, C2_IPS};
use bulkhead_bench::records::{generate, store_bytes, GenConfig};
use bulkhead_bench::Rng;
use control::intel::hunt::hunt;
use control::intel::{Action as IntelAction, Entry, Feed, Indicator, Intel, Severity};
use control::records::{reversed, RecordsReader, Target};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use dataplane::wire::MacAddr;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// Queries of each kind timed one by one for the percentiles...
const QUERIES: usize = 300;
/// ...for at most this long.
const BUDGET: Duration = Duration::from_secs(120);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The store to query, and a temporary directory to delete afterwards.
fn store() -> (PathBuf, Option<PathBuf>) {
    if let Some(p) = std::env::var_os("BULKHEAD_RECORDS_STORE") {
        return (PathBuf::from(p), None);
    }
    let dir = std::env::temp_dir().join(format!("bulkhead-bench-forensics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("forensics.db");
    let cfg = GenConfig {
        days: 30,
        records: 1_000_000,
        workloads: 1_000,
        seed: 17,
        end_ms: now_ms(),
        dns: 100_000,
        moving_pct: 20,
    };
    let r = generate(&path, &cfg, |_| {}).unwrap();
    println!(
        "forensics: BULKHEAD_RECORDS_STORE unset: generated {} records and {} DNS responses in {:.1} s into {}",
        r.written,
        r.dns_written,
        r.elapsed.as_secs_f64(),
        path.display()
    );
    (path, Some(dir))
}

fn ip_of(b: &[u8]) -> IpAddr {
    let a: [u8; 16] = b.try_into().unwrap();
    let v6 = Ipv6Addr::from(a);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

fn mac_of(v: i64) -> MacAddr {
    let b = v.to_be_bytes();
    MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// The registrable domain of a name: its last two labels.
fn base(name: &str) -> String {
    let labels: Vec<&str> = name.rsplitn(3, '.').collect();
    match labels.as_slice() {
        [tld, dom, ..] => format!("{dom}.{tld}"),
        _ => name.to_string(),
    }
}

/// What the queries are drawn from.
struct Shape {
    first_ms: i64,
    last_ms: i64,
    flows: i64,
    dns: i64,
    workloads: Vec<MacAddr>,
    busy: Vec<MacAddr>,
    victims: Vec<MacAddr>,
    popular_domains: Vec<String>,
    domains: Vec<String>,
    popular_ips: Vec<IpAddr>,
    external_ips: Vec<IpAddr>,
    internal_ips: Vec<IpAddr>,
    rows: BTreeMap<&'static str, i64>,
}

fn shape(path: &Path) -> Shape {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let (first_ms, last_ms, flows): (i64, i64, i64) = c
        .query_row(
            "SELECT min(last_ms), max(last_ms), max(id) FROM flows",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let dns: i64 = c
        .query_row("SELECT coalesce(max(id), 0) FROM dns", [], |r| r.get(0))
        .unwrap();
    let ints = |sql: &str| -> Vec<i64> {
        let mut s = c.prepare(sql).unwrap();
        s.query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let texts = |sql: &str| -> Vec<String> {
        let mut s = c.prepare(sql).unwrap();
        s.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let ips = |sql: &str| -> Vec<IpAddr> {
        let mut s = c.prepare(sql).unwrap();
        s.query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|b| ip_of(&b.unwrap()))
            .collect()
    };
    let workload_ints: BTreeSet<i64> = ints("SELECT DISTINCT mac FROM identities WHERE name <> ''")
        .into_iter()
        .collect();
    let busy = ints("SELECT src_mac FROM edges GROUP BY src_mac ORDER BY sum(flows) DESC LIMIT 20")
        .into_iter()
        .filter(|m| workload_ints.contains(m))
        .take(10)
        .map(mac_of)
        .collect();
    let mut victims = BTreeSet::new();
    for d in C2_DOMAINS {
        let r = reversed(d);
        let mut s = c
            .prepare(
                "SELECT DISTINCT p.client_mac FROM names n CROSS JOIN pdns p ON p.name_id = n.id
                 WHERE n.rname >= ?1 AND n.rname < ?2",
            )
            .unwrap();
        for m in s
            .query_map([r.clone(), format!("{r}/")], |r| r.get::<_, i64>(0))
            .unwrap()
        {
            victims.insert(m.unwrap());
        }
    }
    let popular_domains: Vec<String> = {
        let mut seen = Vec::new();
        for q in texts("SELECT qname FROM dns GROUP BY qname ORDER BY count(*) DESC LIMIT 500") {
            let b = base(&q);
            if b != "corp.internal" && !seen.contains(&b) {
                seen.push(b);
            }
        }
        seen.truncate(20);
        seen
    };
    let domains: BTreeSet<String> = texts("SELECT DISTINCT qname FROM dns")
        .iter()
        .map(|q| base(q))
        .filter(|b| b != "corp.internal")
        .collect();
    let public = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => !v4.is_private(),
        IpAddr::V6(_) => false,
    };
    let popular_ips =
        ips("SELECT dst_ip FROM edges GROUP BY dst_ip ORDER BY sum(flows) DESC LIMIT 100")
            .into_iter()
            .filter(public)
            .filter(|ip| !C2_IPS.iter().any(|c| IpAddr::V4(*c) == *ip))
            .take(20)
            .collect();
    let external_ips = ips("SELECT DISTINCT dst_ip FROM edges")
        .into_iter()
        .filter(public)
        .collect();
    let internal_ips = ips("SELECT DISTINCT ip FROM addresses");
    let mut rows = BTreeMap::new();
    for t in ["dns", "pdns", "addresses", "contacts", "edges"] {
        let n: i64 = c
            .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .unwrap();
        rows.insert(t, n);
    }
    Shape {
        first_ms,
        last_ms,
        flows,
        dns,
        workloads: workload_ints.into_iter().map(mac_of).collect(),
        busy,
        victims: victims.into_iter().map(mac_of).collect(),
        popular_domains,
        domains: domains.into_iter().collect(),
        popular_ips,
        external_ips,
        internal_ips,
        rows,
    }
}

/// One of `lists` by the percent shares (the last takes the rest), then one
/// of its items, uniformly; empty lists are skipped. With the list's name.
fn pick<T: Clone>(rng: &mut Rng, lists: &[(&'static str, &[T], u64)]) -> (&'static str, T) {
    loop {
        let mut x = rng.below(100);
        for (i, (name, list, pct)) in lists.iter().enumerate() {
            if x < *pct || i + 1 == lists.len() {
                if !list.is_empty() {
                    return (name, list[rng.below(list.len() as u64) as usize].clone());
                }
                break;
            }
            x -= pct;
        }
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

/// A query of the bench: the kind of target (for the percentiles by kind),
/// and what it asks, returning the answer's size (workloads found, or
/// nodes reached).
type Query<'a> = (&'static str, Box<dyn Fn() -> usize + 'a>);

/// Past this p50 criterion's run is left out (ten iterations and more of
/// queries of seconds each would take the bench's hour).
const CRITERION_UNDER: f64 = 1_000.0;

/// Time `queries` one by one (at most [`BUDGET`]) and print the
/// percentiles, all and by kind; then criterion's run over them, in turn.
fn run(c: &mut Criterion, name: &str, queries: &[Query<'_>], unit: &str) {
    if std::env::var("BULKHEAD_FORENSICS_ONLY").is_ok_and(|only| !name.starts_with(&only)) {
        return;
    }
    let start = Instant::now();
    let mut times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut all = Vec::new();
    let mut size: BTreeMap<&str, usize> = BTreeMap::new();
    for (kind, q) in queries {
        let t = Instant::now();
        let n = q();
        let e = t.elapsed();
        *size.entry(kind).or_default() += n;
        times.entry(kind).or_default().push(e);
        all.push(e);
        if start.elapsed() > BUDGET {
            break;
        }
    }
    let (p50, p99, max) = percentiles(&mut all);
    println!(
        "forensics/{name}: {} queries: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; {:.1} {unit} an answer",
        all.len(),
        size.values().sum::<usize>() as f64 / all.len().max(1) as f64
    );
    for (kind, t) in &mut times {
        let n = t.len();
        let (p50, p99, max) = percentiles(t);
        println!(
            "  {kind}: {n} queries: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; {:.1} {unit} an answer",
            size[kind] as f64 / n.max(1) as f64
        );
    }
    if p50 > CRITERION_UNDER {
        println!("forensics/{name}: criterion's run left out (p50 over {CRITERION_UNDER} ms)");
        return;
    }
    let mut g = c.benchmark_group("forensics");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    g.sampling_mode(SamplingMode::Flat);
    let mut next = 0;
    g.bench_function(name, |b| {
        b.iter(|| {
            next = (next + 1) % queries.len();
            (queries[next].1)()
        })
    });
    g.finish();
}

fn tracebacks<'a>(
    reader: &'a RecordsReader,
    targets: &'a [(&'static str, Target)],
    since: i64,
    until: i64,
) -> Vec<Query<'a>> {
    targets
        .iter()
        .map(|(kind, t)| {
            let q: Box<dyn Fn() -> usize + 'a> =
                Box::new(move || reader.traceback(t, since, until).unwrap().workloads.len());
            (*kind, q)
        })
        .collect()
}

fn forensics(c: &mut Criterion) {
    let (path, temp) = store();
    queries(c, &path);
    if let Some(dir) = temp {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn queries(c: &mut Criterion, path: &Path) {
    // A store of an older schema is migrated first (timed: what the first
    // query after an upgrade waits for).
    let t = std::time::Instant::now();
    drop(RecordsReader::open(path).unwrap());
    println!(
        "forensics: store opened (migrated if older) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let s = shape(path);
    println!(
        "forensics: store {} ({} flow records, {} DNS responses, {:.1} MiB, {:.1} days, {} workloads, {} C2 victims; rows {:?})",
        path.display(),
        s.flows,
        s.dns,
        store_bytes(path) as f64 / 1_048_576.0,
        (s.last_ms - s.first_ms) as f64 / DAY as f64,
        s.workloads.len(),
        s.victims.len(),
        s.rows
    );
    println!(
        "forensics: most asked domains {:?}; busiest internet addresses {:?}",
        &s.popular_domains[..s.popular_domains.len().min(5)],
        &s.popular_ips[..s.popular_ips.len().min(5)]
    );
    let reader = RecordsReader::open(path).unwrap();
    let (since, until) = (s.last_ms - 30 * DAY, s.last_ms);

    let c2: Vec<String> = C2_DOMAINS.iter().map(|d| d.to_string()).collect();
    let mut rng = Rng::new(20);
    let targets: Vec<(&'static str, Target)> = (0..QUERIES)
        .map(|_| {
            let (kind, name) = pick(
                &mut rng,
                &[
                    ("c2", &c2, 10),
                    ("popular", &s.popular_domains, 20),
                    ("any", &s.domains, 70),
                ],
            );
            (kind, name.parse().unwrap())
        })
        .collect();
    let queries = tracebacks(&reader, &targets, since, until);
    run(c, "traceback_domain", &queries, "workloads");

    // Retro-hunt: one entry added to a feed, hunted over the 30 days (the
    // same names as above: C2, popular and any).
    let hunts: Vec<(&'static str, Intel, Vec<Indicator>)> = targets
        .iter()
        .map(|(kind, t)| {
            let Target::Domain { name, .. } = t else {
                unreachable!("domain targets")
            };
            let feed = Feed {
                name: "c2".into(),
                action: IntelAction::Block,
                severity: Severity::High,
                quarantine: false,
            };
            let added = Indicator::Domain(name.clone());
            let intel = Intel::new(vec![feed], [(Entry::new(added.clone()), 0, 0)]);
            (*kind, intel, vec![added])
        })
        .collect();
    let queries: Vec<Query<'_>> = hunts
        .iter()
        .map(|(kind, intel, added)| {
            let reader = &reader;
            let q: Box<dyn Fn() -> usize + '_> = Box::new(move || {
                hunt(reader, intel, added, since, until)
                    .unwrap()
                    .alerts
                    .len()
            });
            (*kind, q)
        })
        .collect();
    run(c, "retro_hunt_domain", &queries, "alerts");

    let c2_ips: Vec<IpAddr> = C2_IPS.iter().map(|ip| IpAddr::V4(*ip)).collect();
    let targets: Vec<(&'static str, Target)> = (0..QUERIES)
        .map(|_| {
            let (kind, ip) = pick(
                &mut rng,
                &[
                    ("c2", &c2_ips, 10),
                    ("busiest", &s.popular_ips, 20),
                    ("any internet", &s.external_ips, 50),
                    ("workload", &s.internal_ips, 20),
                ],
            );
            (kind, Target::Net(ip.into()))
        })
        .collect();
    let queries = tracebacks(&reader, &targets, since, until);
    run(c, "traceback_ip", &queries, "workloads");

    for (name, hours) in [
        ("blast_radius_d3_30d", 30 * 24),
        ("blast_radius_d3_24h", 24),
    ] {
        let origins: Vec<(&str, MacAddr, i64)> = (0..QUERIES)
            .map(|_| {
                let (kind, mac) = pick(
                    &mut rng,
                    &[
                        ("c2 victim", &s.victims, 10),
                        ("busiest", &s.busy, 20),
                        ("any", &s.workloads, 70),
                    ],
                );
                let span = (s.last_ms - s.first_ms - hours * HOUR).max(1) as u64;
                let from = if hours >= 30 * 24 {
                    since
                } else {
                    s.first_ms + rng.below(span) as i64
                };
                (kind, mac, from)
            })
            .collect();
        let queries: Vec<Query<'_>> = origins
            .iter()
            .map(|&(kind, mac, from)| {
                let reader = &reader;
                let q: Box<dyn Fn() -> usize + '_> = Box::new(move || {
                    reader
                        .blast_radius(mac, from, from + hours * HOUR, 3)
                        .unwrap()
                        .reached
                        .len()
                });
                (kind, q)
            })
            .collect();
        run(c, name, &queries, "nodes reached");
    }
}

criterion_group!(benches, forensics);
criterion_main!(benches);
