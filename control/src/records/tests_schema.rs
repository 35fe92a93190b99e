//! Stores of the schemas that shipped before, migrated when opened: made by
//! writing the incident of `tests_forensics` with this bulkhead and taking
//! the tables back to the older schema by hand.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]
use super::tests_forensics::{check, incident, write, A, E};
use super::*;
use crate::testutil::TempDir;

/// The store at `path` without the destinations of the edges, as schema 9
/// had it (no `destinations` table, no triggers on `edges`), at version 9.
pub(super) fn back_to_9(path: &std::path::Path) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "DROP TRIGGER destinations_add; DROP TRIGGER destinations_trim;
         DROP TABLE destinations; PRAGMA user_version = 9;",
    )
    .unwrap();
    db
}

/// The store at `path` with its DNS names as text again, as schema 8 had
/// them (`pdns` and `dns_names` keyed by names, no `names` table), at
/// version 8; the connection has `bh_reversed`.
pub(super) fn back_to_text_names(path: &std::path::Path) -> rusqlite::Connection {
    let db = back_to_9(path);
    names::register(&db).unwrap();
    db.execute_batch(
        "CREATE TABLE pdns_8 (rname TEXT NOT NULL, client_mac INTEGER NOT NULL,
            answer TEXT NOT NULL, qname TEXT NOT NULL, rcode INTEGER NOT NULL,
            first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, count INTEGER NOT NULL,
            ttl INTEGER NOT NULL, PRIMARY KEY (rname, client_mac, answer, qname, rcode)) WITHOUT ROWID;
         INSERT INTO pdns_8 SELECT n.rname, p.client_mac, p.answer, bh_reversed(q.rname), p.rcode,
            p.first_ms, p.last_ms, p.count, p.ttl
            FROM pdns p JOIN names n ON n.id = p.name_id JOIN names q ON q.id = p.qname_id;
         DROP TABLE pdns; ALTER TABLE pdns_8 RENAME TO pdns;
         CREATE INDEX pdns_answer ON pdns (answer);
         CREATE TABLE dns_names_8 (qname TEXT NOT NULL, time_ms INTEGER NOT NULL,
            id INTEGER NOT NULL, client_mac INTEGER NOT NULL,
            PRIMARY KEY (qname, time_ms, id)) WITHOUT ROWID;
         INSERT INTO dns_names_8 SELECT bh_reversed(n.rname), d.time_ms, d.id, d.client_mac
            FROM dns_names d JOIN names n ON n.id = d.name_id;
         DROP TABLE dns_names; ALTER TABLE dns_names_8 RENAME TO dns_names;
         DROP TABLE names; PRAGMA user_version = 8;",
    )
    .unwrap();
    db
}

