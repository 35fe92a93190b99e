//! Threat intelligence: feeds of addresses, networks and domains, read from
//! files ([`parse`]) and held as sets of their own ([`Intel`]): the
//! addresses as the packet path asks them ([`dataplane::intel::IpSet`]),
//! the domains as the DNS records ask them ([`domains::DomainSet`]). Each
//! entry keeps its feed, category, severity and when it was added.
//!
//! Built beside the policy, never compiled into its rules: a feed that
//! changes makes a new [`Intel`], not a new rule set.

pub use dataplane::intel::domains;
pub mod feeds;
pub mod hunt;
mod layer;
pub mod parse;

use dataplane::intel::{Blocked, EntryId};
use ipnet::IpNet;
pub use layer::{IntelBuilder, Layer, Match, API_LAYER};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

/// What a feed's matches do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Log and alert only.
    Alert,
    /// Alert and block.
    Block,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Block => "block",
        }
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Action, String> {
        match s {
            "alert" => Ok(Action::Alert),
            "block" => Ok(Action::Block),
            _ => Err(format!("action {s:?}: expected alert or block")),
        }
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// 1 (low) to 4 (critical).
    pub fn rank(self) -> u8 {
        match self {
            Severity::Low => 1,
            Severity::Medium => 2,
            Severity::High => 3,
            Severity::Critical => 4,
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

/// Every feed's entries, and the sets that match them: the feed files'
/// layer and the API-managed feeds' layer, each an `Arc` of its own so that
/// a new reading of one shares the other.
#[derive(Debug, Default, Clone)]
pub struct Intel {
    files: Arc<Layer>,
    api: Arc<Layer>,
}

impl Intel {
    /// The sets of `entries` of `feeds` (the files' layer).
    pub fn new(feeds: Vec<Feed>, entries: impl IntoIterator<Item = (Entry, u16, i64)>) -> Intel {
        let mut b = IntelBuilder::new(feeds);
        for (entry, feed, added_ms) in entries {
            b.add(entry, feed, added_ms);
        }
        b.build()
    }

    /// The feed files' layer and the API's.
    pub fn layered(files: Arc<Layer>, api: Arc<Layer>) -> Intel {
        Intel { files, api }
    }

    /// The feed files' layer.
    pub fn files(&self) -> &Arc<Layer> {
        &self.files
    }

    /// The API-managed feeds' layer.
    pub fn api(&self) -> &Arc<Layer> {
        &self.api
    }

    fn layers(&self) -> [&Layer; 2] {
        [&self.files, &self.api]
    }

    /// The entry listing `ip`, if any: a block feed's before an alert
    /// feed's, of each the most specific, and the files' before the API's.
    pub fn ip(&self, ip: IpAddr) -> Option<Match<'_>> {
        [Action::Block, Action::Alert]
            .into_iter()
            .find_map(|a| self.layers().into_iter().find_map(|l| l.ip(a, ip)))
    }

    /// The entry listing `name` or a domain it is under, if any: a block
    /// feed's before an alert feed's.
    pub fn domain(&self, name: &str) -> Option<Match<'_>> {
        [Action::Block, Action::Alert]
            .into_iter()
            .find_map(|a| self.layers().into_iter().find_map(|l| l.domain(a, name)))
    }

    /// When the entry of feed `feed` that lists exactly `indicator` was
    /// added, if there is one.
    pub fn listed_exactly(&self, indicator: &Indicator, feed: &str) -> Option<i64> {
        self.layers()
            .into_iter()
            .find_map(|l| l.listed_exactly(indicator, feed))
    }

    /// Entry `id` in words for a log line or a record: its feed and what
    /// it lists (found through `near`, the flow's addresses, when one is
    /// listed by it, else by a scan of the sets: a domain whose answer was
    /// blocked). `None` if no such entry (intel read again since).
    pub fn describe(&self, id: EntryId, near: &[IpAddr]) -> Option<String> {
        let layer = self.layers().into_iter().find(|l| l.holds(id))?;
        let feed = layer.feed_of(id)?;
        let listed = near
            .iter()
            .filter_map(|&ip| {
                [Action::Block, Action::Alert]
                    .into_iter()
                    .find_map(|a| layer.ip(a, ip).filter(|m| m.id == id))
            })
            .next()
            .map(|m| m.listed)
            .or_else(|| layer.indicator_of(id))
            .map_or_else(|| format!("entry {id}"), |i| i.to_string());
        Some(format!("{} {listed}", feed.name))
    }

    /// The block feeds' addresses and domains, for the packet path (it
    /// holds back a DNS answer for a domain until its addresses are
    /// blocked).
    pub fn blocked(&self) -> Blocked {
        Blocked {
            ips: [self.files.block_ips.clone(), self.api.block_ips.clone()],
            domains: [
                self.files.block_domains.clone(),
                self.api.block_domains.clone(),
            ],
        }
    }

    /// Entries held (an indicator listed twice is held twice).
    pub fn len(&self) -> usize {
        self.files.len() + self.api.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes of the match sets and the entries.
    pub fn bytes(&self) -> usize {
        self.files.bytes() + self.api.bytes()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_feeds;
