//! Observed traffic as the classifier sees it: a window's records summed by
//! what a policy decides on (each end's MAC, and its address when no
//! workload has the MAC; protocol; destination port) and by the verdict they
//! got, for the dry run and the rule proposals (`crate::learn`), which
//! classify each key again with another policy.
//!
//! Whole UTC days are read from the daily rollups, the other whole hours
//! from the hourly ones, the ragged ends of the window from the raw
//! records, as the group graph reads its rollups ([`Split::with_days`]). The
//! rollups keep no address for an end that is a workload, so neither does
//! this, from either source: a workload is classified by its MAC (a group
//! that takes workloads by address is not seen here; docs/decisions.md,
//! "Dry run").
//!
//! The rows are summed here rather than with SQL's `GROUP BY`: thirty days
//! are millions of hourly rows with few distinct keys, and a hash map in
//! one pass over them is several times faster than SQLite's sort.

use super::graph::Split;
use super::group_rollup::DAY_MS;
use super::nodes::ip_of;
use super::rollup::HOUR_MS;
use super::{count_at, mac_of, RecordsError, RecordsReader};
use dataplane::wire::MacAddr;
use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Keys kept at most: a window past this is cut, and says so.
pub const MAX_OBSERVED: usize = 5_000_000;

/// One end of observed traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObservedEnd {
    pub mac: MacAddr,
    /// The workload's name; empty for a MAC no workload had.
    pub name: Arc<str>,
    /// The address, for an end no workload had.
    pub ip: Option<IpAddr>,
}

/// Traffic of one key in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub src: ObservedEnd,
    pub dst: ObservedEnd,
    pub proto: u8,
    /// The responder's port; 0 for protocols without ports.
    pub port: u16,
    /// The verdict the records hold.
    pub allowed: bool,
    pub would_deny: bool,
    /// Flows opened, packets and bytes both ways, first and last seen (ms).
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// A window's observed traffic.
#[derive(Debug, Clone, Default)]
pub struct ObservedTraffic {
    pub keys: Vec<Observed>,
    /// More keys than [`MAX_OBSERVED`]: the rest were left out.
    pub truncated: bool,
    /// Rows read (rollup rows and records).
    pub rows: u64,
}

/// Hourly rollups of the hours in `[?1, ?2)`.
const FROM_HOURLY: &str = "
    SELECT src_id, dst_id, src_ip, dst_ip, proto, port, allowed, would_deny,
           flows, pkts_fwd + pkts_rev, bytes_fwd + bytes_rev, first_ms, last_ms
    FROM hourly WHERE hour_ms >= ?1 AND hour_ms < ?2";

/// Daily rollups of the days in `[?1, ?2)`, in the same columns.
const FROM_DAILY: &str = "
    SELECT src_id, dst_id, src_ip, dst_ip, proto, port, allowed, would_deny,
           flows, packets, bytes, first_ms, last_ms
    FROM daily WHERE day_ms >= ?1 AND day_ms < ?2";

/// Records ending in `[?1, ?2]`, in the same columns (the addresses blanked
/// in Rust for workload ends, as the rollups do).
const FROM_RECORDS: &str = "
    SELECT src_id, dst_id, src_ip, dst_ip, proto,
           CASE WHEN proto IN (6, 17, 132) THEN dst_port ELSE 0 END, allowed, would_deny,
           opens, pkts_fwd + pkts_rev, bytes_fwd + bytes_rev, first_ms, last_ms
    FROM flows WHERE last_ms BETWEEN ?1 AND ?2";

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: i64,
    dst: i64,
    /// 16 bytes, or all zero for a workload end (`ip_set` tells which).
    src_ip: [u8; 16],
    dst_ip: [u8; 16],
    ip_set: (bool, bool),
    proto: u8,
    port: u16,
    allowed: bool,
    would_deny: bool,
}

#[derive(Clone, Copy)]
struct Sum {
    flows: u64,
    packets: u64,
    bytes: u64,
    first_ms: i64,
    last_ms: i64,
}

