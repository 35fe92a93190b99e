//! DNS records, address history, traceback and blast radius on one incident:
//! a workload resolves a C2 name and connects to its answer, changes its
//! address, another workload takes the old one; lateral movement before and
//! after the compromise. Also: the derived rows survive a crash (counted
//! again from the records after the marks) and match after a restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]
use super::forensics::Limits;
use super::query::time_text;
use super::*;
use crate::dns::{Answer, AnswerData, DnsResponse};
use crate::testutil::TempDir;
use dataplane::event::EndReason;
use dataplane::flow::FlowState;
use dataplane::policy::{Action, Mode, Verdict};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
const C: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xc]);
const D: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xd]);
pub(super) const E: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xe]);
const ROUTER: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x1]);

fn who(mac: MacAddr, name: &str) -> Arc<Identity> {
    Arc::new(Identity {
        mac,
        name: name.into(),
        labels: [("app".to_string(), name.to_string())].into(),
        groups: vec![name.into()],
    })
}

#[allow(clippy::too_many_arguments)]
fn flow(
    src: (MacAddr, &str),
    dst: (MacAddr, &str),
    port: u16,
    allowed: bool,
    first_ms: i64,
    last_ms: i64,
) -> StoredFlow {
    let ends = |m: MacAddr| match m {
        ROUTER => Arc::new(Identity::unknown(ROUTER)),
        m => who(m, &format!("w{}", m.0[5])),
    };
    StoredFlow {
        flow: FlowRecord {
            src_mac: src.0,
            dst_mac: dst.0,
            src_ip: src.1.parse().unwrap(),
            dst_ip: dst.1.parse().unwrap(),
            proto: 6,
            src_port: 40000,
            dst_port: port,
            vlan: [0, 0],
            verdict: Verdict {
                action: if allowed { Action::Allow } else { Action::Deny },
                reason: if allowed {
                    Reason::Rule(1)
                } else {
                    Reason::Default
                },
                mode: Mode::Enforce,
                would_deny: false,
            },
            generation: 1,
            state: FlowState::Established,
            first_seen: 0,
            last_seen: 0,
            packets: [3, 2],
            bytes: [300, 200],
            tcp_flags: 0,
            orig_port: dataplane::io::Port::A,
        },
        opens: true,
        first_ms,
        last_ms,
        src: ends(src.0),
        dst: ends(dst.0),
        kind: RecordKind::Ended(EndReason::Idle),
        intel: None,
    }
}

pub(super) fn resolution(mac: MacAddr, ip: &str, time_ms: i64, answer: &str) -> StoredDns {
    StoredDns {
        response: DnsResponse {
            time: 0,
            client_mac: mac,
            client_ip: ip.parse().unwrap(),
            server_ip: "10.0.0.53".parse().unwrap(),
            vlan: [0, 0],
            qname: "c2.evil.test".into(),
            qtype: 1,
            rcode: 0,
            answers: vec![
                Answer {
                    name: "c2.evil.test".into(),
                    ttl: 60,
                    data: AnswerData::Cname("edge.cdn-evil.test".into()),
                },
                Answer {
                    name: "edge.cdn-evil.test".into(),
                    ttl: 30,
                    data: AnswerData::Addr(answer.parse().unwrap()),
                },
            ],
        },
        time_ms,
        client: who(mac, &format!("w{}", mac.0[5])),
    }
}

pub(super) fn write(path: &std::path::Path, batch: Batch) {
    let (flows, dns) = (batch.flows.len() as u64, batch.dns.len() as u64);
    let w = RecordsWriter::start(path, RecordsConfig::for_import()).unwrap();
    assert!(w.try_submit_batch(batch).is_ok());
    let c = w.counters();
    let until = Instant::now() + Duration::from_secs(10);
    while (c.written.load(Ordering::Relaxed) < flows || c.dns_written.load(Ordering::Relaxed) < dns)
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    w.finish();
}

/// Minutes from a fixed start (a UTC day's 10:00).
fn at(min: i64) -> i64 {
    1_780_000_000_000 / 86_400_000 * 86_400_000 + 10 * 3_600_000 + min * 60_000
}

