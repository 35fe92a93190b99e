//! The records queries' filters as text (a query string, a command line)
//! and as checked values: one parser for the API, `bulkhead ctl` and the
//! offline `bulkhead records`, naming the field at fault.

use dataplane::wire::MacAddr;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::str::FromStr;

/// Rows a query returns at most, whatever it asks for.
pub const MAX_LIMIT: usize = 10_000;
/// Rows a query returns when it does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// The longest window a graph (or rule) query may span, in days.
pub const MAX_WINDOW_DAYS: i64 = 400;

/// One end of a flow, as a filter: a workload by MAC or by name, the
/// members of a group or of a label selector (as they were when the flow
/// was recorded), or an address range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    Mac(MacAddr),
    Name(String),
    /// `group:NAME`.
    Group(String),
    /// `label:KEY=VALUE[,KEY=VALUE...]`: every pair must hold.
    Labels(Vec<(String, String)>),
    Net(IpNet),
    /// `external:internet` or `external:private`: an end that is no
    /// workload and in no group, as the group-level graph's networks.
    External(super::Network),
}

impl FromStr for Side {
    type Err = String;
    /// `group:NAME`, `label:K=V[,K=V...]`, `external:internet` or
    /// `external:private`, a MAC, a CIDR or an address, else a workload name.
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err(
                "an empty workload: give a MAC, a name, group:NAME, label:KEY=VALUE, an IP or a CIDR"
                    .into(),
            );
        }
        if let Some(g) = t.strip_prefix("group:") {
            if g.trim().is_empty() {
                return Err("group: needs a group name".into());
            }
            return Ok(Side::Group(g.trim().to_string()));
        }
        if let Some(net) = t.strip_prefix("external:") {
            return Ok(Side::External(net.parse()?));
        }
        if let Some(sel) = t.strip_prefix("label:") {
            let pairs = sel
                .split(',')
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() => {
                        Ok((k.trim().to_string(), v.trim().to_string()))
                    }
                    _ => Err(format!(
                        "invalid label selector {sel:?}: expected KEY=VALUE[,KEY=VALUE...]"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Side::Labels(pairs));
        }
        if let Ok(mac) = t.parse::<MacAddr>() {
            return Ok(Side::Mac(mac));
        }
        if let Ok(net) = t.parse::<IpNet>() {
            return Ok(Side::Net(net.trunc()));
        }
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(Side::Net(IpNet::from(ip)));
        }
        Ok(Side::Name(t.to_string()))
    }
}

/// Which verdicts to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictFilter {
    /// Allowed, and not a would-deny.
    Allow,
    Deny,
    /// Allowed by audit or learn mode although policy would deny.
    WouldDeny,
}

impl FromStr for VerdictFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "allow" => Ok(VerdictFilter::Allow),
            "deny" => Ok(VerdictFilter::Deny),
            "would-deny" => Ok(VerdictFilter::WouldDeny),
            other => Err(format!(
                "invalid verdict {other:?}: expected allow, deny or would-deny"
            )),
        }
    }
}

/// What decided a flow: `rule` (any), `rule:50`, `default`, `quarantine`,
/// `blocklist`, `management` or `intel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasonFilter {
    pub(super) name: &'static str,
    pub(super) rule: Option<u32>,
}

impl FromStr for ReasonFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "invalid reason {t:?}: expected rule, rule:ID, default, quarantine, blocklist, management or intel"
            )
        };
        let (name, rule) = match t.split_once(':') {
            Some(("rule", id)) => ("rule", Some(id.trim().parse::<u32>().map_err(|_| bad())?)),
            Some(_) => return Err(bad()),
            None => (t, None),
        };
        let name = super::REASONS
            .into_iter()
            .find(|n| *n == name)
            .ok_or_else(bad)?;
        Ok(ReasonFilter { name, rule })
    }
}

/// A flow query. Every field narrows; the default lists the newest
/// [`DEFAULT_LIMIT`] flows.
#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    /// Flows whose last packet is at or after this (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Flows whose first packet is at or before this.
    pub until_ms: Option<i64>,
    /// The flow's initiator.
    pub from: Option<Side>,
    /// The flow's responder.
    pub to: Option<Side>,
    pub verdict: Option<VerdictFilter>,
    pub reason: Option<ReasonFilter>,
    pub proto: Option<u8>,
    /// The responder's port.
    pub port: Option<u16>,
    /// Rows at most (capped at [`MAX_LIMIT`]; 0 = the default).
    pub limit: usize,
    /// Continue after this row ([`FlowPage::next`]).
    pub cursor: Option<Cursor>,
}

