//! First-seen services: a group pair and a service never seen while the
//! groups' baselines were learning (the first RDP from `web` to `db`),
//! allowed or not.
//!
//! Each group's baseline starts the first time a flow of it is seen and
//! learns for its window (the config's, or the group's own); while either
//! group of a pair learns, the pair's services are learned silently. After,
//! a service the pair never had is new once: it is alerted and learned.
//! Ports from 32768 up are one service (`tcp/32768-65535`), so a client's
//! ephemeral ports do not look new each time. Ends in no group are
//! labelling gaps, not baselined.
//!
//! A source that brings many new services at once is scanning: past
//! [`ServicesConfig::per_source`] in [`ServicesConfig::per`], its new
//! services are neither alerted nor learned (the scan detector reports it).
//!
//! What is learned is handed out as [`BaselineWrite`]s for the store, so the
//! baseline survives restarts.

use super::config::{millis, ServicesConfig};
use dataplane::wire::MacAddr;
use std::collections::{HashMap, HashSet};

/// Services (group pair, protocol, port) kept at most; past it, new ones
/// are not learned (and counted).
pub const MAX_SERVICES: usize = 262_144;
/// Groups whose baseline start is kept at most.
pub const MAX_GROUPS: usize = 65_536;
/// Sources whose recent new services are counted at most.
const MAX_SOURCES: usize = 65_536;
/// The first port of the ephemeral range folded into one service.
pub const HIGH_PORTS: u16 = 32_768;

/// A service as the baseline keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub src: Box<str>,
    pub dst: Box<str>,
    pub proto: u8,
    /// The responder's port; [`HIGH_PORTS`] for any from it up; 0 for
    /// protocols without ports.
    pub port: u16,
}

/// The port a service is keyed by.
pub fn keyed_port(proto: u8, port: u16) -> u16 {
    match proto {
        6 | 17 | 132 if port >= HIGH_PORTS => HIGH_PORTS,
        6 | 17 | 132 => port,
        _ => 0,
    }
}

/// `tcp/3389`, `tcp/32768-65535`, `icmp`.
pub fn service_name(proto: u8, port: u16) -> String {
    let text = crate::services::service_text(proto, port);
    if port == HIGH_PORTS {
        format!("{text}-65535")
    } else {
        text
    }
}

/// What the store is to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaselineWrite {
    /// A group's baseline started.
    Group { name: Box<str>, started_ms: i64 },
    /// A service learned (or alerted).
    Service { key: ServiceKey, first_ms: i64 },
}

/// A new service found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewService {
    /// The pairs new to it: (source group, destination group).
    pub pairs: Vec<(Box<str>, Box<str>)>,
    pub proto: u8,
    /// As keyed ([`keyed_port`]).
    pub port: u16,
}

/// A flow as the detector reads it.
#[derive(Debug, Clone, Copy)]
pub struct Flow<'a> {
    pub src_mac: MacAddr,
    /// The groups of its ends.
    pub src: &'a [&'a str],
    pub dst: &'a [&'a str],
    pub proto: u8,
    /// The responder's port.
    pub port: u16,
    pub now_ms: i64,
}

/// The baseline of services by group pair; see the module's documentation.
#[derive(Debug, Default)]
pub struct FirstSeen {
    cfg: ServicesConfig,
    known: HashSet<ServiceKey>,
    started: HashMap<Box<str>, i64>,
    /// A source's new services in its current period: (period start, count).
    recent: HashMap<MacAddr, (i64, u32)>,
    pending: Vec<BaselineWrite>,
    /// New services not alerted: their source was past its limit.
    pub suppressed: u64,
    /// Services or groups not learned: the baseline was full.
    pub full: u64,
}

impl FirstSeen {
    pub fn new(cfg: ServicesConfig) -> FirstSeen {
        FirstSeen {
            cfg,
            ..FirstSeen::default()
        }
    }

