//! The IPFIX exporter's own cost (issue 21):
//! - `ipfix/encode/10k`: 10,000 flow records encoded into IPFIX data sets
//!   (RFC 5103 biflows, IPv4), what the exporter thread does per record;
//!   with `_enterprise`, with bulkhead's elements (names, groups, rule).
//! - `ipfix/export_udp/10k`: the whole path: 10,000 records offered to an
//!   exporter (its queue, its thread, messages of 1,400 bytes) and sent over
//!   UDP to a socket on loopback that a thread drains; timed until the
//!   exporter has sent them all.
//!
//! Reported as records a second. `cargo bench -p bulkhead-bench --bench ipfix`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use control::ipfix::encode::{self, Shape};
use control::ipfix::{Exporter, IpfixConfig};
use control::records::{Identity, RecordKind, StoredFlow};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::event::{EndReason, FlowRecord};
use dataplane::flow::FlowState;
use dataplane::io::Port;
use dataplane::policy::{Action, Mode, Reason, Verdict};
use dataplane::wire::MacAddr;
use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const RECORDS: usize = 10_000;

fn flows() -> Vec<StoredFlow> {
    let ids: Vec<Arc<Identity>> = (0..1000u32)
        .map(|i| {
            Arc::new(Identity {
                mac: MacAddr([2, 0, 0, 0, (i >> 8) as u8, i as u8]),
                name: format!("wl-{i}"),
                labels: Default::default(),
                groups: vec![format!("group-{}", i % 20), "prod".into()],
            })
        })
        .collect();
    (0..RECORDS)
        .map(|n| {
            let (s, d) = (&ids[n % 1000], &ids[(n * 7 + 3) % 1000]);
            StoredFlow {
                flow: FlowRecord {
                    src_mac: s.mac,
                    dst_mac: d.mac,
                    src_ip: [10, 0, (n >> 8) as u8 % 4, n as u8].into(),
                    dst_ip: [10, 1, 0, (n % 250) as u8].into(),
                    proto: 6,
                    src_port: 32768 + (n % 28000) as u16,
                    dst_port: 443,
                    vlan: [0, 0],
                    verdict: Verdict {
                        action: Action::Allow,
                        reason: Reason::Rule(10),
                        mode: Mode::Enforce,
                        would_deny: false,
                    },
                    generation: 1,
                    state: FlowState::TimeWait,
                    first_seen: 0,
                    last_seen: 0,
                    packets: [12, 10],
                    bytes: [1_800, 12_000],
                    tcp_flags: 0x1b,
                    orig_port: Port::A,
                },
                opens: true,
                first_ms: 1_796_500_000_000 + n as i64,
                last_ms: 1_796_500_001_000 + n as i64,
                src: s.clone(),
                dst: d.clone(),
                kind: RecordKind::Ended(EndReason::Idle),
                intel: None,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let flows = flows();
    let mut g = c.benchmark_group("ipfix");
    g.throughput(Throughput::Elements(RECORDS as u64));
    for (name, enterprise) in [("encode/10k", false), ("encode_enterprise/10k", true)] {
        let shape = Shape {
            v6: false,
            enterprise,
        };
        let mut out = Vec::with_capacity(1 << 22);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let set = encode::open_data_set(shape, &mut out);
                for f in &flows {
                    encode::record(f, shape, false, &mut out);
                }
                encode::close_set(&mut out, set);
                out.len()
            })
        });
    }

    // A collector on loopback that reads as fast as it can.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while sock.recv(&mut buf).is_ok() {}
    });
    g.sample_size(20);
    g.bench_function("export_udp/10k", |b| {
        b.iter(|| {
            let x = Exporter::start(IpfixConfig {
                collectors: vec![format!("udp://{addr}").parse().unwrap()],
                ..IpfixConfig::default()
            })
            .unwrap();
            for f in &flows {
                x.offer_waiting(f);
            }
            let counters = x.counters();
            drop(x);
            assert_eq!(
                counters.collectors[0].records.load(Ordering::Relaxed),
                RECORDS as u64
            );
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
