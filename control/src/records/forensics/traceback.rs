//! Traceback: the workloads that resolved a domain (or a name under it) or
//! contacted an address, each with who it was then and now, the addresses it
//! had, every resolution, and the flows to the answered addresses after.

use super::{hour_of, service_text, AddressSpan, IdentityView};
use crate::records::dns_rows::{reversed, AnswerRow};
use crate::records::nodes::ip_of;
use crate::records::query::{mac_text, time_text};
use crate::records::{ip_bytes, RecordsError, RecordsReader};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::str::FromStr;

/// Resolutions listed per workload at most (the rest counted).
const MAX_RESOLUTIONS: usize = 200;
/// Workloads in an answer at most.
const MAX_WORKLOADS: usize = 1_000;
/// Answered addresses whose contacts are looked up at most.
const MAX_ADDRESSES: usize = 1_000;

/// What a traceback looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A name and every name under it, or with `exact` (written `=name`)
    /// the name alone. Lower case, no trailing dot.
    Domain { name: String, exact: bool },
    /// An address (a /32 or /128) or a network.
    Net(IpNet),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Target::Net(IpNet::from(ip)));
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Target::Net(net.trunc()));
        }
        let (exact, name) = match s.strip_prefix('=') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let bad = |why: &str| Err(format!("{s:?} is no domain, address or network: {why}"));
        if name.is_empty() {
            return bad("empty");
        }
        if name.len() > 253 {
            return bad("a name is at most 253 characters");
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return bad("each label is 1 to 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return bad("letters, digits, '-' and '_' only (IDNs in their xn-- form)");
            }
        }
        Ok(Target::Domain { name, exact })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Domain { name, exact: true } => write!(f, "={name}"),
            Target::Domain { name, .. } => f.write_str(name),
            Target::Net(n) if n.prefix_len() == n.max_prefix_len() => write!(f, "{}", n.addr()),
            Target::Net(n) => write!(f, "{n}"),
        }
    }
}

/// One DNS response to a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resolution {
    pub time: String,
    /// The workload's address then.
    pub client_ip: String,
    pub server_ip: String,
    pub qname: String,
    pub qtype: u16,
    /// 0 NOERROR, 3 NXDOMAIN, ...
    pub rcode: u16,
    /// The answer section's addresses and CNAME chain, in order.
    pub answers: Vec<AnswerRow>,
    /// Who the workload was then.
    pub identity: Option<IdentityView>,
    #[serde(skip, default)]
    pub time_ms: i64,
}

/// Passive DNS: a name, its answer for a workload, first and last seen and
/// how often (kept beyond the raw responses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PassiveDns {
    /// The name asked.
    pub qname: String,
    /// The matching name of the chain (the name asked, or an alias).
    pub name: String,
    /// The address the chain ended in (none for NXDOMAIN or no address).
    pub answer: Option<String>,
    pub rcode: u16,
    pub first: String,
    pub last: String,
    pub count: u64,
    pub ttl: u32,
}

/// Flows from a workload to one address and service, with one verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Contact {
    /// The first flow's start (in the window, after the first resolution
    /// that answered this address, when there was one).
    pub first: String,
    /// The last packet.
    pub last: String,
    pub ip: String,
    /// The MAC the flows went to (a router's for an address off the segment).
    pub mac: String,
    pub service: String,
    pub allowed: bool,
    pub flows: u64,
    pub bytes: u64,
}

/// A workload a traceback found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TracedWorkload {
    pub mac: String,
    /// Who it was at its first resolution (or first contact).
    pub identity_then: Option<IdentityView>,
    /// Who it is as the store last knew it.
    pub identity_now: Option<IdentityView>,
    /// The addresses it held in the window.
    pub addresses: Vec<AddressSpan>,
    /// It resolved the name (else it only contacted an address).
    pub resolved: bool,
    /// Its resolutions still kept raw, oldest first.
    pub resolutions: Vec<Resolution>,
    /// Resolutions beyond those listed.
    pub more_resolutions: u64,
    pub passive_dns: Vec<PassiveDns>,
    /// Its flows to the target, or to the addresses the name resolved to.
    pub contacts: Vec<Contact>,
    #[serde(skip, default)]
    pub first_ms: i64,
}