#[test]
fn a_store_of_schema_8_gets_its_names_as_ids() {
    let dir = TempDir::new("records-forensics-v8");
    let path = dir.0.join("records.db");
    write(&path, incident());
    let count = |db: &rusqlite::Connection, t: &str| -> i64 {
        db.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .unwrap()
    };
    let db = back_to_text_names(&path);
    let (pdns, asked) = (count(&db, "pdns"), count(&db, "dns_names"));
    assert!(pdns > 0 && asked > 0);
    drop(db);
    let reader = RecordsReader::open(&path).unwrap();
    assert_eq!(count(reader.conn(), "pdns"), pdns);
    assert_eq!(count(reader.conn(), "dns_names"), asked);
    // Each name once, and every row's names among them.
    let orphans: i64 = reader
        .conn()
        .query_row(
            "SELECT count(*) FROM pdns WHERE name_id NOT IN (SELECT id FROM names)
                OR qname_id NOT IN (SELECT id FROM names)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    check(&reader);
    drop(reader);
    // A writer on the migrated store adds to the same names.
    let names_before = {
        let db = rusqlite::Connection::open(&path).unwrap();
        count(&db, "names")
    };
    write(&path, incident());
    let db = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(count(&db, "names"), names_before, "no name made twice");
}

#[test]
fn a_store_of_schema_4_gets_its_responses_by_name() {
    let dir = TempDir::new("records-forensics-v4");
    let path = dir.0.join("records.db");
    write(&path, incident());
    // Back to schema 4 as it first shipped: an index by name, no table.
    let db = back_to_text_names(&path);
    db.execute_batch(
        "DROP TABLE dns_names; DROP INDEX edges_dst; CREATE INDEX dns_name ON dns (qname, time_ms);
         CREATE INDEX pdns_last ON pdns (last_ms); ALTER TABLE flows DROP COLUMN intel; DROP TABLE daily; PRAGMA user_version = 4;",
    )
    .unwrap();
    drop(db);
    let reader = RecordsReader::open(&path).unwrap();
    let names: i64 = reader
        .conn()
        .query_row("SELECT count(*) FROM dns_names", [], |r| r.get(0))
        .unwrap();
    assert_eq!(names, 3);
    check(&reader);
}

#[test]
fn a_store_of_schema_5_gets_its_responses_by_name_and_client() {
    let dir = TempDir::new("records-forensics-v5");
    let path = dir.0.join("records.db");
    write(&path, incident());
    // Back to schema 5: the names table without the client, no index of
    // the edges by destination.
    let db = back_to_text_names(&path);
    db.execute_batch(
        "DROP TABLE dns_names; DROP INDEX edges_dst;
         CREATE TABLE dns_names (qname TEXT NOT NULL, time_ms INTEGER NOT NULL,
            id INTEGER NOT NULL, PRIMARY KEY (qname, time_ms, id)) WITHOUT ROWID;
         INSERT INTO dns_names SELECT qname, time_ms, id FROM dns;
         ALTER TABLE flows DROP COLUMN intel; DROP TABLE daily; PRAGMA user_version = 5;",
    )
    .unwrap();
    drop(db);
    let reader = RecordsReader::open(&path).unwrap();
    let rows: Vec<(String, i64)> = {
        let mut s = reader
            .conn()
            .prepare(
                "SELECT bh_reversed(n.rname), d.client_mac FROM dns_names d
                 JOIN names n ON n.id = d.name_id ORDER BY d.time_ms",
            )
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let (a, e) = (mac_int(A), mac_int(E));
    let name = "c2.evil.test".to_string();
    assert_eq!(rows, vec![(name.clone(), e), (name.clone(), a), (name, a)]);
    check(&reader);
}

#[test]
fn names_no_row_refers_to_are_trimmed_and_made_again_when_seen_again() {
    use super::tests_forensics::resolution;
    use crate::dns::{Answer, AnswerData};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    let dir = TempDir::new("records-names-trim");
    let path = dir.0.join("records.db");
    let now = writer::now_ms();
    let day = Duration::from_secs(86_400);
    let w = RecordsWriter::start(
        &path,
        RecordsConfig {
            max_age: day,
            rollup_max_age: day,
            retention_every: Duration::from_millis(1),
            long_retention_every: Duration::from_millis(1),
            ..RecordsConfig::for_import()
        },
    )
    .unwrap();
    // Two days ago: its rows go at the first retention pass, its names at
    // the second (the responses by name go with the raw responses).
    let old = resolution(A, "10.0.0.10", now - 2 * 86_400_000, "203.0.113.9");
    // Now, of another name: the pass after it trims the first names.
    let mut other = resolution(E, "10.0.0.14", now, "198.51.100.7");
    other.response.qname = "benign.test".into();
    other.response.answers = vec![Answer {
        name: "benign.test".into(),
        ttl: 60,
        data: AnswerData::Addr("198.51.100.7".parse().unwrap()),
    }];
    // Now, the first names again: made again, not taken from the writer's
    // ids of names trimmed.
    let again = resolution(A, "10.0.0.10", now, "203.0.113.9");
    let c = w.counters();
    for (i, d) in [old, other, again].into_iter().enumerate() {
        let batch = Batch {
            dns: vec![d],
            ..Batch::default()
        };
        assert!(w.try_submit_batch(batch).is_ok());
        let until = Instant::now() + Duration::from_secs(10);
        while c.dns_written.load(Ordering::Relaxed) <= i as u64 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The pass after the batch (a later batch waits for it anyway).
        std::thread::sleep(Duration::from_millis(50));
    }
    w.finish();
    let reader = RecordsReader::open(&path).unwrap();
    let orphans: i64 = reader
        .conn()
        .query_row(
            "SELECT (SELECT count(*) FROM pdns WHERE name_id NOT IN (SELECT id FROM names)
                OR qname_id NOT IN (SELECT id FROM names))
             + (SELECT count(*) FROM dns_names WHERE name_id NOT IN (SELECT id FROM names))",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "every row's names are in the names table");
    let names: Vec<String> = {
        let mut s = reader
            .conn()
            .prepare("SELECT rname FROM names ORDER BY rname")
            .unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(names, ["test.benign", "test.cdn-evil.edge", "test.evil.c2"]);
    let t: forensics::Target = "c2.evil.test".parse().unwrap();
    let found = reader
        .traceback_page(
            &t,
            now - 60_000,
            now + 60_000,
            forensics::TracebackPage {
                limit: 10,
                after: None,
            },
        )
        .unwrap();
    assert_eq!(found.total, 1);
    assert_eq!(found.workloads[0].mac, A.to_string());
}

/// The distinct destinations of the edges, and the `destinations` rows.
type Dsts = Vec<(Vec<u8>, i64)>;
fn destinations_and_edges(db: &rusqlite::Connection) -> (Dsts, Dsts) {
    let rows = |sql: &str| -> Dsts {
        let mut s = db.prepare(sql).unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    (
        rows("SELECT DISTINCT dst_ip, dst_mac FROM edges ORDER BY 1, 2"),
        rows("SELECT dst_ip, dst_mac FROM destinations ORDER BY 1, 2"),
    )
}

#[test]
fn a_store_of_schema_9_gets_the_destinations_of_its_edges_and_they_are_kept() {
    let dir = TempDir::new("records-forensics-v9");
    let path = dir.0.join("records.db");
    write(&path, incident());
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        let (edges, dsts) = destinations_and_edges(&db);
        assert!(edges.len() > 2, "{edges:?}");
        assert_eq!(dsts, edges, "written at schema 10: kept by the triggers");
    }
    drop(back_to_9(&path));
    let reader = RecordsReader::open(&path).unwrap();
    let (edges, dsts) = destinations_and_edges(reader.conn());
    assert_eq!(dsts, edges, "made by the migration");
    check(&reader);
    drop(reader);
    // The same traffic again: edges updated, none new.
    write(&path, incident());
    let db = rusqlite::Connection::open(&path).unwrap();
    let (edges, dsts) = destinations_and_edges(&db);
    assert_eq!(dsts, edges);
    // Edges deleted a source at a time (as retention deletes them): a
    // destination goes with its last edge, not before.
    loop {
        let n = db
            .execute(
                "DELETE FROM edges WHERE src_mac = (SELECT min(src_mac) FROM edges)",
                [],
            )
            .unwrap();
        let (edges, dsts) = destinations_and_edges(&db);
        assert_eq!(dsts, edges);
        if n == 0 {
            assert!(dsts.is_empty());
            break;
        }
    }
}
