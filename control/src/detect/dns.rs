//! DNS: a client getting many NXDOMAIN answers, or asking for many
//! registered domains nobody here was answered for before: how a DGA looks
//! (malware trying generated names until one resolves).
//!
//! Names are compared by registered domain (`a.b.example.co.uk` is
//! `example.co.uk`, by the public suffix list), so a CDN's many hosts are
//! one name. The known names are those answered (NOERROR) while the
//! baseline learned, and every one answered since: a name is never-seen
//! once, for its first client. NXDOMAIN names are not learned (a DGA's
//! would fill the set). Per client, a window that starts with its first
//! counted answer; one alert a kind a window.

use super::config::{millis, DnsConfig};
use dataplane::wire::MacAddr;
use std::collections::{HashMap, HashSet};

/// Registered domains known at most; past it, new ones are not learned and
/// never-seen names are not judged (so a full set does not call every
/// name new).
pub const MAX_NAMES: usize = 262_144;
/// Clients counted at most.
pub const MAX_CLIENTS: usize = 65_536;
/// Names a window keeps for the alert's evidence, and new names it counts
/// at most.
const KEEP: usize = 16;
const MAX_NEW: usize = 4_096;

const NXDOMAIN: u16 = 3;

/// What the detector reads of an answer.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub client: MacAddr,
    pub qname: &'a str,
    pub rcode: u16,
    pub now_ms: i64,
}

/// What was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsFound {
    /// NXDOMAIN answers in the window, and a few of the names.
    Nxdomain {
        client: MacAddr,
        count: u32,
        names: Vec<String>,
        window_ms: i64,
    },
    /// Distinct never-seen registered domains in the window, and a few.
    NewNames {
        client: MacAddr,
        count: u32,
        names: Vec<String>,
        window_ms: i64,
    },
}

#[derive(Debug)]
struct Window {
    start_ms: i64,
    nxdomain: u32,
    nx_names: Vec<String>,
    new: HashSet<Box<str>>,
    alerted: [bool; 2],
}

/// See the module's documentation.
#[derive(Debug, Default)]
pub struct DnsDetector {
    cfg: DnsConfig,
    known: HashSet<Box<str>>,
    /// When the names' baseline started (ms); `None` until the first answer.
    started_ms: Option<i64>,
    windows: HashMap<MacAddr, Window>,
    pending: Vec<Box<str>>,
    pending_start: Option<i64>,
    pub untracked: u64,
}

/// The registered domain of `qname` (lowercase, no trailing dot), or the
/// name itself where the public suffix list has none.
pub fn registered(qname: &str) -> String {
    let name = qname.trim_end_matches('.').to_ascii_lowercase();
    match psl::domain_str(&name) {
        Some(d) => d.to_string(),
        None => name,
    }
}

impl DnsDetector {
    pub fn new(cfg: DnsConfig) -> DnsDetector {
        DnsDetector {
            cfg,
            ..DnsDetector::default()
        }
    }

    /// Takes what the store holds: when the baseline started, and its names.
    pub fn load(&mut self, started_ms: Option<i64>, names: impl IntoIterator<Item = String>) {
        self.started_ms = started_ms;
        for n in names {
            if self.known.len() < MAX_NAMES {
                self.known.insert(n.into_boxed_str());
            }
        }
    }

    /// When the names' baseline started (ms), if it has.
    pub fn started_ms(&self) -> Option<i64> {
        self.started_ms
    }

    /// Names known.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// An answer `a`; `nxdomain` and `new_names` are the client's
    /// thresholds, `window_ms` the baseline window. What it completes.
    pub fn answer(
        &mut self,
        a: &Answer<'_>,
        nxdomain: u32,
        new_names: u32,
        baseline_ms: i64,
    ) -> Option<DnsFound> {
        let started = match self.started_ms {
            Some(s) => s,
            None => {
                self.started_ms = Some(a.now_ms);
                self.pending_start = Some(a.now_ms);
                a.now_ms
            }
        };
        let learning = a.now_ms < started.saturating_add(baseline_ms);
        let name = registered(a.qname);
        let never_seen =
            !learning && self.known.len() < MAX_NAMES && !self.known.contains(name.as_str());
        if a.rcode == 0 && !self.known.contains(name.as_str()) && self.known.len() < MAX_NAMES {
            self.known.insert(name.clone().into_boxed_str());
            self.pending.push(name.clone().into_boxed_str());
        }
        let is_nx = a.rcode == NXDOMAIN;
        if !is_nx && !never_seen {
            return None;
        }
        let window_ms = millis(self.cfg.window);
        if !self.windows.contains_key(&a.client) && self.windows.len() >= MAX_CLIENTS {
            self.windows
                .retain(|_, w| a.now_ms.saturating_sub(w.start_ms) < window_ms);
            if self.windows.len() >= MAX_CLIENTS {
                self.untracked += 1;
                return None;
            }
        }
        let fresh = || Window {
            start_ms: a.now_ms,
            nxdomain: 0,
            nx_names: Vec::new(),
            new: HashSet::new(),
            alerted: [false; 2],
        };
        let w = self.windows.entry(a.client).or_insert_with(fresh);
        if a.now_ms.saturating_sub(w.start_ms) >= window_ms {
            *w = fresh();
        }
        let mut found = None;
        if is_nx {
            w.nxdomain = w.nxdomain.saturating_add(1);
            let qname = a.qname.trim_end_matches('.').to_ascii_lowercase();
            if w.nx_names.len() < KEEP && !w.nx_names.contains(&qname) {
                w.nx_names.push(qname);
            }
            if !w.alerted[0] && w.nxdomain >= nxdomain {
                w.alerted[0] = true;
                found = Some(DnsFound::Nxdomain {
                    client: a.client,
                    count: w.nxdomain,
                    names: w.nx_names.clone(),
                    window_ms,
                });
            }
        }
        if never_seen && w.new.len() < MAX_NEW {
            w.new.insert(name.into_boxed_str());
            let n = u32::try_from(w.new.len()).unwrap_or(u32::MAX);
            if !w.alerted[1] && n >= new_names && found.is_none() {
                w.alerted[1] = true;
                let mut names: Vec<String> = w.new.iter().map(|n| n.to_string()).collect();
                names.sort_unstable();
                names.truncate(KEEP);
                found = Some(DnsFound::NewNames {
                    client: a.client,
                    count: n,
                    names,
                    window_ms,
                });
            }
        }
        found
    }

    /// Names learned since the last call (and the baseline's start, if it
    /// started), for the store.
    pub fn take_writes(&mut self) -> (Option<i64>, Vec<Box<str>>) {
        (self.pending_start.take(), std::mem::take(&mut self.pending))
    }

    pub fn has_writes(&self) -> bool {
        !self.pending.is_empty() || self.pending_start.is_some()
    }
}
