//! Scan detection's cost per failed attempt (issue 23: detection keeps up
//! with at least 100k flow records a second):
//! - `detect/scan/background`: 100,000 failed attempts from 1,000 sources,
//!   each to a few hosts and ports (what a network of misconfigured clients
//!   and dead addresses gives: no scan);
//! - `detect/scan/nmap`: 100,000 attempts from one source, a port scan of
//!   100 hosts (each crosses the threshold once a window).
//!
//! - `detect/engine/{off,on}`: 100,000 new flows a run through the control
//!   thread (1,000 workloads in 200 groups, 10 services, 5% denied), every
//!   detector off and every one on with its defaults, side by side: the
//!   flow records a second the control thread keeps up with, and what the
//!   detectors cost it.
//!
//! `cargo bench -p bulkhead-bench --bench detect`
#![allow(clippy::unwrap_used, reason = "bench code")]

use control::detect::{DetectConfig, Probe, ScanConfig, ScanDetector};
use control::engine::{Bootstrap, Engine, EngineConfig};
use control::model::Model;
use control::store::Store;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::event::{Event, FlowRecord};
use dataplane::flow::FlowState;
use dataplane::policy::{Action, Mode, Reason, SnapshotCell, Verdict};
use dataplane::wire::MacAddr;
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const N: u32 = 100_000;

fn probe(src: u32, host: u32, port: u16) -> Probe {
    let s = src.to_be_bytes();
    Probe {
        src_mac: MacAddr([2, 0, s[0], s[1], s[2], s[3]]),
        src_ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + src)),
        dst_ip: IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + host)),
        proto: 6,
        dst_port: port,
        denied: true,
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("detect/scan");
    g.throughput(Throughput::Elements(u64::from(N)));
    let background: Vec<Probe> = (0..N)
        .map(|i| probe(i % 1000, (i * 7) % 3, [443, 5432, 3389][(i % 3) as usize]))
        .collect();
    let nmap: Vec<Probe> = (0..N)
        .map(|i| probe(0, i % 100, (i / 100) as u16 + 1))
        .collect();
    for (name, probes) in [("background", &background), ("nmap", &nmap)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut d = ScanDetector::new(ScanConfig::default());
                let now = Instant::now();
                let found = probes.iter().filter(|p| d.probe(p, now).is_some()).count();
                black_box(found)
            })
        });
    }
    g.finish();
}

const WORKLOADS: u32 = 1_000;
const GROUPS: u32 = 200;
const PORTS: [u16; 10] = [22, 53, 80, 443, 445, 3306, 3389, 5432, 6379, 8080];

fn mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([2, 0x42, b[0], b[1], b[2], b[3]])
}

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

/// 1,000 workloads in 200 groups, each group allowed to 5 others on 10
/// services.
fn fleet() -> Model {
    let mut y = String::from("default_mode: enforce\nworkloads:\n");
    for i in 0..WORKLOADS {
        let _ = writeln!(
            y,
            "  - {{ mac: \"{}\", name: w{i}, labels: {{ g: g{} }}, ips: [{}] }}",
            mac(i),
            i % GROUPS,
            ip(i)
        );
    }
    y.push_str("groups:\n");
    for g in 0..GROUPS {
        let _ = writeln!(y, "  - {{ name: g{g}, match: {{ g: g{g} }} }}");
    }
    y.push_str("rules:\n");
    for g in 0..GROUPS {
        let dst: Vec<String> = (1..=5).map(|k| format!("g{}", (g + k) % GROUPS)).collect();
        let _ = writeln!(
            y,
            "  - {{ id: {}, src: [g{g}], dst: [{}], services: [{{ proto: tcp, ports: [{}] }}], action: allow }}",
            g + 1,
            dst.join(", "),
            PORTS.map(|p| p.to_string()).join(", ")
        );
    }
    Model::from_yaml_str(&y).unwrap()
}

/// New flow `n`: a workload to one of its group's 5 peer groups (or, one in
/// 20, to a group it may not reach: denied) on one of the services.
fn flow(n: u32) -> Event {
    let src = n.wrapping_mul(7919) % WORKLOADS;
    let denied = n.is_multiple_of(20);
    let hop = if denied { 17 } else { 1 + n % 5 };
    let dst = (src + hop + GROUPS * (n % 5)) % WORKLOADS;
    Event::FlowStart(FlowRecord {
        src_mac: mac(src),
        dst_mac: mac(dst),
        src_ip: ip(src),
        dst_ip: ip(dst),
        proto: 6,
        src_port: 32_768 + (n % 28_000) as u16,
        dst_port: PORTS[(n / 7 % 10) as usize],
        vlan: [0, 0],
        verdict: Verdict {
            action: if denied { Action::Deny } else { Action::Allow },
            reason: if denied {
                Reason::Default
            } else {
                Reason::Rule(1)
            },
            mode: Mode::Enforce,
            would_deny: false,
        },
        generation: 1,
        state: FlowState::SynSent,
        first_seen: 0,
        last_seen: 0,
        packets: [1, 0],
        bytes: [60, 0],
        tcp_flags: 0x02,
        orig_port: dataplane::io::Port::A,
    })
}

/// Every detector off.
fn off() -> DetectConfig {
    DetectConfig {
        scan: None,
        services: None,
        fanout: None,
        deny_burst: None,
        dns: None,
        ..DetectConfig::default()
    }
}

fn engine_bench(c: &mut Criterion) {
    let model = fleet();
    let mut g = c.benchmark_group("detect/engine");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(N)));
    for (name, detect) in [("off", off()), ("on", DetectConfig::default())] {
        let dir = std::env::temp_dir().join(format!(
            "bulkhead-bench-detect-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("control.db")).unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1 << 16);
        let engine = Engine::start(
            store,
            Bootstrap {
                model: model.clone(),
                source: "the benchmark fleet".into(),
            },
            Arc::new(SnapshotCell::default()),
            Some(rx),
            None,
            EngineConfig {
                detect,
                ..EngineConfig::default()
            },
        )
        .unwrap();
        let h = engine.handle.clone();
        let mut next = 0u32;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let target = h.status().events + u64::from(N);
                    let t = Instant::now();
                    for _ in 0..N {
                        tx.send(flow(next)).unwrap();
                        next = next.wrapping_add(1);
                    }
                    while h.status().events < target {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    total += t.elapsed();
                }
                total
            })
        });
        h.stop();
        let _ = engine.thread.join();
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
}

criterion_group!(benches, bench, engine_bench);
criterion_main!(benches);
