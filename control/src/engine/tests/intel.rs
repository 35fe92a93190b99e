//! Threat intel on the control thread: a feed reading is published beside
//! the rules as a new generation, below quarantine and above the rules,
//! kept across commits and quarantines, and the watcher reads a changed
//! file again.
//!
//! Compiled only with `cfg(test)`, like its parent: its `unwrap`/`expect`
//! fail a test on a fixture the test wrote itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]

use super::*;
use crate::engine::IntelWatch;
use crate::intel::feeds::{FeedSource, Loader};
use crate::intel::{Action as FeedAction, Format, Severity};
use crate::records::{FlowFilter, RecordsReader};

fn feed(dir: &std::path::Path, name: &str, action: FeedAction, text: &str) -> FeedSource {
    let path = dir.join(format!("{name}.txt"));
    std::fs::write(&path, text).unwrap();
    FeedSource {
        name: name.into(),
        path,
        format: Format::List,
        action,
        severity: Severity::High,
        quarantine: false,
        force: false,
        managed: false,
    }
}

#[test]
fn a_block_feed_is_published_beside_the_rules_and_survives_commits_and_quarantines() {
    let bed = start("intel-publish");
    let h = &bed.engine.handle;
    let dir = bed._dir.0.clone();
    let sources = vec![
        feed(&dir, "c2", FeedAction::Block, "10.0.0.21\n"),
        feed(&dir, "watch", FeedAction::Alert, "10.0.0.11\n"),
    ];
    let rules = Arc::as_ptr(&bed.cell.load_full()) as usize;
    let before = bed.cell.generation();
    let mut loader = Loader::new(sources, &dir, vec![]).unwrap();
    let generation = h.set_intel(loader.load()).unwrap();
    assert_eq!(generation, before + 1);
    assert_eq!(bed.cell.generation(), generation, "in force at the answer");
    assert_ne!(Arc::as_ptr(&bed.cell.load_full()) as usize, rules);
    let v = bed.verdict((WEB, "10.0.0.11"), (DB, "10.0.0.21"), 5432);
    assert_eq!((v.action, v.reason), (Action::Deny, Reason::Intel(0)));
    // Both ways; an alert feed's address is not blocked.
    let v = bed.verdict((DB, "10.0.0.21"), (WEB, "10.0.0.11"), 22);
    assert_eq!(v.reason, Reason::Intel(0));
    let v = bed.verdict((ADMIN, "10.0.3.5"), (WEB, "10.0.0.11"), 22);
    assert_eq!(v.action, Action::Allow);
    assert!(matches!(v.reason, Reason::Rule(_)), "{v:?}");
    let view = h.intel();
    assert_eq!(view.generation, generation);
    assert_eq!(view.feeds.len(), 2);
    assert_eq!(view.intel.len(), 2);

    // A quarantine and a commit keep it; quarantine stays first.
    h.quarantine(mac(DB), None, "alice").unwrap();
    let v = bed.verdict((WEB, "10.0.0.11"), (DB, "10.0.0.21"), 5432);
    assert_eq!(v.reason, Reason::Quarantine);
    h.release(mac(DB), None, "alice").unwrap();
    h.replace(model(POLICY), "alice", "same again").unwrap();
    let v = bed.verdict((WEB, "10.0.0.11"), (DB, "10.0.0.21"), 5432);
    assert_eq!(v.reason, Reason::Intel(0));

    // Emptied on purpose (a feed with another entry): the rules decide again.
    std::fs::write(dir.join("c2.txt"), "192.0.2.1\n").unwrap();
    h.set_intel(loader.load()).unwrap();
    assert_eq!(bed.web_to_db(), Action::Allow);
}

#[test]
fn the_watcher_puts_the_feeds_in_force_at_start_and_reads_a_changed_file_again() {
    let bed = start("intel-watch");
    let h = &bed.engine.handle;
    let dir = bed._dir.0.clone();
    let source = feed(&dir, "c2", FeedAction::Block, "192.0.2.1\n");
    let path = source.path.clone();
    let loader = Loader::new(vec![source], &dir, vec![]).unwrap();
    let _watch = IntelWatch::start(loader, h.clone(), Duration::from_millis(20), None).unwrap();
    assert_eq!(h.intel().intel.len(), 1, "read before start returns");
    assert_eq!(bed.web_to_db(), Action::Allow);
    let tmp = dir.join("c2.new");
    std::fs::write(&tmp, "192.0.2.1\n10.0.0.21\n").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    eventually("the changed feed is in force", || {
        bed.web_to_db() == Action::Deny
    });
    assert_eq!(h.intel().feeds[0].entries, 2);
    // Asked to read again: a new generation, same entries.
    let g = h.intel().generation;
    assert!(h.reload_intel());
    eventually("the feeds are read again", || h.intel().generation > g);
}

