//! What a traceback answers: its target, the workloads it found with their
//! resolutions, passive DNS and contacts, and the page and cursor of a
//! long answer ([`super::traceback`] reads them).

use super::traceback::DEFAULT_WORKLOADS;
use super::{AddressSpan, IdentityView};
use crate::records::dns_rows::AnswerRow;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::str::FromStr;

/// What a traceback looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A name and every name under it, or with `exact` (written `=name`)
    /// the name alone. Lower case, no trailing dot.
    Domain { name: String, exact: bool },
    /// An address (a /32 or /128) or a network.
    Net(IpNet),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Target::Net(IpNet::from(ip)));
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Target::Net(net.trunc()));
        }
        let (exact, name) = match s.strip_prefix('=') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let bad = |why: &str| Err(format!("{s:?} is no domain, address or network: {why}"));
        if name.is_empty() {
            return bad("empty");
        }
        if name.len() > 253 {
            return bad("a name is at most 253 characters");
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return bad("each label is 1 to 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return bad("letters, digits, '-' and '_' only (IDNs in their xn-- form)");
            }
        }
        Ok(Target::Domain { name, exact })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Domain { name, exact: true } => write!(f, "={name}"),
            Target::Domain { name, .. } => f.write_str(name),
            Target::Net(n) if n.prefix_len() == n.max_prefix_len() => write!(f, "{}", n.addr()),
            Target::Net(n) => write!(f, "{n}"),
        }
    }
}

/// One DNS response to a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resolution {
    pub time: String,
    /// The workload's address then.
    pub client_ip: String,
    pub server_ip: String,
    pub qname: String,
    pub qtype: u16,
    /// 0 NOERROR, 3 NXDOMAIN, ...
    pub rcode: u16,
    /// The answer section's addresses and CNAME chain, in order.
    pub answers: Vec<AnswerRow>,
    /// Who the workload was then.
    pub identity: Option<IdentityView>,
    #[serde(skip, default)]
    pub time_ms: i64,
}

/// Passive DNS: a name, its answer for a workload, first and last seen and
/// how often (kept beyond the raw responses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PassiveDns {
    /// The name asked.
    pub qname: String,
    /// The matching name of the chain (the name asked, or an alias).
    pub name: String,
    /// The address the chain ended in (none for NXDOMAIN or no address).
    pub answer: Option<String>,
    pub rcode: u16,
    pub first: String,
    pub last: String,
    pub count: u64,
    pub ttl: u32,
}

/// Flows from a workload to one address and service, with one verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Contact {
    /// The first flow's start (in the window, after the first resolution
    /// that answered this address, when there was one).
    pub first: String,
    /// The last packet.
    pub last: String,
    pub ip: String,
    /// The MAC the flows went to (a router's for an address off the segment).
    pub mac: String,
    pub service: String,
    pub allowed: bool,
    pub flows: u64,
    pub bytes: u64,
}

/// A workload a traceback found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TracedWorkload {
    pub mac: String,
    /// Who it was at its first resolution (or first contact).
    pub identity_then: Option<IdentityView>,
    /// Who it is as the store last knew it.
    pub identity_now: Option<IdentityView>,
    /// The addresses it held in the window.
    pub addresses: Vec<AddressSpan>,
    /// It resolved the name (else it only contacted an address).
    pub resolved: bool,
    /// Its resolutions still kept raw, oldest first.
    pub resolutions: Vec<Resolution>,
    /// Resolutions beyond those listed.
    pub more_resolutions: u64,
    pub passive_dns: Vec<PassiveDns>,
    /// Its flows to the target, or to the addresses the name resolved to.
    pub contacts: Vec<Contact>,
    #[serde(skip, default)]
    pub first_ms: i64,
}

/// A traceback's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Traceback {
    pub target: String,
    pub since: String,
    pub until: String,
    /// The addresses the name resolved to in the window.
    pub answers: Vec<String>,
    /// Of `answers`, those more than a few other names resolved to too
    /// (a CDN's): contacts to them count only for workloads that resolved
    /// the name (a traceback of the address lists everyone who reached it).
    pub shared_answers: Vec<String>,
    /// Workloads matched in all, over every page.
    pub total: usize,
    /// This page: first seen first (a workload that resolved the name: its
    /// first resolution; else its first contact), after `after` when given.
    pub workloads: Vec<TracedWorkload>,
    /// More workloads matched than are listed (`next` asks for them).
    pub truncated: bool,
    /// The cursor of the next page (the query's `after`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Which workloads of a traceback to list: `limit` of them (1 to
/// [`MAX_WORKLOADS`]), first seen first, after the cursor `after` (a
/// previous answer's `next`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TracebackPage {
    pub limit: usize,
    pub after: Option<TracebackCursor>,
}

impl Default for TracebackPage {
    fn default() -> TracebackPage {
        TracebackPage {
            limit: DEFAULT_WORKLOADS,
            after: None,
        }
    }
}

/// Where a page of a traceback ends: the last workload's first-seen time
/// and MAC, as text `<ms>-<12 hex digits>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TracebackCursor {
    pub(super) first_ms: i64,
    pub(super) mac: i64,
}

impl std::fmt::Display for TracebackCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:012x}", self.first_ms, self.mac)
    }
}

impl FromStr for TracebackCursor {
    type Err = String;

    fn from_str(s: &str) -> Result<TracebackCursor, String> {
        let bad = || format!("{s:?} is no cursor (a traceback's `next`)");
        let (ms, mac) = s.trim().split_once('-').ok_or_else(bad)?;
        if mac.len() != 12 || !ms.bytes().all(|b| b.is_ascii_digit()) || ms.is_empty() {
            return Err(bad());
        }
        Ok(TracebackCursor {
            first_ms: ms.parse().map_err(|_| bad())?,
            mac: i64::from_str_radix(mac, 16).map_err(|_| bad())?,
        })
    }
}
