#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use super::encode::{self, ie, Shape};
use super::*;
use crate::records::{Identity, RecordKind, StoredFlow};
use dataplane::event::{EndReason, FlowRecord};
use dataplane::flow::FlowState;
use dataplane::io::Port;
use dataplane::policy::{Action, Mode, Reason, Verdict};
use dataplane::wire::MacAddr;
use std::collections::HashMap;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};

fn flow(src: &str, dst: &str, kind: RecordKind) -> StoredFlow {
    let ident = |mac: [u8; 6], name: &str, groups: &[&str]| {
        Arc::new(Identity {
            mac: MacAddr(mac),
            name: name.into(),
            labels: Default::default(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        })
    };
    StoredFlow {
        flow: FlowRecord {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            src_ip: src.parse().unwrap(),
            dst_ip: dst.parse().unwrap(),
            proto: 6,
            src_port: 40000,
            dst_port: 5432,
            vlan: [100, 7],
            verdict: Verdict {
                action: Action::Allow,
                reason: Reason::Rule(12),
                mode: Mode::Enforce,
                would_deny: false,
            },
            generation: 3,
            state: FlowState::TimeWait,
            first_seen: 0,
            last_seen: 0,
            packets: [10, 8],
            bytes: [1500, 9000],
            tcp_flags: 0x1b,
            orig_port: Port::B,
        },
        opens: true,
        first_ms: 1_796_500_000_000,
        last_ms: 1_796_500_002_500,
        src: ident([2, 0, 0, 0, 0, 1], "web-1", &["web", "prod"]),
        dst: ident([2, 0, 0, 0, 0, 2], "db-1", &["db"]),
        kind,
        intel: None,
    }
}

/// A small IPFIX reader for the tests: messages -> (header fields, records
/// as element -> bytes).
#[derive(Default)]
struct Reader {
    templates: HashMap<u16, Vec<(u16, u16, u32)>>,
}

struct Message {
    sequence: u32,
    domain: u32,
    template_ids: Vec<u16>,
    records: Vec<HashMap<(u32, u16), Vec<u8>>>,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Reader {
    fn read(&mut self, m: &[u8]) -> Message {
        assert_eq!(be16(&m[0..]), 10, "version");
        assert_eq!(usize::from(be16(&m[2..])), m.len(), "message length");
        let mut out = Message {
            sequence: be32(&m[8..]),
            domain: be32(&m[12..]),
            template_ids: Vec::new(),
            records: Vec::new(),
        };
        let mut at = 16;
        while at < m.len() {
            let id = be16(&m[at..]);
            let len = usize::from(be16(&m[at + 2..]));
            assert!(len >= 4 && at + len <= m.len(), "set length");
            let body = &m[at + 4..at + len];
            if id == 2 || id == 3 {
                let mut p = 0;
                while p < body.len() {
                    let tid = be16(&body[p..]);
                    let n = be16(&body[p + 2..]);
                    // An options template has a scope field count.
                    p += if id == 3 { 6 } else { 4 };
                    let mut fields = Vec::new();
                    for _ in 0..n {
                        let (raw, flen) = (be16(&body[p..]), be16(&body[p + 2..]));
                        p += 4;
                        let pen = if raw & 0x8000 != 0 {
                            p += 4;
                            be32(&body[p - 4..])
                        } else {
                            0
                        };
                        fields.push((raw & 0x7fff, flen, pen));
                    }
                    out.template_ids.push(tid);
                    self.templates.insert(tid, fields);
                }
            } else {
                let fields = self.templates.get(&id).expect("template before data");
                let mut p = 0;
                while p < body.len() {
                    let mut rec = HashMap::new();
                    for &(fid, flen, pen) in fields {
                        let n = if flen == 0xffff {
                            let n = usize::from(body[p]);
                            p += 1;
                            if n == 255 {
                                p += 2;
                                usize::from(be16(&body[p - 2..]))
                            } else {
                                n
                            }
                        } else {
                            usize::from(flen)
                        };
                        rec.insert((pen, fid), body[p..p + n].to_vec());
                        p += n;
                    }
                    out.records.push(rec);
                }
            }
            at += len;
        }
        out
    }
}

fn num(r: &HashMap<(u32, u16), Vec<u8>>, pen: u32, id: u16) -> u64 {
    r[&(pen, id)]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

#[test]
fn collectors_parse_with_their_transport_and_default_port() {
    let c: Collector = "udp://10.0.0.5:2055".parse().unwrap();
    assert_eq!(
        (c.transport, c.host.as_str(), c.port),
        (Transport::Udp, "10.0.0.5", 2055)
    );
    let c: Collector = "tcp://collector.example".parse().unwrap();
    assert_eq!((c.transport, c.port), (Transport::Tcp, 4739));
    let c: Collector = "10.0.0.5".parse().unwrap();
    assert_eq!((c.transport, c.port), (Transport::Udp, 4739));
    let c: Collector = "udp://[fd00::5]:9995".parse().unwrap();
    assert_eq!((c.host.as_str(), c.port), ("fd00::5", 9995));
    assert_eq!(c.to_string(), "udp://[fd00::5]:9995");
    let c: Collector = "fd00::5".parse().unwrap();
    assert_eq!((c.host.as_str(), c.port), ("fd00::5", 4739));
    for bad in [
        "",
        "sctp://a:1",
        "udp://",
        "a:0",
        "a:99999",
        "a:b",
        "udp://[::1",
        "a b:1",
        "udp://x/y",
    ] {
        assert!(bad.parse::<Collector>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn a_record_decodes_to_what_was_recorded() {
    let f = flow("10.0.0.1", "10.0.0.2", RecordKind::Ended(EndReason::Idle));
    let shape = Shape::of(&f, true);
    let mut sets = Vec::new();
    encode::template_set(&[shape], 32473, &mut sets);
    let set = encode::open_data_set(shape, &mut sets);
    encode::record(&f, shape, false, &mut sets);
    encode::close_set(&mut sets, set);
    let mut m = encode::message_header(16 + sets.len(), 1, 7, 42).to_vec();
    m.extend_from_slice(&sets);

    let msg = Reader::default().read(&m);
    assert_eq!((msg.sequence, msg.domain), (7, 42));
    assert_eq!(msg.template_ids, vec![258]);
    let r = &msg.records[0];
    assert_eq!(num(r, 0, ie::FLOW_START_MILLISECONDS), 1_796_500_000_000);
    assert_eq!(num(r, 0, ie::FLOW_END_MILLISECONDS), 1_796_500_002_500);
    assert_eq!(r[&(0, ie::SOURCE_MAC_ADDRESS)], [2, 0, 0, 0, 0, 1]);
    assert_eq!(r[&(0, ie::DESTINATION_MAC_ADDRESS)], [2, 0, 0, 0, 0, 2]);
    assert_eq!(r[&(0, ie::SOURCE_IPV4_ADDRESS)], [10, 0, 0, 1]);
    assert_eq!(r[&(0, ie::DESTINATION_IPV4_ADDRESS)], [10, 0, 0, 2]);
    assert_eq!(num(r, 0, ie::SOURCE_TRANSPORT_PORT), 40000);
    assert_eq!(num(r, 0, ie::DESTINATION_TRANSPORT_PORT), 5432);
    assert_eq!(num(r, 0, ie::PROTOCOL_IDENTIFIER), 6);
    assert_eq!(num(r, 0, ie::VLAN_ID), 100);
    assert_eq!(num(r, 0, ie::DOT1Q_CUSTOMER_VLAN_ID), 7);
    assert_eq!(num(r, 0, ie::OCTET_DELTA_COUNT), 1500);
    assert_eq!(num(r, 0, ie::PACKET_DELTA_COUNT), 10);
    assert_eq!(num(r, encode::REVERSE_PEN, ie::OCTET_DELTA_COUNT), 9000);
    assert_eq!(num(r, encode::REVERSE_PEN, ie::PACKET_DELTA_COUNT), 8);
    assert_eq!(num(r, 0, ie::TCP_CONTROL_BITS), 0x1b);
    assert_eq!(
        num(r, 0, ie::FLOW_END_REASON),
        3,
        "closed TCP: end detected"
    );
    assert_eq!(num(r, 0, ie::FORWARDING_STATUS), 64);
    assert_eq!(num(r, 0, ie::FIREWALL_EVENT), 2);
    assert_eq!(
        num(r, 0, ie::INGRESS_INTERFACE),
        2,
        "initiator on segment B"
    );
    assert_eq!(num(r, 0, ie::EGRESS_INTERFACE), 1);
    assert_eq!(num(r, 0, ie::BIFLOW_DIRECTION), 1);
    assert_eq!(num(r, 32473, encode::bulkhead_ie::RULE_ID), 12);
    assert_eq!(num(r, 32473, encode::bulkhead_ie::VERDICT_REASON), 1);
    assert_eq!(num(r, 32473, encode::bulkhead_ie::POLICY_MODE), 3);
    assert_eq!(r[&(32473, encode::bulkhead_ie::SOURCE_WORKLOAD)], b"web-1");
    assert_eq!(
        r[&(32473, encode::bulkhead_ie::DESTINATION_WORKLOAD)],
        b"db-1"
    );
    assert_eq!(r[&(32473, encode::bulkhead_ie::SOURCE_GROUPS)], b"web,prod");
    assert_eq!(r[&(32473, encode::bulkhead_ie::DESTINATION_GROUPS)], b"db");
}

#[test]
fn ipv6_denied_interim_and_long_names_encode_as_the_registries_say() {
    let mut f = flow("fd00::1", "fd00::2", RecordKind::Interim);
    f.flow.verdict.action = Action::Deny;
    f.flow.verdict.reason = Reason::Quarantine;
    f.flow.proto = 1; // ICMP echo: the id is not a transport port
    let long = "w".repeat(300) + "é";
    f.src = Arc::new(Identity {
        name: long.clone(),
        ..(*f.src).clone()
    });
    let shape = Shape::of(&f, true);
    assert!(shape.v6);
    let mut sets = Vec::new();
    encode::template_set(&[shape], 32473, &mut sets);
    let set = encode::open_data_set(shape, &mut sets);
    encode::record(&f, shape, false, &mut sets);
    encode::close_set(&mut sets, set);
    let mut m = encode::message_header(16 + sets.len(), 1, 0, 1).to_vec();
    m.extend_from_slice(&sets);
    assert!(
        m.len() <= MIN_MESSAGE,
        "the largest record fits the smallest message"
    );
    let msg = Reader::default().read(&m);
    let r = &msg.records[0];
    assert_eq!(
        r[&(0, ie::SOURCE_IPV6_ADDRESS)],
        "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets()
    );
    assert_eq!(num(r, 0, ie::SOURCE_TRANSPORT_PORT), 0);
    assert_eq!(num(r, 0, ie::FLOW_END_REASON), 2, "interim: active timeout");
    assert_eq!(num(r, 0, ie::FORWARDING_STATUS), 129, "dropped: ACL deny");
    assert_eq!(num(r, 0, ie::FIREWALL_EVENT), 3, "flow denied");
    assert_eq!(num(r, 32473, encode::bulkhead_ie::VERDICT_REASON), 2);
    let name = &r[&(32473, encode::bulkhead_ie::SOURCE_WORKLOAD)];
    assert_eq!(name.len(), encode::MAX_STRING, "cut to the longest string");
    assert!(long.as_bytes().starts_with(name));
}

#[test]
fn end_reasons_and_firewall_events_follow_how_the_flow_ended() {
    let f = |kind, state, action, would| {
        let mut f = flow("10.0.0.1", "10.0.0.2", kind);
        f.flow.state = state;
        f.flow.verdict.action = action;
        f.flow.verdict.would_deny = would;
        (encode::end_reason(&f, false), encode::firewall_event(&f))
    };
    use FlowState::*;
    let ended = RecordKind::Ended;
    assert_eq!(
        f(ended(EndReason::Idle), Established, Action::Allow, false),
        (1, 2)
    );
    assert_eq!(
        f(ended(EndReason::Idle), Closed, Action::Allow, false),
        (3, 2)
    );
    assert_eq!(
        f(ended(EndReason::Reused), TimeWait, Action::Allow, false),
        (3, 2)
    );
    assert_eq!(
        f(ended(EndReason::Flushed), Established, Action::Allow, true),
        (4, 4)
    );
    assert_eq!(
        f(ended(EndReason::Flushed), TimeWait, Action::Allow, false),
        (3, 2)
    );
    assert_eq!(
        f(ended(EndReason::Evicted), Unreplied, Action::Deny, false),
        (5, 3)
    );
    assert_eq!(
        f(RecordKind::Interim, Established, Action::Allow, false),
        (2, 5)
    );
    let idle = flow("10.0.0.1", "10.0.0.2", RecordKind::Interim);
    assert_eq!(encode::end_reason(&idle, true), 1, "an idle report");
}

fn config(collector: String) -> IpfixConfig {
    IpfixConfig {
        collectors: vec![collector.parse().unwrap()],
        observation_domain: 9,
        flush_after: Duration::from_millis(50),
        ..IpfixConfig::default()
    }
}

#[test]
fn udp_sends_templates_first_and_numbers_data_records() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let exporter = Exporter::start(config(format!("udp://{addr}"))).unwrap();
    // 40 IPv4 records: more than one 1400-byte message.
    for i in 0..40u16 {
        let mut f = flow("10.0.0.1", "10.0.0.2", RecordKind::Interim);
        f.flow.src_port = 1000 + i;
        exporter.offer(&f);
    }
    exporter.offer(&flow("fd00::1", "fd00::2", RecordKind::Interim));
    let counters = exporter.counters();
    drop(exporter);

    let mut reader = Reader::default();
    let mut buf = [0u8; 65536];
    let n = sock.recv(&mut buf).unwrap();
    let first = reader.read(&buf[..n]);
    assert_eq!(first.template_ids, vec![256, 257], "templates first");
    assert!(first.records.is_empty());
    let (mut ports, mut v6, mut expected_seq) = (Vec::new(), 0, 0u32);
    while ports.len() + v6 < 41 {
        let n = sock.recv(&mut buf).unwrap();
        assert!(n <= 1400, "a datagram within max_message");
        let m = reader.read(&buf[..n]);
        assert_eq!(m.domain, 9);
        assert_eq!(m.sequence, expected_seq, "records sent before this message");
        expected_seq += m.records.len() as u32;
        for r in &m.records {
            if r.contains_key(&(0, ie::SOURCE_IPV6_ADDRESS)) {
                v6 += 1;
            } else {
                ports.push(num(r, 0, ie::SOURCE_TRANSPORT_PORT));
            }
        }
    }
    ports.sort_unstable();
    assert_eq!(ports, (1000..1040).collect::<Vec<u64>>());
    assert_eq!(v6, 1);
    assert_eq!(counters.exported.load(Ordering::Relaxed), 41);
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    let c = &counters.collectors[0];
    assert_eq!(c.records.load(Ordering::Relaxed), 41);
    assert!(c.messages.load(Ordering::Relaxed) >= 2);
    assert_eq!(c.templates.load(Ordering::Relaxed), 1);
}

/// Reads IPFIX messages off a TCP stream until `records` data records came.
fn read_tcp(s: &mut std::net::TcpStream, reader: &mut Reader, records: usize) -> Vec<Message> {
    let mut out = Vec::new();
    let mut got = 0;
    while got < records {
        let mut head = [0u8; 4];
        s.read_exact(&mut head).unwrap();
        let len = usize::from(be16(&head[2..]));
        let mut m = head.to_vec();
        m.resize(len, 0);
        s.read_exact(&mut m[4..]).unwrap();
        let msg = reader.read(&m);
        got += msg.records.len();
        out.push(msg);
    }
    out
}

#[test]
fn tcp_reconnects_after_the_collector_goes_away_and_sends_templates_again() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let exporter = Exporter::start(config(format!("tcp://{addr}"))).unwrap();
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    exporter.offer(&flow("10.0.0.1", "10.0.0.2", RecordKind::Interim));
    exporter.offer(&flow("10.0.0.1", "10.0.0.3", RecordKind::Interim));
    let mut reader = Reader::default();
    let got = read_tcp(&mut s, &mut reader, 2);
    assert_eq!(got[0].template_ids, vec![256, 257], "templates first");
    let data: Vec<&Message> = got.iter().filter(|m| !m.records.is_empty()).collect();
    assert_eq!(data[0].sequence, 0);

    // The collector restarts: the exporter notices, connects again, and the
    // new session starts with the templates and sequence 0.
    drop(s);
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    exporter.offer(&flow("10.0.0.1", "10.0.0.4", RecordKind::Interim));
    let mut reader = Reader::default();
    let got = read_tcp(&mut s, &mut reader, 1);
    assert_eq!(got[0].template_ids, vec![256, 257]);
    let data: Vec<&Message> = got.iter().filter(|m| !m.records.is_empty()).collect();
    assert_eq!(data[0].sequence, 0, "a new session counts from 0");
    assert_eq!(
        data[0].records[0][&(0, ie::DESTINATION_IPV4_ADDRESS)],
        [10, 0, 0, 4]
    );
    let counters = exporter.counters();
    drop(exporter);
    assert_eq!(counters.collectors[0].connects.load(Ordering::Relaxed), 2);
}

#[test]
fn a_collector_that_is_down_costs_a_counter_not_a_wait() {
    // Nothing listens on this port: every connect is refused at once.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let exporter = Exporter::start(config(format!("tcp://127.0.0.1:{port}"))).unwrap();
    let started = Instant::now();
    for _ in 0..1000 {
        exporter.offer(&flow("10.0.0.1", "10.0.0.2", RecordKind::Interim));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "offering never waits for the collector"
    );
    let counters = exporter.counters();
    drop(exporter);
    let c = &counters.collectors[0];
    assert_eq!(c.records.load(Ordering::Relaxed), 0);
    assert_eq!(
        c.lost_records.load(Ordering::Relaxed) + counters.dropped.load(Ordering::Relaxed),
        1000
    );
    assert!(c.errors.load(Ordering::Relaxed) >= 1);
    assert!(!c.up.load(Ordering::Relaxed));
}

#[test]
fn a_config_without_a_collector_or_with_a_tiny_message_is_refused() {
    let err = |c: IpfixConfig| c.check().unwrap_err().to_string();
    assert!(err(IpfixConfig::default()).contains("no collector"));
    let mut c = config("127.0.0.1".into());
    c.max_message = 500;
    assert!(err(c).contains("max_message"));
    let mut c = config("127.0.0.1".into());
    c.enterprise = Some(29305);
    assert!(err(c).contains("enterprise_number"));
}

#[test]
fn enterprise_elements_are_described_by_rfc_5610_type_records() {
    let mut sets = Vec::new();
    encode::type_records(32473, &mut sets);
    let mut m = encode::message_header(16 + sets.len(), 1, 0, 1).to_vec();
    m.extend_from_slice(&sets);
    let msg = Reader::default().read(&m);
    assert_eq!(msg.template_ids, vec![encode::TYPE_TEMPLATE]);
    assert_eq!(msg.records.len() as u32, encode::TYPE_RECORDS);
    let names: Vec<(u64, u64, String)> = msg
        .records
        .iter()
        .map(|r| {
            assert_eq!(num(r, 0, ie::PRIVATE_ENTERPRISE_NUMBER), 32473);
            (
                num(r, 0, ie::INFORMATION_ELEMENT_ID),
                num(r, 0, ie::INFORMATION_ELEMENT_DATA_TYPE),
                String::from_utf8(r[&(0, ie::INFORMATION_ELEMENT_NAME)].clone()).unwrap(),
            )
        })
        .collect();
    assert_eq!(names[0], (1, 3, "bulkheadRuleId".to_string()), "unsigned32");
    assert_eq!(
        names[3],
        (4, 13, "bulkheadSourceWorkload".to_string()),
        "string"
    );
    // Every enterprise element of the templates is described.
    let described: Vec<u64> = names.iter().map(|n| n.0).collect();
    for f in (Shape {
        v6: false,
        enterprise: true,
    })
    .fields(32473)
    {
        if f.pen == 32473 {
            assert!(described.contains(&u64::from(f.id)), "{f:?}");
        }
    }
}
