//! Reading the records store: flows by window, end, verdict, reason, protocol
//! and port, newest first, paged by cursor. The API, `bulkhead ctl` and the
//! offline `bulkhead records` all answer through [`RecordsReader`], so the
//! same filters give the same rows.

use super::{ip_bytes, mac_int, schema, RecordsError};
use dataplane::wire::MacAddr;
use ipnet::IpNet;
use rusqlite::types::Value;
use rusqlite::{Connection, Row};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
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
}

impl FromStr for Side {
    type Err = String;
    /// `group:NAME`, `label:K=V[,K=V...]`, a MAC, a CIDR or an address,
    /// else a workload name.
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
/// `blocklist` or `management`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasonFilter {
    name: &'static str,
    rule: Option<u32>,
}

impl FromStr for ReasonFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "invalid reason {t:?}: expected rule, rule:ID, default, quarantine, blocklist or management"
            )
        };
        let (name, rule) = match t.split_once(':') {
            Some(("rule", id)) => ("rule", Some(id.trim().parse::<u32>().map_err(|_| bad())?)),
            Some(_) => return Err(bad()),
            None => (t, None),
        };
        let name = ["rule", "default", "quarantine", "blocklist", "management"]
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
    /// `label:KEY=VALUE[,KEY=VALUE...]`, an IP or a CIDR.
    pub from: Option<String>,
    /// The responder, as `from`.
    pub to: Option<String>,
    /// `allow`, `deny` or `would-deny`.
    #[cfg_attr(feature = "openapi", param(pattern = "^(allow|deny|would-deny)$"))]
    pub verdict: Option<String>,
    /// `rule`, `rule:ID`, `default`, `quarantine`, `blocklist` or `management`.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^(rule(:[0-9]{1,9})?|default|quarantine|blocklist|management)$")
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

/// One end of a stored flow: the workload as it was then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndView {
    pub mac: String,
    /// Absent for a MAC no workload had.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub groups: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub ip: IpAddr,
    /// 0 for protocols without ports.
    pub port: u16,
}

/// A stored flow, as queries answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlowRow {
    /// RFC 3339, wall clock.
    pub first_seen: String,
    pub last_seen: String,
    pub src: EndView,
    pub dst: EndView,
    pub proto: u8,
    /// `[outer, inner]`, 0 where untagged.
    pub vlan: [u16; 2],
    /// `[initiator -> responder, responder -> initiator]`.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// `allow` or `deny`.
    pub verdict: String,
    pub would_deny: bool,
    /// `rule`, `default`, `quarantine`, `blocklist` or `management`.
    pub reason: String,
    /// The user rule's id, with reason `rule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    pub mode: String,
    pub state: String,
    /// `interim`, or why the flow ended (`idle`, `evicted`, `reused`, `flushed`).
    pub end: String,
}

/// A page of flows, and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowPage {
    pub flows: Vec<FlowRow>,
    pub next: Option<Cursor>,
}

/// A records store opened for queries.
pub struct RecordsReader {
    conn: Connection,
}

impl RecordsReader {
    /// Opens an existing store: see `schema::open_existing`.
    pub fn open(path: &Path) -> Result<RecordsReader, RecordsError> {
        Ok(RecordsReader {
            conn: schema::open_existing(path)?,
        })
    }

    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Flows matching `filter`, newest (by last packet) first.
    pub fn flows(&self, filter: &FlowFilter) -> Result<FlowPage, RecordsError> {
        let limit = match filter.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let mut q = Select::matching(filter);
        if let Some(c) = filter.cursor {
            q.push(" AND (f.last_ms < ?", Value::Integer(c.last_ms));
            q.push(" OR (f.last_ms = ?", Value::Integer(c.last_ms));
            q.push(" AND f.id < ?))", Value::Integer(c.id));
        }
        // One row more than asked says whether there is a next page.
        q.push(
            " ORDER BY f.last_ms DESC, f.id DESC LIMIT ?",
            Value::Integer(limit as i64 + 1),
        );
        let mut stmt = self.conn.prepare(&q.sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(q.args))?;
        let mut flows = Vec::new();
        let mut last = None;
        while let Some(row) = rows.next()? {
            if flows.len() == limit {
                return Ok(FlowPage { flows, next: last });
            }
            let (cursor, flow) = flow_row(row)?;
            last = Some(cursor);
            flows.push(flow);
        }
        Ok(FlowPage { flows, next: None })
    }

