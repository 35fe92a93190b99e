//! Hourly rollups: per hour, both ends (an end no workload has by its
//! address), the service, the verdict and its reason, with flows opened,
//! packets, bytes, first and last seen. Long retention reads them, and the
//! graph and rule queries read them for whole hours.
//!
//! The writer adds each record's share to [`Rollups`] in the record's own
//! transaction, and writes the gathered rows with a batch's transaction
//! (that one or a later one) every [`FLUSH_EVERY`], or at stop, together
//! with the mark: the last record id counted. A transaction that fails
//! drops what was gathered ([`Rollups::failed`]) and the next batch counts
//! the records after the mark again. Upserting per
//! batch cost two thirds of the ingest rate (a batch of 1,000 records of a
//! busy appliance holds nearly as many distinct rows); rows gathered over
//! seconds repeat. A crash loses only what the mark says is missing: the
//! writer's start counts the records after it again ([`catch_up`]).
//!
//! The hourly rows written also make the group rollups and the daily
//! rollups, in the same transaction ([`super::group_rollup`],
//! [`super::day_rollup`]), so all count the same records;
//! the forensic tables ([`super::derived`]) are gathered and written the
//! same way, with a second mark for the DNS records.

use super::day_rollup::DayRows;
use super::derived::{self, Derived, FlowFacts};
use super::dns_rows::StoredDns;
use super::group_rollup::{GroupRows, NodeIds};
use super::{count_at, ip_bytes, reason_name, sat, StoredFlow};
use dataplane::policy::Action;
use rusqlite::{params, Connection};
use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Milliseconds in an hour: rollups' period.
pub(super) const HOUR_MS: i64 = 3_600_000;
/// Rows are written at least this often...
const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// ... or once this many are waiting.
pub(super) const MAX_WAITING: usize = 200_000;

/// Rollup rows waiting to be written, and the last record id they count.
#[derive(Debug)]
pub(super) struct Rollups {
    hours: HashMap<HourKey, HourAgg, ahash::RandomState>,
    last_id: i64,
    since: Instant,
    /// A write failed after shares were gathered: they were dropped, and the
    /// records after the mark must be counted again.
    stale: bool,
    /// The group-level nodes of identities, for the group rollups.
    nodes: NodeIds,
    /// Contacts, address history and passive DNS ([`super::derived`]).
    derived: Derived,
    /// The last DNS record counted.
    last_dns_id: i64,
}

impl Rollups {
    pub(super) fn new() -> Rollups {
        Rollups {
            hours: HashMap::default(),
            last_id: 0,
            since: Instant::now(),
            stale: false,
            nodes: NodeIds::default(),
            derived: Derived::default(),
            last_dns_id: 0,
        }
    }

    /// Count a record's share (the record is in the open transaction).
    pub(super) fn add(&mut self, f: &StoredFlow, src_id: i64, dst_id: i64) {
        self.hours
            .entry(HourKey::of(f, src_id, dst_id))
            .or_default()
            .add(&HourAgg::of(f));
        self.derived.add_flow(&FlowFacts::of(f));
    }

    /// Count a DNS record (in the open transaction), `id` its row id.
    pub(super) fn add_dns(&mut self, d: &StoredDns, id: i64) {
        self.derived.add_stored_dns(d, id);
        self.last_dns_id = self.last_dns_id.max(id);
    }

    /// The records up to `id`, the last written, are counted.
    pub(super) fn seen(&mut self, id: i64) {
        self.last_id = id;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.hours.is_empty() && self.derived.len() == 0
    }

    fn waiting(&self) -> usize {
        self.hours.len() + self.derived.len()
    }

    /// Time (or room) to write the waiting rows.
    pub(super) fn due(&self) -> bool {
        !self.is_empty() && (self.since.elapsed() >= FLUSH_EVERY || self.waiting() >= MAX_WAITING)
    }

    /// The write of a batch failed: what was gathered since the last flush
    /// is dropped; [`Rollups::recover`] counts it again from the records.
    /// The node ids known are dropped too: some may have been made in the
    /// transaction that failed.
    pub(super) fn failed(&mut self) {
        self.hours.clear();
        self.derived.clear();
        self.nodes = NodeIds::default();
        self.stale = true;
    }

    /// The store's names were trimmed: drop the name ids known.
    pub(super) fn forget_name_ids(&mut self) {
        self.derived.forget_name_ids();
    }

    /// After a failed write, count the records after the mark again.
    pub(super) fn recover(&mut self, conn: &mut Connection) -> Result<(), rusqlite::Error> {
        if self.stale {
            catch_up(conn)?;
            self.stale = false;
            self.since = Instant::now();
        }
        Ok(())
    }

