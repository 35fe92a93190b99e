//! How a batch becomes rows: each record's columns as `flows` stores them,
//! inserted many a statement ([`many`]), the identities' row ids the
//! writer remembers, and a whole batch written in the writer's transaction.

use super::addresses::Addresses;
use super::dns_rows::insert_dns;
use super::many::{self, Values};
use super::rollup::Rollups;
use super::writer::Batch;
use super::{
    ip_bytes, kind_name, mac_int, mode_name, reason_name, sat, state_name, Identity, StoredFlow,
};
use dataplane::policy::Action;
use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::sync::Arc;

/// The row ids of identities this writer wrote, found first by the
/// identity's allocation: the recorder shares one `Arc` an identity a
/// policy generation, so a record's ends are nearly always an allocation
/// seen before, and no name, label or group is hashed or compared. Else by
/// content. The pointer map holds each `Arc`, so an address it keys is not
/// freed (and reused by another identity) while it is there.
#[derive(Debug, Default)]
pub(super) struct IdentityIds {
    by_ptr: HashMap<usize, (Arc<Identity>, i64), ahash::RandomState>,
    by_content: HashMap<Identity, i64, ahash::RandomState>,
}

impl IdentityIds {
    pub(super) fn get(&mut self, i: &Arc<Identity>) -> Option<i64> {
        let ptr = Arc::as_ptr(i) as usize;
        if let Some(&(_, id)) = self.by_ptr.get(&ptr) {
            return Some(id);
        }
        let id = *self.by_content.get(&**i)?;
        self.by_ptr.insert(ptr, (i.clone(), id));
        Some(id)
    }

    pub(super) fn insert(&mut self, i: &Arc<Identity>, id: i64) {
        self.by_content.insert((**i).clone(), id);
        self.by_ptr.insert(Arc::as_ptr(i) as usize, (i.clone(), id));
    }

    pub(super) fn len(&self) -> usize {
        self.by_ptr.len().max(self.by_content.len())
    }
}

/// A flow record's columns, as `flows` stores them.
pub(super) struct FlowCols {
    first_ms: i64,
    last_ms: i64,
    src_mac: i64,
    dst_mac: i64,
    src_id: i64,
    dst_id: i64,
    src_ip: [u8; 16],
    dst_ip: [u8; 16],
    proto: u8,
    src_port: u16,
    dst_port: u16,
    vlan: [u16; 2],
    packets: [i64; 2],
    bytes: [i64; 2],
    allowed: bool,
    reason: &'static str,
    rule: Option<u32>,
    mode: &'static str,
    would_deny: bool,
    state: &'static str,
    kind: &'static str,
    opens: bool,
    intel: Option<Arc<str>>,
}

impl FlowCols {
    pub(super) fn of(f: &StoredFlow, src_id: i64, dst_id: i64) -> FlowCols {
        let r = &f.flow;
        let (reason, rule) = reason_name(r.verdict.reason);
        FlowCols {
            first_ms: f.first_ms,
            last_ms: f.last_ms,
            src_mac: mac_int(r.src_mac),
            dst_mac: mac_int(r.dst_mac),
            src_id,
            dst_id,
            src_ip: ip_bytes(r.src_ip),
            dst_ip: ip_bytes(r.dst_ip),
            proto: r.proto,
            src_port: r.src_port,
            dst_port: r.dst_port,
            vlan: r.vlan,
            packets: [sat(r.packets[0]), sat(r.packets[1])],
            bytes: [sat(r.bytes[0]), sat(r.bytes[1])],
            allowed: r.verdict.action == Action::Allow,
            reason,
            rule,
            mode: mode_name(r.verdict.mode),
            would_deny: r.verdict.would_deny,
            state: state_name(r.state),
            kind: kind_name(f.kind),
            opens: f.opens,
            intel: f.intel.clone(),
        }
    }
}

impl Values<COLUMNS> for FlowCols {
    /// The values in the order of [`FLOW_COLUMNS`].
    fn values(&self) -> [&dyn rusqlite::ToSql; COLUMNS] {
        [
            &self.first_ms,
            &self.last_ms,
            &self.src_mac,
            &self.dst_mac,
            &self.src_id,
            &self.dst_id,
            &self.src_ip,
            &self.dst_ip,
            &self.proto,
            &self.src_port,
            &self.dst_port,
            &self.vlan[0],
            &self.vlan[1],
            &self.packets[0],
            &self.packets[1],
            &self.bytes[0],
            &self.bytes[1],
            &self.allowed,
            &self.reason,
            &self.rule,
            &self.mode,
            &self.would_deny,
            &self.state,
            &self.kind,
            &self.opens,
            &self.intel,
        ]
    }
}

