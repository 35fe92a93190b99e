//! Flow records on the control thread: flow ends counted by verdict and
//! reason, and written with both ends' identities, the user rule's id and
//! wall-clock times; the last events are recorded at stop.
//!
//! Compiled only with `cfg(test)`, like its parent: its `unwrap`/`expect`
//! fail a test on a fixture the test wrote itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]

use super::*;
use crate::engine::RecordsPlan;
use crate::records::{FlowFilter, RecordsConfig, RecordsReader};
use dataplane::event::EndReason;

pub(super) fn flow_end(
    src: &str,
    src_ip: &str,
    dst: &str,
    dst_ip: &str,
    v: Verdict,
    ns: u64,
) -> Event {
    match flow_start(src, src_ip, dst, dst_ip, v) {
        Event::FlowStart(mut r) => {
            r.first_seen = ns;
            r.last_seen = ns + 1_000_000;
            Event::FlowEnd(r, EndReason::Idle)
        }
        other => other,
    }
}

/// An engine that records into `records.db` of a fresh directory `tag`.
pub(super) fn recording(tag: &str) -> (Bed, std::path::PathBuf) {
    let dir = TempDir::new(tag);
    let store = dir.0.join("records.db");
    let bed = start_with(
        dir,
        EngineConfig {
            records: Some(RecordsPlan {
                path: store.clone(),
                config: RecordsConfig::default(),
                worker_epoch: Instant::now(),
            }),
            ..EngineConfig::default()
        },
    );
    (bed, store)
}

#[test]
fn flow_ends_are_counted_and_recorded_with_identities() {
    let (bed, store) = recording("engine-records");
    let verdict = |action, reason, would_deny| Verdict {
        action,
        reason,
        mode: Mode::Enforce,
        would_deny,
    };
    let allow10 = verdict(Action::Allow, Reason::Rule(10 << 8), false);
    let deny30 = verdict(Action::Deny, Reason::Rule(30 << 8), false);
    let would = verdict(Action::Allow, Reason::Default, true);
    for (v, n) in [(allow10, 3u64), (deny30, 2), (would, 1)] {
        for i in 0..n {
            let e = flow_end(WEB, "10.0.0.11", DB, "10.0.0.21", v, i * 1_000_000_000);
            bed.events.send(e).unwrap();
        }
    }
    let h = &bed.engine.handle;
    eventually("every flow end is counted", || h.status().events == 6);
    let tally = h.status().flows_ended;
    let get = |verdict: &str, reason: &str| {
        tally
            .iter()
            .find(|(v, r, _)| *v == verdict && *r == reason)
            .map_or(0, |(_, _, n)| n)
    };
    assert_eq!(get("allow", "rule"), 3);
    assert_eq!(get("deny", "rule"), 2);
    assert_eq!(get("would-deny", "default"), 1);
    assert_eq!(tally.iter().map(|(_, _, n)| n).sum::<u64>(), 6);

    // The batch goes out within a second; stopping flushes it anyway.
    h.stop();
    bed.engine.thread.join().unwrap();
    assert_eq!(h.status().records.unwrap().written, 6);
    let page = RecordsReader::open(&store)
        .unwrap()
        .flows(&FlowFilter::default())
        .unwrap();
    assert_eq!(page.flows.len(), 6);
    let denied: Vec<_> = page.flows.iter().filter(|f| f.verdict == "deny").collect();
    assert_eq!(denied.len(), 2);
    assert_eq!(denied[0].rule, Some(30), "the user rule's id");
    assert_eq!(denied[0].src.name, "web-1");
    assert_eq!(denied[0].src.groups, ["web"]);
    assert_eq!(denied[0].dst.name, "db-1");
    assert_eq!(
        denied[0].dst.labels.get("app").map(String::as_str),
        Some("db")
    );
    // Wall clock: the worker's nanoseconds since the epoch, on today's date.
    let now_ms = i64::try_from(crate::time::Timestamp::now().0 / 1_000_000).unwrap();
    let newest = &page.flows[0].last_seen;
    let year = &newest[..4];
    assert_eq!(
        year,
        &crate::time::Timestamp::now().to_string()[..4],
        "{newest} at {now_ms}"
    );
}