/// The filters as text, as a query string or a command line gives them;
/// [`FlowParams::filter`] checks them all, naming the field at fault.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct FlowParams {
    /// The initiator: a MAC, a workload name, `group:NAME`,
    /// `label:KEY=VALUE[,KEY=VALUE...]`, an IP or a CIDR, or
    /// `external:internet` / `external:private` (no workload, no group).
    pub from: Option<String>,
    /// The responder, as `from`.
    pub to: Option<String>,
    /// `allow`, `deny` or `would-deny`.
    #[cfg_attr(feature = "openapi", param(pattern = "^(allow|deny|would-deny)$"))]
    pub verdict: Option<String>,
    /// `rule`, `rule:ID`, `default`, `quarantine`, `blocklist`, `management`
    /// or `intel`.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^(rule(:[0-9]{1,9})?|default|quarantine|blocklist|management|intel)$")
    )]
    pub reason: Option<String>,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `any` or a number 0-255.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^(tcp|udp|icmp|icmpv6|any|[0-9]{1,3})$")
    )]
    pub proto: Option<String>,
    /// The responder's port, 0-65535.
    #[cfg_attr(feature = "openapi", param(pattern = "^[0-9]{1,5}$"))]
    pub port: Option<String>,
    /// Records whose last packet is at or after: RFC 3339, or an age like
    /// `2h` or `30m`.
    pub since: Option<String>,
    /// Records whose last packet is at or before: RFC 3339, or an age. (A
    /// flow that lasts has an interim record in every period it carried
    /// traffic in.)
    pub until: Option<String>,
    /// Rows at most: default 100; more than 10000 is taken as 10000.
    #[cfg_attr(feature = "openapi", param(pattern = "^[0-9]+$"))]
    pub limit: Option<String>,
    /// The `next` of a previous page.
    #[cfg_attr(feature = "openapi", param(pattern = "^-?[0-9]{1,18}\\.[0-9]{1,18}$"))]
    pub cursor: Option<String>,
}

/// A filter value that does not parse: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    pub field: &'static str,
    pub message: String,
}

fn param<T: FromStr<Err = String>>(
    v: &Option<String>,
    field: &'static str,
) -> Result<Option<T>, ParamError> {
    v.as_deref()
        .map(|t| t.parse::<T>())
        .transpose()
        .map_err(|message| ParamError { field, message })
}

/// RFC 3339, or an age before `now_ms` (`2h`, `30m`, `7d`): milliseconds
/// since the Unix epoch.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(t) = text.parse::<crate::time::Timestamp>() {
        return Ok(i64::try_from(t.0 / 1_000_000).unwrap_or(i64::MAX));
    }
    let age = humantime::parse_duration(text.trim()).map_err(|_| {
        format!("invalid time {text:?}: expected RFC 3339 (2025-01-02T03:04:05Z) or an age (2h)")
    })?;
    Ok(now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)))
}

impl FlowParams {
    /// The filter, or the first field that does not parse. Ages count back
    /// from `now_ms`.
    pub fn filter(&self, now_ms: i64) -> Result<FlowFilter, ParamError> {
        let time = |v: &Option<String>, field| {
            v.as_deref()
                .map(|t| parse_time(t, now_ms))
                .transpose()
                .map_err(|message| ParamError { field, message })
        };
        let proto = match param::<dataplane::policy::Proto>(&self.proto, "proto")? {
            None => None,
            Some(p) => p.number(),
        };
        let port = match self.port.as_deref() {
            None => None,
            Some(p) => Some(p.trim().parse::<u16>().map_err(|_| ParamError {
                field: "port",
                message: format!("invalid port {p:?}: expected 0-65535"),
            })?),
        };
        let limit = match self.limit.as_deref() {
            None => 0,
            // Any count of digits: a number too large is over the cap all the same.
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse::<usize>().unwrap_or(usize::MAX).clamp(1, MAX_LIMIT)
            }
            Some(n) => {
                return Err(ParamError {
                    field: "limit",
                    message: format!("invalid limit {n:?}: expected a number of rows"),
                })
            }
        };
        let (since_ms, until_ms) = (time(&self.since, "since")?, time(&self.until, "until")?);
        if let (Some(a), Some(b)) = (since_ms, until_ms) {
            if b < a {
                return Err(ParamError {
                    field: "until",
                    message: "the window ends before it starts".into(),
                });
            }
        }
        Ok(FlowFilter {
            since_ms,
            until_ms,
            from: param(&self.from, "from")?,
            to: param(&self.to, "to")?,
            verdict: param(&self.verdict, "verdict")?,
            reason: param(&self.reason, "reason")?,
            proto,
            port,
            limit,
            cursor: param(&self.cursor, "cursor")?,
        })
    }
}

/// Where a page ended: the last row's (last seen, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub last_ms: i64,
    pub id: i64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.last_ms, self.id)
    }
}

impl FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid cursor {s:?}: use the `next` of a previous page");
        let (a, b) = s.trim().split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            last_ms: a.parse().map_err(|_| bad())?,
            id: b.parse().map_err(|_| bad())?,
        })
    }
}