/// The incident: X = 10.0.0.5, Y = 10.0.0.6.
pub(super) fn incident() -> Batch {
    let x = "10.0.0.5";
    let y = "10.0.0.6";
    Batch {
        dns: vec![
            // An unrelated workload resolved the name long before: its own row.
            resolution(E, "10.0.0.9", at(-300), "198.51.100.7"),
            resolution(A, x, at(10), "203.0.113.9"),
            // The answer changed later.
            resolution(A, y, at(100), "203.0.113.10"),
        ],
        flows: vec![
            // Before the compromise: C reached D (must not count from A's walk).
            flow((C, "10.0.0.7"), (D, "10.0.0.8"), 22, true, at(0), at(1)),
            // D reached the address before the name resolved to it: not the name's.
            flow(
                (D, "10.0.0.8"),
                (ROUTER, "203.0.113.9"),
                443,
                true,
                at(5),
                at(6),
            ),
            // A connects to the C2 after resolving it, through the router.
            flow((A, x), (ROUTER, "203.0.113.9"), 443, true, at(11), at(12)),
            // A moves laterally to C, then C to D (after C was reached).
            flow((A, x), (C, "10.0.0.7"), 445, true, at(20), at(21)),
            flow((C, "10.0.0.7"), (D, "10.0.0.8"), 3389, true, at(30), at(31)),
            // A tried E and was denied.
            flow((A, x), (E, "10.0.0.9"), 3389, false, at(22), at(22)),
            // A changes address; B takes X and talks to D (benign).
            flow(
                (A, y),
                (ROUTER, "203.0.113.10"),
                443,
                true,
                at(101),
                at(102),
            ),
            flow((B, x), (D, "10.0.0.8"), 80, true, at(120), at(121)),
        ],
        addresses: vec![AddressSeen {
            mac: B,
            ip: x.parse().unwrap(),
            time_ms: at(119),
            source: AddressSource::Arp,
        }],
    }
}

