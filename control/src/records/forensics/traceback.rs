//! Traceback: the workloads that resolved a domain (or a name under it) or
//! contacted an address, each with who it was then and now, the addresses it
//! had, every resolution, and the flows to the answered addresses after.

use super::traced::{
    Contact, PassiveDns, Resolution, Target, Traceback, TracebackCursor, TracebackPage,
    TracedWorkload,
};
use super::{hour_of, service_text, IdentityView};
use crate::records::dns_rows::reversed;
use crate::records::nodes::ip_of;
use crate::records::query::{mac_text, time_text};
use crate::records::{ip_bytes, RecordsError, RecordsReader};
use rusqlite::OptionalExtension;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Resolutions listed per workload at most (the rest counted)...
const MAX_RESOLUTIONS: usize = 200;
/// ...and on a page at most, shared by its workloads (at least 10 each):
/// a page of a popular name's hundred workloads would list 20,000.
const PAGE_RESOLUTIONS: usize = 500;
/// Workloads in a page by default...
pub const DEFAULT_WORKLOADS: usize = 25;
/// ...and at most.
pub const MAX_WORKLOADS: usize = 1_000;
/// Answered addresses whose contacts are looked up at most.
const MAX_ADDRESSES: usize = 1_000;
/// An answered address is shared when more names than this, other than the
/// target's, resolved to it in the window (passive DNS): a CDN's or a
/// hosting provider's. Contacts to it count only for workloads that
/// resolved the target; anyone's reach of it is no sign of the name.
pub const SHARED_NAMES: usize = 8;

/// A passive-DNS row as read.
struct PdnsRow {
    rname: String,
    client_mac: i64,
    answer: Vec<u8>,
    qname: String,
    /// `names.id` of the name asked.
    qname_id: i64,
    rcode: u16,
    first_ms: i64,
    last_ms: i64,
    count: u64,
    ttl: u32,
}

/// An edge of a listed workload to one of the target's addresses.
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

type Hasher = ahash::RandomState;

