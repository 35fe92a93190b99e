//! The access graph of a window: who talked to whom over which service, and
//! what the policy said, at workload or group level, from the flow records.
//!
//! Nodes are workloads (by MAC, with the name they had), or groups; an end
//! that is no known workload (at group level: in no group either) is its
//! address.
//! An edge is (source node, destination node, protocol, destination port,
//! verdict) with its flows, packets, bytes and first/last seen; `verdict` is
//! `allow`, `deny` or `would-deny`, so the three are separate edges.

use super::filter::{parse_time, ParamError, MAX_WINDOW_DAYS};
use super::rollup::HOUR_MS;
use super::{RecordsError, RecordsReader};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};

/// Edges returned at most: a graph past this is cut (and says so).
pub const MAX_EDGES: usize = 20_000;

/// Workload or group nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Workload,
    Group,
}

/// The graph query as text (query string or command line).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct GraphParams {
    /// `workload` (default) or `group`.
    #[cfg_attr(feature = "openapi", param(pattern = "^(workload|group)$"))]
    pub level: Option<String>,
    /// The window's start: RFC 3339, or an age like `24h` (default 24h).
    pub since: Option<String>,
    /// The window's end: RFC 3339, or an age (default now).
    pub until: Option<String>,
}

/// A checked graph query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphQuery {
    pub level: Level,
    pub since_ms: i64,
    pub until_ms: i64,
}

impl GraphParams {
    pub fn query(&self, now_ms: i64) -> Result<GraphQuery, ParamError> {
        let level = match self.level.as_deref().map(str::trim) {
            None | Some("workload") => Level::Workload,
            Some("group") => Level::Group,
            Some(other) => {
                return Err(ParamError {
                    field: "level",
                    message: format!("invalid level {other:?}: expected workload or group"),
                })
            }
        };
        let time = |v: &Option<String>, field, default| match v.as_deref() {
            None => Ok(default),
            Some(t) => parse_time(t, now_ms).map_err(|message| ParamError { field, message }),
        };
        let since_ms = time(&self.since, "since", now_ms - 24 * 3_600_000)?;
        let until_ms = time(&self.until, "until", now_ms)?;
        if until_ms < since_ms {
            return Err(ParamError {
                field: "until",
                message: "the window ends before it starts".into(),
            });
        }
        if until_ms - since_ms > MAX_WINDOW_DAYS * 86_400_000 {
            return Err(ParamError {
                field: "since",
                message: format!("a window of at most {MAX_WINDOW_DAYS} days"),
            });
        }
        Ok(GraphQuery {
            level,
            since_ms,
            until_ms,
        })
    }
}

/// A node: a workload, a group, or an external address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    /// `workload`, `group`, `ungrouped` (a workload in no group, at group
    /// level) or `external`.
    pub kind: String,
    /// The MAC (workload, ungrouped), the group's name, or the address.
    pub id: String,
    /// A workload's name, when it has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Traffic from one node to another over one service, with one verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Edge {
    /// Indexes into the graph's `nodes`.
    pub src: usize,
    pub dst: usize,
    pub proto: u8,
    /// The responder's port (0 for protocols other than TCP, UDP and SCTP:
    /// an ICMP echo's id is not a service).
    pub port: u16,
    /// `allow`, `deny` or `would-deny`.
    pub verdict: String,
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    pub first_seen: String,
    pub last_seen: String,
}

/// The access graph of a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Graph {
    pub level: Level,
    pub since: String,
    pub until: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// More edges than [`MAX_EDGES`]: the busiest were kept.
    pub truncated: bool,
}

/// One end of a flow as an aggregation key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct EndKey {
    mac: i64,
    name: String,
    groups: String,
    ip: Vec<u8>,
}

/// Raw records by workload pair and service, for records ending in
/// `[?1, ?2]`.
const FROM_RECORDS: &str = "
    SELECT f.src_mac, s.name, s.groups_json, f.src_ip,
           f.dst_mac, d.name, d.groups_json, f.dst_ip,
           f.proto, CASE WHEN f.proto IN (6, 17, 132) THEN f.dst_port ELSE 0 END,
           f.allowed, f.would_deny,
           sum(f.opens), sum(f.pkts_fwd + f.pkts_rev), sum(f.bytes_fwd + f.bytes_rev),
           min(f.first_ms), max(f.last_ms)
    FROM flows f JOIN identities s ON s.id = f.src_id JOIN identities d ON d.id = f.dst_id
    WHERE f.last_ms BETWEEN ?1 AND ?2
    GROUP BY f.src_id, f.dst_id,
        CASE WHEN s.name = '' THEN f.src_ip END,
        CASE WHEN d.name = '' THEN f.dst_ip END,
        f.proto, CASE WHEN f.proto IN (6, 17, 132) THEN f.dst_port ELSE 0 END,
        f.allowed, f.would_deny";