pub(super) fn check(reader: &RecordsReader) {
    let t: Target = "evil.test".parse().unwrap();
    let tb = reader.traceback(&t, at(0), at(200)).unwrap();
    let macs: Vec<&str> = tb.workloads.iter().map(|w| w.mac.as_str()).collect();
    assert_eq!(macs, vec![A.to_string().as_str()], "{tb:#?}");
    let a = &tb.workloads[0];
    assert!(a.resolved);
    assert_eq!(a.resolutions.len(), 2);
    assert_eq!(a.resolutions[0].client_ip, "10.0.0.5");
    assert_eq!(a.resolutions[1].client_ip, "10.0.0.6");
    assert_eq!(a.resolutions[0].answers.len(), 2, "the CNAME chain");
    assert_eq!(a.identity_then.as_ref().unwrap().name, "w10");
    let ips: Vec<String> = a.contacts.iter().map(|c| c.ip.clone()).collect();
    assert_eq!(ips, vec!["203.0.113.9", "203.0.113.10"]);
    let held: Vec<&str> = a.addresses.iter().map(|s| s.ip.as_str()).collect();
    assert_eq!(held, vec!["10.0.0.5", "10.0.0.6"]);
    assert_eq!(tb.answers, vec!["203.0.113.9", "203.0.113.10"]);

    // The alias alone, exact; an address; a network; a name nobody asked.
    let alias = reader
        .traceback(&"=edge.cdn-evil.test".parse().unwrap(), at(0), at(200))
        .unwrap();
    assert_eq!(alias.workloads.len(), 1);
    let ip = reader
        .traceback(&"203.0.113.9".parse().unwrap(), at(0), at(200))
        .unwrap();
    // An address: whoever reached it, resolved or not, earliest first.
    let who: Vec<(&str, bool)> = ip
        .workloads
        .iter()
        .map(|w| (w.mac.as_str(), w.resolved))
        .collect();
    let (a, d) = (A.to_string(), D.to_string());
    assert_eq!(who, vec![(d.as_str(), false), (a.as_str(), true)]);
    assert_eq!(ip.workloads[1].contacts.len(), 1);
    let net = reader
        .traceback(&"203.0.113.0/24".parse().unwrap(), at(-400), at(200))
        .unwrap();
    assert_eq!(
        net.workloads.len(),
        2,
        "A and D; E resolved to 198.51.100.7, not in it"
    );
    let none = reader
        .traceback(&"test".parse::<Target>().unwrap(), at(150), at(200))
        .unwrap();
    assert!(none.workloads.is_empty());

    // The raw responses: by name (newest first), client, response code.
    let q = |name: Option<&str>, client: Option<&str>, rcode: Option<&str>| {
        DnsParams {
            domain: name.map(str::to_string),
            client: client.map(str::to_string),
            rcode: rcode.map(str::to_string),
            since: Some(time_text(at(-1440))),
            until: Some(time_text(at(1440))),
            limit: None,
        }
        .query(at(0))
    };
    let rows = reader
        .dns(&q(Some("evil.test"), None, None).unwrap())
        .unwrap();
    let times: Vec<i64> = rows.iter().map(|r| r.time_ms).collect();
    assert_eq!(times, vec![at(100), at(10), at(-300)]);
    let rows = reader
        .dns(&q(Some("cdn-evil.test"), Some(&A.to_string()), None).unwrap())
        .unwrap();
    assert_eq!(rows.len(), 2, "by an alias of the chain, A's only");
    assert!(reader
        .dns(&q(None, None, Some("nxdomain")).unwrap())
        .unwrap()
        .is_empty());
    for (name, client, rcode) in [
        (Some("10.0.0.1"), None, None),
        (None, Some("nope"), None),
        (None, None, Some("70000")),
    ] {
        assert!(q(name, client, rcode).is_err());
    }

    // Who held X: A at first, B later; at a time between, the last before.
    let x: std::net::IpAddr = "10.0.0.5".parse().unwrap();
    let h = reader
        .addresses(x, Some(at(15)), at(-1440), at(1440))
        .unwrap();
    assert!(h.exact);
    assert_eq!(h.holders[0].mac, A.to_string());
    let h = reader
        .addresses(x, Some(at(120)), at(-1440), at(1440))
        .unwrap();
    assert_eq!(h.holders[0].mac, B.to_string());
    assert!(h.holders[0].sources.contains(&"arp".to_string()));
    let h = reader
        .addresses(x, Some(at(60)), at(-1440), at(1440))
        .unwrap();
    assert!(!h.exact);
    assert_eq!(h.holders[0].mac, A.to_string());
    let all = reader.addresses(x, None, at(-1440), at(1440)).unwrap();
    let holders: Vec<&str> = all.holders.iter().map(|s| s.mac.as_str()).collect();
    assert_eq!(holders, vec![A.to_string(), B.to_string()]);

    // The blast radius from A since the resolution.
    let b = reader.blast_radius(A, at(10), at(200), 3).unwrap();
    let reached: Vec<(String, u32)> = b
        .reached
        .iter()
        .map(|r| (r.mac.clone().unwrap_or_else(|| r.ip.clone()), r.depth))
        .collect();
    assert_eq!(
        reached,
        vec![
            ("203.0.113.9".to_string(), 1),
            (C.to_string(), 1),
            ("203.0.113.10".to_string(), 1),
            (D.to_string(), 2),
        ],
        "{b:#?}"
    );
    let d = &b.reached[3];
    assert_eq!(d.path, vec![A.to_string(), C.to_string(), D.to_string()]);
    assert_eq!(d.services, vec!["tcp/3389"]);
    assert_eq!(b.attempted.len(), 1);
    assert_eq!(b.attempted[0].to_mac, Some(E.to_string()));
    // From after C's 3389 flow, C reached nothing new, so D is not reached.
    let late = reader.blast_radius(A, at(25), at(200), 3).unwrap();
    assert!(late.reached.iter().all(|r| r.mac != Some(C.to_string())));
    assert!(late.reached.iter().all(|r| r.mac != Some(D.to_string())));
}

#[test]
fn traceback_addresses_and_blast_radius_follow_the_identity_not_the_address() {
    let dir = TempDir::new("records-forensics");
    let path = dir.0.join("records.db");
    write(&path, incident());
    check(&RecordsReader::open(&path).unwrap());
}