    /// The newest record's id (0 for an empty store): where a tail starts.
    pub fn last_id(&self) -> Result<i64, RecordsError> {
        Ok(self
            .conn
            .query_row("SELECT coalesce(max(id), 0) FROM flows", [], |r| r.get(0))?)
    }

    /// Records written after the record `after` that match `filter`
    /// (its cursor and limit aside), oldest first, at most `limit`, each
    /// with its id (the next call's `after`).
    pub fn tail(
        &self,
        filter: &FlowFilter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, FlowRow)>, RecordsError> {
        let mut q = Select::matching(filter);
        q.push(" AND f.id > ?", Value::Integer(after));
        q.push(
            " ORDER BY f.id LIMIT ?",
            Value::Integer(limit.min(MAX_LIMIT) as i64),
        );
        let mut stmt = self.conn.prepare(&q.sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(q.args))?;
        let mut flows = Vec::new();
        while let Some(row) = rows.next()? {
            let (cursor, flow) = flow_row(row)?;
            flows.push((cursor.id, flow));
        }
        Ok(flows)
    }
}

/// A flows query being built: its SQL and its arguments.
struct Select {
    sql: String,
    args: Vec<Value>,
}

impl Select {
    /// `clause` with its one `?` numbered as the next argument, `v`.
    fn push(&mut self, clause: &str, v: Value) {
        self.args.push(v);
        self.sql
            .push_str(&clause.replace('?', &format!("?{}", self.args.len())));
    }

    /// The flows matching `filter`'s window, ends, verdict, reason, protocol
    /// and port (not its cursor or limit).
    fn matching(filter: &FlowFilter) -> Select {
        let mut q = Select {
            sql: String::from(
                "SELECT f.id, f.first_ms, f.last_ms, f.src_mac, f.dst_mac, f.src_ip, f.dst_ip,
                f.proto, f.src_port, f.dst_port, f.vlan_outer, f.vlan_inner, f.pkts_fwd,
                f.pkts_rev, f.bytes_fwd, f.bytes_rev, f.allowed, f.reason, f.rule_id, f.mode,
                f.would_deny, f.state, f.kind,
                s.name, s.labels_json, s.groups_json, d.name, d.labels_json, d.groups_json
             FROM flows f JOIN identities s ON s.id = f.src_id JOIN identities d ON d.id = f.dst_id
             WHERE 1",
            ),
            args: Vec::new(),
        };
        if let Some(t) = filter.since_ms {
            q.push(" AND f.last_ms >= ?", Value::Integer(t));
        }
        if let Some(t) = filter.until_ms {
            q.push(" AND f.last_ms <= ?", Value::Integer(t));
        }
        for (side, mac, ip, ident) in [
            (&filter.from, "f.src_mac", "f.src_ip", "s"),
            (&filter.to, "f.dst_mac", "f.dst_ip", "d"),
        ] {
            match side {
                None => {}
                Some(Side::Mac(m)) => {
                    q.push(&format!(" AND {mac} = ?"), Value::Integer(mac_int(*m)))
                }
                Some(Side::Name(n)) => {
                    q.push(&format!(" AND {ident}.name = ?"), Value::Text(n.clone()))
                }
                Some(Side::Group(g)) => q.push(
                    &format!(
                        " AND EXISTS (SELECT 1 FROM json_each({ident}.groups_json) WHERE value = ?)"
                    ),
                    Value::Text(g.clone()),
                ),
                Some(Side::Labels(pairs)) => {
                    for (k, v) in pairs {
                        // The key as a JSON path: quoted, so any text is one key.
                        let path = format!("$.{}", serde_json::Value::String(k.clone()));
                        q.push(
                            &format!(" AND json_extract({ident}.labels_json, ?"),
                            Value::Text(path),
                        );
                        q.push(") = ?", Value::Text(v.clone()));
                    }
                }
                Some(Side::Net(net)) => {
                    let (lo, hi) = net_range(net);
                    q.push(&format!(" AND {ip} >= ?"), Value::Blob(lo));
                    q.push(&format!(" AND {ip} <= ?"), Value::Blob(hi));
                }
            }
        }
        match filter.verdict {
            None => {}
            Some(VerdictFilter::Allow) => q.sql.push_str(" AND f.allowed = 1 AND f.would_deny = 0"),
            Some(VerdictFilter::Deny) => q.sql.push_str(" AND f.allowed = 0"),
            Some(VerdictFilter::WouldDeny) => {
                q.sql.push_str(" AND f.allowed = 1 AND f.would_deny = 1")
            }
        }
        if let Some(r) = filter.reason {
            q.push(" AND f.reason = ?", Value::Text(r.name.into()));
            if let Some(id) = r.rule {
                q.push(" AND f.rule_id = ?", Value::Integer(id.into()));
            }
        }
        if let Some(p) = filter.proto {
            q.push(" AND f.proto = ?", Value::Integer(p.into()));
        }
        if let Some(p) = filter.port {
            q.push(" AND f.dst_port = ?", Value::Integer(p.into()));
        }
        q
    }
}

