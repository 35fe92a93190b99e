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
pub mod parse;

use dataplane::intel::{EntryId, IpSet};
use domains::{DomainSet, DomainSetBuilder};
use ipnet::IpNet;
use std::collections::HashMap;
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

/// An entry as held (16 bytes: its indicator's text is in the match sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// An index into [`Intel::feeds`].
    pub feed: u16,
    /// `None`: the feed's.
    pub severity: Option<Severity>,
    category: u32,
    /// When it was added, ms since the epoch.
    pub added_ms: i64,
}

const NO_CATEGORY: u32 = u32::MAX;

/// Every feed's entries, and the sets that match them.
#[derive(Debug, Default)]
pub struct Intel {
    pub feeds: Vec<Feed>,
    metas: Vec<Meta>,
    categories: Vec<String>,
    /// The block feeds' addresses: what the packet path gets.
    block_ips: Arc<IpSet>,
    /// The alert feeds' addresses.
    alert_ips: IpSet,
    /// The block feeds' domains: what the packet path gets.
    block_domains: Arc<DomainSet>,
    alert_domains: DomainSet,
}

/// Entries added one by one (as a feed file is read), then [`Intel`].
#[derive(Debug, Default)]
pub struct IntelBuilder {
    feeds: Vec<Feed>,
    metas: Vec<Meta>,
    categories: Vec<String>,
    category_ids: HashMap<String, u32>,
    block_nets: Vec<(IpNet, EntryId)>,
    alert_nets: Vec<(IpNet, EntryId)>,
    block_domains: DomainSetBuilder,
    alert_domains: DomainSetBuilder,
}

impl IntelBuilder {
    pub fn new(feeds: Vec<Feed>) -> IntelBuilder {
        IntelBuilder {
            feeds,
            ..IntelBuilder::default()
        }
    }

    /// Adds `entry` of feed `feed` (an index into the feeds); `None` if
    /// there is no such feed or no room for another entry.
    pub fn add(&mut self, entry: Entry, feed: u16, added_ms: i64) -> Option<EntryId> {
        if usize::from(feed) >= self.feeds.len() {
            return None;
        }
        let action = self.feeds.get(usize::from(feed))?.action;
        let id = EntryId::try_from(self.metas.len()).ok()?;
        let category = match entry.category {
            None => NO_CATEGORY,
            Some(c) => match self.category_ids.get(&c) {
                Some(&k) => k,
                None => {
                    let k = self.categories.len() as u32;
                    self.categories.push(c.clone());
                    self.category_ids.insert(c, k);
                    k
                }
            },
        };
        self.metas.push(Meta {
            feed,
            severity: entry.severity,
            category,
            added_ms,
        });
        match entry.indicator {
            Indicator::Net(n) => match action {
                Action::Block => self.block_nets.push((n, id)),
                Action::Alert => self.alert_nets.push((n, id)),
            },
            Indicator::Domain(d) => match action {
                Action::Block => self.block_domains.add(&d, id),
                Action::Alert => self.alert_domains.add(&d, id),
            },
        }
        Some(id)
    }

    /// The sets. A block feed's entry matches before an alert feed's (the
    /// most specific of each), and of entries listing the same indicator,
    /// the first.
    pub fn build(self) -> Intel {
        let mut metas = self.metas;
        metas.shrink_to_fit();
        Intel {
            feeds: self.feeds,
            metas,
            categories: self.categories,
            block_ips: Arc::new(IpSet::new(self.block_nets)),
            alert_ips: IpSet::new(self.alert_nets),
            block_domains: Arc::new(self.block_domains.build()),
            alert_domains: self.alert_domains.build(),
        }
    }
}

/// What matched: the entry, what it lists and its feed.
#[derive(Debug, Clone)]
pub struct Match<'a> {
    pub id: EntryId,
    /// The listed address, network or domain.
    pub listed: Indicator,
    pub feed: &'a Feed,
    pub category: Option<&'a str>,
    /// The entry's, else its feed's.
    pub severity: Severity,
    pub added_ms: i64,
}