const FLOW_COLUMNS: &str = "first_ms, last_ms, src_mac, dst_mac, src_id, dst_id, src_ip, dst_ip, \
    proto, src_port, dst_port, vlan_outer, vlan_inner, pkts_fwd, pkts_rev, bytes_fwd, bytes_rev, \
    allowed, reason, rule_id, mode, would_deny, state, kind, opens, intel";
const COLUMNS: usize = 26;

/// Rows an INSERT of flow records takes at once (the ingest bench:
/// docs/decisions.md).
const ROWS_AT_ONCE: usize = 40;

/// Insert `rows`, [`ROWS_AT_ONCE`] a statement ([`many`]), in the caller's
/// transaction, in order (ids follow the batch).
pub(super) fn insert_flows(
    tx: &rusqlite::Connection,
    rows: &[FlowCols],
) -> Result<(), rusqlite::Error> {
    many::execute(
        tx,
        &format!("INSERT INTO flows ({FLOW_COLUMNS})"),
        "",
        rows,
        ROWS_AT_ONCE,
    )
}

/// Identities the writer remembers at most; past it it starts again.
const MAX_IDENTITIES: usize = 100_000;

/// A batch's rows, in the writer's transaction `tx`: its identities, flow
/// records, DNS responses and addresses, and its shares of the rollups
/// (written by the writer when it is time).
pub(super) fn write_batch(
    tx: &Connection,
    identities: &mut IdentityIds,
    rollups: &mut Rollups,
    batch: &Batch,
) -> Result<(), rusqlite::Error> {
    let mut pending = Vec::with_capacity(batch.flows.len());
    let mut dns_rows = Vec::with_capacity(batch.dns.len());
    if identities.len() >= MAX_IDENTITIES {
        *identities = IdentityIds::default();
    }
    {
        let mut ident = tx.prepare_cached(
            "INSERT INTO identities (mac, name, labels_json, groups_json) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (mac, name, labels_json, groups_json) DO UPDATE SET mac = mac
             RETURNING id",
        )?;
        let mut rows = Vec::with_capacity(batch.flows.len());
        let mut id_of = |i: &Arc<Identity>| -> Result<i64, rusqlite::Error> {
            if let Some(id) = identities.get(i) {
                return Ok(id);
            }
            let labels = serde_json::to_string(&i.labels).unwrap_or_default();
            let groups = serde_json::to_string(&i.groups).unwrap_or_default();
            let id: i64 = ident
                .query_row(params![mac_int(i.mac), i.name, labels, groups], |r| {
                    r.get(0)
                })?;
            identities.insert(i, id);
            Ok(id)
        };
        for f in &batch.flows {
            let (src_id, dst_id) = (id_of(&f.src)?, id_of(&f.dst)?);
            rows.push(FlowCols::of(f, src_id, dst_id));
            pending.push((src_id, dst_id));
        }
        for d in &batch.dns {
            dns_rows.push((d, id_of(&d.client)?));
        }
        insert_flows(tx, &rows)?;
    }
    let last_flow = tx.last_insert_rowid();
    if !dns_rows.is_empty() {
        let ids = insert_dns(tx, &dns_rows)?;
        for (d, id) in batch.dns.iter().zip(ids) {
            rollups.add_dns(d, id);
        }
    }
    if !batch.addresses.is_empty() {
        let mut seen = Addresses::default();
        for a in &batch.addresses {
            seen.seen(a);
        }
        seen.write(tx)?;
    }
    // The batch's shares join the waiting rollup rows, written with this
    // transaction when it is time (else a later one's, or at stop), with
    // the mark. If the transaction fails, `failed` drops them all and the
    // next batch counts the records after the mark again.
    for (f, (src_id, dst_id)) in batch.flows.iter().zip(pending) {
        rollups.add(f, src_id, dst_id);
    }
    if !batch.flows.is_empty() {
        rollups.seen(last_flow);
    }
    Ok(())
}
