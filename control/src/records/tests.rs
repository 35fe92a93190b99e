//! The records store's tests: the writer, the bounded queue, retention, foreign files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]
use super::*;
use crate::testutil::TempDir;
use dataplane::event::EndReason;
use dataplane::policy::{Action, Verdict};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn ident(last: u8, name: &str) -> Identity {
    Identity {
        mac: MacAddr([2, 0, 0, 0, 1, last]),
        name: name.into(),
        labels: [("app".to_string(), "web".to_string())].into(),
        groups: vec!["web".into()],
    }
}

fn flow(i: u32, last_ms: i64) -> StoredFlow {
    let (src, dst) = (
        ident(1, "web-1"),
        Identity::unknown(MacAddr([2, 0, 0, 0, 2, 1])),
    );
    StoredFlow {
        flow: FlowRecord {
            src_mac: src.mac,
            dst_mac: dst.mac,
            src_ip: "10.0.0.11".parse().unwrap(),
            dst_ip: "2001:db8::21".parse().unwrap(),
            proto: 6,
            src_port: 40000 + (i % 20000) as u16,
            dst_port: 5432,
            vlan: [20, 0],
            verdict: Verdict {
                action: Action::Deny,
                reason: Reason::Rule(50),
                mode: Mode::Audit,
                would_deny: true,
            },
            generation: 3,
            state: FlowState::Established,
            first_seen: 1,
            last_seen: 2,
            packets: [10, 8],
            bytes: [1200, u64::MAX],
            tcp_flags: 0,
            orig_port: dataplane::io::Port::A,
        },
        first_ms: last_ms - 1000,
        last_ms,
        src: src.into(),
        dst: dst.into(),
        kind: RecordKind::Ended(EndReason::Idle),
        opens: true,
        intel: None,
    }
}

/// Wait until the writer has written `n` records (or 10 s passed).
fn written(w: &RecordsWriter, n: u64) -> u64 {
    let until = Instant::now() + Duration::from_secs(10);
    let c = w.counters();
    while c.written.load(Ordering::Relaxed) < n && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    c.written.load(Ordering::Relaxed)
}

