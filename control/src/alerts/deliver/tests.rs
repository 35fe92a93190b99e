#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use super::*;
use crate::alerts::Kind;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;

fn alert() -> NewAlert {
    NewAlert {
        at_ms: 1_796_600_000_123,
        kind: Kind::IntelDns,
        severity: Severity::Critical,
        mac: "02:00:00:00:01:01".parse().unwrap(),
        workload: Some("web-1".into()),
        indicator: "evil\"].test".into(),
        summary: "web-1 resolved c2.evil.test".into(),
        evidence: json!({"dns": {"qname": "c2.evil.test"}}),
    }
}

/// An RFC 5424 message split into its parts, checked as a receiver would.
fn parse_5424(m: &str) -> (u16, String, String, String, String, serde_json::Value) {
    let rest = m.strip_prefix('<').expect("<PRI>");
    let (pri, rest) = rest.split_once('>').unwrap();
    let rest = rest.strip_prefix("1 ").expect("version 1");
    let mut parts = rest.splitn(6, ' ');
    let ts = parts.next().unwrap().to_string();
    let host = parts.next().unwrap().to_string();
    assert_eq!(parts.next(), Some("bulkhead"), "APP-NAME");
    assert_eq!(parts.next(), Some("-"), "PROCID");
    let msgid = parts.next().unwrap().to_string();
    let rest = parts.next().unwrap();
    // The structured data ends at the first `]` not escaped.
    let bytes = rest.as_bytes();
    assert_eq!(bytes[0], b'[');
    let mut i = 1;
    while bytes[i] != b']' {
        i += if bytes[i] == b'\\' { 2 } else { 1 };
    }
    let sd = rest[..=i].to_string();
    let msg = rest[i + 1..].strip_prefix(' ').unwrap();
    (
        pri.parse().unwrap(),
        ts,
        host,
        msgid,
        sd,
        serde_json::from_str(msg).expect("JSON message"),
    )
}

#[test]
fn a_syslog_message_is_rfc_5424_with_the_alert_as_json() {
    let m = syslog_message(16, "bh-1 edge", 42, &alert());
    let (pri, ts, host, msgid, sd, json) = parse_5424(&m);
    assert_eq!(pri, 16 * 8 + 2, "local0, crit");
    assert_eq!(ts, "2026-12-06T23:33:20.123000000Z");
    assert_eq!(host, "bh-1edge", "no space in HOSTNAME");
    assert_eq!(msgid, "intel-dns");
    assert!(sd.contains(r#"indicator="evil\"\].test""#), "{sd}");
    assert_eq!(json["id"], 42);
    assert_eq!(json["severity"], "critical");
    assert_eq!(json["evidence"]["dns"]["qname"], "c2.evil.test");
    // Too long for a datagram: the evidence is cut, the message says so.
    let mut big = alert();
    big.evidence = json!({"x": "y".repeat(20_000)});
    let m = syslog_message(16, "bh", 1, &big);
    assert!(m.len() <= MAX_MESSAGE, "{}", m.len());
    assert_eq!(parse_5424(&m).5["evidence"]["cut"], true);
}

fn wait(what: &str, f: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < until, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn alerts_reach_udp_and_tcp_receivers_and_a_dead_target_costs_a_counter() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    // A port nobody listens on.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = DeliveryConfig {
        syslog: vec![
            format!("udp://{}", udp.local_addr().unwrap())
                .parse()
                .unwrap(),
            format!("tcp://{}", tcp.local_addr().unwrap())
                .parse()
                .unwrap(),
            format!("tcp://{dead}").parse().unwrap(),
        ],
        facility: 16,
        hostname: "bh-test".into(),
        webhooks: Vec::new(),
    };
    let d = Deliverer::start(&cfg).unwrap();
    let started = Instant::now();
    d.offer(7, &alert());
    d.offer(8, &alert());
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "offers never wait"
    );

    let mut buf = [0u8; 9000];
    let n = udp.recv(&mut buf).unwrap();
    let (_, _, host, _, _, json) = parse_5424(std::str::from_utf8(&buf[..n]).unwrap());
    assert_eq!((host.as_str(), json["id"].as_i64()), ("bh-test", Some(7)));

    let (s, _) = tcp.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s);
    for id in [7, 8] {
        // Octet counting: "LEN " then LEN bytes.
        let mut len = Vec::new();
        r.read_until(b' ', &mut len).unwrap();
        let len: usize = std::str::from_utf8(&len).unwrap().trim().parse().unwrap();
        let mut msg = vec![0u8; len];
        r.read_exact(&mut msg).unwrap();
        let json = parse_5424(std::str::from_utf8(&msg).unwrap()).5;
        assert_eq!(json["id"], id);
    }
    let c = d.counters();
    wait("the sends are counted", || {
        c[0].sent.load(Ordering::Relaxed) == 2 && c[1].sent.load(Ordering::Relaxed) == 2
    });
    wait("the dead target's failures are counted", || {
        c[2].errors.load(Ordering::Relaxed) >= 1 && c[2].dropped.load(Ordering::Relaxed) == 2
    });
    assert!(!c[2].up.load(Ordering::Relaxed));
    assert_eq!(c[2].name, format!("syslog+tcp://{dead}"));
}
