//! Address history: which MAC held which address, per UTC day, with the
//! first and last time it was seen holding it, and what said so.
//!
//! What counts as holding: the sender of an ARP packet, the client of a
//! DHCP ACK (any unicast MAC, any address: on a segment both are the
//! host's own word), and the ends of flows and DNS responses when the
//! address is not globally reachable. A router's MAC is on every flow to
//! the internet with the internet's addresses: those are no workload's,
//! and a row per internet address a day would be most of the table
//! (docs/decisions.md, "Address history").

use super::nodes::Network;
use super::{ip_bytes, mac_int};
use dataplane::wire::MacAddr;
use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::net::IpAddr;

/// Milliseconds in a UTC day: the rows' period.
const DAY_MS: i64 = 86_400_000;

/// What said a MAC held an address (bits of `addresses.sources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSource {
    Arp = 1,
    Dhcp = 2,
    Flow = 4,
    Dns = 8,
}

impl AddressSource {
    pub const ALL: [AddressSource; 4] = [
        AddressSource::Arp,
        AddressSource::Dhcp,
        AddressSource::Flow,
        AddressSource::Dns,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AddressSource::Arp => "arp",
            AddressSource::Dhcp => "dhcp",
            AddressSource::Flow => "flow",
            AddressSource::Dns => "dns",
        }
    }

    /// The sources a stored bit set names.
    pub fn of_bits(bits: i64) -> Vec<&'static str> {
        AddressSource::ALL
            .iter()
            .filter(|s| bits & (**s as i64) != 0)
            .map(|s| s.name())
            .collect()
    }
}

/// A MAC seen holding an address (ARP, DHCP) from the recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressSeen {
    pub mac: MacAddr,
    pub ip: IpAddr,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub source: AddressSource,
}

/// Whether a flow's or a DNS response's end is taken as holding its address
/// (see the module's text): not a broadcast or multicast MAC, and an
/// address that is not on the internet.
pub(super) fn held(mac: i64, ip: IpAddr) -> bool {
    super::mac_of(mac).is_station() && Network::of(ip) == Network::Private && !ip.is_unspecified()
}

/// Ordered as the table's primary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    ip: [u8; 16],
    mac: i64,
    day_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    first_ms: i64,
    last_ms: i64,
    sources: i64,
}

/// Address rows waiting to be written.
#[derive(Debug, Default)]
pub(super) struct Addresses {
    rows: HashMap<Key, Span, ahash::RandomState>,
}

impl Addresses {
    /// `mac` held `ip` from `first_ms` to `last_ms` (a flow's life; one
    /// instant for ARP, DHCP and DNS). Counted in the day of `last_ms`, from
    /// that day's start at the earliest.
    pub(super) fn add(
        &mut self,
        mac: i64,
        ip: IpAddr,
        first_ms: i64,
        last_ms: i64,
        source: AddressSource,
    ) {
        let day_ms = last_ms.div_euclid(DAY_MS) * DAY_MS;
        let first_ms = first_ms.clamp(day_ms, last_ms);
        let span = self
            .rows
            .entry(Key {
                ip: ip_bytes(ip),
                mac,
                day_ms,
            })
            .or_insert(Span {
                first_ms,
                last_ms,
                sources: 0,
            });
        span.first_ms = span.first_ms.min(first_ms);
        span.last_ms = span.last_ms.max(last_ms);
        span.sources |= source as i64;
    }

    pub(super) fn seen(&mut self, a: &AddressSeen) {
        self.add(mac_int(a.mac), a.ip, a.time_ms, a.time_ms, a.source);
    }

    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(super) fn clear(&mut self) {
        self.rows.clear();
    }

    pub(super) fn write(&mut self, tx: &Connection) -> Result<(), rusqlite::Error> {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO addresses (ip, mac, day_ms, first_ms, last_ms, sources)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (ip, mac, day_ms) DO UPDATE SET
                first_ms = min(first_ms, excluded.first_ms),
                last_ms = max(last_ms, excluded.last_ms),
                sources = sources | excluded.sources",
        )?;
        // In the primary key's order (see `Pdns::write`).
        let mut rows: Vec<(Key, Span)> = self.rows.drain().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (k, s) in rows {
            upsert.execute(params![
                k.ip, k.mac, k.day_ms, s.first_ms, s.last_ms, s.sources
            ])?;
        }
        Ok(())
    }
}