#[test]
fn a_batch_is_stored_with_its_identities_once() {
    let dir = TempDir::new("records-store");
    let path = dir.0.join("records.db");
    let w = RecordsWriter::start(&path, RecordsConfig::default()).unwrap();
    let now = super::writer_now_ms();
    assert!(w.submit((0..500).map(|i| flow(i, now)).collect()));
    assert!(w.submit((500..1000).map(|i| flow(i, now)).collect()));
    assert_eq!(written(&w, 1000), 1000);
    w.finish();

    let db = rusqlite::Connection::open(&path).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM flows"), 1000);
    assert_eq!(
        count("SELECT count(*) FROM identities"),
        2,
        "one row per identity"
    );
    let (reason, rule, mode, state, kind, allowed, bytes_rev, src_ip): (
        String,
        i64,
        String,
        String,
        String,
        bool,
        i64,
        Vec<u8>,
    ) = db
        .query_row(
            "SELECT reason, rule_id, mode, state, kind, allowed, bytes_rev, src_ip FROM flows LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(
        (
            reason.as_str(),
            rule,
            mode.as_str(),
            state.as_str(),
            kind.as_str()
        ),
        ("rule", 50, "audit", "established", "idle")
    );
    assert!(!allowed);
    assert_eq!(bytes_rev, i64::MAX, "a counter past i64 saturates");
    assert_eq!(src_ip[10..], [0xff, 0xff, 10, 0, 0, 11], "IPv4 mapped");
    let (name, labels): (String, String) = db
        .query_row(
            "SELECT i.name, i.labels_json FROM flows f JOIN identities i ON i.id = f.src_id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (name.as_str(), labels.as_str()),
        ("web-1", r#"{"app":"web"}"#)
    );
}

/// The checkpoint thread copies committed records into the database file
/// while the writer runs: the file alone (no log beside it) has them long
/// before the writer's own checkpoint, 16,384 pages away, would run.
#[test]
fn committed_records_reach_the_database_file_while_the_writer_runs() {
    let dir = TempDir::new("records-ckpt");
    let path = dir.0.join("records.db");
    let w = RecordsWriter::start(&path, RecordsConfig::default()).unwrap();
    let now = super::writer_now_ms();
    for b in 0..4 {
        assert!(w.submit((b * 250..(b + 1) * 250).map(|i| flow(i, now)).collect()));
    }
    assert_eq!(written(&w, 1000), 1000);
    let copy = dir.0.join("copy.db");
    let until = Instant::now() + Duration::from_secs(10);
    let in_file = loop {
        std::fs::copy(&path, &copy).unwrap();
        let n: i64 = rusqlite::Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM flows", [], |r| r.get(0))
            .unwrap_or(0);
        if n == 1000 || Instant::now() > until {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(in_file, 1000, "checkpointed without the writer");
    assert!(
        path.with_extension("db-wal").exists(),
        "the writer still runs"
    );
    w.finish();
}

#[test]
fn a_writer_that_cannot_keep_up_loses_batches_counted_never_queued_without_bound() {
    let dir = TempDir::new("records-full");
    let path = dir.0.join("records.db");
    let cfg = RecordsConfig {
        queue_batches: 2,
        ..RecordsConfig::default()
    };
    let w = RecordsWriter::start(&path, cfg).unwrap();
    // Another connection holds the write lock: the writer waits on it.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let now = super::writer_now_ms();
    let accepted = (0..10)
        .filter(|_| w.submit((0..100).map(|i| flow(i, now)).collect()))
        .count();
    assert!(
        accepted <= 3,
        "the queue holds 2 batches (+1 in the writer's hands): {accepted}"
    );
    assert_eq!(
        w.counters().lost.load(Ordering::Relaxed),
        (10 - accepted as u64) * 100
    );
    blocker.execute_batch("COMMIT").unwrap();
    assert_eq!(written(&w, accepted as u64 * 100), accepted as u64 * 100);
}

#[test]
fn retention_deletes_records_past_the_age_oldest_first() {
    let dir = TempDir::new("records-retention");
    let path = dir.0.join("records.db");
    let cfg = RecordsConfig {
        max_age: Duration::from_secs(3600),
        retention_every: Duration::from_millis(20),
        ..RecordsConfig::default()
    };
    let w = RecordsWriter::start(&path, cfg).unwrap();
    let now = super::writer_now_ms();
    let old: Vec<StoredFlow> = (0..50).map(|i| flow(i, now - 7_200_000)).collect();
    let new: Vec<StoredFlow> = (0..30).map(|i| flow(i, now - 60_000)).collect();
    assert!(w.submit(old) && w.submit(new));
    assert_eq!(written(&w, 80), 80);
    let until = Instant::now() + Duration::from_secs(5);
    while w.counters().expired.load(Ordering::Relaxed) < 50 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(w.counters().expired.load(Ordering::Relaxed), 50);
    w.finish();
    let db = rusqlite::Connection::open(&path).unwrap();
    let left: i64 = db
        .query_row("SELECT count(*) FROM flows", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 30, "the recent ones stay");
}

#[test]
fn a_newer_store_is_refused_and_a_foreign_file_is_an_error() {
    let dir = TempDir::new("records-foreign");
    let newer = dir.0.join("newer.db");
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let e = RecordsWriter::start(&newer, RecordsConfig::default()).unwrap_err();
    assert!(e.to_string().contains("newer"), "{e}");

    let foreign = dir.0.join("foreign.db");
    std::fs::write(
        &foreign,
        b"this is not a database, it is a grocery list\n".repeat(100),
    )
    .unwrap();
    let e = RecordsWriter::start(&foreign, RecordsConfig::default()).unwrap_err();
    assert!(e.to_string().contains("foreign.db"), "{e}");
}

#[test]
fn retention_keeps_the_store_within_its_size_oldest_first() {
    let dir = TempDir::new("records-size");
    let path = dir.0.join("records.db");
    let cfg = RecordsConfig {
        max_bytes: 256 << 10,
        retention_every: Duration::from_millis(20),
        ..RecordsConfig::default()
    };
    let w = RecordsWriter::start(&path, cfg).unwrap();
    let now = super::writer_now_ms();
    for b in 0..20 {
        let batch = (0..500)
            .map(|i| flow(b * 500 + i, now - 100_000 + i64::from(b * 500 + i)))
            .collect();
        assert!(w.try_submit(batch).is_ok());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(written(&w, 10_000), 10_000);
    let c = w.counters();
    let until = Instant::now() + Duration::from_secs(10);
    while (c.bytes.load(Ordering::Relaxed) == 0 || c.bytes.load(Ordering::Relaxed) > 256 << 10)
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let bytes = c.bytes.load(Ordering::Relaxed);
    assert!(bytes > 0 && bytes <= 256 << 10, "{bytes} bytes in use");
    // Counted once the writer has stopped: a pass may still run until then.
    w.finish();
    let expired = c.expired.load(Ordering::Relaxed);
    assert!(expired > 1000, "{expired} deleted");
    let db = rusqlite::Connection::open(&path).unwrap();
    let (left, oldest): (i64, i64) = db
        .query_row("SELECT count(*), min(last_ms) FROM flows", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(left as u64 + expired, 10_000);
    assert_eq!(
        oldest,
        now - 100_000 + expired as i64,
        "exactly the oldest went"
    );
}

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct Tmpfs(TempDir);

impl Tmpfs {
    fn mount(name: &str, size: &str) -> Tmpfs {
        let dir = TempDir::new(name);
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.0 .0)
            .status();
    }
}

/// Fills the filesystem of `dir` until `leave` bytes are free (about).
fn fill(dir: &std::path::Path, leave: u64) -> std::path::PathBuf {
    let filler = dir.join("filler");
    let free = fs4::available_space(dir).unwrap();
    let size = free.saturating_sub(leave);
    std::fs::write(&filler, vec![0u8; size as usize]).unwrap();
    filler
}

#[test]
fn a_full_filesystem_pauses_the_records_and_they_resume_when_there_is_room() {
    if !dataplane::hostenv::root_with("the full-disk records test", &["mount", "umount"]) {
        return;
    }
    let fs = Tmpfs::mount("records-tiny", "4m");
    let path = fs.0 .0.join("records.db");
    let cfg = RecordsConfig {
        reserve_bytes: 1 << 20,
        retention_every: Duration::from_millis(20),
        ..RecordsConfig::default()
    };
    let w = RecordsWriter::start(&path, cfg).unwrap();
    let c = w.counters();
    let now = super::writer_now_ms();
    assert!(w.submit((0..100).map(|i| flow(i, now)).collect()));
    assert_eq!(written(&w, 100), 100);
    assert!(!c.paused.load(Ordering::Relaxed));

    // Below the reserve: paused, batches dropped and counted, nothing fails.
    let filler = fill(&fs.0 .0, 512 << 10);
    for b in 0..5 {
        assert!(w.submit((0..100).map(|i| flow(b * 100 + i, now)).collect()));
    }
    let until = Instant::now() + Duration::from_secs(10);
    while c.lost.load(Ordering::Relaxed) < 500 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(c.lost.load(Ordering::Relaxed), 500);
    assert!(c.paused.load(Ordering::Relaxed), "paused, and says so");
    assert_eq!(c.written.load(Ordering::Relaxed), 100);

    // Room again: the next batch is written.
    std::fs::remove_file(&filler).unwrap();
    assert!(w.submit((0..100).map(|i| flow(i, now)).collect()));
    assert_eq!(written(&w, 200), 200);
    assert!(!c.paused.load(Ordering::Relaxed));

    // With no reserve the disk itself fills: SQLite's "disk full" pauses too.
    w.finish();
    let cfg = RecordsConfig {
        reserve_bytes: 0,
        ..RecordsConfig::default()
    };
    let w = RecordsWriter::start(&path, cfg).unwrap();
    let c = w.counters();
    let _filler = fill(&fs.0 .0, 64 << 10);
    for b in 0..20 {
        let batch: Vec<StoredFlow> = (0..500).map(|i| flow(b * 500 + i, now)).collect();
        let mut batch = batch;
        while let Err(back) = w.try_submit(batch) {
            batch = back;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let until = Instant::now() + Duration::from_secs(10);
    while c.written.load(Ordering::Relaxed) + c.lost.load(Ordering::Relaxed) < 10_000
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        c.errors.load(Ordering::Relaxed) > 0,
        "a write failed: disk full"
    );
    assert!(
        c.lost.load(Ordering::Relaxed) > 0,
        "its records are counted lost"
    );
    assert!(c.paused.load(Ordering::Relaxed), "and the records paused");
    w.finish();
    // What was written stays readable.
    let db = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = db
        .query_row("SELECT count(*) FROM flows", [], |r| r.get(0))
        .unwrap();
    assert!(n >= 200, "{n}");
    // The rollups count every record that was written, failed writes or
    // not: per hour, the flows the raw records hold.
    let sums = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        sums("SELECT sum(flows) FROM hourly"),
        sums("SELECT sum(opens) FROM flows"),
    );
}
