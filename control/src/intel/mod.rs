//! Threat intelligence: feeds of addresses, networks and domains, read from
//! files ([`parse`]) and held as sets of their own ([`Intel`]): the
//! addresses as the packet path asks them ([`dataplane::intel::IpSet`]),
//! the domains as the DNS records ask them ([`domains::DomainSet`]). Each
//! entry keeps its feed, category, severity and when it was added.
//!
//! Built beside the policy, never compiled into its rules: a feed that
//! changes makes a new [`Intel`], not a new rule set.

pub mod domains;
pub mod parse;

use dataplane::intel::{EntryId, IpSet};
use domains::DomainSet;
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// What a feed's matches do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Log and alert only.
    Alert,
    /// Alert and block.
    Block,
}

/// How a feed file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One address, network or domain a line; `#` starts a comment.
    List,
    /// A hosts file (`0.0.0.0 bad.example`): the names are the entries.
    Hosts,
    /// `indicator,category,severity` (category and severity optional).
    Csv,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "list" => Ok(Format::List),
            "hosts" => Ok(Format::Hosts),
            "csv" => Ok(Format::Csv),
            _ => Err(format!("format {s:?}: expected list, hosts or csv")),
        }
    }
}

/// How bad a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Severity, String> {
        match s.to_ascii_lowercase().as_str() {
            "low" | "1" => Ok(Severity::Low),
            "medium" | "2" => Ok(Severity::Medium),
            "high" | "3" => Ok(Severity::High),
            "critical" | "4" => Ok(Severity::Critical),
            _ => Err(format!(
                "severity {s:?}: expected low, medium, high or critical (or 1 to 4)"
            )),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

/// What an entry lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Indicator {
    /// An address (a /32 or /128) or a network.
    Net(IpNet),
    /// A domain and every name under it.
    Domain(String),
}

impl fmt::Display for Indicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Indicator::Net(n) if n.prefix_len() == n.max_prefix_len() => {
                write!(f, "{}", n.addr())
            }
            Indicator::Net(n) => write!(f, "{n}"),
            Indicator::Domain(d) => f.write_str(d),
        }
    }
}

/// One line of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub indicator: Indicator,
    pub category: Option<String>,
    /// `None`: the feed's.
    pub severity: Option<Severity>,
}

impl Entry {
    pub fn new(indicator: Indicator) -> Entry {
        Entry {
            indicator,
            category: None,
            severity: None,
        }
    }
}

/// A feed as the sets know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub name: String,
    pub action: Action,
    /// The severity of its entries that name none.
    pub severity: Severity,
    /// Quarantine a workload that resolves or contacts an entry.
    pub quarantine: bool,
}

/// An entry as held: its feed, and when it was added (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub entry: Entry,
    /// An index into [`Intel::feeds`].
    pub feed: u16,
    pub added_ms: i64,
}

/// Every feed's entries, and the sets that match them.
#[derive(Debug, Default)]
pub struct Intel {
    pub feeds: Vec<Feed>,
    entries: Vec<Held>,
    ips: IpSet,
    domains: DomainSet,
}

/// What matched: the entry and its feed.
#[derive(Debug, Clone, Copy)]
pub struct Match<'a> {
    pub id: EntryId,
    pub held: &'a Held,
    pub feed: &'a Feed,
}

impl Intel {
    /// The sets of `feeds` and their entries (`entries[i].feed` indexes
    /// `feeds`). An indicator listed by several entries matches the first.
    pub fn new(feeds: Vec<Feed>, entries: Vec<Held>) -> Intel {
        let ids = |i: usize| EntryId::try_from(i).unwrap_or(EntryId::MAX);
        let ips = IpSet::new(entries.iter().enumerate().filter_map(
            |(i, h)| match &h.entry.indicator {
                Indicator::Net(n) => Some((*n, ids(i))),
                Indicator::Domain(_) => None,
            },
        ));
        let domains =
            DomainSet::new(entries.iter().enumerate().filter_map(
                |(i, h)| match &h.entry.indicator {
                    Indicator::Domain(d) => Some((d.clone(), ids(i))),
                    Indicator::Net(_) => None,
                },
            ));
        Intel {
            feeds,
            entries,
            ips,
            domains,
        }
    }

    fn matched(&self, id: EntryId) -> Option<Match<'_>> {
        let held = self.entries.get(id as usize)?;
        let feed = self.feeds.get(usize::from(held.feed))?;
        Some(Match { id, held, feed })
    }

    /// The entry listing `ip`, if any.
    pub fn ip(&self, ip: IpAddr) -> Option<Match<'_>> {
        self.ips.lookup(ip).and_then(|id| self.matched(id))
    }

    /// The entry listing `name` or a domain it is under, if any.
    pub fn domain(&self, name: &str) -> Option<Match<'_>> {
        self.domains.lookup(name).and_then(|id| self.matched(id))
    }

    /// The address set, for the packet path.
    pub fn ip_set(&self) -> &IpSet {
        &self.ips
    }

    pub fn entries(&self) -> &[Held] {
        &self.entries
    }

    /// Heap bytes of the match sets (entries' own text not counted).
    pub fn set_bytes(&self) -> usize {
        self.ips.address_bytes() + self.domains.bytes()
    }
}

#[cfg(test)]
mod tests;
