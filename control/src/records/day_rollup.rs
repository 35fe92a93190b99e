//! Daily workload-level rollups: the hourly rows by UTC day, without the
//! reason (`daily`): what a policy decides on (both ends, an end no
//! workload has by its address, the service) and the verdict, with flows,
//! packets, bytes, first and last seen. The dry run and the rule proposals
//! read a window's whole days here ([`super::observed`]): 30 days are a
//! third as many rows as their hours.
//!
//! Made from the hourly rows as the writer writes them
//! ([`super::rollup::Rollups`]), in the same transaction and under the
//! same mark, so they count what the hourly rollups count.

use super::group_rollup::DAY_MS;
use super::rollup::{HourAgg, HourKey};
use super::sat;
use rusqlite::{params, Connection};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DayKey {
    day_ms: i64,
    src_id: i64,
    dst_id: i64,
    src_ip: Option<[u8; 16]>,
    dst_ip: Option<[u8; 16]>,
    proto: u8,
    port: u16,
    allowed: bool,
    would_deny: bool,
}

#[derive(Debug)]
struct DayAgg {
    flows: i64,
    packets: u64,
    bytes: u64,
    first_ms: i64,
    last_ms: i64,
}

/// Daily rows gathered from hourly rows.
#[derive(Debug, Default)]
pub(super) struct DayRows {
    rows: HashMap<DayKey, DayAgg, ahash::RandomState>,
}

impl DayRows {
    /// Count an hourly row into its day's row.
    pub(super) fn add(&mut self, k: &HourKey, a: &HourAgg) {
        let key = DayKey {
            day_ms: k.hour_ms.div_euclid(DAY_MS) * DAY_MS,
            src_id: k.src_id,
            dst_id: k.dst_id,
            src_ip: k.src_ip,
            dst_ip: k.dst_ip,
            proto: k.proto,
            port: k.port,
            allowed: k.allowed,
            would_deny: k.would_deny,
        };
        let d = self.rows.entry(key).or_insert(DayAgg {
            flows: 0,
            packets: 0,
            bytes: 0,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
        });
        d.flows += a.flows;
        d.packets = d
            .packets
            .saturating_add(a.packets[0])
            .saturating_add(a.packets[1]);
        d.bytes = d
            .bytes
            .saturating_add(a.bytes[0])
            .saturating_add(a.bytes[1]);
        d.first_ms = d.first_ms.min(a.first_ms);
        d.last_ms = d.last_ms.max(a.last_ms);
    }

    /// Add the gathered rows to the stored ones, in the caller's transaction.
    pub(super) fn write(&mut self, tx: &Connection) -> Result<(), rusqlite::Error> {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO daily (day_ms, src_id, dst_id, src_ip, dst_ip, proto, port, allowed,
                would_deny, flows, packets, bytes, first_ms, last_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (day_ms, src_id, dst_id, src_ip, dst_ip, proto, port, allowed, would_deny)
             DO UPDATE SET
                flows = flows + excluded.flows,
                packets = packets + excluded.packets,
                bytes = bytes + excluded.bytes,
                first_ms = min(first_ms, excluded.first_ms),
                last_ms = max(last_ms, excluded.last_ms)",
        )?;
        let ip = |ip: &Option<[u8; 16]>| ip.map_or_else(Vec::new, |b| b.to_vec());
        for (k, d) in self.rows.drain() {
            upsert.execute(params![
                k.day_ms,
                k.src_id,
                k.dst_id,
                ip(&k.src_ip),
                ip(&k.dst_ip),
                k.proto,
                k.port,
                k.allowed,
                k.would_deny,
                d.flows,
                sat(d.packets),
                sat(d.bytes),
                d.first_ms,
                d.last_ms,
            ])?;
        }
        Ok(())
    }
}
