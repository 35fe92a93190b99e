//! Failed authentication attempts, counted per client address. Only failures
//! are limited: the token is checked first, and a valid one is never refused
//! because of earlier failures from its address (no lock-out of admins who
//! share an address with a broken script or an attacker).
//!
//! After [`Limits::max_failures`] failures within [`Limits::window`], further
//! failures from that address are answered 429 (with `Retry-After`) instead
//! of 401 for [`Limits::block`]. IPv6 clients are counted by /64 (one host
//! usually has a whole /64); IPv4-mapped IPv6 addresses as the IPv4 address.
//!
//! The table is bounded: at most [`Limits::max_tracked`] addresses; past that
//! the address whose last failure is oldest is forgotten (a flood of failures
//! from many addresses cannot grow memory, and a new address is always
//! counted).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures an address may make within `window` before its further
    /// failures are refused.
    pub max_failures: u32,
    pub window: Duration,
    /// How long its failures are refused once the budget is spent.
    pub block: Duration,
    /// Addresses tracked at most (the oldest is forgotten past that).
    pub max_tracked: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_failures: 10,
            window: Duration::from_secs(60),
            block: Duration::from_secs(300),
            max_tracked: 16_384,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
    /// Its key in [`Table::order`]: the order of last failures.
    seq: u64,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<IpAddr, Entry>,
    /// Sequence number of each address's last failure -> the address; the
    /// first is the one to forget.
    order: BTreeMap<u64, IpAddr>,
    next_seq: u64,
    evictions: u64,
    failures: u64,
    refused: u64,
}

/// The failure counters.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    table: Mutex<Table>,
}

/// What the limiter makes of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the budget: answer 401. `count` failures in the current
    /// window; `blocked`: this one spent the budget.
    Counted { count: u32, blocked: bool },
    /// Over the budget: answer 429; the block ends in `retry_after` seconds.
    Refused { retry_after: u64 },
}

/// The limiter's counters, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimiterStats {
    /// Addresses tracked now.
    pub tracked: usize,
    /// Addresses forgotten to stay within `max_tracked`.
    pub evictions: u64,
    /// Failed attempts answered 401.
    pub failures: u64,
    /// Failed attempts answered 429.
    pub refused: u64,
}

