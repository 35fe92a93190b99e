//! The DNS decoder on messages built byte by byte: what a resolver sends,
//! and what an attacker does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]

use super::*;
use dataplane::event::DnsMessage;
use std::net::Ipv4Addr;

const CLIENT: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);

fn header(flags: u16, qd: u16, an: u16) -> Vec<u8> {
    let mut h = vec![0x12, 0x34];
    for v in [flags, qd, an, 0, 0] {
        h.extend_from_slice(&v.to_be_bytes());
    }
    h
}

fn name(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in text.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A record: owner bytes (a name or a pointer), type, TTL, data.
fn record(owner: &[u8], rtype: u16, ttl: u32, data: &[u8]) -> Vec<u8> {
    let mut r = owner.to_vec();
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&(data.len() as u16).to_be_bytes());
    r.extend_from_slice(data);
    r
}

/// "C2.Example.COM" A: a CNAME to cdn.example.net (its owner a pointer to
/// the question), then cdn.example.net's address.
fn c2_response() -> Vec<u8> {
    let mut m = header(0x8180, 1, 2);
    m.extend(name("C2.Example.COM"));
    m.extend_from_slice(&[0, 1, 0, 1]);
    m.extend(record(&[0xc0, 12], 5, 60, &name("cdn.example.net")));
    m.extend(record(&name("cdn.example.net"), 1, 30, &[203, 0, 113, 9]));
    m
}

fn message(proto: u8, seq: Option<u32>, payload: &[u8]) -> DnsMessage {
    DnsMessage {
        time: 1_000,
        client_mac: CLIENT,
        client_ip: Ipv4Addr::new(10, 0, 0, 5).into(),
        client_port: 40_000,
        server_ip: Ipv4Addr::new(10, 0, 0, 53).into(),
        server_mac: MacAddr([2, 0, 0, 0, 0, 53]),
        vlan: [0, 0],
        proto,
        tcp_seq: seq,
        payload: payload.into(),
        truncated: false,
        unsolicited: false,
    }
}

fn udp(payload: &[u8]) -> DnsMessage {
    message(17, None, payload)
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

#[test]
fn a_response_gives_its_question_and_cname_chain_in_lower_case() {
    let mut d = DnsDecoder::new();
    let r = d.feed(&udp(&c2_response()));
    assert_eq!(r.len(), 1);
    let r = &r[0];
    assert_eq!(r.qname, "c2.example.com");
    assert_eq!((r.qtype, r.rcode), (1, 0));
    assert_eq!(r.client_mac, CLIENT);
    assert_eq!(
        r.answers,
        vec![
            Answer {
                name: "c2.example.com".into(),
                ttl: 60,
                data: AnswerData::Cname("cdn.example.net".into()),
            },
            Answer {
                name: "cdn.example.net".into(),
                ttl: 30,
                data: AnswerData::Addr(Ipv4Addr::new(203, 0, 113, 9).into()),
            },
        ]
    );
    assert_eq!(d.counters().responses, 1);
}

/// An HTTPS record's data, byte by byte: priority, target, parameters.
fn https_data(priority: u16, target: &str, params: &[(u16, &[u8])]) -> Vec<u8> {
    let mut d = priority.to_be_bytes().to_vec();
    d.extend(name(target));
    for (key, value) in params {
        d.extend_from_slice(&key.to_be_bytes());
        d.extend_from_slice(&(value.len() as u16).to_be_bytes());
        d.extend_from_slice(value);
    }
    d
}

#[test]
fn https_and_svcb_records_give_their_address_hints_and_target() {
    let mut m = header(0x8180, 1, 2);
    m.extend(name("evil.example"));
    m.extend_from_slice(&[0, 65, 0, 1]);
    let v6: [u8; 16] = "2001:db8::7"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    m.extend(record(
        &[0xc0, 12],
        65,
        300,
        &https_data(
            1,
            "",
            &[
                (1, b"\x02h2"),
                (4, &[203, 0, 113, 7, 203, 0, 113, 8]),
                (6, &v6),
            ],
        ),
    ));
    m.extend(record(
        &[0xc0, 12],
        64,
        60,
        &https_data(0, "pool.cdn.example", &[]),
    ));
    let r = &DnsDecoder::new().feed(&udp(&m))[0];
    assert_eq!(r.qtype, 65);
    let addr = |ip: &str, ttl| Answer {
        name: "evil.example".into(),
        ttl,
        data: AnswerData::Addr(ip.parse().unwrap()),
    };
    assert_eq!(
        r.answers,
        vec![
            addr("203.0.113.7", 300),
            addr("203.0.113.8", 300),
            addr("2001:db8::7", 300),
            Answer {
                name: "evil.example".into(),
                ttl: 60,
                data: AnswerData::Cname("pool.cdn.example".into()),
            },
        ]
    );
}

#[test]
fn nxdomain_and_empty_answers_are_kept() {
    let mut m = header(0x8183, 1, 0);
    m.extend(name("xj3k9q.example"));
    m.extend_from_slice(&[0, 28, 0, 1]);
    let r = DnsDecoder::new().feed(&udp(&m));
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].qname.as_str(), r[0].qtype, r[0].rcode),
        ("xj3k9q.example", 28, 3)
    );
    assert!(r[0].answers.is_empty());
}