/// The same from the hourly rollups of the hours in `[?1, ?2)`.
const FROM_ROLLUPS: &str = "
    SELECT s.mac, s.name, s.groups_json, h.src_ip,
           d.mac, d.name, d.groups_json, h.dst_ip,
           h.proto, h.port, h.allowed, h.would_deny,
           sum(h.flows), sum(h.pkts_fwd + h.pkts_rev), sum(h.bytes_fwd + h.bytes_rev),
           min(h.first_ms), max(h.last_ms)
    FROM hourly h JOIN identities s ON s.id = h.src_id JOIN identities d ON d.id = h.dst_id
    WHERE h.hour_ms >= ?1 AND h.hour_ms < ?2
    GROUP BY h.src_id, h.dst_id, h.src_ip, h.dst_ip, h.proto, h.port, h.allowed, h.would_deny";

/// Where a window's records are read: the hourly rollups for the whole hours
/// in it, the raw records for the rest (both ends, or all of a short window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Split {
    /// Hours `[start, end)` read from the rollups, if any.
    pub hours: Option<(i64, i64)>,
    /// Inclusive ranges of `last_ms` read from the raw records.
    pub raw: [Option<(i64, i64)>; 2],
}

impl Split {
    /// Everything from the raw records.
    #[cfg(test)]
    pub(super) fn raw(since_ms: i64, until_ms: i64) -> Split {
        Split {
            hours: None,
            raw: [Some((since_ms, until_ms)), None],
        }
    }

    pub(super) fn of(since_ms: i64, until_ms: i64) -> Split {
        let lo = since_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let lo = if lo < since_ms { lo + HOUR_MS } else { lo };
        let hi = until_ms.saturating_add(1).div_euclid(HOUR_MS) * HOUR_MS;
        if lo >= hi {
            return Split {
                hours: None,
                raw: [Some((since_ms, until_ms)), None],
            };
        }
        let part = |a: i64, b: i64| (a <= b).then_some((a, b));
        Split {
            hours: Some((lo, hi)),
            raw: [part(since_ms, lo - 1), part(hi, until_ms)],
        }
    }
}

impl RecordsReader {
    /// The access graph of `q`'s window: the records that ended in it (a
    /// long flow's interim records count in the windows they fall in), from
    /// the hourly rollups for whole hours.
    pub fn graph(&self, q: &GraphQuery) -> Result<Graph, RecordsError> {
        self.graph_from(q, Split::of(q.since_ms, q.until_ms))
    }