impl Sum {
    fn add(&mut self, o: &Sum) {
        self.flows = self.flows.saturating_add(o.flows);
        self.packets = self.packets.saturating_add(o.packets);
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.first_ms = self.first_ms.min(o.first_ms);
        self.last_ms = self.last_ms.max(o.last_ms);
    }
}

/// An identity row: its MAC and name.
type Ident = (MacAddr, Arc<str>);

#[derive(Default)]
struct Summer {
    sums: HashMap<Key, Sum, ahash::RandomState>,
    idents: HashMap<i64, Ident, ahash::RandomState>,
    truncated: bool,
    rows: u64,
}

impl Summer {
    fn ident(&mut self, conn: &Connection, id: i64) -> Result<Ident, rusqlite::Error> {
        if let Some(i) = self.idents.get(&id) {
            return Ok(i.clone());
        }
        let row: Option<(i64, String)> = conn
            .prepare_cached("SELECT mac, name FROM identities WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        // An identity a damaged store lacks: MAC 0, no name.
        let (mac, name) = row.unwrap_or_default();
        let ident = (mac_of(mac), Arc::<str>::from(name));
        self.idents.insert(id, ident.clone());
        Ok(ident)
    }

    /// Adds the rows of `sql` for `(a, z)`; `blank` clears a named end's
    /// address (raw records keep it, the rollups already do not).
    fn add(
        &mut self,
        conn: &Connection,
        sql: &str,
        (a, z): (i64, i64),
        blank: bool,
    ) -> Result<(), rusqlite::Error> {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query([a, z])?;
        while let Some(r) = rows.next()? {
            self.rows += 1;
            let (src, dst): (i64, i64) = (r.get(0)?, r.get(1)?);
            let ip = |at: usize| -> Result<Option<[u8; 16]>, rusqlite::Error> {
                let b = r.get_ref(at)?.as_blob().unwrap_or(&[]);
                Ok(<[u8; 16]>::try_from(b).ok())
            };
            let (mut src_ip, mut dst_ip) = (ip(2)?, ip(3)?);
            if blank {
                if !self.ident(conn, src)?.1.is_empty() {
                    src_ip = None;
                }
                if !self.ident(conn, dst)?.1.is_empty() {
                    dst_ip = None;
                }
            }
            let key = Key {
                src,
                dst,
                src_ip: src_ip.unwrap_or_default(),
                dst_ip: dst_ip.unwrap_or_default(),
                ip_set: (src_ip.is_some(), dst_ip.is_some()),
                proto: u8::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                port: u16::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                allowed: r.get(6)?,
                would_deny: r.get(7)?,
            };
            let sum = Sum {
                flows: count_at(r, 8)?,
                packets: count_at(r, 9)?,
                bytes: count_at(r, 10)?,
                first_ms: r.get(11)?,
                last_ms: r.get(12)?,
            };
            if let Some(s) = self.sums.get_mut(&key) {
                s.add(&sum);
            } else if self.sums.len() < MAX_OBSERVED {
                self.sums.insert(key, sum);
            } else {
                self.truncated = true;
            }
        }
        Ok(())
    }

    /// Adds another summer's sums (of other rows).
    fn merge(&mut self, other: Summer) {
        self.rows += other.rows;
        self.truncated |= other.truncated;
        for (key, sum) in other.sums {
            if let Some(s) = self.sums.get_mut(&key) {
                s.add(&sum);
            } else if self.sums.len() < MAX_OBSERVED {
                self.sums.insert(key, sum);
            } else {
                self.truncated = true;
            }
        }
    }

    fn finish(mut self, conn: &Connection) -> Result<ObservedTraffic, rusqlite::Error> {
        let sums = std::mem::take(&mut self.sums);
        let mut keys = Vec::with_capacity(sums.len());
        for (k, s) in sums {
            let end =
                |me: &mut Summer, id, ip: [u8; 16], set: bool| -> Result<_, rusqlite::Error> {
                    let (mac, name) = me.ident(conn, id)?;
                    Ok(ObservedEnd {
                        mac,
                        name,
                        ip: set.then(|| ip_of(&ip)),
                    })
                };
            keys.push(Observed {
                src: end(&mut self, k.src, k.src_ip, k.ip_set.0)?,
                dst: end(&mut self, k.dst, k.dst_ip, k.ip_set.1)?,
                proto: k.proto,
                port: k.port,
                allowed: k.allowed,
                would_deny: k.would_deny,
                flows: s.flows,
                packets: s.packets,
                bytes: s.bytes,
                first_ms: s.first_ms,
                last_ms: s.last_ms,
            });
        }
        // In key order, not the hash map's: the same window reads the same
        // way every time (the proposals' and dry run's ties and examples).
        keys.sort_unstable_by(|a, b| {
            let k = |o: &Observed| {
                (
                    o.src.mac.0,
                    o.dst.mac.0,
                    o.src.ip,
                    o.dst.ip,
                    o.proto,
                    o.port,
                    o.allowed,
                    o.would_deny,
                )
            };
            k(a).cmp(&k(b))
                .then_with(|| (&a.src.name, &a.dst.name).cmp(&(&b.src.name, &b.dst.name)))
        });
        Ok(ObservedTraffic {
            keys,
            truncated: self.truncated,
            rows: self.rows,
        })
    }
}

impl RecordsReader {
    /// The traffic of the records that ended in `[since_ms, until_ms]`, by
    /// key and recorded verdict, in key order (MACs, addresses, service).
    pub fn observed(&self, since_ms: i64, until_ms: i64) -> Result<ObservedTraffic, RecordsError> {
        self.observed_from(Split::of(since_ms, until_ms).with_days())
    }