/// The address failures are counted under: IPv6 by /64, IPv4-mapped IPv6 as
/// IPv4.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Limiter {
            limits: Limits {
                max_tracked: limits.max_tracked.max(1),
                ..limits
            },
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        match self.table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Counts a failed attempt from `ip` and says how to answer it.
    pub fn fail(&self, ip: IpAddr, now: Instant) -> Verdict {
        let limits = self.limits;
        let key = client_key(ip);
        let mut guard = self.lock();
        let t = &mut *guard;
        let seq = t.next_seq;
        t.next_seq += 1;
        if let Some(e) = t.entries.get_mut(&key) {
            t.order.remove(&e.seq);
            e.seq = seq;
            t.order.insert(seq, key);
        } else {
            while t.entries.len() >= limits.max_tracked {
                let Some((_, oldest)) = t.order.pop_first() else {
                    break;
                };
                t.entries.remove(&oldest);
                t.evictions += 1;
            }
            t.entries.insert(
                key,
                Entry {
                    window_start: now,
                    failures: 0,
                    blocked_until: None,
                    seq,
                },
            );
            t.order.insert(seq, key);
        }
        let Some(e) = t.entries.get_mut(&key) else {
            // Just inserted; unreachable, but a failure is never let through.
            t.refused += 1;
            return Verdict::Refused { retry_after: 1 };
        };
        if let Some(until) = e.blocked_until {
            if let Some(left) = until.checked_duration_since(now).filter(|d| !d.is_zero()) {
                t.refused += 1;
                return Verdict::Refused {
                    retry_after: left.as_secs() + u64::from(left.subsec_nanos() > 0),
                };
            }
            e.blocked_until = None;
            e.window_start = now;
            e.failures = 0;
        }
        if now.saturating_duration_since(e.window_start) >= limits.window {
            e.window_start = now;
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        let blocked = e.failures >= limits.max_failures;
        if blocked {
            e.blocked_until = Some(now + limits.block);
        }
        t.failures += 1;
        Verdict::Counted {
            count: e.failures,
            blocked,
        }
    }

    /// The counters now.
    pub fn stats(&self) -> LimiterStats {
        let t = self.lock();
        LimiterStats {
            tracked: t.entries.len(),
            evictions: t.evictions,
            failures: t.failures,
            refused: t.refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_budget_is_spent_by_ten_failures_in_a_minute_then_failures_are_refused() {
        let l = Limiter::new(Limits::default());
        let a = ip("192.0.2.7");
        let t0 = Instant::now();
        for i in 1..10 {
            let v = l.fail(a, t0 + Duration::from_secs(i));
            assert_eq!(
                v,
                Verdict::Counted {
                    count: i as u32,
                    blocked: false
                }
            );
        }
        assert_eq!(
            l.fail(a, t0 + Duration::from_secs(10)),
            Verdict::Counted {
                count: 10,
                blocked: true
            }
        );
        assert_eq!(
            l.fail(a, t0 + Duration::from_secs(11)),
            Verdict::Refused { retry_after: 299 }
        );
        // Another address is not affected.
        assert!(matches!(
            l.fail(ip("192.0.2.8"), t0 + Duration::from_secs(11)),
            Verdict::Counted { count: 1, .. }
        ));
        // The block ends: a fresh budget.
        assert_eq!(
            l.fail(a, t0 + Duration::from_secs(310)),
            Verdict::Counted {
                count: 1,
                blocked: false
            }
        );
        let s = l.stats();
        assert_eq!((s.failures, s.refused, s.tracked), (12, 1, 2));
    }

    #[test]
    fn failures_spread_over_more_than_the_window_are_never_refused() {
        let l = Limiter::new(Limits::default());
        let a = ip("192.0.2.7");
        let t0 = Instant::now();
        for i in 0..30 {
            assert!(matches!(
                l.fail(a, t0 + Duration::from_secs(i * 7)),
                Verdict::Counted { blocked: false, .. }
            ));
        }
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        let l = Limiter::new(Limits::default());
        let t0 = Instant::now();
        for i in 0..10u32 {
            l.fail(ip(&format!("2001:db8:1:2::{}", i + 1)), t0);
        }
        assert!(matches!(
            l.fail(ip("2001:db8:1:2::ffff"), t0),
            Verdict::Refused { .. }
        ));
        assert!(matches!(
            l.fail(ip("2001:db8:1:3::1"), t0),
            Verdict::Counted { count: 1, .. }
        ));
    }

    #[test]
    fn a_flood_from_many_addresses_stays_within_the_cap_forgetting_the_oldest() {
        let l = Limiter::new(Limits {
            max_tracked: 1000,
            ..Limits::default()
        });
        let t0 = Instant::now();
        let first = ip("10.0.0.1");
        for _ in 0..10 {
            l.fail(first, t0);
        }
        assert!(matches!(l.fail(first, t0), Verdict::Refused { .. }));
        for i in 0..100_000u32 {
            let a = IpAddr::V4((0x0b00_0000 + i).into());
            assert!(matches!(l.fail(a, t0), Verdict::Counted { count: 1, .. }));
            assert!(l.stats().tracked <= 1000);
        }
        let s = l.stats();
        assert_eq!(s.tracked, 1000);
        assert_eq!(s.evictions, 100_000 + 1 - 1000);
        // The oldest was forgotten first: `first` starts over.
        assert!(matches!(
            l.fail(first, t0),
            Verdict::Counted { count: 1, .. }
        ));
        // Recently seen addresses are kept.
        assert!(matches!(
            l.fail(IpAddr::V4((0x0b00_0000 + 99_999).into()), t0),
            Verdict::Counted { count: 2, .. }
        ));
    }
}