#[test]
fn derived_rows_lost_in_a_crash_are_counted_again_at_start() {
    let dir = TempDir::new("records-forensics-crash");
    let path = dir.0.join("records.db");
    write(&path, incident());
    let db = rusqlite::Connection::open(&path).unwrap();
    let rows = |db: &rusqlite::Connection| -> Vec<i64> {
        ["contacts", "edges", "addresses", "pdns", "dns_names"]
            .iter()
            .map(|t| {
                db.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                    .unwrap()
            })
            .collect()
    };
    let before = rows(&db);
    // A crash after the records' transactions, before the derived rows'
    // (the ARP row was written with its batch: it stays).
    db.execute_batch(
        "UPDATE rollup_mark SET id = 0, dns_id = 0; DELETE FROM contacts; DELETE FROM edges;
         DELETE FROM addresses WHERE sources & 1 = 0; UPDATE addresses SET sources = 1;
         DELETE FROM pdns; DELETE FROM dns_names;
         DELETE FROM hourly; DELETE FROM group_rollups;",
    )
    .unwrap();
    drop(db);
    // A restart, and more records after it.
    write(&path, Batch::default());
    let db = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(rows(&db), before);
    drop(db);
    check(&RecordsReader::open(&path).unwrap());
}

#[test]
fn hostile_targets_are_refused_with_a_reason() {
    for bad in [
        "",
        "a..b",
        "x".repeat(64).as_str(),
        "evil test",
        "é.test",
        "=",
        "-/8",
    ] {
        let e = bad.parse::<Target>().unwrap_err();
        assert!(e.contains("no domain"), "{bad:?}: {e}");
    }
    assert_eq!(
        "Evil.TEST.".parse::<Target>().unwrap(),
        Target::Domain {
            name: "evil.test".into(),
            exact: false
        }
    );
    assert_eq!(
        "10.1.2.3/8".parse::<Target>().unwrap().to_string(),
        "10.0.0.0/8"
    );
}

#[test]
fn a_traceback_is_paged_first_seen_first() {
    let dir = TempDir::new("records-forensics-pages");
    let path = dir.0.join("records.db");
    write(&path, incident());
    let reader = RecordsReader::open(&path).unwrap();
    let t: Target = "203.0.113.9".parse().unwrap();
    let one = TracebackPage {
        limit: 1,
        after: None,
    };
    let first = reader.traceback_page(&t, at(0), at(200), one).unwrap();
    assert_eq!(first.total, 2);
    assert!(first.truncated);
    assert_eq!(first.workloads.len(), 1);
    assert_eq!(first.workloads[0].mac, D.to_string(), "D reached it first");
    let next: TracebackCursor = first.next.as_deref().unwrap().parse().unwrap();
    let second = reader
        .traceback_page(
            &t,
            at(0),
            at(200),
            TracebackPage {
                limit: 1,
                after: Some(next),
            },
        )
        .unwrap();
    assert_eq!(second.workloads.len(), 1);
    assert_eq!(second.workloads[0].mac, A.to_string());
    assert!(second.workloads[0].resolved);
    assert!(!second.truncated);
    assert_eq!(second.next, None);
    // The same two as one page.
    let all = reader.traceback(&t, at(0), at(200)).unwrap();
    let macs: Vec<&str> = all.workloads.iter().map(|w| w.mac.as_str()).collect();
    assert_eq!(macs, vec![D.to_string(), A.to_string()]);
    assert_eq!(all.workloads[1], second.workloads[0]);
    // Cursors and limits as text.
    for bad in ["", "12", "x-0000000000aa", "12-aa", "-1-0000000000aa"] {
        assert!(bad.parse::<TracebackCursor>().is_err(), "{bad:?}");
    }
    let q = |limit: &str| {
        TracebackParams {
            target: Some("evil.test".into()),
            limit: Some(limit.into()),
            ..TracebackParams::default()
        }
        .query(at(0))
    };
    assert_eq!(q("7").unwrap().3.limit, 7);
    for bad in ["0", "1001", "x"] {
        assert_eq!(q(bad).unwrap_err().field, "limit");
    }
}

