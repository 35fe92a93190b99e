//! What the forensic queries read, derived from the records as the rollups
//! are: contacts by source MAC (`contacts`), address history from flows and
//! DNS (`addresses`), passive DNS (`pdns`). Gathered by the writer and
//! written with the rollups under their mark (flows) and the DNS mark, so
//! that a crash loses none of it: [`catch_up`] counts the records after the
//! marks again.

use super::addresses::{held, AddressSource, Addresses};
use super::dns_rows::{AnswerRef, AnswerRow, DnsFacts, Pdns, StoredDns};
use super::nodes::ip_of;
use super::{ip_bytes, mac_int, sat, StoredFlow};
use dataplane::policy::Action;
use rusqlite::{params, Connection};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;

/// Milliseconds in an hour: the contacts' period.
const HOUR_MS: i64 = 3_600_000;

/// A flow record's facts the derived rows need.
pub(super) struct FlowFacts {
    pub src_mac: i64,
    pub dst_mac: i64,
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub proto: u8,
    pub dst_port: u16,
    pub allowed: bool,
    pub opens: bool,
    pub bytes: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

impl FlowFacts {
    pub(super) fn of(f: &StoredFlow) -> FlowFacts {
        let r = &f.flow;
        FlowFacts {
            src_mac: mac_int(r.src_mac),
            dst_mac: mac_int(r.dst_mac),
            src_ip: r.src_ip,
            dst_ip: r.dst_ip,
            proto: r.proto,
            dst_port: r.dst_port,
            allowed: r.verdict.action == Action::Allow,
            opens: f.opens,
            bytes: r.bytes[0].saturating_add(r.bytes[1]),
            first_ms: f.first_ms,
            last_ms: f.last_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ContactKey {
    src_mac: i64,
    hour_ms: i64,
    dst_mac: i64,
    dst_ip: [u8; 16],
    proto: u8,
    port: u16,
    allowed: bool,
}

#[derive(Debug, Clone, Copy)]
struct ContactAgg {
    flows: i64,
    bytes: u64,
    first_ms: i64,
    last_start_ms: i64,
    last_ms: i64,
}

impl ContactAgg {
    fn merge(&mut self, o: &ContactAgg) {
        self.flows += o.flows;
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.first_ms = self.first_ms.min(o.first_ms);
        self.last_start_ms = self.last_start_ms.max(o.last_start_ms);
        self.last_ms = self.last_ms.max(o.last_ms);
    }
}

/// Derived rows waiting to be written.
#[derive(Debug, Default)]
pub(super) struct Derived {
    contacts: HashMap<ContactKey, ContactAgg, ahash::RandomState>,
    addresses: Addresses,
    pdns: Pdns,
}

impl Derived {
    pub(super) fn add_flow(&mut self, f: &FlowFacts) {
        let key = ContactKey {
            src_mac: f.src_mac,
            hour_ms: f.first_ms.div_euclid(HOUR_MS) * HOUR_MS,
            dst_mac: f.dst_mac,
            dst_ip: ip_bytes(f.dst_ip),
            proto: f.proto,
            port: if matches!(f.proto, 6 | 17 | 132) {
                f.dst_port
            } else {
                0
            },
            allowed: f.allowed,
        };
        let one = ContactAgg {
            flows: i64::from(f.opens),
            bytes: f.bytes,
            first_ms: f.first_ms,
            last_start_ms: f.first_ms,
            last_ms: f.last_ms,
        };
        match self.contacts.entry(key) {
            Entry::Occupied(mut e) => e.get_mut().merge(&one),
            Entry::Vacant(e) => {
                e.insert(one);
            }
        }
        for (mac, ip) in [(f.src_mac, f.src_ip), (f.dst_mac, f.dst_ip)] {
            if held(mac, ip) {
                self.addresses
                    .add(mac, ip, f.first_ms, f.last_ms, AddressSource::Flow);
            }
        }
    }

    pub(super) fn add_dns(&mut self, d: &DnsFacts<'_>, client_ip: IpAddr) {
        self.pdns.add(d);
        if held(d.client_mac, client_ip) {
            self.addresses.add(
                d.client_mac,
                client_ip,
                d.time_ms,
                d.time_ms,
                AddressSource::Dns,
            );
        }
    }

    pub(super) fn add_stored_dns(&mut self, d: &StoredDns, id: i64) {
        let answers: Vec<AnswerRef<'_>> = d.response.answers.iter().map(AnswerRef::of).collect();
        self.add_dns(
            &DnsFacts {
                id,
                time_ms: d.time_ms,
                client_mac: mac_int(d.response.client_mac),
                qname: &d.response.qname,
                rcode: d.response.rcode,
                answers: &answers,
            },
            d.response.client_ip,
        );
    }

    pub(super) fn len(&self) -> usize {
        self.contacts.len() + self.addresses.len() + self.pdns.len()
    }

    pub(super) fn clear(&mut self) {
        self.contacts.clear();
        self.addresses.clear();
        self.pdns.clear();
    }

    pub(super) fn forget_name_ids(&mut self) {
        self.pdns.forget_ids();
    }

    pub(super) fn write(&mut self, tx: &Connection) -> Result<(), rusqlite::Error> {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO contacts (src_mac, hour_ms, dst_mac, dst_ip, proto, port, allowed, flows,
                bytes, first_ms, last_start_ms, last_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (src_mac, dst_mac, dst_ip, proto, port, allowed, hour_ms) DO UPDATE SET
                flows = flows + excluded.flows,
                bytes = bytes + excluded.bytes,
                first_ms = min(first_ms, excluded.first_ms),
                last_start_ms = max(last_start_ms, excluded.last_start_ms),
                last_ms = max(last_ms, excluded.last_ms)",
        )?;
        let mut edges: HashMap<ContactKey, ContactAgg, ahash::RandomState> = HashMap::default();
        for (k, c) in &self.contacts {
            let edge = ContactKey {
                hour_ms: 0,
                ..k.clone()
            };
            match edges.entry(edge) {
                Entry::Occupied(mut e) => e.get_mut().merge(c),
                Entry::Vacant(e) => {
                    e.insert(*c);
                }
            }
        }
        // Both in the primary key's order: each upsert lands next to the
        // previous one in the B-tree, not at a random page.
        let pk = |k: &ContactKey| {
            (
                k.src_mac, k.dst_mac, k.dst_ip, k.proto, k.port, k.allowed, k.hour_ms,
            )
        };
        let mut contacts: Vec<(ContactKey, ContactAgg)> = self.contacts.drain().collect();
        contacts.sort_unstable_by_key(|(k, _)| pk(k));
        let mut edges: Vec<(ContactKey, ContactAgg)> = edges.into_iter().collect();
        edges.sort_unstable_by_key(|(k, _)| pk(k));
        for (k, c) in contacts {
            upsert.execute(params![
                k.src_mac,
                k.hour_ms,
                k.dst_mac,
                k.dst_ip,
                k.proto,
                k.port,
                k.allowed,
                c.flows,
                sat(c.bytes),
                c.first_ms,
                c.last_start_ms,
                c.last_ms
            ])?;
        }
        let mut upsert = tx.prepare_cached(
            "INSERT INTO edges (src_mac, dst_mac, dst_ip, proto, port, allowed, flows, bytes,
                first_ms, last_start_ms, last_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (src_mac, dst_mac, dst_ip, proto, port, allowed) DO UPDATE SET
                flows = flows + excluded.flows,
                bytes = bytes + excluded.bytes,
                first_ms = min(first_ms, excluded.first_ms),
                last_start_ms = max(last_start_ms, excluded.last_start_ms),
                last_ms = max(last_ms, excluded.last_ms)",
        )?;
        for (k, c) in edges {
            upsert.execute(params![
                k.src_mac,
                k.dst_mac,
                k.dst_ip,
                k.proto,
                k.port,
                k.allowed,
                c.flows,
                sat(c.bytes),
                c.first_ms,
                c.last_start_ms,
                c.last_ms
            ])?;
        }
        self.addresses.write(tx)?;
        self.pdns.write(tx)
    }
}

/// Count the flow records with ids in `flows` (after the first, up to the
/// second) and the DNS records after `dns_mark` into `d` (written here at
/// `max_waiting` rows, by the caller at the end). Returns the last DNS
/// record id.
pub(super) fn catch_up(
    tx: &Connection,
    d: &mut Derived,
    flows: (i64, i64),
    dns_mark: i64,
    max_waiting: usize,
) -> Result<i64, rusqlite::Error> {
    {
        let mut stmt = tx.prepare(
            "SELECT src_mac, dst_mac, src_ip, dst_ip, proto, dst_port, allowed, opens,
                bytes_fwd + bytes_rev, first_ms, last_ms
             FROM flows WHERE id > ?1 AND id <= ?2",
        )?;
        let mut rows = stmt.query([flows.0, flows.1])?;
        while let Some(r) = rows.next()? {
            d.add_flow(&FlowFacts {
                src_mac: r.get(0)?,
                dst_mac: r.get(1)?,
                src_ip: ip_of(&r.get::<_, Vec<u8>>(2)?),
                dst_ip: ip_of(&r.get::<_, Vec<u8>>(3)?),
                proto: u8::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                dst_port: u16::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                allowed: r.get(6)?,
                opens: r.get(7)?,
                bytes: super::count_at(r, 8)?,
                first_ms: r.get(9)?,
                last_ms: r.get(10)?,
            });
            if d.len() >= max_waiting {
                d.write(tx)?;
            }
        }
    }
    let mut stmt = tx.prepare(
        "SELECT id, time_ms, client_mac, client_ip, qname, rcode, answers FROM dns WHERE id > ?1",
    )?;
    let mut rows = stmt.query([dns_mark])?;
    let mut last = dns_mark;
    while let Some(r) = rows.next()? {
        last = r.get(0)?;
        let qname: String = r.get(4)?;
        let rows: Vec<AnswerRow> =
            serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default();
        let answers: Vec<AnswerRef<'_>> = rows.iter().map(AnswerRef::row).collect();
        d.add_dns(
            &DnsFacts {
                id: last,
                time_ms: r.get(1)?,
                client_mac: r.get(2)?,
                qname: &qname,
                rcode: u16::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                answers: &answers,
            },
            ip_of(&r.get::<_, Vec<u8>>(3)?),
        );
        if d.len() >= max_waiting {
            d.write(tx)?;
        }
    }
    Ok(last)
}