/// web-1's resolver answering it `payload`.
pub(super) fn dns_event(payload: Vec<u8>) -> Event {
    Event::Dns(dataplane::event::DnsMessage {
        // 1 ms after the engine's start: in the past by the time it is hunted.
        time: 1_000_000,
        client_mac: mac(WEB),
        client_ip: ip("10.0.0.11"),
        client_port: 40_000,
        server_mac: mac(DB),
        server_ip: ip("10.0.0.53"),
        vlan: [0, 0],
        proto: 17,
        tcp_seq: None,
        payload: payload.into(),
        truncated: false,
        unsolicited: false,
    })
}

pub(super) fn alerts(bed: &Bed) -> Vec<crate::alerts::Alert> {
    let store = crate::store::Store::open(&bed.db).unwrap();
    store
        .alerts(&crate::alerts::AlertFilter {
            limit: 100,
            ..Default::default()
        })
        .unwrap()
}

#[test]
fn a_dns_answer_for_a_blocked_domain_blocks_its_addresses_and_raises_an_alert_without_records() {
    let bed = start("intel-dns");
    let h = &bed.engine.handle;
    let dir = bed._dir.0.clone();
    let sources = vec![
        feed(&dir, "c2", FeedAction::Block, "evil.test\n"),
        feed(&dir, "watch", FeedAction::Alert, "198.51.100.7\n"),
    ];
    let mut loader = Loader::new(sources, &dir, vec![]).unwrap();
    h.set_intel(loader.load()).unwrap();
    let to = |dst: &str| bed.verdict((WEB, "10.0.0.11"), (DB, dst), 443);
    assert_eq!(to("203.0.113.9").reason, Reason::Default);

    // web-1 resolves c2.evil.test: 203.0.113.9 is blocked, before any flow.
    let g = bed.cell.generation();
    bed.events
        .send(dns_event(super::records::c2_answer()))
        .unwrap();
    eventually("the answer is blocked", || {
        to("203.0.113.9").reason == Reason::Intel(0)
    });
    assert!(
        bed.cell.generation() > g,
        "a new generation cuts running flows"
    );
    // Both ways.
    let back = bed.verdict((DB, "203.0.113.9"), (WEB, "10.0.0.11"), 80);
    assert_eq!(back.action, Action::Deny);
    eventually("the alert is stored", || !alerts(&bed).is_empty());
    let a = &alerts(&bed)[0];
    assert_eq!(a.kind, crate::alerts::Kind::IntelDns);
    assert_eq!(a.mac, WEB);
    assert_eq!(a.workload.as_deref(), Some("web-1"));
    assert_eq!(a.indicator, "evil.test");
    assert_eq!(a.evidence["dns"]["qname"], "c2.evil.test");
    assert_eq!(a.evidence["blocked"][0], "203.0.113.9");
    assert_eq!(a.evidence["entry"]["feed"], "c2");
    assert!(
        a.summary.contains("web-1 resolved c2.evil.test"),
        "{}",
        a.summary
    );

    // The same answer again: a count, not a second alert.
    bed.events
        .send(dns_event(super::records::c2_answer()))
        .unwrap();
    // A flow to the alert feed's address: an alert, not a block.
    bed.events
        .send(flow_start(
            WEB,
            "10.0.0.11",
            DB,
            "198.51.100.7",
            Verdict {
                action: Action::Allow,
                reason: Reason::Default,
                mode: Mode::Audit,
                would_deny: false,
            },
        ))
        .unwrap();
    eventually("the flow alert is stored", || alerts(&bed).len() == 2);
    let a = &alerts(&bed)[0];
    assert_eq!(a.kind, crate::alerts::Kind::IntelIp);
    assert_eq!(a.indicator, "198.51.100.7");
    assert_eq!(a.evidence["flow"]["verdict"], "allow");
    assert_eq!(to("198.51.100.7").reason, Reason::Default, "not blocked");
    eventually("the repeat is counted", || {
        alerts(&bed).iter().any(|a| a.count == 2)
    });
    assert!(
        h.status().records.is_none(),
        "no records configured: DNS was read for intel alone"
    );

    // A reading that no longer blocks the domain lifts the answers too.
    std::fs::write(dir.join("c2.txt"), "other.test\n").unwrap();
    h.set_intel(loader.load()).unwrap();
    assert_eq!(to("203.0.113.9").reason, Reason::Default);
}

