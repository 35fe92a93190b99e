//! One layer of [`Intel`]: the entries of some feeds and the sets that
//! match them, built in one go. The feed files named in the config make
//! one layer and the feeds managed through the API another, so that an API
//! call rebuilds its few entries, not the files' million.

use super::{Action, Entry, Feed, Indicator, Intel, Severity};
use dataplane::intel::domains::{DomainSet, DomainSetBuilder};
use dataplane::intel::{EntryId, IpSet};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The bit of an [`EntryId`] that says its entry is in the API's layer
/// (the files' layer holds fewer than 2^31 entries).
pub const API_LAYER: EntryId = 1 << 31;

/// An entry as held (16 bytes: its indicator's text is in the match sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    /// An index into its layer's feeds.
    pub(super) feed: u16,
    /// `None`: the feed's.
    pub(super) severity: Option<Severity>,
    pub(super) category: u32,
    /// When it was added, ms since the epoch.
    pub(super) added_ms: i64,
}

const NO_CATEGORY: u32 = u32::MAX;

/// Some feeds' entries, and the sets that match them.
#[derive(Debug, Default)]
pub struct Layer {
    pub feeds: Vec<Feed>,
    /// Added to an entry's index to make its id: 0, or [`API_LAYER`].
    base: EntryId,
    metas: Vec<Meta>,
    categories: Vec<String>,
    /// The block feeds' addresses: what the packet path gets.
    pub(super) block_ips: Arc<IpSet>,
    /// The alert feeds' addresses.
    alert_ips: IpSet,
    /// The block feeds' domains: what the packet path gets.
    pub(super) block_domains: Arc<DomainSet>,
    alert_domains: DomainSet,
}

/// Entries added one by one (as a feed file is read), then a [`Layer`].
#[derive(Debug, Default)]
pub struct IntelBuilder {
    feeds: Vec<Feed>,
    base: EntryId,
    metas: Vec<Meta>,
    categories: Vec<String>,
    category_ids: HashMap<String, u32>,
    block_nets: Vec<(IpNet, EntryId)>,
    alert_nets: Vec<(IpNet, EntryId)>,
    block_domains: DomainSetBuilder,
    alert_domains: DomainSetBuilder,
}

impl IntelBuilder {
    /// The files' layer, of `feeds`.
    pub fn new(feeds: Vec<Feed>) -> IntelBuilder {
        IntelBuilder {
            feeds,
            ..IntelBuilder::default()
        }
    }

    /// The API's layer, of `feeds`.
    pub fn api(feeds: Vec<Feed>) -> IntelBuilder {
        IntelBuilder {
            base: API_LAYER,
            ..IntelBuilder::new(feeds)
        }
    }

    /// Adds `entry` of feed `feed` (an index into the feeds); `None` if
    /// there is no such feed or no room for another entry.
    pub fn add(&mut self, entry: Entry, feed: u16, added_ms: i64) -> Option<EntryId> {
        let action = self.feeds.get(usize::from(feed))?.action;
        let index = EntryId::try_from(self.metas.len())
            .ok()
            .filter(|&i| i < API_LAYER)?;
        let id = self.base | index;
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

    /// The layer's sets. Of entries listing the same indicator, the first
    /// matches.
    pub fn layer(self) -> Layer {
        let mut metas = self.metas;
        metas.shrink_to_fit();
        Layer {
            feeds: self.feeds,
            base: self.base,
            metas,
            categories: self.categories,
            block_ips: Arc::new(IpSet::new(self.block_nets)),
            alert_ips: IpSet::new(self.alert_nets),
            block_domains: Arc::new(self.block_domains.build()),
            alert_domains: self.alert_domains.build(),
        }
    }

    /// [`Intel`] of this layer alone (the other empty).
    pub fn build(self) -> Intel {
        let api = self.base == API_LAYER;
        let layer = Arc::new(self.layer());
        if api {
            Intel::layered(Arc::default(), layer)
        } else {
            Intel::layered(layer, Arc::default())
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

impl Layer {
    /// Whether entry `id` is of this layer.
    pub(super) fn holds(&self, id: EntryId) -> bool {
        id & API_LAYER == self.base
    }

    fn meta(&self, id: EntryId) -> Option<(&Meta, &Feed)> {
        if !self.holds(id) {
            return None;
        }
        let meta = self.metas.get((id & !API_LAYER) as usize)?;
        Some((meta, self.feeds.get(usize::from(meta.feed))?))
    }

    pub(super) fn feed_of(&self, id: EntryId) -> Option<&Feed> {
        self.meta(id).map(|(_, f)| f)
    }

    pub(super) fn matched(&self, id: EntryId, listed: Indicator) -> Option<Match<'_>> {
        let (meta, feed) = self.meta(id)?;
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

    fn ips(&self, action: Action) -> &IpSet {
        match action {
            Action::Block => &self.block_ips,
            Action::Alert => &self.alert_ips,
        }
    }

    fn domains(&self, action: Action) -> &DomainSet {
        match action {
            Action::Block => &self.block_domains,
            Action::Alert => &self.alert_domains,
        }
    }

    /// The entry of an `action` feed listing `ip`.
    pub(super) fn ip(&self, action: Action, ip: IpAddr) -> Option<Match<'_>> {
        let (net, id) = self.ips(action).listed(ip)?;
        self.matched(id, Indicator::Net(net))
    }

    /// The entry of an `action` feed listing `name` or a domain above it.
    pub(super) fn domain(&self, action: Action, name: &str) -> Option<Match<'_>> {
        let (listed, id) = self.domains(action).lookup(name)?;
        self.matched(id, Indicator::Domain(listed))
    }

    /// When the entry of feed `feed` that lists exactly `indicator` was
    /// added, if this layer has one.
    pub(super) fn listed_exactly(&self, indicator: &Indicator, feed: &str) -> Option<i64> {
        let ours = |id: EntryId| {
            let (meta, f) = self.meta(id)?;
            (f.name == feed).then_some(meta.added_ms)
        };
        let actions = [Action::Block, Action::Alert];
        match indicator {
            Indicator::Net(n) => actions
                .into_iter()
                .filter_map(|a| self.ips(a).listed(n.addr()))
                .find(|(net, _)| *net == n.trunc())
                .and_then(|(_, id)| ours(id)),
            Indicator::Domain(d) => actions
                .into_iter()
                .filter_map(|a| self.domains(a).lookup(d))
                .find(|(listed, _)| listed == d)
                .and_then(|(_, id)| ours(id)),
        }
    }

    /// What entry `id` lists, found by a scan of the sets (for words: a
    /// log line, a record; never per packet).
    pub(super) fn indicator_of(&self, id: EntryId) -> Option<Indicator> {
        if !self.holds(id) {
            return None;
        }
        let actions = [Action::Block, Action::Alert];
        actions
            .into_iter()
            .find_map(|a| self.ips(a).net_of(id).map(Indicator::Net))
            .or_else(|| {
                actions
                    .into_iter()
                    .find_map(|a| self.domains(a).name_of(id).map(Indicator::Domain))
            })
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
