//! DNS responses as the records store keeps them: one raw row per response
//! (`dns`, kept like the flow records), and passive-DNS rows deduplicated by
//! name, client and answer (`pdns`, kept like the rollups).

use super::many::{self, Values};
use super::names::{LocalNames, NameIds};
use super::{ip_bytes, mac_int, sat, Identity};
use crate::dns::{Answer, AnswerData, DnsResponse};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// One DNS response as stored: the response, its wall-clock time and the
/// client's identity then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDns {
    pub response: DnsResponse,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub client: Arc<Identity>,
}

/// An answer record as `dns.answers` keeps it (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnswerRow {
    /// The record's owner: the name asked, or an alias on the chain.
    pub name: String,
    pub ttl: u32,
    /// An A or AAAA record's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub ip: Option<IpAddr>,
    /// A CNAME's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
}

/// An answer record borrowed from a response or a row, as `dns.answers`
/// keeps it (the JSON of [`AnswerRow`]) and passive DNS reads it.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct AnswerRef<'a> {
    pub name: &'a str,
    pub ttl: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cname: Option<&'a str>,
}

impl<'a> AnswerRef<'a> {
    pub(super) fn of(a: &'a Answer) -> AnswerRef<'a> {
        let (ip, cname) = match &a.data {
            AnswerData::Addr(ip) => (Some(*ip), None),
            AnswerData::Cname(c) => (None, Some(c.as_str())),
        };
        AnswerRef {
            name: &a.name,
            ttl: a.ttl,
            ip,
            cname,
        }
    }

    pub(super) fn row(a: &'a AnswerRow) -> AnswerRef<'a> {
        AnswerRef {
            name: &a.name,
            ttl: a.ttl,
            ip: a.ip,
            cname: a.cname.as_deref(),
        }
    }
}

/// Insert the batch's responses (client identity ids given), in order;
/// their row ids (given here: the next after the table's largest, as
/// SQLite would).
pub(super) fn insert_dns(
    tx: &Connection,
    rows: &[(&StoredDns, i64)],
) -> Result<Vec<i64>, rusqlite::Error> {
    let next: i64 = tx
        .prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM dns")?
        .query_row([], |r| r.get(0))?;
    let out: Vec<DnsOut<'_>> = rows
        .iter()
        .zip(next..)
        .map(|((d, client_id), id)| {
            let r = &d.response;
            let answers: Vec<AnswerRef<'_>> = r.answers.iter().map(AnswerRef::of).collect();
            DnsOut {
                id,
                time_ms: d.time_ms,
                client_mac: mac_int(r.client_mac),
                client_id: *client_id,
                client_ip: ip_bytes(r.client_ip),
                server_ip: ip_bytes(r.server_ip),
                vlan: r.vlan,
                qname: &r.qname,
                qtype: r.qtype,
                rcode: r.rcode,
                answers: serde_json::to_string(&answers).unwrap_or_else(|_| "[]".into()),
            }
        })
        .collect();
    many::execute(
        tx,
        "INSERT INTO dns (id, time_ms, client_mac, client_id, client_ip, server_ip, vlan_outer,
            vlan_inner, qname, qtype, rcode, answers)",
        "",
        &out,
        ROWS_AT_ONCE,
    )?;
    Ok(out.iter().map(|d| d.id).collect())
}

/// A response's row, as `dns` stores it.
struct DnsOut<'a> {
    id: i64,
    time_ms: i64,
    client_mac: i64,
    client_id: i64,
    client_ip: [u8; 16],
    server_ip: [u8; 16],
    vlan: [u16; 2],
    qname: &'a str,
    qtype: u16,
    rcode: u16,
    answers: String,
}

impl Values<12> for DnsOut<'_> {
    fn values(&self) -> [&dyn ToSql; 12] {
        [
            &self.id,
            &self.time_ms,
            &self.client_mac,
            &self.client_id,
            &self.client_ip,
            &self.server_ip,
            &self.vlan[0],
            &self.vlan[1],
            &self.qname,
            &self.qtype,
            &self.rcode,
            &self.answers,
        ]
    }
}

pub use super::names::reversed;

/// Rows an INSERT of DNS rows takes at once (the ingest bench:
/// docs/decisions.md).
const ROWS_AT_ONCE: usize = 64;

/// Names of one response made into rows at most (a hostile response of a
/// hundred aliases and a hundred addresses makes 16 x 32 rows, not 10,000).
const MAX_NAMES: usize = 16;
const MAX_ADDRS: usize = 32;

/// What a response teaches, before it is a row: the facts both the writer
/// (from a batch) and the catch-up (from stored rows) have.
pub(super) struct DnsFacts<'a> {
    /// The response's row id.
    pub id: i64,
    pub time_ms: i64,
    pub client_mac: i64,
    pub qname: &'a str,
    pub rcode: u16,
    pub answers: &'a [AnswerRef<'a>],
}

/// A passive-DNS row's key, the names as indexes into the flush's
/// [`LocalNames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PdnsKey {
    name: u32,
    client_mac: i64,
    /// None for a response with no address.
    answer: Option<[u8; 16]>,
    qname: u32,
    rcode: u16,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PdnsAgg {
    first_ms: i64,
    last_ms: i64,
    count: i64,
    ttl: u32,
}

/// Passive-DNS rows waiting to be written, the responses' names, and the
/// store's ids of names (kept across flushes).
#[derive(Debug, Default)]
pub(super) struct Pdns {
    rows: HashMap<PdnsKey, PdnsAgg, ahash::RandomState>,
    /// `dns_names` rows: name, time, response id, client.
    asked: Vec<(u32, i64, i64, i64)>,
    names: LocalNames,
    ids: NameIds,
    /// A response's names and addresses (kept: no allocation a response).
    scratch: (Vec<u32>, Vec<Option<[u8; 16]>>),
}

