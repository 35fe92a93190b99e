//! Failed authentication attempts, counted per client IP: after
//! [`Limits::max_failures`] failures within [`Limits::window`] the IP gets 429
//! for [`Limits::block`], whatever token it presents.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_failures: u32,
    pub window: Duration,
    pub block: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_failures: 10,
            window: Duration::from_secs(60),
            block: Duration::from_secs(300),
        }
    }
}

/// IPs tracked at most: past that, entries with nothing pending are dropped,
/// and new IPs are not tracked until there is room (a flood of source
/// addresses cannot grow memory).
const MAX_TRACKED: usize = 16_384;

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

/// The failure counters.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

/// What a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Failures in the current window.
    pub count: u32,
    /// This failure started a block.
    pub blocked: bool,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Limiter {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        match self.entries.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Seconds left of this IP's block, if it is blocked.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let until = self.lock().get(&ip)?.blocked_until?;
        let left = until.checked_duration_since(now)?;
        Some(left.as_secs().max(1))
    }

    /// Counts a failed attempt from `ip`.
    pub fn fail(&self, ip: IpAddr, now: Instant) -> Failure {
        let limits = self.limits;
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, e| {
                e.blocked_until.is_some_and(|u| u > now)
                    || now.duration_since(e.window_start) < limits.window
            });
            if map.len() >= MAX_TRACKED {
                return Failure {
                    count: 0,
                    blocked: false,
                };
            }
        }
        let e = map.entry(ip).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if now.duration_since(e.window_start) >= limits.window {
            e.window_start = now;
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        let blocked = e.failures >= limits.max_failures && e.blocked_until.is_none_or(|u| u <= now);
        if blocked {
            e.blocked_until = Some(now + limits.block);
        }
        Failure {
            count: e.failures,
            blocked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_in_a_minute_block_the_ip_for_a_while() {
        let l = Limiter::new(Limits::default());
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let other: IpAddr = "192.0.2.8".parse().expect("ip");
        let t0 = Instant::now();
        for i in 1..10 {
            let f = l.fail(ip, t0 + Duration::from_secs(i));
            assert!(!f.blocked);
        }
        assert_eq!(l.blocked(ip, t0 + Duration::from_secs(10)), None);
        assert!(l.fail(ip, t0 + Duration::from_secs(10)).blocked);
        assert!(l.blocked(ip, t0 + Duration::from_secs(11)).is_some());
        assert_eq!(l.blocked(other, t0 + Duration::from_secs(11)), None);
        assert_eq!(l.blocked(ip, t0 + Duration::from_secs(400)), None);
    }

    #[test]
    fn failures_spread_over_more_than_the_window_do_not_block() {
        let l = Limiter::new(Limits::default());
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let t0 = Instant::now();
        for i in 0..30 {
            assert!(!l.fail(ip, t0 + Duration::from_secs(i * 7)).blocked);
        }
    }
}