#[test]
fn a_long_flow_is_recorded_in_shares_while_it_runs() {
    let (bed, store) = recording("engine-interim");
    let allow = Verdict {
        action: Action::Allow,
        reason: Reason::Rule(10 << 8),
        mode: Mode::Enforce,
        would_deny: false,
    };
    let Event::FlowEnd(base, _) = flow_end(WEB, "10.0.0.11", DB, "10.0.0.21", allow, 0) else {
        panic!("a flow end");
    };
    // Two interim reports with the counters so far, then the end.
    for (packets, bytes, at) in [([10, 8], [1000, 800], 60u64), ([25, 20], [2500, 2000], 120)] {
        let r = FlowRecord {
            packets,
            bytes,
            last_seen: at * 1_000_000_000,
            ..base
        };
        bed.events.send(Event::FlowActive(r)).unwrap();
    }
    let end = FlowRecord {
        packets: [30, 21],
        bytes: [3000, 2100],
        last_seen: 150_000_000_000,
        ..base
    };
    bed.events
        .send(Event::FlowEnd(end, EndReason::Idle))
        .unwrap();
    let h = &bed.engine.handle;
    eventually("the three events are read", || h.status().events == 3);
    h.stop();
    bed.engine.thread.join().unwrap();
    let reader = RecordsReader::open(&store).unwrap();
    let page = reader.flows(&FlowFilter::default()).unwrap();
    let shares: Vec<(&str, [u64; 2], [u64; 2])> = page
        .flows
        .iter()
        .rev()
        .map(|f| (f.end.as_str(), f.packets, f.bytes))
        .collect();
    assert_eq!(
        shares,
        vec![
            ("interim", [10, 8], [1000, 800]),
            ("interim", [15, 12], [1500, 1200]),
            ("idle", [5, 1], [500, 100]),
        ]
    );
    assert!(page
        .flows
        .iter()
        .all(|f| f.first_seen == page.flows[0].first_seen));
    // One flow in the graph, with all its traffic.
    let g = reader
        .graph(&crate::records::GraphQuery {
            level: crate::records::Level::Workload,
            since_ms: 0,
            until_ms: i64::MAX / 2,
        })
        .unwrap();
    assert_eq!(g.edges.len(), 1);
    assert_eq!(
        (g.edges[0].flows, g.edges[0].packets, g.edges[0].bytes),
        (1, 51, 5100)
    );
}

/// "c2.evil.test" A 203.0.113.9, as a server sends it.
pub(super) fn c2_answer() -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    for label in ["c2", "evil", "test"] {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 9]);
    m
}

#[test]
fn dns_responses_and_arp_are_recorded_for_traceback() {
    let (bed, store) = recording("engine-records-dns");
    let web: MacAddr = WEB.parse().unwrap();
    let dns = super::intel::dns_event;
    bed.events.send(dns(c2_answer())).unwrap();
    bed.events.send(dns(vec![0xff; 5])).unwrap();
    bed.events
        .send(Event::Arp(ArpSeen {
            time: 1_000_000_000,
            mac: web,
            ip: "10.0.0.11".parse().unwrap(),
            vlan: [0, 0],
        }))
        .unwrap();
    let h = &bed.engine.handle;
    eventually("every event is taken", || h.status().events == 3);
    h.stop();
    bed.engine.thread.join().unwrap();
    let r = h.status().records.unwrap();
    assert_eq!(r.dns_written, 1);
    assert_eq!(r.dns_decoder.responses, 1);
    assert_eq!(r.dns_decoder.malformed, 1);

    let reader = RecordsReader::open(&store).unwrap();
    let now = crate::time::Timestamp::now().0 as i64 / 1_000_000;
    let tb = reader
        .traceback(&"evil.test".parse().unwrap(), now - 3_600_000, now + 60_000)
        .unwrap();
    assert_eq!(tb.workloads.len(), 1);
    assert_eq!(tb.workloads[0].mac, WEB);
    assert_eq!(
        tb.workloads[0].identity_then.as_ref().unwrap().name,
        "web-1"
    );
    assert_eq!(tb.answers, ["203.0.113.9"]);
    let held = reader
        .addresses(
            "10.0.0.11".parse().unwrap(),
            None,
            now - 3_600_000,
            now + 60_000,
        )
        .unwrap();
    assert_eq!(held.holders.len(), 1);
    assert_eq!(held.holders[0].sources, ["arp", "dns"]);
}