#[test]
fn contacts_to_an_answer_many_names_share_count_only_for_those_that_resolved_the_name() {
    let dir = TempDir::new("records-forensics-shared");
    let path = dir.0.join("records.db");
    // D reaches the C2's first address after the name pointed there,
    // without resolving it.
    let batch = || {
        let mut b = incident();
        b.flows.push(flow(
            (D, "10.0.0.8"),
            (ROUTER, "203.0.113.9"),
            443,
            true,
            at(50),
            at(51),
        ));
        b
    };
    write(&path, batch());
    let reader = RecordsReader::open(&path).unwrap();
    let t: Target = "evil.test".parse().unwrap();
    let tb = reader.traceback(&t, at(0), at(200)).unwrap();
    let who: Vec<(&str, bool)> = tb
        .workloads
        .iter()
        .map(|w| (w.mac.as_str(), w.resolved))
        .collect();
    let (a, d) = (A.to_string(), D.to_string());
    assert_eq!(who, vec![(a.as_str(), true), (d.as_str(), false)]);
    assert!(tb.shared_answers.is_empty());

    // The same address is the answer of many other names (a CDN's): D's
    // contact is no sign of the name any more; A's still is.
    let dir = TempDir::new("records-forensics-shared-cdn");
    let path = dir.0.join("records.db");
    let mut batch = batch();
    for i in 0..=SHARED_NAMES {
        let mut r = resolution(E, "10.0.0.9", at(60), "203.0.113.9");
        r.response.qname = format!("site{i}.cdn-customer.test");
        r.response.answers.truncate(0);
        r.response.answers.push(Answer {
            name: r.response.qname.clone(),
            ttl: 60,
            data: AnswerData::Addr("203.0.113.9".parse().unwrap()),
        });
        batch.dns.push(r);
    }
    write(&path, batch);
    let reader = RecordsReader::open(&path).unwrap();
    let tb = reader.traceback(&t, at(0), at(200)).unwrap();
    let macs: Vec<&str> = tb.workloads.iter().map(|w| w.mac.as_str()).collect();
    assert_eq!(macs, vec![a.as_str()], "{tb:#?}");
    assert_eq!(tb.shared_answers, vec!["203.0.113.9"]);
    assert_eq!(tb.workloads[0].contacts.len(), 2);
    // The address itself still lists everyone who reached it.
    let ip = reader
        .traceback(&"203.0.113.9".parse().unwrap(), at(0), at(200))
        .unwrap();
    assert_eq!(ip.total, 3, "D, A and E (E resolved a name to it)");
}

#[test]
fn a_blast_radius_walked_backwards_reaches_what_a_walk_forwards_does() {
    let dir = TempDir::new("records-forensics-backwards");
    let path = dir.0.join("records.db");
    // 40 workloads, a router to 30 internet addresses, random flows over a
    // day (some denied, some long).
    let mac = |i: u8| MacAddr([2, 0, 0, 0, 1, i]);
    let ip = |i: u8| format!("10.0.1.{i}");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut flows = Vec::new();
    for _ in 0..600 {
        let src = next(40) as u8 + 1;
        let first = at(next(1440) as i64);
        let last = first + next(3) as i64 * 3_600_000 + 1_000;
        let allowed = next(8) != 0;
        let (s, sip) = (mac(src), ip(src));
        if next(3) == 0 {
            let dst = format!("198.51.100.{}", next(30) + 1);
            flows.push(flow((s, &sip), (ROUTER, &dst), 443, allowed, first, last));
        } else {
            let d = next(40) as u8 + 1;
            let port = [22, 445, 3389][next(3) as usize];
            flows.push(flow(
                (s, &sip),
                (mac(d), &ip(d)),
                port,
                allowed,
                first,
                last,
            ));
        }
    }
    write(
        &path,
        Batch {
            flows,
            ..Batch::default()
        },
    );
    let reader = RecordsReader::open(&path).unwrap();
    for origin in 1..=10u8 {
        for (since, depth) in [(at(0), 3), (at(300), 2), (at(700), 4)] {
            let walk = |backwards_min, backwards_always| {
                reader
                    .blast_radius_with(
                        mac(origin),
                        since,
                        at(1440 + 180),
                        depth,
                        Limits {
                            attempts: 0,
                            backwards_min,
                            backwards_always,
                        },
                    )
                    .unwrap()
            };
            let forwards = walk(usize::MAX, false);
            let backwards = walk(1, true);
            assert!(!forwards.reached.is_empty());
            assert_eq!(
                forwards, backwards,
                "from {origin} since {since} to depth {depth}"
            );
        }
    }
    // The answer's limits: the same nodes, with the attempts.
    let b = reader.blast_radius(mac(1), at(0), at(1620), 3).unwrap();
    assert!(!b.attempted.is_empty());
    assert!(b.reached.len() > 40, "{}", b.reached.len());
}
