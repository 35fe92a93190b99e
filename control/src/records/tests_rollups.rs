//! Hourly rollups: the graph and the rule counts read from them say exactly
//! what the raw records say; an older store gets them made when migrated;
//! they have a retention of their own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]
use super::graph::Split;
use super::group_rollup::DAY_MS;
use super::rollup::HOUR_MS;
use super::*;
use crate::testutil::TempDir;
use dataplane::event::EndReason;
use dataplane::policy::{Action, Verdict};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn ident(last: u8, name: &str, group: &str) -> Identity {
    Identity {
        mac: MacAddr([2, 0, 0, 0, 1, last]),
        name: name.into(),
        labels: [("app".to_string(), group.to_string())].into(),
        groups: if group.is_empty() {
            vec![]
        } else {
            vec![group.into()]
        },
    }
}

/// Record `i` of a varied set: three workloads and a MAC no workload has
/// (its addresses vary, so external nodes differ), services, verdicts and
/// reasons, some interim records that do not open a flow, times spread over
/// `hours` hours from `start_ms`.
fn record(i: u64, start_ms: i64, hours: i64) -> StoredFlow {
    let ends = [
        ident(1, "web-1", "web"),
        ident(2, "db-1", "db"),
        ident(3, "lonely", ""),
        Identity::unknown(MacAddr([2, 0, 0, 0, 9, 9])),
    ];
    let src = ends[(i % 4) as usize].clone();
    let dst = ends[((i / 4 + 1 + i % 4) % 4) as usize].clone();
    let (action, reason, would_deny) = match i % 5 {
        0 => (Action::Deny, Reason::Default, false),
        1 => (Action::Allow, Reason::Rule(10), false),
        2 => (Action::Allow, Reason::Rule(20), true),
        3 => (Action::Deny, Reason::Quarantine, false),
        _ => (Action::Allow, Reason::Rule(10), false),
    };
    let last_ms = start_ms + ((i * 7_919_993) % (hours * HOUR_MS) as u64) as i64;
    StoredFlow {
        flow: FlowRecord {
            src_mac: src.mac,
            dst_mac: dst.mac,
            src_ip: format!("10.0.{}.{}", i % 3, 1 + i % 2).parse().unwrap(),
            // A private and an internet address for the MAC no workload has.
            dst_ip: format!(
                "{}.{}",
                ["10.9.9", "8.8.8"][((i / 3) % 2) as usize],
                1 + i % 3
            )
            .parse()
            .unwrap(),
            proto: [6, 17, 1][(i % 3) as usize],
            src_port: 40000 + (i % 1000) as u16,
            dst_port: [443, 53, 7][(i % 3) as usize],
            vlan: [0, 0],
            verdict: Verdict {
                action,
                reason,
                mode: Mode::Enforce,
                would_deny,
            },
            generation: 1,
            state: FlowState::Established,
            first_seen: 0,
            last_seen: 0,
            packets: [i % 13, i % 7],
            bytes: [100 * (i % 13), 60 * (i % 7)],
            tcp_flags: 0,
            orig_port: dataplane::io::Port::A,
        },
        opens: i % 6 != 5,
        first_ms: last_ms - (i % 90) as i64 * 1000,
        last_ms,
        src: src.into(),
        dst: dst.into(),
        kind: if i % 6 == 5 {
            RecordKind::Interim
        } else {
            RecordKind::Ended(EndReason::Idle)
        },
        intel: None,
    }
}

