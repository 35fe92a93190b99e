//! DNS responses as the records store keeps them: one raw row per response
//! (`dns`, kept like the flow records), and passive-DNS rows deduplicated by
//! name, client and answer (`pdns`, kept like the rollups).

use super::{ip_bytes, mac_int, sat, Identity};
use crate::dns::{Answer, AnswerData, DnsResponse};
use rusqlite::{params, Connection};
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

impl AnswerRow {
    pub(super) fn of(a: &Answer) -> AnswerRow {
        let (ip, cname) = match &a.data {
            AnswerData::Addr(ip) => (Some(*ip), None),
            AnswerData::Cname(c) => (None, Some(c.clone())),
        };
        AnswerRow {
            name: a.name.clone(),
            ttl: a.ttl,
            ip,
            cname,
        }
    }
}

/// Insert the batch's responses (client identity ids given), in order;
/// their row ids.
pub(super) fn insert_dns(
    tx: &Connection,
    rows: &[(&StoredDns, i64)],
) -> Result<Vec<i64>, rusqlite::Error> {
    let mut ids = Vec::with_capacity(rows.len());
    let mut insert = tx.prepare_cached(
        "INSERT INTO dns (time_ms, client_mac, client_id, client_ip, server_ip, vlan_outer,
            vlan_inner, qname, qtype, rcode, answers)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for (d, client_id) in rows {
        let r = &d.response;
        let answers: Vec<AnswerRow> = r.answers.iter().map(AnswerRow::of).collect();
        insert.execute(params![
            d.time_ms,
            mac_int(r.client_mac),
            client_id,
            ip_bytes(r.client_ip),
            ip_bytes(r.server_ip),
            r.vlan[0],
            r.vlan[1],
            r.qname,
            r.qtype,
            r.rcode,
            serde_json::to_string(&answers).unwrap_or_else(|_| "[]".into()),
        ])?;
        ids.push(tx.last_insert_rowid());
    }
    Ok(ids)
}

/// A name with its labels reversed (`www.example.com` -> `com.example.www`),
/// so that a domain's subdomains are one range of an index.
pub fn reversed(name: &str) -> String {
    let mut labels: Vec<&str> = name.split('.').collect();
    labels.reverse();
    labels.join(".")
}

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
    pub answers: &'a [AnswerRow],
}

/// A passive-DNS row's key, ordered as the table's primary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct PdnsKey {
    rname: String,
    client_mac: i64,
    /// 16 bytes, or empty for a response with no address.
    answer: Vec<u8>,
    qname: String,
    rcode: u16,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PdnsAgg {
    first_ms: i64,
    last_ms: i64,
    count: i64,
    ttl: u32,
}

/// Passive-DNS rows waiting to be written, and the responses' names.
#[derive(Debug, Default)]
pub(super) struct Pdns {
    rows: HashMap<PdnsKey, PdnsAgg, ahash::RandomState>,
    /// `dns_names` rows: name, time, response id, client.
    names: Vec<(String, i64, i64, i64)>,
}

impl Pdns {
    pub(super) fn add(&mut self, d: &DnsFacts<'_>) {
        self.names
            .push((d.qname.to_string(), d.time_ms, d.id, d.client_mac));
        let mut names: Vec<&str> = vec![d.qname];
        for a in d.answers {
            for n in std::iter::once(a.name.as_str()).chain(a.cname.as_deref()) {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        names.truncate(MAX_NAMES);
        let mut addrs: Vec<Vec<u8>> = d
            .answers
            .iter()
            .filter_map(|a| a.ip.map(|ip| ip_bytes(ip).to_vec()))
            .collect();
        addrs.dedup();
        addrs.truncate(MAX_ADDRS);
        if addrs.is_empty() {
            addrs.push(Vec::new());
        }
        let ttl = d.answers.iter().map(|a| a.ttl).max().unwrap_or(0);
        for name in &names {
            for answer in &addrs {
                let key = PdnsKey {
                    rname: reversed(name),
                    client_mac: d.client_mac,
                    answer: answer.clone(),
                    qname: d.qname.to_string(),
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
    }

    pub(super) fn len(&self) -> usize {
        self.rows.len() + self.names.len()
    }

    pub(super) fn clear(&mut self) {
        self.rows.clear();
        self.names.clear();
    }

    pub(super) fn write(&mut self, tx: &Connection) -> Result<(), rusqlite::Error> {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO pdns (rname, client_mac, answer, qname, rcode, first_ms, last_ms, count, ttl)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (rname, client_mac, answer, qname, rcode) DO UPDATE SET
                first_ms = min(first_ms, excluded.first_ms),
                last_ms = max(last_ms, excluded.last_ms),
                count = count + excluded.count,
                ttl = max(ttl, excluded.ttl)",
        )?;
        // In key order: each upsert lands next to the previous one in the
        // B-tree instead of at a random page (bench/RESULTS.md).
        self.names.sort_unstable();
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO dns_names (qname, time_ms, id, client_mac)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (name, time_ms, id, mac) in self.names.drain(..) {
            insert.execute(params![name, time_ms, id, mac])?;
        }
        let mut rows: Vec<(PdnsKey, PdnsAgg)> = self.rows.drain().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (k, a) in rows {
            upsert.execute(params![
                k.rname,
                k.client_mac,
                k.answer,
                k.qname,
                k.rcode,
                a.first_ms,
                a.last_ms,
                sat(a.count as u64),
                a.ttl
            ])?;
        }
        Ok(())
    }
}