#[test]
fn an_https_answer_for_a_blocked_domain_blocks_its_address_hints() {
    use hickory_proto::op::{Message, MessageType, Query};
    use hickory_proto::rr::rdata::svcb::{IpHint, SvcParamKey, SvcParamValue, SVCB};
    use hickory_proto::rr::rdata::{A, HTTPS};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use hickory_proto::serialize::binary::BinEncodable;
    let bed = start("intel-https");
    let h = &bed.engine.handle;
    let dir = bed._dir.0.clone();
    let source = feed(&dir, "c2", FeedAction::Block, "evil.test\n");
    let mut loader = Loader::new(vec![source], &dir, vec![]).unwrap();
    h.set_intel(loader.load()).unwrap();
    // A client that connects to an HTTPS record's hints never asks for A.
    let name = Name::from_ascii("evil.test.").unwrap();
    let hints = SvcParamValue::Ipv4Hint(IpHint(vec![A::new(203, 0, 113, 21)]));
    let https = SVCB::new(1, Name::root(), vec![(SvcParamKey::Ipv4Hint, hints)]);
    let mut m = Message::new();
    m.set_id(9)
        .set_message_type(MessageType::Response)
        .add_query(Query::query(name.clone(), RecordType::HTTPS))
        .add_answer(Record::from_rdata(name, 300, RData::HTTPS(HTTPS(https))));
    let to = |dst: &str| bed.verdict((WEB, "10.0.0.11"), (DB, dst), 443);
    assert_eq!(to("203.0.113.21").reason, Reason::Default);
    bed.events.send(dns_event(m.to_bytes().unwrap())).unwrap();
    eventually("the hint is blocked", || {
        to("203.0.113.21").reason == Reason::Intel(0)
    });
}

#[test]
fn a_quarantine_feed_quarantines_the_workload_that_resolved_its_domain() {
    let bed = start("intel-quarantine");
    let h = &bed.engine.handle;
    let dir = bed._dir.0.clone();
    let mut source = feed(&dir, "c2", FeedAction::Alert, "evil.test\n");
    source.quarantine = true;
    let mut loader = Loader::new(vec![source], &dir, vec![]).unwrap();
    h.set_intel(loader.load()).unwrap();
    bed.events
        .send(dns_event(super::records::c2_answer()))
        .unwrap();
    eventually("web-1 is quarantined", || {
        bed.verdict((WEB, "10.0.0.11"), (DB, "10.0.0.21"), 5432)
            .reason
            == Reason::Quarantine
    });
    let q = h.quarantines().unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].actor, "intel");
    assert!(q[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("resolved c2.evil.test"));
    // An alert feed does not block the answer.
    assert_eq!(
        bed.verdict((DB, "10.0.0.21"), (ADMIN, "203.0.113.9"), 443)
            .reason,
        Reason::Default
    );
}