    /// Write the waiting rows and the mark, in the caller's transaction.
    pub(super) fn flush(&mut self, tx: &Connection) -> Result<(), rusqlite::Error> {
        self.write_rows(tx)?;
        tx.execute(
            "UPDATE rollup_mark SET id = ?1, dns_id = max(dns_id, ?2)",
            [self.last_id, self.last_dns_id],
        )?;
        Ok(())
    }

    /// Write the waiting rows, hourly and group-level, without the mark.
    fn write_rows(&mut self, tx: &Connection) -> Result<(), rusqlite::Error> {
        let mut upsert = tx.prepare_cached(&format!(
            "INSERT INTO hourly ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
                ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) {MERGE}"
        ))?;
        let mut groups = GroupRows::default();
        let mut days = DayRows::default();
        for (k, a) in &self.hours {
            let ip = |ip: &Option<[u8; 16]>| ip.map_or_else(Vec::new, |b| b.to_vec());
            upsert.execute(params![
                k.hour_ms,
                k.src_id,
                k.dst_id,
                ip(&k.src_ip),
                ip(&k.dst_ip),
                k.proto,
                k.port,
                k.allowed,
                k.would_deny,
                k.reason.as_ref(),
                k.rule_id,
                a.flows,
                sat(a.packets[0]),
                sat(a.packets[1]),
                sat(a.bytes[0]),
                sat(a.bytes[1]),
                a.first_ms,
                a.last_ms,
            ])?;
            groups.add(k, a, &mut self.nodes, tx)?;
            days.add(k, a);
        }
        groups.write(tx)?;
        days.write(tx)?;
        self.derived.write(tx)?;
        self.hours.clear();
        self.since = Instant::now();
        Ok(())
    }
}

/// The columns of `hourly`, in the order [`read_hour`] reads them.
pub(super) const COLUMNS: &str = "hour_ms, src_id, dst_id, src_ip, dst_ip, proto, port, allowed, \
    would_deny, reason, rule_id, flows, pkts_fwd, pkts_rev, bytes_fwd, bytes_rev, first_ms, last_ms";

/// Adding to a row that exists.
const MERGE: &str = "ON CONFLICT (hour_ms, src_id, dst_id, src_ip, dst_ip, proto, port, allowed,
        would_deny, reason, rule_id) DO UPDATE SET
    flows = flows + excluded.flows,
    pkts_fwd = pkts_fwd + excluded.pkts_fwd,
    pkts_rev = pkts_rev + excluded.pkts_rev,
    bytes_fwd = bytes_fwd + excluded.bytes_fwd,
    bytes_rev = bytes_rev + excluded.bytes_rev,
    first_ms = min(first_ms, excluded.first_ms),
    last_ms = max(last_ms, excluded.last_ms)";