impl Intel {
    /// The sets of `entries` of `feeds`.
    pub fn new(feeds: Vec<Feed>, entries: impl IntoIterator<Item = (Entry, u16, i64)>) -> Intel {
        let mut b = IntelBuilder::new(feeds);
        for (entry, feed, added_ms) in entries {
            b.add(entry, feed, added_ms);
        }
        b.build()
    }

    fn matched(&self, id: EntryId, listed: Indicator) -> Option<Match<'_>> {
        let meta = self.metas.get(id as usize)?;
        let feed = self.feeds.get(usize::from(meta.feed))?;
        Some(Match {
            id,
            listed,
            feed,
            category: self
                .categories
                .get(meta.category as usize)
                .map(String::as_str),
            severity: meta.severity.unwrap_or(feed.severity),
            added_ms: meta.added_ms,
        })
    }

    /// The entry listing `ip`, if any: a block feed's before an alert
    /// feed's.
    pub fn ip(&self, ip: IpAddr) -> Option<Match<'_>> {
        let (net, id) = self
            .block_ips
            .listed(ip)
            .or_else(|| self.alert_ips.listed(ip))?;
        self.matched(id, Indicator::Net(net))
    }

    /// The entry listing `name` or a domain it is under, if any: a block
    /// feed's before an alert feed's.
    pub fn domain(&self, name: &str) -> Option<Match<'_>> {
        let (listed, id) = self
            .block_domains
            .lookup(name)
            .or_else(|| self.alert_domains.lookup(name))?;
        self.matched(id, Indicator::Domain(listed))
    }

    /// When the entry of feed `feed` that lists exactly `indicator` was
    /// added, if there is one.
    pub fn listed_exactly(&self, indicator: &Indicator, feed: &str) -> Option<i64> {
        let ours = |id: EntryId| {
            let meta = self.metas.get(id as usize)?;
            let f = self.feeds.get(usize::from(meta.feed))?;
            (f.name == feed).then_some(meta.added_ms)
        };
        match indicator {
            Indicator::Net(n) => [&*self.block_ips, &self.alert_ips]
                .into_iter()
                .filter_map(|set| set.listed(n.addr()))
                .find(|(net, _)| *net == n.trunc())
                .and_then(|(_, id)| ours(id)),
            Indicator::Domain(d) => [&*self.block_domains, &self.alert_domains]
                .into_iter()
                .filter_map(|set| set.lookup(d))
                .find(|(listed, _)| listed == d)
                .and_then(|(_, id)| ours(id)),
        }
    }

    /// Entry `id` in words for a log line: its feed and what it lists
    /// (found through `near`, the flow's addresses, when one is listed by
    /// it; a domain entry that blocked a resolved address by its number).
    /// `None` if no such entry (intel read again since).
    pub fn describe(&self, id: EntryId, near: &[IpAddr]) -> Option<String> {
        let meta = self.metas.get(id as usize)?;
        let feed = self.feeds.get(usize::from(meta.feed))?;
        let listed = near
            .iter()
            .filter_map(|&ip| self.ip(ip))
            .find(|m| m.id == id)
            .map(|m| m.listed.to_string())
            .unwrap_or_else(|| format!("entry {id}"));
        Some(format!("{} {listed}", feed.name))
    }

    /// The block feeds' addresses, for the packet path.
    pub fn block_set(&self) -> Arc<IpSet> {
        self.block_ips.clone()
    }

    /// The block feeds' domains, for the packet path (it holds back a DNS
    /// answer for them until its addresses are blocked).
    pub fn block_domains(&self) -> Arc<DomainSet> {
        self.block_domains.clone()
    }

    /// Entries held (an indicator listed twice is held twice).
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// Heap bytes of the match sets and the entries.
    pub fn bytes(&self) -> usize {
        self.block_ips.address_bytes()
            + self.alert_ips.address_bytes()
            + self.block_domains.bytes()
            + self.alert_domains.bytes()
            + self.metas.capacity() * std::mem::size_of::<Meta>()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_feeds;
