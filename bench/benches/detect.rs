//! Scan detection's cost per failed attempt (issue 23: detection keeps up
//! with at least 100k flow records a second):
//! - `detect/scan/background`: 100,000 failed attempts from 1,000 sources,
//!   each to a few hosts and ports (what a network of misconfigured clients
//!   and dead addresses gives: no scan);
//! - `detect/scan/nmap`: 100,000 attempts from one source, a port scan of
//!   100 hosts (each crosses the threshold once a window).
//!
//! `cargo bench -p bulkhead-bench --bench detect`
#![allow(clippy::unwrap_used, reason = "bench code")]

use control::detect::{Probe, ScanConfig, ScanDetector};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::wire::MacAddr;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

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

criterion_group!(benches, bench);
criterion_main!(benches);
