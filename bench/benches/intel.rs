//! Threat intel of 1M addresses and 1M domains (issue 22):
//! - `intel/load/1M+1M`: two feed files' bytes (one address a line, one
//!   domain a line) parsed and checked, and the match sets built;
//! - `intel/ip/hit|miss`, `intel/domain/hit|miss`: one look-up in those
//!   sets (an address per new flow on the packet path; a name per DNS
//!   answer on the control thread).
//!
//! Prints the sets' heap bytes and the process's resident memory before and
//! after one load. `cargo bench -p bulkhead-bench --bench intel`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use control::intel::parse::{read_feed, Guard};
use control::intel::{Action, Feed, Format, Intel, IntelBuilder, Severity};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

const N: u32 = 1_000_000;

/// Public-looking addresses spread over the space (never 0/8, 10/8, 127/8).
fn address(i: u32) -> Ipv4Addr {
    let x = i.wrapping_mul(2_654_435_761);
    Ipv4Addr::from(0x0b00_0000 + (x % 0x6000_0000))
}

fn feeds() -> (Vec<u8>, Vec<u8>) {
    let mut ips = String::with_capacity(16 * N as usize);
    let mut names = String::with_capacity(24 * N as usize);
    for i in 0..N {
        ips.push_str(&address(i).to_string());
        ips.push('\n');
        names.push_str(&format!("h{i:x}.d{}.example{}.com\n", i % 50_000, i % 7));
    }
    (ips.into_bytes(), names.into_bytes())
}

fn load(ips: &[u8], names: &[u8]) -> Intel {
    let guard = Guard::default();
    let feeds = vec![
        Feed {
            name: "ips".into(),
            action: Action::Block,
            severity: Severity::High,
            quarantine: false,
        },
        Feed {
            name: "domains".into(),
            action: Action::Block,
            severity: Severity::High,
            quarantine: false,
        },
    ];
    let mut b = IntelBuilder::new(feeds);
    for (feed, bytes) in [(0u16, ips), (1, names)] {
        let problems = read_feed(bytes, Format::List, &guard, |entry| {
            b.add(entry, feed, 0);
        });
        assert_eq!(problems.count, 0);
    }
    b.build()
}

fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / 1e6
}

fn bench(c: &mut Criterion) {
    let (ips, names) = feeds();
    let before = rss_mb();
    let intel = load(&ips, &names);
    let after = rss_mb();
    eprintln!(
        "intel: {} entries; sets and entries {:.1} MB; resident {before:.0} -> {after:.0} MB (+{:.0} MB)",
        intel.len(),
        intel.bytes() as f64 / 1e6,
        after - before
    );
    let mut g = c.benchmark_group("intel");
    g.sample_size(10);
    g.throughput(Throughput::Elements(2 * u64::from(N)));
    g.bench_function("load/1M+1M", |b| b.iter(|| load(&ips, &names)));
    g.sample_size(100);
    g.throughput(Throughput::Elements(1));
    let hit = IpAddr::V4(address(123_457));
    let miss = IpAddr::V4(Ipv4Addr::new(10, 9, 8, 7));
    assert!(intel.ip(hit).is_some() && intel.ip(miss).is_none());
    g.bench_function("ip/hit", |b| {
        b.iter(|| intel.ip(black_box(hit)).map(|m| m.id))
    });
    g.bench_function("ip/miss", |b| {
        b.iter(|| intel.ip(black_box(miss)).map(|m| m.id))
    });
    let name_hit = "www.h1e240.d23456.example4.com";
    let name_miss = "www.nothing.example.org";
    assert!(intel.domain(name_hit).is_some() && intel.domain(name_miss).is_none());
    g.bench_function("domain/hit", |b| {
        b.iter(|| intel.domain(black_box(name_hit)).map(|m| m.id))
    });
    g.bench_function("domain/miss", |b| {
        b.iter(|| intel.domain(black_box(name_miss)).map(|m| m.id))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