    /// Takes what the store holds (no write is made for it).
    pub fn load(
        &mut self,
        groups: impl IntoIterator<Item = (String, i64)>,
        services: impl IntoIterator<Item = ServiceKey>,
    ) {
        for (g, at) in groups {
            if self.started.len() < MAX_GROUPS {
                self.started.insert(g.into_boxed_str(), at);
            }
        }
        for s in services {
            if self.known.len() < MAX_SERVICES {
                self.known.insert(s);
            }
        }
    }

    /// Services learned.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Each group's baseline start (ms), in no order.
    pub fn groups(&self) -> impl Iterator<Item = (&str, i64)> {
        self.started.iter().map(|(g, at)| (&**g, *at))
    }

    /// When `group`'s baseline started, starting it now if it had not.
    fn started(&mut self, group: &str, now_ms: i64) -> i64 {
        if let Some(&at) = self.started.get(group) {
            return at;
        }
        if self.started.len() >= MAX_GROUPS {
            self.full += 1;
            return now_ms;
        }
        self.started.insert(group.into(), now_ms);
        self.pending.push(BaselineWrite::Group {
            name: group.into(),
            started_ms: now_ms,
        });
        now_ms
    }

    /// A flow `f`; `window_ms(group)` is a group's baseline window. A new
    /// service, if it is one (and its source is within its limit).
    pub fn flow(&mut self, f: &Flow<'_>, window_ms: impl Fn(&str) -> i64) -> Option<NewService> {
        let Flow {
            src_mac,
            src,
            dst,
            proto,
            port,
            now_ms,
        } = *f;
        if src.is_empty() || dst.is_empty() {
            return None;
        }
        let port = keyed_port(proto, port);
        let mut new = Vec::new();
        // Every end's baseline starts with its first flow, learning or not.
        let mut learning = |g: &str| now_ms < self.started(g, now_ms).saturating_add(window_ms(g));
        let dst_learning: Vec<bool> = dst.iter().map(|d| learning(d)).collect();
        let src_learning: Vec<bool> = src.iter().map(|s| learning(s)).collect();
        for (s, s_learning) in src.iter().zip(src_learning) {
            for (d, d_learning) in dst.iter().zip(&dst_learning) {
                let key = ServiceKey {
                    src: (*s).into(),
                    dst: (*d).into(),
                    proto,
                    port,
                };
                if self.known.contains(&key) {
                    continue;
                }
                if s_learning || *d_learning {
                    self.learn(key, now_ms);
                } else {
                    new.push(key);
                }
            }
        }
        if new.is_empty() || !self.within_limit(src_mac, now_ms) {
            return None;
        }
        let pairs = new.iter().map(|k| (k.src.clone(), k.dst.clone())).collect();
        for key in new {
            self.learn(key, now_ms);
        }
        Some(NewService { pairs, proto, port })
    }

    fn learn(&mut self, key: ServiceKey, now_ms: i64) {
        if self.known.len() >= MAX_SERVICES {
            self.full += 1;
            return;
        }
        self.known.insert(key.clone());
        self.pending.push(BaselineWrite::Service {
            key,
            first_ms: now_ms,
        });
    }

    /// Counts one more new service of `mac`'s; false past its limit.
    fn within_limit(&mut self, mac: MacAddr, now_ms: i64) -> bool {
        let per = millis(self.cfg.per);
        if self.recent.len() >= MAX_SOURCES && !self.recent.contains_key(&mac) {
            self.recent
                .retain(|_, (start, _)| now_ms.saturating_sub(*start) < per);
        }
        if self.recent.len() >= MAX_SOURCES && !self.recent.contains_key(&mac) {
            self.suppressed += 1;
            return false;
        }
        let (start, n) = self.recent.entry(mac).or_insert((now_ms, 0));
        if now_ms.saturating_sub(*start) >= per {
            *start = now_ms;
            *n = 0;
        }
        if *n >= self.cfg.per_source {
            self.suppressed += 1;
            return false;
        }
        *n += 1;
        true
    }

    /// What was learned since the last call, for the store.
    pub fn take_writes(&mut self) -> Vec<BaselineWrite> {
        std::mem::take(&mut self.pending)
    }

    pub fn has_writes(&self) -> bool {
        !self.pending.is_empty()
    }
}