    /// [`RecordsReader::observed`] reading where `split` says: the hours
    /// in up to [`READERS`] parts, each on a thread with a connection of
    /// its own (summing millions of rows is the cost; the parts are
    /// disjoint in time, and a past hour's rollups no longer change).
    pub(super) fn observed_from(&self, split: Split) -> Result<ObservedTraffic, RecordsError> {
        let mut parts: Vec<Part> = split
            .raw
            .iter()
            .flatten()
            .map(|&range| (FROM_RECORDS, range, true))
            .collect();
        let readers = std::thread::available_parallelism().map_or(1, |n| n.get().min(READERS));
        let ranges = split.days.iter().map(|&r| (FROM_DAILY, r, DAY_MS)).chain(
            split
                .hours
                .iter()
                .flatten()
                .map(|&r| (FROM_HOURLY, r, HOUR_MS)),
        );
        for (sql, (lo, hi), span) in ranges {
            let periods = (hi - lo) / span;
            let per = (periods + readers as i64 - 1) / (readers as i64).max(1);
            let mut at = lo;
            while at < hi {
                let end = (at + per.max(1) * span).min(hi);
                parts.push((sql, (at, end), false));
                at = end;
            }
        }
        let mut shares: Vec<Vec<Part>> = vec![Vec::new(); readers.max(1)];
        for (i, p) in parts.into_iter().enumerate() {
            if let Some(share) = shares.get_mut(i % readers.max(1)) {
                share.push(p);
            }
        }
        let mut shares = shares.into_iter().filter(|s| !s.is_empty());
        let mine = shares.next().unwrap_or_default();
        let path = self.path();
        let s = std::thread::scope(|scope| -> Result<Summer, RecordsError> {
            let others: Vec<_> = shares
                .map(|share| {
                    scope.spawn(move || -> Result<Summer, RecordsError> {
                        let reader = RecordsReader::open(path)?;
                        sum_parts(reader.conn(), &share)
                    })
                })
                .collect();
            let mut s = sum_parts(self.conn(), &mine)?;
            for t in others {
                let other = t
                    .join()
                    .map_err(|_| RecordsError::Query("a reader thread failed".into()))??;
                s.merge(other);
            }
            Ok(s)
        })?;
        Ok(s.finish(self.conn())?)
    }
}

/// Threads reading one window at most.
pub const READERS: usize = 4;

/// A query, its time range and whether named ends' addresses are blanked.
type Part = (&'static str, (i64, i64), bool);

fn sum_parts(conn: &Connection, parts: &[Part]) -> Result<Summer, RecordsError> {
    let mut s = Summer::default();
    for &(sql, range, blank) in parts {
        s.add(conn, sql, range, blank)?;
    }
    Ok(s)
}
