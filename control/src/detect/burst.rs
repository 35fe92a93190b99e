//! Deny bursts: a workload starting many flows the policy denies (or, in
//! audit, would deny) within a window: a misconfigured client after a
//! policy change, or malware trying what it can. Counted per source in a
//! window that starts with its first denied flow; one alert a window.

use super::config::{millis, BurstConfig};
use dataplane::wire::MacAddr;
use std::collections::HashMap;
use std::net::IpAddr;

/// Sources counted at most.
pub const MAX_SOURCES: usize = 65_536;
/// Services and hosts a window remembers for the alert's evidence.
const KEEP: usize = 16;

#[derive(Debug)]
struct Window {
    start_ms: i64,
    flows: u32,
    alerted: bool,
    /// (proto, port) with their counts, the first [`KEEP`].
    services: Vec<((u8, u16), u32)>,
    hosts: Vec<IpAddr>,
}

/// A burst found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BurstFound {
    pub mac: MacAddr,
    pub flows: u32,
    pub window_ms: i64,
    /// The services tried, busiest first, with counts.
    pub services: Vec<((u8, u16), u32)>,
    pub hosts: Vec<IpAddr>,
}

/// See the module's documentation.
#[derive(Debug, Default)]
pub struct DenyBurst {
    cfg: BurstConfig,
    windows: HashMap<MacAddr, Window>,
    pub untracked: u64,
}

impl DenyBurst {
    pub fn new(cfg: BurstConfig) -> DenyBurst {
        DenyBurst {
            cfg,
            windows: HashMap::new(),
            untracked: 0,
        }
    }

    /// A denied flow start from `mac` to `dst` on `proto`/`port`; `flows`:
    /// its threshold. A burst the first time a window crosses it.
    pub fn denied(
        &mut self,
        mac: MacAddr,
        dst: IpAddr,
        service: (u8, u16),
        now_ms: i64,
        flows: u32,
    ) -> Option<BurstFound> {
        let window_ms = millis(self.cfg.window);
        if !self.windows.contains_key(&mac) && self.windows.len() >= MAX_SOURCES {
            self.windows
                .retain(|_, w| now_ms.saturating_sub(w.start_ms) < window_ms);
            if self.windows.len() >= MAX_SOURCES {
                self.untracked += 1;
                return None;
            }
        }
        let fresh = || Window {
            start_ms: now_ms,
            flows: 0,
            alerted: false,
            services: Vec::new(),
            hosts: Vec::new(),
        };
        let w = self.windows.entry(mac).or_insert_with(fresh);
        if now_ms.saturating_sub(w.start_ms) >= window_ms {
            *w = fresh();
        }
        w.flows = w.flows.saturating_add(1);
        if let Some((_, n)) = w.services.iter_mut().find(|(s, _)| *s == service) {
            *n += 1;
        } else if w.services.len() < KEEP {
            w.services.push((service, 1));
        }
        if w.hosts.len() < KEEP && !w.hosts.contains(&dst) {
            w.hosts.push(dst);
        }
        if w.alerted || w.flows < flows {
            return None;
        }
        w.alerted = true;
        let mut services = w.services.clone();
        services.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Some(BurstFound {
            mac,
            flows: w.flows,
            window_ms,
            services,
            hosts: w.hosts.clone(),
        })
    }
}