#[test]
fn an_added_entry_is_hunted_in_the_records_and_names_who_resolved_it_before() {
    let (bed, store) = super::records::recording("intel-retro");
    let h = &bed.engine.handle;
    let dir = bed._dir.0.clone();
    // web-1 resolves c2.evil.test while nothing lists it.
    bed.events
        .send(dns_event(super::records::c2_answer()))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let found = || {
        crate::records::RecordsReader::open(&store)
            .and_then(|r| {
                let now = crate::time::Timestamp::now().millis();
                r.traceback(&"evil.test".parse().unwrap(), now - 3_600_000, now)
            })
            .is_ok_and(|t| t.total == 1)
    };
    while !found() {
        assert!(Instant::now() < until, "the DNS record is written");
        std::thread::sleep(Duration::from_millis(50));
    }

    let source = feed(&dir, "c2", FeedAction::Alert, "other.test\n");
    let path = source.path.clone();
    let loader = Loader::new(vec![source.clone()], &dir, vec![]).unwrap();
    let plan = crate::engine::HuntPlan {
        records: store.clone(),
        window_ms: 86_400_000,
    };
    let _watch =
        IntelWatch::start(loader, h.clone(), Duration::from_millis(20), Some(plan)).unwrap();
    assert!(
        h.intel().hunt.is_none(),
        "a feed's first reading is its baseline"
    );
    std::fs::write(dir.join("c2.new"), "other.test\nevil.test\n").unwrap();
    std::fs::rename(dir.join("c2.new"), &path).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while h.intel().hunt.is_none() {
        assert!(Instant::now() < until, "the added entry is hunted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = h.intel().hunt.clone().unwrap();
    assert_eq!(
        (report.added, report.searched, report.alerts),
        (1, 1, 1),
        "{report:?}"
    );
    assert!(report.error.is_none());
    let a = alerts(&bed)
        .into_iter()
        .find(|a| a.kind == crate::alerts::Kind::IntelRetro)
        .expect("a retro-hunt alert");
    assert_eq!(a.mac, WEB);
    assert_eq!(a.indicator, "evil.test");
    assert!(
        a.summary.starts_with("web-1 resolved c2.evil.test at "),
        "{}",
        a.summary
    );
    assert!(
        a.summary.ends_with("before feed c2 listed evil.test"),
        "{}",
        a.summary
    );
    assert_eq!(a.evidence["resolutions"][0]["qname"], "c2.evil.test");

    // After a restart, the last good copy is the baseline: nothing is new.
    let again = Loader::new(vec![source], &dir, vec![]).unwrap().load();
    assert!(again.added.is_empty(), "{:?}", again.added);
}

#[test]
fn a_flow_cut_by_intel_is_recorded_with_the_feed_and_entry_of_the_reading_that_cut_it() {
    let (bed, store) = super::records::recording("intel-records");
    let h = &bed.engine.handle;
    let dir = bed._dir.0.clone();
    let source = feed(&dir, "c2", FeedAction::Block, "10.0.0.21\nevil.test\n");
    let mut loader = Loader::new(vec![source], &dir, vec![]).unwrap();
    let first = h.set_intel(loader.load()).unwrap();
    // Read again with an entry before the others: every id moves.
    std::fs::write(dir.join("c2.txt"), "192.0.2.9\n10.0.0.21\nevil.test\n").unwrap();
    let second = h.set_intel(loader.load()).unwrap();
    let cut = |id, generation, dst_ip| {
        let verdict = Verdict {
            action: Action::Deny,
            reason: Reason::Intel(id),
            mode: Mode::Enforce,
            would_deny: false,
        };
        match super::records::flow_end(WEB, "10.0.0.11", DB, dst_ip, verdict, 0) {
            Event::FlowEnd(mut r, why) => {
                r.generation = generation;
                Event::FlowEnd(r, why)
            }
            other => other,
        }
    };
    for e in [
        // Cut under the first reading, recorded under the second.
        cut(0, first, "10.0.0.21"),
        // An address a listed domain was answered with.
        cut(1, first, "198.51.100.7"),
        cut(0, second, "192.0.2.9"),
        cut(1, second + 3, "10.0.0.21"),
        // A verdict older than any reading kept; an id no reading holds.
        cut(0, 1, "10.0.0.22"),
        cut(77, second, "198.51.100.8"),
    ] {
        bed.events.send(e).unwrap();
    }
    eventually("every flow end is counted", || h.status().events == 6);
    h.stop();
    bed.engine.thread.join().unwrap();
    let filter = FlowFilter {
        reason: Some("intel".parse().unwrap()),
        ..FlowFilter::default()
    };
    let page = RecordsReader::open(&store).unwrap().flows(&filter).unwrap();
    let mut named: Vec<_> = page
        .flows
        .iter()
        .map(|f| (f.dst.ip.to_string(), f.reason.as_str(), f.intel.as_deref()))
        .collect();
    named.sort();
    let expected: [(String, &str, Option<&str>); 6] = [
        ("10.0.0.21".into(), "intel", Some("c2 10.0.0.21")),
        ("10.0.0.21".into(), "intel", Some("c2 10.0.0.21")),
        ("10.0.0.22".into(), "intel", None),
        ("192.0.2.9".into(), "intel", Some("c2 192.0.2.9")),
        ("198.51.100.7".into(), "intel", Some("c2 evil.test")),
        ("198.51.100.8".into(), "intel", None),
    ];
    assert_eq!(named, expected);
}