/// The lowest and highest stored form of an address range.
fn net_range(net: &IpNet) -> (Vec<u8>, Vec<u8>) {
    (
        ip_bytes(net.network()).to_vec(),
        ip_bytes(net.broadcast()).to_vec(),
    )
}

/// RFC 3339 with milliseconds, what the store keeps.
pub(super) fn time_text(ms: i64) -> String {
    // RFC 3339 ends at year 9999: a time past it (a damaged store's) shows as
    // its last millisecond, one before 1970 as the epoch.
    const LAST_MS: u64 = 253_402_300_799_999;
    let ms = u64::try_from(ms).unwrap_or(0).min(LAST_MS);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

fn ip_of(bytes: &[u8]) -> IpAddr {
    let mut b = [0u8; 16];
    if let Some(src) = bytes.get(..16) {
        b.copy_from_slice(src);
    }
    let v6 = Ipv6Addr::from(b);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

pub(super) fn mac_text(v: i64) -> String {
    let b = v.to_be_bytes();
    MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]]).to_string()
}

fn end_view(mac: i64, ip: &[u8], port: i64, name: String, labels: &str, groups: &str) -> EndView {
    EndView {
        mac: mac_text(mac),
        name,
        labels: serde_json::from_str(labels).unwrap_or_default(),
        groups: serde_json::from_str(groups).unwrap_or_default(),
        ip: ip_of(ip),
        port: u16::try_from(port).unwrap_or(0),
    }
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn flow_row(r: &Row<'_>) -> Result<(Cursor, FlowRow), rusqlite::Error> {
    let id: i64 = r.get(0)?;
    let (first, last): (i64, i64) = (r.get(1)?, r.get(2)?);
    let src_ip: Vec<u8> = r.get(5)?;
    let dst_ip: Vec<u8> = r.get(6)?;
    let src = end_view(
        r.get(3)?,
        &src_ip,
        r.get(8)?,
        r.get(23)?,
        &r.get::<_, String>(24)?,
        &r.get::<_, String>(25)?,
    );
    let dst = end_view(
        r.get(4)?,
        &dst_ip,
        r.get(9)?,
        r.get(26)?,
        &r.get::<_, String>(27)?,
        &r.get::<_, String>(28)?,
    );
    let allowed: bool = r.get(16)?;
    let rule: Option<i64> = r.get(18)?;
    let flow = FlowRow {
        first_seen: time_text(first),
        last_seen: time_text(last),
        src,
        dst,
        proto: u8::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
        vlan: [
            u16::try_from(r.get::<_, i64>(10)?).unwrap_or(0),
            u16::try_from(r.get::<_, i64>(11)?).unwrap_or(0),
        ],
        packets: [count(r.get(12)?), count(r.get(13)?)],
        bytes: [count(r.get(14)?), count(r.get(15)?)],
        verdict: if allowed { "allow" } else { "deny" }.to_string(),
        would_deny: r.get(20)?,
        reason: r.get(17)?,
        rule: rule.and_then(|v| u32::try_from(v).ok()),
        mode: r.get(19)?,
        state: r.get(21)?,
        end: r.get(22)?,
    };
    Ok((Cursor { last_ms: last, id }, flow))
}
