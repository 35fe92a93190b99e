//! Forensic queries over the records store, by identity, never by address
//! alone: who held an address when ([`RecordsReader::addresses`]), who
//! resolved or contacted a domain or address and what followed
//! ([`RecordsReader::traceback`]), and how far a workload got from a point
//! in time ([`RecordsReader::blast_radius`]).
//!
//! They read the derived tables ([`super::derived`]): passive DNS, the raw
//! DNS responses, address history, and contacts by source MAC, so that an
//! answer over a month reads rows of the workloads involved, not a month of
//! records.

mod blast;
mod blast_dst;
mod dns_list;
mod params;
mod traceback;
mod traced;

#[cfg(test)]
pub(crate) use blast::Limits;
pub use blast::{Attempt, BlastRadius, Reached, MAX_DEPTH};
pub use dns_list::{DnsParams, DnsQuery};
pub use params::{AddressParams, BlastParams, TracebackParams};
pub use traceback::SHARED_NAMES;
pub use traced::{
    Contact, PassiveDns, Resolution, Target, Traceback, TracebackCursor, TracebackPage,
    TracedWorkload,
};

use super::addresses::AddressSource;
use super::nodes::ip_of;
use super::query::{mac_text, time_text};
use super::{ip_bytes, mac_int, RecordsError, RecordsReader};
use dataplane::wire::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

/// Milliseconds in a day: the address rows' period.
const DAY_MS: i64 = 86_400_000;
/// Milliseconds in an hour: the contact rows' period.
const HOUR_MS: i64 = 3_600_000;

/// A workload as the store last knew it (or as it was at a point).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdentityView {
    pub mac: String,
    /// Empty for a MAC no workload had.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub groups: Vec<String>,
}

/// A MAC holding an address from `first` to `last` (as seen: the first
/// and last time something said so).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddressSpan {
    pub ip: String,
    pub mac: String,
    /// The MAC's workload as the store last knew it ('' for none).
    pub name: String,
    pub first: String,
    pub last: String,
    /// What said so: arp, dhcp, flow, dns.
    pub sources: Vec<String>,
    #[serde(skip, default)]
    pub first_ms: i64,
    #[serde(skip, default)]
    pub last_ms: i64,
}

/// An address's holders over a window, or at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddressHistory {
    pub ip: String,
    /// The time asked about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// With `at`: false when no span covers it and `holders` is the last
    /// holder seen before it.
    pub exact: bool,
    /// Oldest first; with `at`, the spans covering it, narrowest first.
    pub holders: Vec<AddressSpan>,
}

