//! Fan-out: a workload contacting many more distinct peers than it does in
//! its busiest hour of the baseline.
//!
//! Peers are counted by hour (the distinct addresses a workload started a
//! flow to). A workload's baseline is its busiest hour so far, learned from
//! its first hour on; once its baseline window has passed, an hour with more
//! than `max(peers, factor x busiest)` distinct peers raises one alert. An
//! hour that alerted is not learned, so an attack does not become the
//! normal. The busiest hours are handed out for the store
//! ([`Fanout::take_writes`]) and survive restarts.

use super::config::FanoutConfig;
use dataplane::wire::MacAddr;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// The hour peers are counted in.
pub const HOUR_MS: i64 = 3_600_000;
/// Workloads counted (this hour) and baselined at most.
pub const MAX_SOURCES: usize = 65_536;
/// Distinct peers a workload's hour remembers at most (the count stops
/// there, far above any threshold worth setting).
pub const MAX_PEERS: usize = 8_192;

/// A workload's baseline as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peak {
    /// When its baseline started (ms).
    pub first_ms: i64,
    /// Distinct peers in its busiest hour learned.
    pub peak: u32,
}

#[derive(Debug)]
struct Hour {
    start_ms: i64,
    peers: HashSet<IpAddr>,
    alerted: bool,
}

/// A fan-out found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutFound {
    pub mac: MacAddr,
    /// Distinct peers this hour so far.
    pub peers: u32,
    /// Its baseline's busiest hour, and the threshold crossed.
    pub peak: u32,
    pub threshold: u32,
    /// A few of the peers.
    pub examples: Vec<IpAddr>,
}

/// See the module's documentation.
#[derive(Debug, Default)]
pub struct Fanout {
    cfg: FanoutConfig,
    hours: HashMap<MacAddr, Hour>,
    peaks: HashMap<MacAddr, Peak>,
    pending: HashMap<MacAddr, Peak>,
    /// Contacts of workloads not counted: the table was full.
    pub untracked: u64,
}

impl Fanout {
    pub fn new(cfg: FanoutConfig) -> Fanout {
        Fanout {
            cfg,
            ..Fanout::default()
        }
    }

    /// Takes what the store holds.
    pub fn load(&mut self, peaks: impl IntoIterator<Item = (MacAddr, Peak)>) {
        for (mac, p) in peaks {
            if self.peaks.len() < MAX_SOURCES {
                self.peaks.insert(mac, p);
            }
        }
    }

    /// Workloads with a baseline.
    pub fn baselines(&self) -> usize {
        self.peaks.len()
    }

    /// The workload's baseline, if it has one.
    pub fn peak(&self, mac: MacAddr) -> Option<Peak> {
        self.peaks.get(&mac).copied()
    }

    /// `mac` started a flow to `peer` at `now_ms`. `peers`: the least count
    /// that may alert (its groups' or the config's), `window_ms` its
    /// baseline window. A fan-out the first time an hour crosses.
    pub fn contact(
        &mut self,
        mac: MacAddr,
        peer: IpAddr,
        now_ms: i64,
        peers: u32,
        window_ms: i64,
    ) -> Option<FanoutFound> {
        let start_ms = now_ms - now_ms.rem_euclid(HOUR_MS);
        if !self.hours.contains_key(&mac) && self.hours.len() >= MAX_SOURCES {
            self.roll_all(start_ms);
            if self.hours.len() >= MAX_SOURCES {
                self.untracked += 1;
                return None;
            }
        }
        let peak = match self.peaks.get(&mac) {
            Some(p) => *p,
            None if self.peaks.len() >= MAX_SOURCES => {
                self.untracked += 1;
                return None;
            }
            None => {
                let p = Peak {
                    first_ms: now_ms,
                    peak: 0,
                };
                self.peaks.insert(mac, p);
                self.pending.insert(mac, p);
                p
            }
        };
        if self.hours.get(&mac).is_some_and(|h| h.start_ms != start_ms) {
            if let Some(done) = self.hours.remove(&mac) {
                self.learn(mac, &done);
            }
        }
        let hour = self.hours.entry(mac).or_insert_with(|| Hour {
            start_ms,
            peers: HashSet::new(),
            alerted: false,
        });
        if hour.peers.len() < MAX_PEERS {
            hour.peers.insert(peer);
        }
        let mature = now_ms >= peak.first_ms.saturating_add(window_ms);
        let threshold = peers.max(peak.peak.saturating_mul(self.cfg.factor));
        let n = u32::try_from(hour.peers.len()).unwrap_or(u32::MAX);
        if hour.alerted || !mature || n <= threshold {
            return None;
        }
        hour.alerted = true;
        let mut examples: Vec<IpAddr> = hour.peers.iter().copied().collect();
        examples.sort_unstable();
        examples.truncate(10);
        Some(FanoutFound {
            mac,
            peers: n,
            peak: peak.peak,
            threshold,
            examples,
        })
    }

    /// A finished hour into the baseline, unless it alerted.
    fn learn(&mut self, mac: MacAddr, done: &Hour) {
        if done.alerted {
            return;
        }
        let n = u32::try_from(done.peers.len()).unwrap_or(u32::MAX);
        if let Some(p) = self.peaks.get_mut(&mac) {
            if n > p.peak {
                p.peak = n;
                self.pending.insert(mac, *p);
            }
        }
    }

    /// Ends every hour older than `start_ms` (learning them).
    fn roll_all(&mut self, start_ms: i64) {
        let done: Vec<MacAddr> = self
            .hours
            .iter()
            .filter(|(_, h)| h.start_ms != start_ms)
            .map(|(m, _)| *m)
            .collect();
        for mac in done {
            if let Some(h) = self.hours.remove(&mac) {
                self.learn(mac, &h);
            }
        }
    }

    /// Baselines changed since the last call, for the store.
    pub fn take_writes(&mut self) -> Vec<(MacAddr, Peak)> {
        let mut w: Vec<(MacAddr, Peak)> = self.pending.drain().collect();
        w.sort_unstable_by_key(|(m, _)| *m);
        w
    }

    pub fn has_writes(&self) -> bool {
        !self.pending.is_empty()
    }
}