    /// [`RecordsReader::graph`] reading where `split` says.
    pub(super) fn graph_from(&self, q: &GraphQuery, split: Split) -> Result<Graph, RecordsError> {
        let mut nodes: BTreeMap<Node, usize> = BTreeMap::new();
        let mut edges: BTreeMap<(usize, usize, u8, u16, &'static str), Agg> = BTreeMap::new();
        let mut parsed: HashMap<String, Vec<String>> = HashMap::new();
        let parts = split
            .raw
            .iter()
            .flatten()
            .map(|&range| (FROM_RECORDS, range))
            .chain(split.hours.map(|range| (FROM_ROLLUPS, range)));
        for (sql, (a, b)) in parts {
            let mut stmt = self.conn().prepare_cached(sql)?;
            let mut rows = stmt.query([a, b])?;
            while let Some(r) = rows.next()? {
                let GraphRow {
                    src,
                    dst,
                    service: (proto, port, verdict),
                    agg,
                } = graph_row(r)?;
                // Each identity's groups parsed once, not once a row.
                let mut groups_of = |json: &str| -> Vec<String> {
                    parsed
                        .entry(json.to_string())
                        .or_insert_with(|| serde_json::from_str(json).unwrap_or_default())
                        .clone()
                };
                let (sg, dg) = (groups_of(&src.groups), groups_of(&dst.groups));
                for s in node_of(&src, &sg, q.level) {
                    for d in node_of(&dst, &dg, q.level) {
                        let n = nodes.len();
                        let si = *nodes.entry(s.clone()).or_insert(n);
                        let n = nodes.len();
                        let di = *nodes.entry(d).or_insert(n);
                        edges
                            .entry((si, di, proto, port, verdict))
                            .or_default()
                            .add(&agg);
                    }
                }
            }
        }
        // Nodes in their order (kind, id, name), whatever order the rows
        // came in; edges by their ends' positions.
        let mut position = vec![0; nodes.len()];
        for (at, &i) in nodes.values().enumerate() {
            position[i] = at;
        }
        let mut edges: Vec<Edge> = edges
            .into_iter()
            .map(|((src, dst, proto, port, verdict), a)| Edge {
                src: position[src],
                dst: position[dst],
                proto,
                port,
                verdict: verdict.to_string(),
                flows: a.flows,
                packets: a.packets,
                bytes: a.bytes,
                first_seen: super::query::time_text(a.first_ms),
                last_seen: super::query::time_text(a.last_ms),
            })
            .collect();
        edges.sort_by(|a, b| {
            (a.src, a.dst, a.proto, a.port, &a.verdict)
                .cmp(&(b.src, b.dst, b.proto, b.port, &b.verdict))
        });
        let truncated = edges.len() > MAX_EDGES;
        if truncated {
            edges.sort_by_key(|e| std::cmp::Reverse(e.flows));
            edges.truncate(MAX_EDGES);
        }
        Ok(Graph {
            level: q.level,
            since: super::query::time_text(q.since_ms),
            until: super::query::time_text(q.until_ms),
            nodes: nodes.into_keys().collect(),
            edges,
            truncated,
        })
    }
}

/// One row of [`FROM_RECORDS`] or [`FROM_ROLLUPS`].
struct GraphRow {
    src: EndKey,
    dst: EndKey,
    /// Protocol, port, verdict.
    service: (u8, u16, &'static str),
    agg: Agg,
}

fn graph_row(r: &rusqlite::Row<'_>) -> Result<GraphRow, rusqlite::Error> {
    let end = |at: usize| -> Result<EndKey, rusqlite::Error> {
        Ok(EndKey {
            mac: r.get(at)?,
            name: r.get(at + 1)?,
            groups: r.get(at + 2)?,
            ip: r.get(at + 3)?,
        })
    };
    let allowed: bool = r.get(10)?;
    let would: bool = r.get(11)?;
    let verdict = match (allowed, would) {
        (false, _) => "deny",
        (true, true) => "would-deny",
        (true, false) => "allow",
    };
    let count = |at: usize| -> Result<u64, rusqlite::Error> {
        Ok(u64::try_from(r.get::<_, i64>(at)?).unwrap_or(0))
    };
    let agg = Agg {
        flows: count(12)?,
        packets: count(13)?,
        bytes: count(14)?,
        first_ms: r.get(15)?,
        last_ms: r.get(16)?,
    };
    let proto = u8::try_from(r.get::<_, i64>(8)?).unwrap_or(0);
    let port = u16::try_from(r.get::<_, i64>(9)?).unwrap_or(0);
    Ok(GraphRow {
        src: end(0)?,
        dst: end(4)?,
        service: (proto, port, verdict),
        agg,
    })
}

#[derive(Debug)]
struct Agg {
    flows: u64,
    packets: u64,
    bytes: u64,
    first_ms: i64,
    last_ms: i64,
}

impl Default for Agg {
    fn default() -> Self {
        Agg {
            flows: 0,
            packets: 0,
            bytes: 0,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
        }
    }
}

impl Agg {
    fn add(&mut self, o: &Agg) {
        self.first_ms = self.first_ms.min(o.first_ms);
        self.last_ms = self.last_ms.max(o.last_ms);
        self.flows += o.flows;
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

/// The node(s) an end stands for. A workload is a MAC the inventory names;
/// at group level an end stands for each of its groups (a network's members
/// too), a named workload in none is `ungrouped`; anything else is its
/// address, `external`.
fn node_of(e: &EndKey, groups: &[String], level: Level) -> Vec<Node> {
    let external = || Node {
        kind: "external".into(),
        id: ip_text(&e.ip),
        name: String::new(),
    };
    let named = |kind: &str| Node {
        kind: kind.into(),
        id: super::query::mac_text(e.mac),
        name: e.name.clone(),
    };
    match level {
        Level::Workload if e.name.is_empty() => vec![external()],
        Level::Workload => vec![named("workload")],
        Level::Group if !groups.is_empty() => groups
            .iter()
            .map(|g| Node {
                kind: "group".into(),
                id: g.clone(),
                name: String::new(),
            })
            .collect(),
        Level::Group if !e.name.is_empty() => vec![named("ungrouped")],
        Level::Group => vec![external()],
    }
}

fn ip_text(bytes: &[u8]) -> String {
    let mut b = [0u8; 16];
    if let Some(src) = bytes.get(..16) {
        b.copy_from_slice(src);
    }
    let v6 = Ipv6Addr::from(b);
    v6.to_ipv4_mapped()
        .map_or(IpAddr::V6(v6), IpAddr::V4)
        .to_string()
}