/// A traceback's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Traceback {
    pub target: String,
    pub since: String,
    pub until: String,
    /// The addresses the name resolved to in the window.
    pub answers: Vec<String>,
    /// Earliest first.
    pub workloads: Vec<TracedWorkload>,
    /// More workloads matched than are listed.
    pub truncated: bool,
}

/// A passive-DNS row as read.
struct PdnsRow {
    rname: String,
    client_mac: i64,
    answer: Vec<u8>,
    qname: String,
    rcode: u16,
    first_ms: i64,
    last_ms: i64,
    count: u64,
    ttl: u32,
}

/// A contact's source, destination MAC and address, protocol, port and verdict.
type ContactId = (i64, i64, Vec<u8>, i64, i64, bool);

/// A contacts row as read.
struct ContactRow {
    src_mac: i64,
    dst_mac: i64,
    dst_ip: Vec<u8>,
    proto: i64,
    port: i64,
    allowed: bool,
    flows: u64,
    bytes: u64,
    first_ms: i64,
    last_start_ms: i64,
    last_ms: i64,
}

impl RecordsReader {
    /// Who resolved or contacted `target` in `[since_ms, until_ms]`.
    pub fn traceback(
        &self,
        target: &Target,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Traceback, RecordsError> {
        let pdns = self.pdns_rows(target, since_ms, until_ms)?;
        // Addresses whose contacts count, and since when for whom: after the
        // first resolution that answered them for a workload.
        let mut answered: BTreeMap<Vec<u8>, BTreeMap<i64, i64>> = BTreeMap::new();
        let mut by_client: BTreeMap<i64, Vec<PdnsRow>> = BTreeMap::new();
        for row in pdns {
            if row.answer.len() == 16 {
                let first = answered.entry(row.answer.clone()).or_default();
                let t = first.entry(row.client_mac).or_insert(row.first_ms);
                *t = (*t).min(row.first_ms);
            }
            by_client.entry(row.client_mac).or_default().push(row);
        }
        let mut found: BTreeMap<i64, TracedWorkload> = BTreeMap::new();
        let wanted: BTreeMap<i64, BTreeSet<&str>> = by_client
            .iter()
            .map(|(mac, rows)| (*mac, rows.iter().map(|r| r.qname.as_str()).collect()))
            .collect();
        let mut resolved = self.resolutions(&wanted, since_ms, until_ms)?;
        for (mac, rows) in &by_client {
            let mac = *mac;
            let (resolutions, more) = resolved.remove(&mac).unwrap_or_default();
            let first_ms = rows.iter().map(|r| r.first_ms).min().unwrap_or(since_ms);
            found.insert(
                mac,
                TracedWorkload {
                    mac: mac_text(mac),
                    identity_then: resolutions.first().and_then(|r| r.identity.clone()),
                    identity_now: None,
                    addresses: Vec::new(),
                    resolved: true,
                    resolutions,
                    more_resolutions: more,
                    passive_dns: rows.iter().map(passive).collect(),
                    contacts: Vec::new(),
                    first_ms,
                },
            );
        }
        let contacts = match target {
            Target::Net(net) => {
                let (lo, hi) = (ip_bytes(net.network()), ip_bytes(net.broadcast()));
                self.contact_rows(&lo, &hi, since_ms, until_ms)?
            }
            Target::Domain { .. } => {
                let mut all = Vec::new();
                for ip in answered.keys().take(MAX_ADDRESSES) {
                    all.extend(self.contact_rows(ip, ip, since_ms, until_ms)?);
                }
                all
            }
        };
        // With the earliest start and the last packet as numbers, made text
        // once a contact, not twice a contact row (a busy address has a row
        // an hour and workload).
        let mut merged: BTreeMap<ContactId, (Contact, i64, i64)> = BTreeMap::new();
        for c in contacts {
            // For a name: the flows after the workload's first resolution
            // that answered the address; for a workload that never resolved
            // it, after the name first resolved to the address for anyone
            // (a shared address reached before is not the name's).
            let after = match target {
                Target::Domain { .. } => answered.get(&c.dst_ip).map_or(since_ms, |by| {
                    by.get(&c.src_mac)
                        .or_else(|| by.values().min())
                        .copied()
                        .unwrap_or(since_ms)
                }),
                Target::Net(_) => since_ms,
            };
            if c.last_start_ms < after {
                continue;
            }
            let first = if c.first_ms >= after {
                c.first_ms
            } else {
                c.last_start_ms
            };
            let key = (
                c.src_mac,
                c.dst_mac,
                c.dst_ip.clone(),
                c.proto,
                c.port,
                c.allowed,
            );
            let (entry, first_ms, last_ms) = merged.entry(key).or_insert_with(|| {
                let contact = Contact {
                    first: String::new(),
                    last: String::new(),
                    ip: ip_of(&c.dst_ip).to_string(),
                    mac: mac_text(c.dst_mac),
                    service: service_text(c.proto, c.port),
                    allowed: c.allowed,
                    flows: 0,
                    bytes: 0,
                };
                (contact, first, c.last_ms)
            });
            entry.flows += c.flows;
            entry.bytes += c.bytes;
            *first_ms = (*first_ms).min(first);
            *last_ms = (*last_ms).max(c.last_ms);
            let w = found.entry(c.src_mac).or_insert_with(|| TracedWorkload {
                mac: mac_text(c.src_mac),
                identity_then: None,
                identity_now: None,
                addresses: Vec::new(),
                resolved: false,
                resolutions: Vec::new(),
                more_resolutions: 0,
                passive_dns: Vec::new(),
                contacts: Vec::new(),
                first_ms: first,
            });
            w.first_ms = w.first_ms.min(first);
        }
        for ((src, ..), (mut contact, first_ms, last_ms)) in merged {
            if let Some(w) = found.get_mut(&src) {
                contact.first = time_text(first_ms);
                contact.last = time_text(last_ms);
                w.contacts.push(contact);
            }
        }
        let truncated = found.len() > MAX_WORKLOADS;
        let mut found: Vec<(i64, TracedWorkload)> = found.into_iter().collect();
        found.sort_by_key(|(_, w)| w.first_ms);
        found.truncate(MAX_WORKLOADS);
        let mut workloads = Vec::with_capacity(found.len());
        for (mac, mut w) in found {
            w.identity_now = self.identity_now(mac)?;
            if w.identity_then.is_none() {
                w.identity_then = self.identity_at(mac, w.first_ms)?;
            }
            w.addresses = self.addresses_of(crate::records::mac_of(mac), since_ms, until_ms)?;
            w.contacts.sort_by(|a, b| a.first.cmp(&b.first));
            workloads.push(w);
        }
        Ok(Traceback {
            target: target.to_string(),
            since: time_text(since_ms),
            until: time_text(until_ms),
            answers: answered.keys().map(|b| ip_of(b).to_string()).collect(),
            workloads,
            truncated,
        })
    }

    fn pdns_rows(
        &self,
        target: &Target,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<PdnsRow>, RecordsError> {
        let cols = "rname, client_mac, answer, qname, rcode, first_ms, last_ms, count, ttl";
        let read = |r: &rusqlite::Row<'_>| -> Result<PdnsRow, rusqlite::Error> {
            Ok(PdnsRow {
                rname: r.get(0)?,
                client_mac: r.get(1)?,
                answer: r.get(2)?,
                qname: r.get(3)?,
                rcode: u16::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                first_ms: r.get(5)?,
                last_ms: r.get(6)?,
                count: crate::records::count_at(r, 7)?,
                ttl: u32::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
            })
        };
        let mut out = Vec::new();
        match target {
            Target::Domain { name, exact } => {
                let r = reversed(name);
                let mut stmt = self.conn().prepare_cached(&format!(
                    "SELECT {cols} FROM pdns WHERE rname >= ?1 AND rname < ?2
                     AND last_ms >= ?3 AND first_ms <= ?4"
                ))?;
                let rows = stmt.query_map(
                    rusqlite::params![r, format!("{r}/"), since_ms, until_ms],
                    read,
                )?;
                let under = format!("{r}.");
                for row in rows {
                    let row = row?;
                    if row.rname == r || (!exact && row.rname.starts_with(&under)) {
                        out.push(row);
                    }
                }
            }
            Target::Net(net) => {
                let (lo, hi) = (ip_bytes(net.network()), ip_bytes(net.broadcast()));
                let mut stmt = self.conn().prepare_cached(&format!(
                    "SELECT {cols} FROM pdns WHERE answer BETWEEN ?1 AND ?2
                     AND last_ms >= ?3 AND first_ms <= ?4"
                ))?;
                let rows = stmt.query_map(
                    rusqlite::params![lo.to_vec(), hi.to_vec(), since_ms, until_ms],
                    read,
                )?;
                for row in rows {
                    out.push(row?);
                }
            }
        }
        Ok(out)
    }

    /// Each workload's raw resolutions of its names (`wanted`: MAC -> the
    /// names) in the window, oldest first (at most [`MAX_RESOLUTIONS`]), and
    /// how many more there were. One pass over each name's responses for
    /// all the workloads (the index is by name and time: a pass a workload
    /// and name read a popular name's responses once for every workload).
    fn resolutions(
        &self,
        wanted: &BTreeMap<i64, BTreeSet<&str>>,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<BTreeMap<i64, (Vec<Resolution>, u64)>, RecordsError> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {RESOLUTION_COLUMNS}, client_mac FROM dns WHERE id IN (
                SELECT id FROM dns_names WHERE qname = ?1 AND time_ms BETWEEN ?2 AND ?3)"
        ))?;
        let qnames: BTreeSet<&str> = wanted.values().flatten().copied().collect();
        let mut raw: BTreeMap<i64, Vec<(Resolution, i64)>> = BTreeMap::new();
        for q in qnames {
            let mut rows = stmt.query(rusqlite::params![q, since_ms, until_ms])?;
            while let Some(r) = rows.next()? {
                let mac: i64 = r.get(8)?;
                if wanted.get(&mac).is_some_and(|names| names.contains(q)) {
                    raw.entry(mac).or_default().push(read_resolution(r)?);
                }
            }
        }
        let mut out = BTreeMap::new();
        for (mac, mut all) in raw {
            all.sort_by_key(|(r, _)| r.time_ms);
            let more = all.len().saturating_sub(MAX_RESOLUTIONS) as u64;
            all.truncate(MAX_RESOLUTIONS);
            out.insert(mac, (self.with_identities(all)?, more));
        }
        Ok(out)
    }

    /// Resolutions with the identities their rows name (each read once).
    pub(super) fn with_identities(
        &self,
        rows: Vec<(Resolution, i64)>,
    ) -> Result<Vec<Resolution>, RecordsError> {
        let mut identities: BTreeMap<i64, Option<IdentityView>> = BTreeMap::new();
        let mut out = Vec::with_capacity(rows.len());
        for (mut r, client_id) in rows {
            r.identity = match identities.get(&client_id) {
                Some(i) => i.clone(),
                None => {
                    let i = self.identity_by_id(client_id)?;
                    identities.insert(client_id, i.clone());
                    i
                }
            };
            out.push(r);
        }
        Ok(out)
    }

    /// Contacts to addresses in `[lo, hi]` whose flows began in the window.
    fn contact_rows(
        &self,
        lo: &[u8],
        hi: &[u8],
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<ContactRow>, RecordsError> {
        // By address first (`contacts_dst`): with two ranges SQLite may take
        // the hour's index instead, and read every contact of the window for
        // one address (bench/RESULTS.md, issue 20). One address is an
        // equality; a network's range keeps the hours out of the choice.
        let mut stmt = self.conn().prepare_cached(if lo == hi {
            "SELECT src_mac, dst_mac, dst_ip, proto, port, allowed, flows, bytes, first_ms,
                last_start_ms, last_ms
             FROM contacts WHERE dst_ip = ?1 AND hour_ms BETWEEN ?3 AND ?4
                AND last_start_ms >= ?5 AND first_ms <= ?4"
        } else {
            "SELECT src_mac, dst_mac, dst_ip, proto, port, allowed, flows, bytes, first_ms,
                last_start_ms, last_ms
             FROM contacts WHERE dst_ip BETWEEN ?1 AND ?2 AND +hour_ms BETWEEN ?3 AND ?4
                AND last_start_ms >= ?5 AND first_ms <= ?4"
        })?;
        let rows = stmt.query_map(
            rusqlite::params![
                lo.to_vec(),
                hi.to_vec(),
                hour_of(since_ms),
                until_ms,
                since_ms
            ],
            |r| {
                Ok(ContactRow {
                    src_mac: r.get(0)?,
                    dst_mac: r.get(1)?,
                    dst_ip: r.get(2)?,
                    proto: r.get(3)?,
                    port: r.get(4)?,
                    allowed: r.get(5)?,
                    flows: crate::records::count_at(r, 6)?,
                    bytes: crate::records::count_at(r, 7)?,
                    first_ms: r.get(8)?,
                    last_start_ms: r.get(9)?,
                    last_ms: r.get(10)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Who `mac` was around `at_ms`: the source identity of its hourly
    /// rollup rows of that hour, else as the store last knew it.
    pub(super) fn identity_at(
        &self,
        mac: i64,
        at_ms: i64,
    ) -> Result<Option<IdentityView>, RecordsError> {
        let id: Option<i64> = {
            // The MAC's identities first, then each one's rows of the hour
            // (the key's prefix), not every row of the hour.
            let mut stmt = self.conn().prepare_cached(
                "SELECT h.src_id FROM hourly h
                 WHERE h.hour_ms = ?1 AND h.src_id IN (SELECT id FROM identities WHERE mac = ?2)
                 ORDER BY h.src_id LIMIT 1",
            )?;
            let mut rows = stmt.query(rusqlite::params![hour_of(at_ms), mac])?;
            match rows.next()? {
                Some(r) => Some(r.get(0)?),
                None => None,
            }
        };
        match id {
            Some(id) => self.identity_by_id(id),
            None => self.identity_now(mac),
        }
    }
}

/// The columns [`read_resolution`] reads from `dns`.
pub(super) const RESOLUTION_COLUMNS: &str =
    "time_ms, client_ip, server_ip, qname, qtype, rcode, answers, client_id";

/// A `dns` row of [`RESOLUTION_COLUMNS`]: the resolution (its identity not
/// read yet) and the client's identity id.
pub(super) fn read_resolution(r: &rusqlite::Row<'_>) -> Result<(Resolution, i64), rusqlite::Error> {
    let time_ms: i64 = r.get(0)?;
    Ok((
        Resolution {
            time: time_text(time_ms),
            client_ip: ip_of(&r.get::<_, Vec<u8>>(1)?).to_string(),
            server_ip: ip_of(&r.get::<_, Vec<u8>>(2)?).to_string(),
            qname: r.get(3)?,
            qtype: u16::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
            rcode: u16::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
            answers: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
            identity: None,
            time_ms,
        },
        r.get(7)?,
    ))
}

fn passive(r: &PdnsRow) -> PassiveDns {
    let mut labels: Vec<&str> = r.rname.split('.').collect();
    labels.reverse();
    PassiveDns {
        qname: r.qname.clone(),
        name: labels.join("."),
        answer: (r.answer.len() == 16).then(|| ip_of(&r.answer).to_string()),
        rcode: r.rcode,
        first: time_text(r.first_ms),
        last: time_text(r.last_ms),
        count: r.count,
        ttl: r.ttl,
    }
}