/// Each hostile message is dropped and counted under its reason.
#[test]
fn hostile_messages_are_counted_by_why_never_a_panic() {
    let question = |n: &[u8]| {
        let mut m = header(0x8180, 1, 0);
        m.extend_from_slice(n);
        m.extend_from_slice(&[0, 1, 0, 1]);
        m
    };
    // A name that points at itself.
    let self_loop = question(&[0xc0, 12]);
    // Two pointers at each other, in the answer section.
    let mut pair = header(0x8180, 1, 1);
    pair.extend(name("a.example"));
    pair.extend_from_slice(&[0, 1, 0, 1]);
    let at = pair.len() as u8;
    pair.extend(record(&[0xc0, at + 2, 0xc0, at], 1, 1, &[1, 2, 3, 4]));
    let long_label = question(&name(&"x".repeat(64)));
    let long_name = question(&name(&vec!["y".repeat(63); 5].join(".")));
    // Promises 50 answers and has none.
    let mut lying = header(0x8180, 1, 50);
    lying.extend(name("a.example"));
    lying.extend_from_slice(&[0, 1, 0, 1]);
    // A query from port 53, and a response with no question.
    let mut query = header(0x0100, 1, 0);
    query.extend(name("a.example"));
    query.extend_from_slice(&[0, 1, 0, 1]);
    let no_question = header(0x8180, 0, 0);
    let mut cut = udp(&c2_response());
    cut.truncated = true;

    let mut d = DnsDecoder::new();
    for m in [&self_loop, &pair, &long_label, &long_name, &lying] {
        assert!(d.feed(&udp(m)).is_empty());
    }
    assert!(d.feed(&udp(&query)).is_empty());
    assert!(d.feed(&udp(&no_question)).is_empty());
    assert!(d.feed(&cut).is_empty());
    assert!(d.feed(&udp(&[])).is_empty());
    assert!(d.feed(&udp(&c2_response()[..20])).is_empty());
    let c = d.counters();
    assert_eq!(
        (c.malformed, c.not_response, c.no_question, c.truncated),
        (7, 1, 1, 1),
        "{c:?}"
    );
    assert_eq!(c.responses, 0);
}

#[test]
fn tcp_messages_split_over_segments_and_several_in_one_are_whole() {
    let one = framed(&c2_response());
    let mut stream = one.clone();
    stream.extend(framed(&c2_response()));
    stream.extend(framed(&c2_response()));
    let mut d = DnsDecoder::new();
    let seq0 = u32::MAX - 10; // the sequence numbers wrap inside the stream
                              // Three segments: the first cuts the length prefix, the last holds the
                              // end of one message and a whole other.
    let cuts = [0, 1, one.len() + 7, stream.len()];
    let mut got = 0;
    for w in cuts.windows(2) {
        let seq = seq0.wrapping_add(w[0] as u32);
        got += d.feed(&message(6, Some(seq), &stream[w[0]..w[1]])).len();
    }
    assert_eq!(got, 3);
    assert_eq!(d.waiting(), (1, 0));
    assert_eq!(d.counters().dropped(), 0);
}