fn write_all(path: &std::path::Path, records: Vec<StoredFlow>, cfg: RecordsConfig) {
    let n = records.len() as u64;
    let w = RecordsWriter::start(path, cfg).unwrap();
    for chunk in records.chunks(333) {
        let mut batch = chunk.to_vec();
        while let Err(back) = w.try_submit(batch) {
            batch = back;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let c = w.counters();
    let until = Instant::now() + Duration::from_secs(20);
    while c.written.load(Ordering::Relaxed) < n && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(c.written.load(Ordering::Relaxed), n);
    w.finish();
}

/// An hour's start, a few hours ago.
fn start_ms() -> i64 {
    (super::writer_now_ms() / HOUR_MS - 8) * HOUR_MS
}

#[test]
fn the_graph_and_rule_counts_from_rollups_are_those_of_the_raw_records() {
    let dir = TempDir::new("records-rollups");
    let path = dir.0.join("records.db");
    let start = start_ms();
    write_all(
        &path,
        (0..3000).map(|i| record(i, start, 6)).collect(),
        RecordsConfig::default(),
    );
    let reader = RecordsReader::open(&path).unwrap();
    // Windows with whole hours and ragged ends, one within an hour, one
    // exactly on hour boundaries, and the whole span.
    let windows = [
        (start + 1_234_567, start + 4 * HOUR_MS + 99_999),
        (start + 600_000, start + 1_800_000),
        (start + HOUR_MS, start + 3 * HOUR_MS - 1),
        (start, start + 6 * HOUR_MS),
    ];
    let mut used_rollups = 0;
    for (since_ms, until_ms) in windows {
        used_rollups += usize::from(Split::of(since_ms, until_ms).hours[0].is_some());
        for level in [Level::Workload, Level::Group] {
            let q = GraphQuery {
                level,
                since_ms,
                until_ms,
            };
            let from_rollups = reader.graph(&q).unwrap();
            let from_raw = reader
                .graph_from(&q, Split::raw(since_ms, until_ms))
                .unwrap();
            assert!(!from_raw.edges.is_empty());
            assert_eq!(
                from_rollups, from_raw,
                "window {since_ms}..{until_ms} {level:?}"
            );
        }
        let counts = reader.rule_counts(since_ms, until_ms).unwrap();
        let raw = reader
            .rule_counts_from(Split::raw(since_ms, until_ms))
            .unwrap();
        assert_eq!(counts, raw);
        assert_eq!(counts.keys().copied().collect::<Vec<_>>(), vec![10, 20]);
        // The dry run's traffic keys likewise.
        same_traffic_as_raw(&reader, since_ms, until_ms);
    }
    assert_eq!(used_rollups, 3, "three of the windows hold whole hours");
    // Flows are the records that open one; bytes are every record's share.
    let q = GraphQuery {
        level: Level::Workload,
        since_ms: start,
        until_ms: start + 6 * HOUR_MS,
    };
    let g = reader.graph(&q).unwrap();
    let all: Vec<StoredFlow> = (0..3000).map(|i| record(i, start, 6)).collect();
    let flows: u64 = g.edges.iter().map(|e| e.flows).sum();
    let bytes: u64 = g.edges.iter().map(|e| e.bytes).sum();
    assert_eq!(flows, all.iter().filter(|f| f.opens).count() as u64);
    assert_eq!(
        bytes,
        all.iter()
            .map(|f| f.flow.bytes[0] + f.flow.bytes[1])
            .sum::<u64>()
    );
}

#[test]
fn a_store_of_version_1_is_migrated_with_rollups_of_its_records() {
    let dir = TempDir::new("records-migrate");
    let path = dir.0.join("records.db");
    let start = start_ms();
    write_all(
        &path,
        (0..400).map(|i| record(i, start, 5)).collect(),
        RecordsConfig::default(),
    );
    // Back to version 1 as it shipped: no rollups, no `opens` column (every
    // record then opened its flow).
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE group_rollups; DROP TABLE nodes; DROP TABLE dns; DROP TABLE pdns;
             DROP TABLE addresses; DROP TABLE contacts; DROP TABLE edges; DROP TABLE destinations; DROP TABLE dns_names; DROP TABLE names;
             DROP TABLE hourly; DROP TABLE rollup_mark; UPDATE flows SET opens = 1;
             ALTER TABLE flows DROP COLUMN opens; ALTER TABLE flows DROP COLUMN intel; DROP TABLE daily; PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let reader = RecordsReader::open(&path).unwrap();
    let version: i64 = reader
        .conn()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::VERSION);
    let q = GraphQuery {
        level: Level::Group,
        since_ms: start,
        until_ms: start + 5 * HOUR_MS,
    };
    let g = reader.graph(&q).unwrap();
    assert_eq!(
        g,
        reader
            .graph_from(&q, Split::raw(start, start + 5 * HOUR_MS))
            .unwrap()
    );
    assert_eq!(g.edges.iter().map(|e| e.flows).sum::<u64>(), 400);
}

/// The traffic keys of a window, sorted: from the rollups (and the raw
/// records at its ends) as the dry run reads them, and from the raw records
/// alone, the same; both sources hold workload ends and addresses.
fn same_traffic_as_raw(reader: &RecordsReader, since_ms: i64, until_ms: i64) {
    let key = |o: &Observed| {
        let end = |e: &ObservedEnd| (e.mac, e.name.to_string(), e.ip);
        (
            end(&o.src),
            end(&o.dst),
            o.proto,
            o.port,
            o.allowed,
            o.would_deny,
        )
    };
    let sorted = |mut t: ObservedTraffic| {
        t.keys.sort_by_key(key);
        t.keys
    };
    let observed = sorted(reader.observed(since_ms, until_ms).unwrap());
    let raw = sorted(
        reader
            .observed_from(Split::raw(since_ms, until_ms))
            .unwrap(),
    );
    assert!(observed.iter().any(|o| o.dst.ip.is_some()));
    assert!(observed.iter().any(|o| o.dst.ip.is_none()));
    assert_eq!(observed, raw, "{since_ms}..{until_ms}");
}

/// A day's start, four days ago.
fn day_start_ms() -> i64 {
    (super::writer_now_ms() / DAY_MS - 4) * DAY_MS
}

#[test]
fn the_group_graph_of_days_from_day_rollups_is_that_of_the_raw_records() {
    let dir = TempDir::new("records-days");
    let path = dir.0.join("records.db");
    let start = day_start_ms();
    write_all(
        &path,
        (0..6000).map(|i| record(i, start, 72)).collect(),
        RecordsConfig::default(),
    );
    let reader = RecordsReader::open(&path).unwrap();
    // Whole days with ragged hours and minutes at both ends; whole days
    // only; a day and a half from midnight; all three days.
    let windows = [
        (start + 5 * HOUR_MS + 123_456, start + 60 * HOUR_MS + 7),
        (start + DAY_MS, start + 3 * DAY_MS - 1),
        (start + DAY_MS, start + 60 * HOUR_MS - 1),
        (start, start + 3 * DAY_MS),
    ];
    for (since_ms, until_ms) in windows {
        let split = Split::of(since_ms, until_ms).with_days();
        assert!(split.days.is_some(), "{since_ms}..{until_ms} holds a day");
        for level in [Level::Group, Level::Workload] {
            let q = GraphQuery {
                level,
                since_ms,
                until_ms,
            };
            let from_raw = reader
                .graph_from(&q, Split::raw(since_ms, until_ms))
                .unwrap();
            // The day rollups at group level (the hourly ones at workload
            // level) as `graph` reads them, and as the split says.
            assert_eq!(reader.graph(&q).unwrap(), from_raw, "{level:?}");
            assert_eq!(reader.graph_from(&q, split).unwrap(), from_raw, "{level:?}");
        }
        // The dry run's traffic: whole days from the daily rollups.
        same_traffic_as_raw(&reader, since_ms, until_ms);
    }
    let daily: i64 = reader
        .conn()
        .query_row("SELECT count(DISTINCT day_ms) FROM daily", [], |r| r.get(0))
        .unwrap();
    assert_eq!(daily, 3);
    // A store of version 7 gets its daily rollups from its hourly ones.
    drop(reader);
    {
        let conn = super::tests_schema::back_to_text_names(&path);
        conn.execute_batch("DROP TABLE daily; PRAGMA user_version = 7;")
            .unwrap();
    }
    let reader = RecordsReader::open(&path).unwrap();
    same_traffic_as_raw(&reader, start, start + 3 * DAY_MS);
    // A day's rows are one per day, not per hour.
    let days: Vec<i64> = {
        let mut s = reader
            .conn()
            .prepare("SELECT DISTINCT period_ms FROM group_rollups WHERE span_ms = ?1 ORDER BY 1")
            .unwrap();
        s.query_map([DAY_MS], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(days, vec![start, start + DAY_MS, start + 2 * DAY_MS]);
    // At group level an end no workload has is a network, not an address.
    let g = reader
        .graph(&GraphQuery {
            level: Level::Group,
            since_ms: start,
            until_ms: start + 3 * DAY_MS,
        })
        .unwrap();
    let externals: Vec<&str> = g
        .nodes
        .iter()
        .filter(|n| n.kind == "external")
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(externals, vec!["internet", "private"]);
    let kinds: std::collections::BTreeSet<&str> = g.nodes.iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        vec!["external", "group", "ungrouped"]
    );
}

#[test]
fn a_store_of_version_2_is_migrated_with_group_rollups_of_its_hourly_ones() {
    let dir = TempDir::new("records-migrate-2");
    let path = dir.0.join("records.db");
    let start = day_start_ms();
    write_all(
        &path,
        (0..1200).map(|i| record(i, start, 60)).collect(),
        RecordsConfig::default(),
    );
    let q = GraphQuery {
        level: Level::Group,
        since_ms: start,
        until_ms: start + 2 * DAY_MS - 1,
    };
    let before = RecordsReader::open(&path)
        .unwrap()
        .graph_from(&q, Split::raw(q.since_ms, q.until_ms))
        .unwrap();
    // Back to version 2: no group rollups. And the raw records of the
    // first day gone (retention): the migration must make the group
    // rollups from the hourly ones, which still count them.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let contacts: i64 = conn
            .query_row("SELECT sum(flows) FROM contacts", [], |r| r.get(0))
            .unwrap();
        assert!(contacts > 0);
        conn.execute_batch(
            "DROP TABLE group_rollups; DROP TABLE nodes; DROP TABLE dns; DROP TABLE pdns;
             DROP TABLE addresses; DROP TABLE contacts; DROP TABLE edges; DROP TABLE destinations; DROP TABLE dns_names; DROP TABLE names;
             ALTER TABLE rollup_mark DROP COLUMN dns_id; ALTER TABLE flows DROP COLUMN intel; DROP TABLE daily; PRAGMA user_version = 2;",
        )
        .unwrap();
        conn.execute("DELETE FROM flows WHERE last_ms < ?1", [start + DAY_MS])
            .unwrap();
    }
    let reader = RecordsReader::open(&path).unwrap();
    assert!(Split::of(q.since_ms, q.until_ms).with_days().days.is_some());
    assert_eq!(reader.graph(&q).unwrap(), before);
    // Contacts of the records left (the migration makes them; the writer's
    // catch-up would count the records after the mark only).
    let (left, contacts): (i64, i64) = reader
        .conn()
        .query_row(
            "SELECT (SELECT sum(opens) FROM flows), (SELECT sum(flows) FROM contacts)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(contacts, left);
}

#[test]
fn rollups_have_a_retention_of_their_own() {
    let dir = TempDir::new("records-rollup-age");
    let path = dir.0.join("records.db");
    let now = super::writer_now_ms();
    let old = (now / HOUR_MS - 48) * HOUR_MS;
    let recent = (now / HOUR_MS - 2) * HOUR_MS;
    let mut records: Vec<StoredFlow> = (0..50).map(|i| record(i, old, 1)).collect();
    records.extend((0..50).map(|i| record(i, recent, 1)));
    write_all(
        &path,
        records,
        RecordsConfig {
            max_age: Duration::from_secs(3 * 86_400),
            rollup_max_age: Duration::from_secs(86_400),
            retention_every: Duration::from_millis(1),
            // Every pass, not the first one only (it may come before the
            // records do).
            long_retention_every: Duration::from_millis(1),
            ..RecordsConfig::default()
        },
    );
    let reader = RecordsReader::open(&path).unwrap();
    let hours: Vec<i64> = {
        let mut s = reader
            .conn()
            .prepare("SELECT DISTINCT hour_ms FROM hourly ORDER BY 1")
            .unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(hours, vec![recent], "the rollups of 48 h ago are gone");
    let raw: i64 = reader
        .conn()
        .query_row("SELECT count(*) FROM flows", [], |r| r.get(0))
        .unwrap();
    assert_eq!(raw, 100, "the raw records keep their own (longer) age");
}

#[test]
fn a_time_past_year_9999_from_a_damaged_store_is_shown_not_a_panic() {
    assert_eq!(
        super::query::time_text(i64::MAX),
        "9999-12-31T23:59:59.999Z"
    );
    assert_eq!(super::query::time_text(-5), "1970-01-01T00:00:00.000Z");
}

#[test]
fn state_names_are_those_older_stores_hold() {
    use FlowState::*;
    for s in [
        SynSent,
        SynReceived,
        Established,
        FinWait,
        Closing,
        TimeWait,
        Closed,
        Unreplied,
        Replied,
    ] {
        assert_eq!(state_name(s), format!("{s:?}").to_ascii_lowercase());
    }
}

#[test]
fn records_a_crash_left_without_rollups_are_counted_when_the_writer_starts() {
    let dir = TempDir::new("records-crash");
    let path = dir.0.join("records.db");
    let start = start_ms();
    write_all(
        &path,
        (0..900).map(|i| record(i, start, 4)).collect(),
        RecordsConfig::default(),
    );
    // As a power cut leaves it: the records committed, their rollup rows
    // not yet (nor the mark).
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DELETE FROM hourly; DELETE FROM group_rollups; UPDATE rollup_mark SET id = 0;",
        )
        .unwrap();
    }
    let raw = |r: &RecordsReader, q: &GraphQuery| {
        r.graph_from(q, Split::raw(q.since_ms, q.until_ms)).unwrap()
    };
    let queries = [Level::Workload, Level::Group].map(|level| GraphQuery {
        level,
        since_ms: start,
        until_ms: start + 4 * HOUR_MS,
    });
    {
        let r = RecordsReader::open(&path).unwrap();
        for q in &queries {
            assert_ne!(r.graph(q).unwrap(), raw(&r, q), "the rollups lack records");
        }
    }
    RecordsWriter::start(&path, RecordsConfig::default())
        .unwrap()
        .finish();
    let r = RecordsReader::open(&path).unwrap();
    for q in &queries {
        assert_eq!(r.graph(q).unwrap(), raw(&r, q), "{:?}", q.level);
    }
}

#[test]
fn a_flows_window_holds_the_records_whose_last_packet_is_in_it() {
    let dir = TempDir::new("records-window");
    let path = dir.0.join("records.db");
    let start = start_ms();
    // Record i ends at start + i minutes and began an hour before it.
    let records: Vec<StoredFlow> = (0..120)
        .map(|i| {
            let mut f = record(i, start, 1);
            f.last_ms = start + i as i64 * 60_000;
            f.first_ms = f.last_ms - HOUR_MS;
            f
        })
        .collect();
    write_all(&path, records, RecordsConfig::default());
    let reader = RecordsReader::open(&path).unwrap();
    let page = reader
        .flows(&FlowFilter {
            since_ms: Some(start + 30 * 60_000),
            until_ms: Some(start + 40 * 60_000),
            limit: 1000,
            ..FlowFilter::default()
        })
        .unwrap();
    // Minutes 30 to 40, both ends in: 11 records, though all began before.
    assert_eq!(page.flows.len(), 11);
}

#[test]
fn the_flows_of_a_group_graphs_network_are_those_it_counts() {
    let dir = TempDir::new("records-networks");
    let path = dir.0.join("records.db");
    let start = start_ms();
    let all: Vec<StoredFlow> = (0..600).map(|i| record(i, start, 3)).collect();
    write_all(&path, all.clone(), RecordsConfig::default());
    let reader = RecordsReader::open(&path).unwrap();
    let g = reader
        .graph(&GraphQuery {
            level: Level::Group,
            since_ms: start,
            until_ms: start + 3 * HOUR_MS,
        })
        .unwrap();
    for (network, prefix) in [("internet", "8.8.8."), ("private", "10.9.9.")] {
        let to = format!("external:{network}");
        let page = reader
            .flows(&FlowFilter {
                to: Some(to.parse().unwrap()),
                limit: MAX_LIMIT,
                ..FlowFilter::default()
            })
            .unwrap();
        let expected = all
            .iter()
            .filter(|f| f.dst.name.is_empty() && f.flow.dst_ip.to_string().starts_with(prefix))
            .count();
        assert!(expected > 0);
        assert_eq!(page.flows.len(), expected, "{to}");
        // The graph's edges into that network count the same records'
        // flows.
        let node = g
            .nodes
            .iter()
            .position(|n| n.kind == "external" && n.id == network)
            .unwrap();
        let flows: u64 = g
            .edges
            .iter()
            .filter(|e| e.dst == node)
            .map(|e| e.flows)
            .sum();
        let opened = all
            .iter()
            .filter(|f| {
                f.opens && f.dst.name.is_empty() && f.flow.dst_ip.to_string().starts_with(prefix)
            })
            .count() as u64;
        // An end in two groups would count twice; these ends have one.
        assert_eq!(flows, opened, "{network}");
    }
    assert!("external:elsewhere".parse::<Side>().is_err());
}