impl RecordsReader {
    /// Who resolved or contacted `target` in `[since_ms, until_ms]`: the
    /// first page of [`DEFAULT_WORKLOADS`] (see [`Self::traceback_page`]).
    pub fn traceback(
        &self,
        target: &Target,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Traceback, RecordsError> {
        self.traceback_page(target, since_ms, until_ms, TracebackPage::default())
    }

    /// Who resolved or contacted `target` in `[since_ms, until_ms]`, a page
    /// of them. Who matched is found from passive DNS (who resolved a
    /// matching name, when first, to what) and the contacts of the
    /// addresses (the target's, or the name's answers that few other names
    /// share) grouped by workload; only the page's workloads are then read
    /// in full (identity, addresses, resolutions, contacts), so an answer
    /// costs its page, not the fleet.
    pub fn traceback_page(
        &self,
        target: &Target,
        since_ms: i64,
        until_ms: i64,
        page: TracebackPage,
    ) -> Result<Traceback, RecordsError> {
        let limit = page.limit.clamp(1, MAX_WORKLOADS);
        // One read transaction: one snapshot for all the look-ups, and one
        // lock taken for them.
        let tx = self.conn().unchecked_transaction()?;
        // Passive DNS of the target, read once: who resolved what when,
        // and the names asked (the target's, to tell from others at an
        // address).
        let rows = self.pdns_rows(target, since_ms, until_ms, None)?;
        let own_names: HashSet<i64, Hasher> = rows.iter().map(|r| r.qname_id).collect();
        // Addresses the name resolved to, and when first for whom.
        let mut answered: BTreeMap<[u8; 16], HashMap<i64, i64, Hasher>> = BTreeMap::new();
        // The workloads that resolved it, first seen at their first resolution.
        let mut resolvers: HashMap<i64, i64, Hasher> = HashMap::default();
        for row in &rows {
            let first = resolvers.entry(row.client_mac).or_insert(row.first_ms);
            *first = (*first).min(row.first_ms);
            if let Ok(ip) = <[u8; 16]>::try_from(row.answer.as_slice()) {
                let t = answered
                    .entry(ip)
                    .or_default()
                    .entry(row.client_mac)
                    .or_insert(row.first_ms);
                *t = (*t).min(row.first_ms);
            }
        }
        let mut shared: BTreeSet<[u8; 16]> = BTreeSet::new();
        let mut seen: HashMap<i64, i64, Hasher> = resolvers.clone();
        match target {
            Target::Net(net) => {
                // Everyone who reached it, at their first contact if earlier.
                let (lo, hi) = (ip_bytes(net.network()), ip_bytes(net.broadcast()));
                for (mac, first) in self.first_contacts(&lo, &hi, since_ms, until_ms)? {
                    let t = seen.entry(mac).or_insert(first);
                    *t = (*t).min(first);
                }
            }
            Target::Domain { .. } => {
                // Those that never resolved it but reached an answer few
                // other names share, after it first pointed there.
                for (ip, by) in answered.iter().take(MAX_ADDRESSES) {
                    if self.is_shared(ip, &own_names, since_ms, until_ms)? {
                        shared.insert(*ip);
                        continue;
                    }
                    let after = by.values().copied().min().unwrap_or(since_ms).max(since_ms);
                    for (mac, first) in self.first_contacts(ip, ip, after, until_ms)? {
                        if !resolvers.contains_key(&mac) {
                            let t = seen.entry(mac).or_insert(first);
                            *t = (*t).min(first);
                        }
                    }
                }
            }
        }
        // The page: first seen first, after the cursor.
        let mut keys: Vec<TracebackCursor> = seen
            .iter()
            .map(|(&mac, &first_ms)| TracebackCursor { first_ms, mac })
            .collect();
        keys.sort_unstable();
        let total = keys.len();
        let from = page.after.map_or(0, |c| keys.partition_point(|k| *k <= c));
        let listed: Vec<TracebackCursor> = keys.iter().skip(from).take(limit).copied().collect();
        let truncated = from + listed.len() < total;
        let next = if truncated {
            listed.last().map(|c| c.to_string())
        } else {
            None
        };
        let macs: HashSet<i64, Hasher> = listed.iter().map(|c| c.mac).collect();
        // The page's passive DNS, resolutions and contacts.
        let mut by_client: BTreeMap<i64, Vec<PdnsRow>> = BTreeMap::new();
        for row in rows {
            if macs.contains(&row.client_mac) {
                by_client.entry(row.client_mac).or_default().push(row);
            }
        }
        let wanted: BTreeMap<i64, BTreeSet<&str>> = by_client
            .iter()
            .map(|(mac, rows)| (*mac, rows.iter().map(|r| r.qname.as_str()).collect()))
            .collect();
        // Resolutions listed a workload: all of a few workloads', fewer of
        // a big page's ([`PAGE_RESOLUTIONS`] in all, at least 10 each).
        let each = (PAGE_RESOLUTIONS / listed.len().max(1)).clamp(10, MAX_RESOLUTIONS);
        let mut resolved = self.resolutions(&wanted, each, since_ms, until_ms)?;
        let mut workloads = Vec::with_capacity(listed.len());
        for key in &listed {
            let mac = key.mac;
            let (resolutions, more) = resolved.remove(&mac).unwrap_or_default();
            let passive_dns = by_client
                .get(&mac)
                .map(|rows| rows.iter().map(passive).collect())
                .unwrap_or_default();
            let is_resolver = resolvers.contains_key(&mac);
            let contacts = self.contacts_of(
                mac,
                target,
                &answered,
                &shared,
                is_resolver,
                since_ms,
                until_ms,
            )?;
            let identity_then = match resolutions.first().and_then(|r| r.identity.clone()) {
                Some(i) => Some(i),
                None => self.identity_at(mac, key.first_ms)?,
            };
            let identity_now = self.identity_now(mac)?;
            let addresses = self.addresses_of(crate::records::mac_of(mac), since_ms, until_ms)?;
            workloads.push(TracedWorkload {
                mac: mac_text(mac),
                identity_then,
                identity_now,
                addresses,
                resolved: is_resolver,
                resolutions,
                more_resolutions: more,
                passive_dns,
                contacts,
                first_ms: key.first_ms,
            });
        }
        tx.commit()?;
        Ok(Traceback {
            target: target.to_string(),
            since: time_text(since_ms),
            until: time_text(until_ms),
            answers: answered.keys().map(|b| ip_of(b).to_string()).collect(),
            shared_answers: shared.iter().map(|b| ip_of(b).to_string()).collect(),
            total,
            workloads,
            truncated,
            next,
        })
    }

    /// Whether more than [`SHARED_NAMES`] names not in `own` resolved to
    /// `ip` in the window (read until that many are found).
    fn is_shared(
        &self,
        ip: &[u8; 16],
        own: &HashSet<i64, Hasher>,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<bool, RecordsError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT qname_id FROM pdns WHERE answer = ?1 AND last_ms >= ?2 AND first_ms <= ?3",
        )?;
        let mut rows = stmt.query(rusqlite::params![ip.to_vec(), since_ms, until_ms])?;
        let mut others: HashSet<i64, Hasher> = HashSet::default();
        while let Some(r) = rows.next()? {
            let q: i64 = r.get(0)?;
            if !own.contains(&q) && others.insert(q) && others.len() > SHARED_NAMES {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The passive-DNS rows of the target (`macs`' only, if given).
    fn pdns_rows(
        &self,
        target: &Target,
        since_ms: i64,
        until_ms: i64,
        macs: Option<&HashSet<i64, Hasher>>,
    ) -> Result<Vec<PdnsRow>, RecordsError> {
        // Names are ids in `pdns`: `n` the row's name, `q` the name asked.
        let cols = "p.client_mac, n.rname, p.answer, q.rname, p.rcode, p.first_ms, p.last_ms,
            p.count, p.ttl, p.qname_id";
        let read = |r: &rusqlite::Row<'_>| -> Result<PdnsRow, rusqlite::Error> {
            Ok(PdnsRow {
                client_mac: r.get(0)?,
                rname: r.get(1)?,
                answer: r.get(2)?,
                qname: reversed(r.get_ref(3)?.as_str().unwrap_or_default()),
                qname_id: r.get(9)?,
                rcode: u16::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                first_ms: r.get(5)?,
                last_ms: r.get(6)?,
                count: crate::records::count_at(r, 7)?,
                ttl: u32::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
            })
        };
        let mut out = Vec::new();
        let wanted = |mac: i64| macs.is_none_or(|m| m.contains(&mac));
        match target {
            Target::Domain { name, exact } => {
                let r = reversed(name);
                let mut stmt = self.conn().prepare_cached(&format!(
                    "SELECT {cols} FROM names n CROSS JOIN pdns p ON p.name_id = n.id
                        JOIN names q ON q.id = p.qname_id
                     WHERE n.rname >= ?1 AND n.rname < ?2
                        AND p.last_ms >= ?3 AND p.first_ms <= ?4"
                ))?;
                let mut rows =
                    stmt.query(rusqlite::params![r, format!("{r}/"), since_ms, until_ms])?;
                let under = format!("{r}.");
                while let Some(row) = rows.next()? {
                    if !wanted(row.get::<_, i64>(0)?) {
                        continue;
                    }
                    let rname = row.get_ref(1)?.as_str().unwrap_or_default();
                    if rname == r || (!exact && rname.starts_with(&under)) {
                        out.push(read(row)?);
                    }
                }
            }
            Target::Net(net) => {
                let (lo, hi) = (ip_bytes(net.network()), ip_bytes(net.broadcast()));
                let mut stmt = self.conn().prepare_cached(&format!(
                    "SELECT {cols} FROM pdns p CROSS JOIN names n ON n.id = p.name_id
                        JOIN names q ON q.id = p.qname_id
                     WHERE p.answer BETWEEN ?1 AND ?2 AND p.last_ms >= ?3 AND p.first_ms <= ?4"
                ))?;
                let mut rows = stmt.query(rusqlite::params![
                    lo.to_vec(),
                    hi.to_vec(),
                    since_ms,
                    until_ms
                ])?;
                while let Some(row) = rows.next()? {
                    if wanted(row.get::<_, i64>(0)?) {
                        out.push(read(row)?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Each workload's raw resolutions of its names (`wanted`: MAC -> the
    /// names) in the window, oldest first (at most `each`), and how many
    /// more there were: the times and ids from `dns_names` (by name and
    /// time, with the client: a name's entries once for all the workloads,
    /// no response of another workload read), then the rows listed only.
    fn resolutions(
        &self,
        wanted: &BTreeMap<i64, BTreeSet<&str>>,
        each: usize,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<BTreeMap<i64, (Vec<Resolution>, u64)>, RecordsError> {
        let mut ids = self.conn().prepare_cached(
            "SELECT time_ms, id, client_mac FROM dns_names
             WHERE name_id = (SELECT id FROM names WHERE rname = ?1)
                AND time_ms BETWEEN ?2 AND ?3",
        )?;
        let mut row = self.conn().prepare_cached(&format!(
            "SELECT {RESOLUTION_COLUMNS} FROM dns WHERE id = ?1"
        ))?;
        // Name -> the workloads that asked it.
        let mut askers: BTreeMap<&str, HashSet<i64, Hasher>> = BTreeMap::new();
        for (&mac, names) in wanted {
            for q in names {
                askers.entry(q).or_default().insert(mac);
            }
        }
        let mut found: HashMap<i64, Vec<(i64, i64)>, Hasher> = HashMap::default();
        for (q, macs) in &askers {
            let mut rows = ids.query(rusqlite::params![reversed(q), since_ms, until_ms])?;
            while let Some(r) = rows.next()? {
                let mac: i64 = r.get(2)?;
                if macs.contains(&mac) {
                    found.entry(mac).or_default().push((r.get(0)?, r.get(1)?));
                }
            }
        }
        let mut out = BTreeMap::new();
        for (mac, mut all) in found {
            all.sort_unstable();
            let more = all.len().saturating_sub(each) as u64;
            all.truncate(each);
            let mut listed = Vec::with_capacity(all.len());
            for (_, id) in all {
                if let Some(r) = row.query_row([id], read_resolution).optional()? {
                    listed.push(r);
                }
            }
            out.insert(mac, (self.with_identities(listed)?, more));
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

    /// Who reached an address in `[lo, hi]` with a flow begun from
    /// `after_ms` to `until_ms`, each at its first such flow: grouped in
    /// SQLite (a busy address has a contact row an hour and workload).
    fn first_contacts(
        &self,
        lo: &[u8; 16],
        hi: &[u8; 16],
        after_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(i64, i64)>, RecordsError> {
        // By address first (`contacts_dst`): with two ranges SQLite may take
        // the hour's index instead, and read every contact of the window for
        // one address (bench/RESULTS.md, issue 20). One address is an
        // equality; a network's range keeps the hours out of the choice.
        let mut stmt = self.conn().prepare_cached(if lo == hi {
            "SELECT src_mac, min(CASE WHEN first_ms >= ?5 THEN first_ms ELSE last_start_ms END)
             FROM contacts WHERE dst_ip = ?1 AND hour_ms BETWEEN ?3 AND ?4
                AND last_start_ms >= ?5 AND first_ms <= ?4 GROUP BY src_mac"
        } else {
            "SELECT src_mac, min(CASE WHEN first_ms >= ?5 THEN first_ms ELSE last_start_ms END)
             FROM contacts WHERE dst_ip BETWEEN ?1 AND ?2 AND +hour_ms BETWEEN ?3 AND ?4
                AND last_start_ms >= ?5 AND first_ms <= ?4 GROUP BY src_mac"
        })?;
        let rows = stmt.query_map(
            rusqlite::params![
                lo.to_vec(),
                hi.to_vec(),
                hour_of(after_ms),
                until_ms,
                after_ms
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A listed workload's flows to the target's addresses (a network's, or
    /// the name's answers after the workload's first resolution that gave
    /// it, else after anyone's; a shared answer's only for a workload that
    /// resolved the name), merged by destination, service and verdict:
    /// from its edges, and for an edge not wholly in the span, its hourly
    /// contacts from the span's hour.
    #[allow(clippy::too_many_arguments)]
    fn contacts_of(
        &self,
        mac: i64,
        target: &Target,
        answered: &BTreeMap<[u8; 16], HashMap<i64, i64, Hasher>>,
        shared: &BTreeSet<[u8; 16]>,
        resolver: bool,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<Contact>, RecordsError> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT dst_mac, dst_ip, proto, port, allowed, flows, bytes, first_ms,
                last_start_ms, last_ms
             FROM edges WHERE src_mac = ?1 AND last_start_ms >= ?2 AND first_ms <= ?3 AND {}",
            match target {
                Target::Net(_) => "dst_ip BETWEEN ?4 AND ?5".to_string(),
                Target::Domain { .. } => format!(
                    "dst_ip IN ({})",
                    (4..4 + answered.len().min(MAX_ADDRESSES))
                        .map(|i| format!("?{i}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        ))?;
        let mut args: Vec<rusqlite::types::Value> =
            vec![mac.into(), since_ms.into(), until_ms.into()];
        match target {
            Target::Net(net) => {
                args.push(ip_bytes(net.network()).to_vec().into());
                args.push(ip_bytes(net.broadcast()).to_vec().into());
            }
            Target::Domain { .. } => {
                if answered.is_empty() {
                    return Ok(Vec::new());
                }
                args.extend(
                    answered
                        .keys()
                        .take(MAX_ADDRESSES)
                        .map(|ip| rusqlite::types::Value::from(ip.to_vec())),
                );
            }
        }
        let mut edges: Vec<(ContactRow, i64)> = Vec::new();
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        while let Some(r) = rows.next()? {
            let ip = r.get_ref(1)?.as_blob().unwrap_or_default();
            let Ok(ip) = <[u8; 16]>::try_from(ip) else {
                continue;
            };
            let after = match target {
                Target::Net(_) => since_ms,
                Target::Domain { .. } => {
                    let Some(by) = answered.get(&ip) else {
                        continue;
                    };
                    if shared.contains(&ip) && !resolver {
                        continue;
                    }
                    by.get(&mac)
                        .or_else(|| by.values().min())
                        .copied()
                        .unwrap_or(since_ms)
                        .max(since_ms)
                }
            };
            edges.push((
                ContactRow {
                    src_mac: mac,
                    dst_mac: r.get(0)?,
                    dst_ip: ip.to_vec(),
                    proto: r.get(2)?,
                    port: r.get(3)?,
                    allowed: r.get(4)?,
                    flows: crate::records::count_at(r, 5)?,
                    bytes: crate::records::count_at(r, 6)?,
                    first_ms: r.get(7)?,
                    last_start_ms: r.get(8)?,
                    last_ms: r.get(9)?,
                },
                after,
            ));
        }
        drop(rows);
        let mut out: Vec<(i64, Contact)> = Vec::new();
        for (e, after) in edges {
            if e.last_start_ms < after {
                continue;
            }
            let (first, last, flows, bytes) = if e.first_ms >= after && e.last_ms <= until_ms {
                (e.first_ms, e.last_ms, e.flows, e.bytes)
            } else {
                match self.contact_span(&e, after, until_ms)? {
                    Some(x) => x,
                    None => continue,
                }
            };
            out.push((
                first,
                Contact {
                    first: time_text(first),
                    last: time_text(last),
                    ip: ip_of(&e.dst_ip).to_string(),
                    mac: mac_text(e.dst_mac),
                    service: service_text(e.proto, e.port),
                    allowed: e.allowed,
                    flows,
                    bytes,
                },
            ));
        }
        out.sort_by_key(|(first, _)| *first);
        Ok(out.into_iter().map(|(_, c)| c).collect())
    }

    /// An edge's flows begun from `after_ms` to `until_ms`, from its hourly
    /// contacts: the first flow's start (the earliest start in an hour if
    /// late enough, else that hour's latest), the last packet, flows and
    /// bytes (an hour with a flow begun after counts whole).
    fn contact_span(
        &self,
        e: &ContactRow,
        after_ms: i64,
        until_ms: i64,
    ) -> Result<Option<(i64, i64, u64, u64)>, RecordsError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT min(CASE WHEN first_ms >= ?7 THEN first_ms ELSE last_start_ms END),
                max(last_ms), coalesce(sum(flows), 0), coalesce(sum(bytes), 0)
             FROM contacts WHERE src_mac = ?1 AND dst_mac = ?2 AND dst_ip = ?3 AND proto = ?4
                AND port = ?5 AND allowed = ?6 AND hour_ms BETWEEN ?8 AND ?9
                AND last_start_ms >= ?7 AND first_ms <= ?9",
        )?;
        let (first, last, flows, bytes): (Option<i64>, Option<i64>, u64, u64) = stmt.query_row(
            rusqlite::params![
                e.src_mac,
                e.dst_mac,
                e.dst_ip,
                e.proto,
                e.port,
                e.allowed,
                after_ms,
                hour_of(after_ms),
                until_ms
            ],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    crate::records::count_at(r, 2)?,
                    crate::records::count_at(r, 3)?,
                ))
            },
        )?;
        Ok(match (first, last) {
            (Some(f), Some(l)) => Some((f, l, flows, bytes)),
            _ => None,
        })
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
