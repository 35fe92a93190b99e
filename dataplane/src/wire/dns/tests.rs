#![allow(clippy::unwrap_used, reason = "test code")]

use super::*;
use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name as HName, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

fn read(m: &[u8]) -> Option<(Vec<String>, Vec<IpAddr>)> {
    let (mut names, mut addrs) = (Vec::new(), Vec::new());
    read_response(m, |n| names.push(n.to_string()), |a| addrs.push(a))?;
    Some((names, addrs))
}

fn response(q: &str, answers: Vec<Record>) -> Message {
    let mut m = Message::new();
    m.set_id(7)
        .set_message_type(MessageType::Response)
        .add_query(Query::query(HName::from_ascii(q).unwrap(), RecordType::A));
    for a in answers {
        m.add_answer(a);
    }
    m
}

fn rec(owner: &str, data: RData) -> Record {
    Record::from_rdata(HName::from_ascii(owner).unwrap(), 60, data)
}

#[test]
fn names_and_addresses_come_out_as_hickory_wrote_them_compression_included() {
    let m = response(
        "C2.Evil.Example.",
        vec![
            rec(
                "c2.evil.example.",
                RData::CNAME(CNAME(HName::from_ascii("cdn.evil.example.").unwrap())),
            ),
            rec("cdn.evil.example.", RData::A(A::new(203, 0, 113, 9))),
            rec(
                "cdn.evil.example.",
                RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9)),
            ),
        ],
    );
    let bytes = m.to_bytes().unwrap();
    let (names, addrs) = read(&bytes).unwrap();
    assert_eq!(
        names,
        [
            "c2.evil.example",
            "c2.evil.example",
            "cdn.evil.example",
            "cdn.evil.example",
            "cdn.evil.example"
        ]
    );
    assert_eq!(
        addrs,
        [
            "203.0.113.9".parse::<IpAddr>().unwrap(),
            "2001:db8::9".parse().unwrap()
        ]
    );
    // Written out, the names take 154 bytes: hickory compressed them, and
    // the reader followed the pointers.
    assert!(bytes.len() < 154, "{} bytes", bytes.len());
}

#[test]
fn queries_and_messages_that_do_not_parse_are_not_responses_and_never_panic() {
    let m = response(
        "c2.evil.example.",
        vec![rec("c2.evil.example.", RData::A(A::new(1, 2, 3, 4)))],
    );
    let bytes = m.to_bytes().unwrap();
    // Every cut: no panic; a cut inside the answers reads the question only.
    for n in 0..bytes.len() {
        let _ = read(&bytes[..n]);
    }
    assert!(read(&bytes[..12]).is_none());
    // A query.
    let mut q = bytes.clone();
    q[2] &= 0x7f;
    assert!(read(&q).is_none());
    // A pointer loop in the question.
    let mut looped = bytes[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert!(read(&looped).is_none());
    // A label with a dot or a control byte in it.
    let mut dotted = bytes[..12].to_vec();
    dotted.extend_from_slice(&[3, b'a', b'.', b'b', 0, 0, 1, 0, 1]);
    assert!(read(&dotted).is_none());
    // A name longer than DNS allows, made of pointers to a long label run.
    let mut long = bytes[..12].to_vec();
    for _ in 0..5 {
        long.push(63);
        long.extend(std::iter::repeat_n(b'x', 63));
    }
    long.push(0);
    long.extend_from_slice(&[0, 1, 0, 1]);
    assert!(read(&long).is_none());
}

proptest::proptest! {
    #[test]
    fn any_bytes_are_read_without_a_panic(m in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let _ = read(&m);
    }
}

#[test]
fn svcb_and_https_give_their_target_and_address_hints() {
    use hickory_proto::rr::rdata::svcb::{Alpn, IpHint, SvcParamKey, SvcParamValue, SVCB};
    use hickory_proto::rr::rdata::HTTPS;
    let svcb = |priority, target: &str, params| {
        SVCB::new(priority, HName::from_ascii(target).unwrap(), params)
    };
    let m = response(
        "evil.example.",
        vec![
            rec(
                "evil.example.",
                RData::HTTPS(HTTPS(svcb(
                    1,
                    ".",
                    vec![
                        (
                            SvcParamKey::Alpn,
                            SvcParamValue::Alpn(Alpn(vec!["h2".into()])),
                        ),
                        (
                            SvcParamKey::Ipv4Hint,
                            SvcParamValue::Ipv4Hint(IpHint(vec![
                                A::new(203, 0, 113, 7),
                                A::new(203, 0, 113, 8),
                            ])),
                        ),
                        (
                            SvcParamKey::Ipv6Hint,
                            SvcParamValue::Ipv6Hint(IpHint(vec![AAAA::new(
                                0x2001, 0xdb8, 0, 0, 0, 0, 0, 7,
                            )])),
                        ),
                    ],
                ))),
            ),
            rec(
                "_8443._foo.evil.example.",
                RData::SVCB(svcb(0, "Pool.Evil-CDN.example.", vec![])),
            ),
        ],
    );
    let bytes = m.to_bytes().unwrap();
    let (names, addrs) = read(&bytes).unwrap();
    assert_eq!(
        names,
        [
            "evil.example",
            "evil.example",
            "_8443._foo.evil.example",
            "pool.evil-cdn.example"
        ],
        "the target `.` is the owner itself: not a name"
    );
    assert_eq!(
        addrs,
        [
            "203.0.113.7".parse::<IpAddr>().unwrap(),
            "203.0.113.8".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        ]
    );
    // A parameter that runs past its record's data: not read whole.
    let one = response(
        "evil.example.",
        vec![rec(
            "evil.example.",
            RData::HTTPS(HTTPS(svcb(
                1,
                ".",
                vec![(
                    SvcParamKey::Ipv4Hint,
                    SvcParamValue::Ipv4Hint(IpHint(vec![A::new(203, 0, 113, 7)])),
                )],
            ))),
        )],
    );
    let mut bytes = one.to_bytes().unwrap();
    // The hint's length (the 2 bytes before its 4-byte value) says 8.
    let at = bytes.len() - 6;
    bytes[at..at + 2].copy_from_slice(&8u16.to_be_bytes());
    assert!(read(&bytes).is_none());
}