impl RecordsReader {
    /// Who held `ip`: every span in `[since_ms, until_ms]` (oldest first),
    /// or with `at_ms` the holder then: the spans that cover it, narrowest
    /// first (a MAC that took an address back within a day spans the other
    /// holder's time; the narrower span is the one that was there), else the
    /// last holder seen before it.
    pub fn addresses(
        &self,
        ip: IpAddr,
        at_ms: Option<i64>,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<AddressHistory, RecordsError> {
        let mut spans = self.spans(
            "ip = ?1 AND day_ms BETWEEN ?2 AND ?3",
            rusqlite::params![ip_bytes(ip).to_vec(), day_of(since_ms), until_ms],
            false,
        )?;
        spans.retain(|s| s.last_ms >= since_ms && s.first_ms <= until_ms);
        let (holders, exact) = match at_ms {
            None => (spans, true),
            Some(at) => {
                let mut covering: Vec<AddressSpan> = spans
                    .iter()
                    .filter(|s| s.first_ms <= at && at <= s.last_ms)
                    .cloned()
                    .collect();
                covering.sort_by_key(|s| s.last_ms - s.first_ms);
                if covering.is_empty() {
                    let before = spans
                        .into_iter()
                        .filter(|s| s.last_ms < at)
                        .max_by_key(|s| s.last_ms);
                    (before.into_iter().collect(), false)
                } else {
                    (covering, true)
                }
            }
        };
        Ok(AddressHistory {
            ip: ip.to_string(),
            at: at_ms.map(time_text),
            exact,
            holders,
        })
    }

    /// The addresses `mac` held in the window, oldest first.
    pub fn addresses_of(
        &self,
        mac: MacAddr,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<AddressSpan>, RecordsError> {
        let mut spans = self.spans(
            "mac = ?1 AND day_ms BETWEEN ?2 AND ?3",
            rusqlite::params![mac_int(mac), day_of(since_ms), until_ms],
            true,
        )?;
        spans.retain(|s| s.last_ms >= since_ms && s.first_ms <= until_ms);
        Ok(spans)
    }

    /// Address rows matching `cond`, made into spans: the rows of one MAC
    /// and address that follow each other (in the order of their first
    /// time, no other holder between) are one span.
    fn spans(
        &self,
        cond: &str,
        params: impl rusqlite::Params,
        by_ip: bool,
    ) -> Result<Vec<AddressSpan>, RecordsError> {
        let mut stmt = self.conn().prepare(&format!(
            "SELECT ip, mac, first_ms, last_ms, sources FROM addresses WHERE {cond}
             ORDER BY {}first_ms",
            if by_ip { "ip, " } else { "" }
        ))?;
        let rows = stmt.query_map(params, |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out: Vec<(Vec<u8>, i64, i64, i64, i64)> = Vec::new();
        for row in rows {
            let (ip, mac, first, last, sources) = row?;
            match out.last_mut() {
                Some(prev) if prev.0 == ip && prev.1 == mac => {
                    prev.3 = prev.3.max(last);
                    prev.4 |= sources;
                }
                _ => out.push((ip, mac, first, last, sources)),
            }
        }
        let mut names: BTreeMap<i64, String> = BTreeMap::new();
        let mut spans = Vec::with_capacity(out.len());
        for (ip, mac, first_ms, last_ms, sources) in out {
            let name = match names.get(&mac) {
                Some(n) => n.clone(),
                None => {
                    let n = self.identity_now(mac)?.map(|i| i.name).unwrap_or_default();
                    names.insert(mac, n.clone());
                    n
                }
            };
            spans.push(AddressSpan {
                ip: ip_of(&ip).to_string(),
                mac: mac_text(mac),
                name,
                first: time_text(first_ms),
                last: time_text(last_ms),
                sources: AddressSource::of_bits(sources)
                    .into_iter()
                    .map(String::from)
                    .collect(),
                first_ms,
                last_ms,
            });
        }
        Ok(spans)
    }

    /// The identity the store last made for `mac` (its highest id).
    pub(super) fn identity_now(&self, mac: i64) -> Result<Option<IdentityView>, RecordsError> {
        self.identity_where("mac = ?1 ORDER BY id DESC LIMIT 1", mac)
    }

    /// The names the store last knew for `macs` (its highest identity id
    /// each), read in one pass over the identities rather than a look-up
    /// a MAC; a MAC with no identity, or no workload's, is absent or ''.
    pub(super) fn names_of(
        &self,
        macs: impl Iterator<Item = i64>,
    ) -> Result<HashMap<i64, String>, RecordsError> {
        let wanted: HashSet<i64> = macs.collect();
        let mut out = HashMap::with_capacity(wanted.len());
        if wanted.is_empty() {
            return Ok(out);
        }
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT mac, name FROM identities ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let mac: i64 = r.get(0)?;
            if wanted.contains(&mac) {
                out.insert(mac, r.get(1)?);
            }
        }
        Ok(out)
    }

    /// The identity with row id `id`.
    pub(super) fn identity_by_id(&self, id: i64) -> Result<Option<IdentityView>, RecordsError> {
        self.identity_where("id = ?1", id)
    }

    fn identity_where(&self, cond: &str, v: i64) -> Result<Option<IdentityView>, RecordsError> {
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT mac, name, labels_json, groups_json FROM identities WHERE {cond}"
        ))?;
        let mut rows = stmt.query([v])?;
        let Some(r) = rows.next()? else {
            return Ok(None);
        };
        Ok(Some(IdentityView {
            mac: mac_text(r.get(0)?),
            name: r.get(1)?,
            labels: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
            groups: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
        }))
    }
}

fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) * DAY_MS
}

fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// A service as text: `tcp/443`, `udp/53`, `icmp`, `proto 47`.
fn service_text(proto: i64, port: i64) -> String {
    match (u8::try_from(proto), u16::try_from(port)) {
        (Ok(proto), Ok(port)) => crate::services::service_text(proto, port),
        _ => format!("proto {proto}"),
    }
}
