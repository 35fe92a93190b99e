#![allow(
    clippy::unwrap_used,
    reason = "a cfg(test) module: unwrap fails a test on a fixture the test wrote"
)]

use super::*;

const SCANNER: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x66]);

fn probe(mac: MacAddr, dst: &str, proto: u8, port: u16) -> Probe {
    Probe {
        src_mac: mac,
        src_ip: "10.0.0.66".parse().unwrap(),
        dst_ip: dst.parse().unwrap(),
        proto,
        dst_port: port,
        denied: true,
    }
}

#[test]
fn a_port_scan_of_a_host_is_found_once_at_the_threshold() {
    let mut d = ScanDetector::new(ScanConfig::default());
    let now = Instant::now();
    let found: Vec<ScanFound> = (1..=1000)
        .filter_map(|port| d.probe(&probe(SCANNER, "10.0.0.21", TCP, port), now))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!((f.kind, f.target.as_str()), (ScanKind::Ports, "10.0.0.21"));
    assert_eq!(f.seen.len(), 15);
    assert_eq!(f.seen[0], "tcp/1");
    assert_eq!((f.probes, f.denied), (15, 15));
    // 14 ports of another host from another source: nothing.
    let other = MacAddr([2, 0, 0, 0, 0, 0x67]);
    for port in 1..=14 {
        assert!(d
            .probe(&probe(other, "10.0.0.22", TCP, port), now)
            .is_none());
    }
    // Again and again the same port: one distinct port, nothing.
    for _ in 0..100 {
        assert!(d.probe(&probe(other, "10.0.0.23", UDP, 53), now).is_none());
    }
}

#[test]
fn a_sweep_of_a_network_is_one_host_sweep_a_window_found_again_in_the_next() {
    let mut d = ScanDetector::new(ScanConfig::default());
    let now = Instant::now();
    let mut found = Vec::new();
    for host in 1..=254 {
        for port in [22, 80, 443, 445, 3389, 8080] {
            let p = probe(SCANNER, &format!("10.0.1.{host}"), TCP, port);
            found.extend(d.probe(&p, now));
        }
    }
    // Pings to every host: ICMP has no port.
    for host in 1..=254 {
        found.extend(d.probe(&probe(SCANNER, &format!("10.0.1.{host}"), 1, 0), now));
    }
    let kinds: Vec<_> = found.iter().map(|f| (f.kind, f.target.as_str())).collect();
    assert_eq!(
        kinds,
        [(ScanKind::Hosts, "tcp/22")],
        "six ports a host: no port scan"
    );
    assert_eq!(found[0].seen.len(), 25);

    // The next window finds it again (the alert store counts the repeat).
    let later = now + Duration::from_secs(61);
    let again = (1..=30)
        .filter_map(|h| d.probe(&probe(SCANNER, &format!("10.0.2.{h}"), TCP, 445), later))
        .count();
    assert_eq!(again, 1);
    // And a port scan in it too.
    let ports = (1..=20)
        .filter_map(|p| d.probe(&probe(SCANNER, "10.0.2.1", UDP, p), later))
        .map(|f| f.kind)
        .collect::<Vec<_>>();
    assert_eq!(ports, [ScanKind::Ports]);
}

#[test]
fn sources_are_bounded_and_a_flood_of_them_costs_a_counter() {
    let mut d = ScanDetector::new(ScanConfig::default());
    let now = Instant::now();
    for i in 0..(MAX_SOURCES as u32 + 500) {
        let b = i.to_be_bytes();
        let mac = MacAddr([2, 1, b[0], b[1], b[2], b[3]]);
        assert!(d.probe(&probe(mac, "10.0.0.21", TCP, 1), now).is_none());
    }
    assert_eq!(d.sources(), MAX_SOURCES);
    assert_eq!(d.untracked, 500);
    // Their windows over, new sources take their room.
    let later = now + Duration::from_secs(61);
    let found = (1..=15)
        .filter_map(|p| d.probe(&probe(SCANNER, "10.0.0.21", TCP, p), later))
        .count();
    assert_eq!(found, 1);
    assert_eq!(d.sources(), 1);
    // Targets a source tracks are bounded too.
    let mut d = ScanDetector::new(ScanConfig::default());
    for i in 0..5000u32 {
        let b = i.to_be_bytes();
        let dst = format!("10.{}.{}.{}", b[1], b[2], b[3]);
        d.probe(&probe(SCANNER, &dst, TCP, (i % 7) as u16 + 1), now);
    }
    let s = &d.sources[&SCANNER];
    assert!(
        s.by_host.len() <= MAX_TARGETS && s.by_port.is_empty(),
        "swept"
    );
}