#[test]
fn tcp_retransmissions_add_only_what_is_new_and_a_gap_drops_the_stream() {
    let body = framed(&c2_response());
    let mut d = DnsDecoder::new();
    assert!(d.feed(&message(6, Some(1000), &body[..30])).is_empty());
    // The same 30 bytes again, then 20 of them and 10 new.
    assert!(d.feed(&message(6, Some(1000), &body[..30])).is_empty());
    assert!(d.feed(&message(6, Some(1010), &body[10..40])).is_empty());
    let r = d.feed(&message(6, Some(1040), &body[40..]));
    assert_eq!(r.len(), 1, "{:?}", d.counters());
    // The next message's start, then a segment that skips 10 bytes: what
    // the stream held is gone, counted, and nothing half read comes out.
    let next = 1000 + body.len() as u32;
    assert!(d.feed(&message(6, Some(next), &body[..30])).is_empty());
    assert!(d.feed(&message(6, Some(next + 40), &body[40..])).is_empty());
    assert_eq!(d.counters().gap, 1);
    assert_eq!(d.counters().responses, 1);
}

#[test]
fn tcp_length_prefixes_that_lie_are_counted_and_bounded() {
    let mut d = DnsDecoder::new();
    // Zero.
    assert!(d.feed(&message(6, Some(1), &[0, 0, 1, 2, 3])).is_empty());
    assert_eq!(d.counters().bad_length, 1);
    // 60,000 promised, 100 sent, then silence: forgotten when idle.
    let mut m = message(6, Some(1), &[0xea, 0x60]);
    m.client_port = 40_001;
    m.payload = [&[0xea, 0x60][..], &[7; 100]].concat().into();
    assert!(d.feed(&m).is_empty());
    assert_eq!(d.waiting(), (2, 102));
    d.expire(m.time + STREAM_IDLE_NS + 1);
    assert_eq!(d.waiting(), (0, 0));
    assert_eq!(d.counters().bad_length, 2);
}

#[test]
fn tcp_streams_are_bounded_in_count_and_bytes() {
    let mut d = DnsDecoder::new();
    let half = [&[0xff, 0xff][..], &[0; 1400]].concat();
    for i in 0..(MAX_STREAMS + 100) {
        let mut m = message(6, Some(7), &half);
        m.client_port = (i % 60_000) as u16;
        m.client_ip = Ipv4Addr::from(0x0a00_0000 + (i / 60_000) as u32).into();
        m.time = i as u64;
        d.feed(&m);
        let (streams, bytes) = d.waiting();
        assert!(streams <= MAX_STREAMS && bytes <= tcp::MAX_BYTES);
    }
    assert_eq!(d.counters().overflow, 100);
    // One stream fed without end: held at a message and a segment.
    let mut d = DnsDecoder::new();
    for k in 0..200u32 {
        d.feed(&message(6, Some(k * 1402), &half));
        assert!(d.waiting().1 <= 2 + 65_535 + 1402);
    }
}

#[test]
fn random_bytes_and_mutated_responses_never_panic() {
    // A deterministic xorshift: the same cases every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = c2_response();
    let mut d = DnsDecoder::new();
    for i in 0..20_000u32 {
        let mut m = base.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % m.len();
            m[at] = next() as u8;
        }
        m.truncate(12 + (next() as usize) % (m.len() - 11));
        if i % 3 == 0 {
            m = (0..next() % 300).map(|_| next() as u8).collect();
        }
        d.feed(&udp(&m));
        d.feed(&message(6, Some(next() as u32), &m));
    }
    let c = d.counters();
    assert!(c.responses + c.dropped() > 20_000, "{c:?}");
}

#[test]
fn the_fuzz_targets_corpus_and_regressions_decode() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["corpus/dns", "regressions/dns"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            crate::fuzzing::dns_decode(&data, &[]);
            n += 1;
        }
    }
    assert!(n >= 10, "the dns corpus is there ({n} files)");
}

#[test]
fn a_response_nobody_asked_for_is_counted_not_recorded() {
    let mut d = DnsDecoder::new();
    let mut forged = udp(&c2_response());
    forged.unsolicited = true;
    assert!(d.feed(&forged).is_empty());
    let mut tcp_forged = message(6, Some(1), &framed(&c2_response()));
    tcp_forged.unsolicited = true;
    assert!(d.feed(&tcp_forged).is_empty());
    assert_eq!(d.counters().unsolicited, 2);
    assert_eq!(d.counters().dropped(), 2);
    assert_eq!(d.feed(&udp(&c2_response())).len(), 1);
}