/// Count the records after the mark into the rollups, and move the mark to
/// the last record: what a writer does when it starts (after a crash, the
/// records committed without their rollups).
pub(super) fn catch_up(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut r = Rollups::new();
    {
        let mut stmt = tx.prepare(&format!(
            "SELECT {COLUMNS} FROM (
                SELECT f.last_ms / 3600000 * 3600000 AS hour_ms, f.src_id, f.dst_id,
                    CASE WHEN s.name = '' THEN f.src_ip ELSE x'' END AS src_ip,
                    CASE WHEN d.name = '' THEN f.dst_ip ELSE x'' END AS dst_ip,
                    f.proto, CASE WHEN f.proto IN (6, 17, 132) THEN f.dst_port ELSE 0 END AS port,
                    f.allowed, f.would_deny, f.reason, coalesce(f.rule_id, -1) AS rule_id,
                    sum(f.opens) AS flows, sum(f.pkts_fwd) AS pkts_fwd, sum(f.pkts_rev) AS pkts_rev,
                    sum(f.bytes_fwd) AS bytes_fwd, sum(f.bytes_rev) AS bytes_rev,
                    min(f.first_ms) AS first_ms, max(f.last_ms) AS last_ms
                FROM flows f JOIN identities s ON s.id = f.src_id JOIN identities d ON d.id = f.dst_id
                WHERE f.id > (SELECT id FROM rollup_mark)
                GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)"
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (k, a) = read_hour(row)?;
            r.hours.entry(k).or_default().add(&a);
            if r.hours.len() >= MAX_WAITING {
                r.write_rows(&tx)?;
            }
        }
    }
    let (flow_mark, dns_mark): (i64, i64) =
        tx.query_row("SELECT id, dns_id FROM rollup_mark", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    r.last_dns_id = derived::catch_up(
        &tx,
        &mut r.derived,
        (flow_mark, i64::MAX),
        dns_mark,
        MAX_WAITING,
    )?;
    r.last_id = tx.query_row("SELECT coalesce(max(id), 0) FROM flows", [], |row| {
        row.get(0)
    })?;
    r.flush(&tx)?;
    tx.commit()
}

/// The contacts and address history of the flow records a store of schema
/// 2 or 3 had counted (those after its mark are counted by [`catch_up`]).
pub(super) fn derive_counted(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    let mark: i64 = tx.query_row("SELECT id FROM rollup_mark", [], |row| row.get(0))?;
    let mut d = Derived::default();
    derived::catch_up(&tx, &mut d, (0, mark), i64::MAX, MAX_WAITING)?;
    d.write(&tx)?;
    tx.commit()
}

/// A row of [`COLUMNS`] (from `hourly`, or records summed as it keeps them).
pub(super) fn read_hour(r: &rusqlite::Row<'_>) -> Result<(HourKey, HourAgg), rusqlite::Error> {
    let ip = |at: usize| -> Result<Option<[u8; 16]>, rusqlite::Error> {
        let b: Vec<u8> = r.get(at)?;
        Ok(<[u8; 16]>::try_from(b.as_slice()).ok())
    };
    let reason: String = r.get(9)?;
    let key = HourKey {
        hour_ms: r.get(0)?,
        src_id: r.get(1)?,
        dst_id: r.get(2)?,
        src_ip: ip(3)?,
        dst_ip: ip(4)?,
        proto: u8::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
        port: u16::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
        allowed: r.get(7)?,
        would_deny: r.get(8)?,
        reason: Cow::Owned(reason),
        rule_id: r.get(10)?,
    };
    let agg = HourAgg {
        flows: r.get(11)?,
        packets: [count_at(r, 12)?, count_at(r, 13)?],
        bytes: [count_at(r, 14)?, count_at(r, 15)?],
        first_ms: r.get(16)?,
        last_ms: r.get(17)?,
    };
    Ok((key, agg))
}

/// A rollup row's key: the hour, both ends (an end no workload has by its
/// address), the service, the verdict and its reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct HourKey {
    pub hour_ms: i64,
    pub src_id: i64,
    pub dst_id: i64,
    /// The address of an end no workload has; `None` for a workload.
    pub src_ip: Option<[u8; 16]>,
    pub dst_ip: Option<[u8; 16]>,
    pub proto: u8,
    pub port: u16,
    pub allowed: bool,
    pub would_deny: bool,
    pub reason: Cow<'static, str>,
    pub rule_id: i64,
}

impl HourKey {
    fn of(f: &StoredFlow, src_id: i64, dst_id: i64) -> HourKey {
        let r = &f.flow;
        let addr = |named: bool, ip| (!named).then(|| ip_bytes(ip));
        let (reason, rule) = reason_name(r.verdict.reason);
        HourKey {
            hour_ms: f.last_ms.div_euclid(HOUR_MS) * HOUR_MS,
            src_id,
            dst_id,
            src_ip: addr(!f.src.name.is_empty(), r.src_ip),
            dst_ip: addr(!f.dst.name.is_empty(), r.dst_ip),
            proto: r.proto,
            port: if matches!(r.proto, 6 | 17 | 132) {
                r.dst_port
            } else {
                0
            },
            allowed: r.verdict.action == Action::Allow,
            would_deny: r.verdict.would_deny,
            reason: Cow::Borrowed(reason),
            rule_id: rule.map_or(-1, i64::from),
        }
    }
}

/// A rollup row's counts.
#[derive(Debug)]
pub(super) struct HourAgg {
    pub flows: i64,
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub first_ms: i64,
    pub last_ms: i64,
}

impl Default for HourAgg {
    fn default() -> Self {
        HourAgg {
            flows: 0,
            packets: [0; 2],
            bytes: [0; 2],
            first_ms: i64::MAX,
            last_ms: i64::MIN,
        }
    }
}

impl HourAgg {
    fn of(f: &StoredFlow) -> HourAgg {
        HourAgg {
            flows: i64::from(f.opens),
            packets: f.flow.packets,
            bytes: f.flow.bytes,
            first_ms: f.first_ms,
            last_ms: f.last_ms,
        }
    }

    fn add(&mut self, o: &HourAgg) {
        self.first_ms = self.first_ms.min(o.first_ms);
        self.last_ms = self.last_ms.max(o.last_ms);
        self.flows += o.flows;
        for i in 0..2 {
            self.packets[i] = self.packets[i].saturating_add(o.packets[i]);
            self.bytes[i] = self.bytes[i].saturating_add(o.bytes[i]);
        }
    }
}