impl Pdns {
    pub(super) fn add(&mut self, d: &DnsFacts<'_>) {
        let qname = self.names.intern(d.qname);
        self.asked.push((qname, d.time_ms, d.id, d.client_mac));
        let (mut names, mut addrs) = std::mem::take(&mut self.scratch);
        names.clear();
        names.push(qname);
        for a in d.answers {
            for n in std::iter::once(a.name).chain(a.cname) {
                if names.len() == MAX_NAMES {
                    break;
                }
                let i = self.names.intern(n);
                if !names.contains(&i) {
                    names.push(i);
                }
            }
        }
        addrs.clear();
        addrs.extend(
            d.answers
                .iter()
                .filter_map(|a| a.ip.map(|ip| Some(ip_bytes(ip)))),
        );
        addrs.dedup();
        addrs.truncate(MAX_ADDRS);
        if addrs.is_empty() {
            addrs.push(None);
        }
        let ttl = d.answers.iter().map(|a| a.ttl).max().unwrap_or(0);
        for &name in &names {
            for &answer in &addrs {
                let key = PdnsKey {
                    name,
                    client_mac: d.client_mac,
                    answer,
                    qname,
                    rcode: d.rcode,
                };
                let agg = self.rows.entry(key).or_insert(PdnsAgg {
                    first_ms: d.time_ms,
                    last_ms: d.time_ms,
                    count: 0,
                    ttl: 0,
                });
                agg.first_ms = agg.first_ms.min(d.time_ms);
                agg.last_ms = agg.last_ms.max(d.time_ms);
                agg.count += 1;
                agg.ttl = agg.ttl.max(ttl);
            }
        }
        self.scratch = (names, addrs);
    }

    pub(super) fn len(&self) -> usize {
        self.rows.len() + self.asked.len()
    }

    /// Drop what waits, and the ids known: called when a write failed (ids
    /// made in its transaction are gone with it).
    pub(super) fn clear(&mut self) {
        self.rows.clear();
        self.asked.clear();
        self.names.clear();
        self.ids.clear();
    }

    /// The names were trimmed: the ids known may be gone.
    pub(super) fn forget_ids(&mut self) {
        self.ids.clear();
    }

    pub(super) fn write(&mut self, tx: &Connection) -> Result<(), rusqlite::Error> {
        let ids = self.names.resolve(tx, &mut self.ids)?;
        let id = |i: u32| ids.get(i as usize).copied().unwrap_or(0);
        // In key order: each row lands next to the previous one in the
        // B-tree instead of at a random page (bench/RESULTS.md).
        let mut asked: Vec<[i64; 4]> = self
            .asked
            .drain(..)
            .map(|(q, t, r, mac)| [id(q), t, r, mac])
            .collect();
        asked.sort_unstable();
        many::execute(
            tx,
            "INSERT OR IGNORE INTO dns_names (name_id, time_ms, id, client_mac)",
            "",
            &asked,
            ROWS_AT_ONCE,
        )?;
        let mut rows: Vec<PdnsOut> = self
            .rows
            .drain()
            .map(|(k, a)| PdnsOut {
                name: id(k.name),
                client_mac: k.client_mac,
                answer: AnswerBlob(k.answer),
                qname: id(k.qname),
                rcode: k.rcode,
                first_ms: a.first_ms,
                last_ms: a.last_ms,
                count: sat(a.count as u64),
                ttl: a.ttl,
            })
            .collect();
        rows.sort_unstable_by_key(|r| (r.name, r.client_mac, r.answer.0, r.qname, r.rcode));
        many::execute(
            tx,
            "INSERT INTO pdns (name_id, client_mac, answer, qname_id, rcode, first_ms, last_ms,
                count, ttl)",
            "ON CONFLICT (name_id, client_mac, answer, qname_id, rcode) DO UPDATE SET
                first_ms = min(first_ms, excluded.first_ms),
                last_ms = max(last_ms, excluded.last_ms),
                count = count + excluded.count,
                ttl = max(ttl, excluded.ttl)",
            &rows,
            ROWS_AT_ONCE,
        )?;
        self.names.clear();
        Ok(())
    }
}

impl Values<4> for [i64; 4] {
    fn values(&self) -> [&dyn ToSql; 4] {
        [&self[0], &self[1], &self[2], &self[3]]
    }
}

/// An answer as `pdns.answer` keeps it: 16 bytes, or none (empty).
struct AnswerBlob(Option<[u8; 16]>);

impl ToSql for AnswerBlob {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let bytes: &[u8] = self.0.as_ref().map_or(&[], |b| b.as_slice());
        Ok(ToSqlOutput::Borrowed(ValueRef::Blob(bytes)))
    }
}

/// A passive-DNS row with the store's name ids, as written.
struct PdnsOut {
    name: i64,
    client_mac: i64,
    answer: AnswerBlob,
    qname: i64,
    rcode: u16,
    first_ms: i64,
    last_ms: i64,
    count: i64,
    ttl: u32,
}

impl Values<9> for PdnsOut {
    fn values(&self) -> [&dyn ToSql; 9] {
        [
            &self.name,
            &self.client_mac,
            &self.answer,
            &self.qname,
            &self.rcode,
            &self.first_ms,
            &self.last_ms,
            &self.count,
            &self.ttl,
        ]
    }
}
