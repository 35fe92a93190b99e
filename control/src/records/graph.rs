//! The access graph of a window: who talked to whom over which service, and
//! what the policy said, at workload or group level, from the flow records.
//!
//! Nodes are workloads (by MAC, with the name they had), or groups; an end
//! that is no known workload is its address at workload level, and at group
//! level (in no group either) the internet or a private network
//! ([`super::nodes`]).
//! An edge is (source node, destination node, protocol, destination port,
//! verdict) with its flows, packets, bytes and first/last seen; `verdict` is
//! `allow`, `deny` or `would-deny`, so the three are separate edges.

use super::filter::{parse_time, ParamError, MAX_WINDOW_DAYS};
use super::group_rollup::DAY_MS;
use super::nodes::{node_of, End};
use super::rollup::HOUR_MS;
use super::{count_at, RecordsError, RecordsReader};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    /// `workload`, `group`, `ungrouped` (a workload in no group, at group
    /// level) or `external`.
    pub kind: String,
    /// The MAC (workload, ungrouped), the group's name, or (external) the
    /// address at workload level, `internet` or `private` at group level.
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

/// The same from the group rollups of one span (`?1`: an hour or a day)
/// for the periods in `[?2, ?3)`: already by node, nothing to group.
const FROM_GROUPS: &str = "
    SELECT src, dst, proto, port, allowed, would_deny, flows, packets, bytes, first_ms, last_ms
    FROM group_rollups WHERE span_ms = ?1 AND period_ms >= ?2 AND period_ms < ?3";

/// Where a window's records are read: the whole days in it from the day
/// rollups (group level; the hourly ones at workload level), the other whole
/// hours from the hour rollups, the raw records for the rest (both ends, or
/// all of a short window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Split {
    /// Days `[start, end)`, if any.
    pub days: Option<(i64, i64)>,
    /// Hours `[start, end)`: before the days and after them (or all of them).
    pub hours: [Option<(i64, i64)>; 2],
    /// Inclusive ranges of `last_ms` read from the raw records.
    pub raw: [Option<(i64, i64)>; 2],
}

impl Split {
    /// Everything from the raw records.
    #[cfg(test)]
    pub(super) fn raw(since_ms: i64, until_ms: i64) -> Split {
        Split {
            days: None,
            hours: [None; 2],
            raw: [Some((since_ms, until_ms)), None],
        }
    }

    /// Whole hours from the rollups, the rest raw.
    pub(super) fn of(since_ms: i64, until_ms: i64) -> Split {
        let (lo, hi) = whole(since_ms, until_ms.saturating_add(1), HOUR_MS);
        if lo >= hi {
            return Split::raw_only(since_ms, until_ms);
        }
        let part = |a: i64, b: i64| (a <= b).then_some((a, b));
        Split {
            days: None,
            hours: [Some((lo, hi)), None],
            raw: [part(since_ms, lo - 1), part(hi, until_ms)],
        }
    }

    fn raw_only(since_ms: i64, until_ms: i64) -> Split {
        Split {
            days: None,
            hours: [None; 2],
            raw: [Some((since_ms, until_ms)), None],
        }
    }

    /// The whole days of the hours read from the day rollups.
    pub(super) fn with_days(self) -> Split {
        let Some((lo, hi)) = self.hours[0] else {
            return self;
        };
        let (dlo, dhi) = whole(lo, hi, DAY_MS);
        if dlo >= dhi {
            return self;
        }
        let part = |a: i64, b: i64| (a < b).then_some((a, b));
        Split {
            days: Some((dlo, dhi)),
            hours: [part(lo, dlo), part(dhi, hi)],
            raw: self.raw,
        }
    }
}

/// The periods of length `span` wholly in `[a, b)`: `[lo, hi)`, empty when
/// `lo >= hi`.
fn whole(a: i64, b: i64, span: i64) -> (i64, i64) {
    let lo = a.div_euclid(span) * span;
    let lo = if lo < a { lo + span } else { lo };
    (lo, b.div_euclid(span) * span)
}

impl RecordsReader {
    /// The access graph of `q`'s window: the records that ended in it (a
    /// long flow's interim records count in the windows they fall in), from
    /// the rollups for whole hours (and, at group level, whole days).
    pub fn graph(&self, q: &GraphQuery) -> Result<Graph, RecordsError> {
        let split = Split::of(q.since_ms, q.until_ms);
        let split = match q.level {
            Level::Group => split.with_days(),
            Level::Workload => split,
        };
        self.graph_from(q, split)
    }

    /// [`RecordsReader::graph`] reading where `split` says.
    pub(super) fn graph_from(&self, q: &GraphQuery, split: Split) -> Result<Graph, RecordsError> {
        let conn = self.conn();
        let mut b = Builder::default();
        for &range in split.raw.iter().flatten() {
            b.add_rows(conn, FROM_RECORDS, range, q.level)?;
        }
        let hours = split.hours.into_iter().flatten();
        match q.level {
            // The hourly rollups hold the days' hours too.
            Level::Workload => {
                for range in hours.chain(split.days) {
                    b.add_rows(conn, FROM_ROLLUPS, range, q.level)?;
                }
            }
            Level::Group => {
                let spans = hours
                    .map(|r| (HOUR_MS, r))
                    .chain(split.days.map(|r| (DAY_MS, r)));
                for (span, range) in spans {
                    b.add_groups(conn, span, range)?;
                }
            }
        }
        Ok(b.finish(q))
    }
}

/// A graph as its rows come in.
#[derive(Default)]
struct Builder {
    /// Each node and the order it came in.
    nodes: BTreeMap<Node, usize>,
    edges: HashMap<(usize, usize, u8, u16, &'static str), Agg>,
    /// Each identity's groups parsed once, not once a row.
    parsed: HashMap<String, Vec<String>>,
    /// `nodes` rows (group rollups) already met.
    node_rows: HashMap<i64, usize>,
}

impl Builder {
    fn node(&mut self, n: Node) -> usize {
        let next = self.nodes.len();
        *self.nodes.entry(n).or_insert(next)
    }

    fn edge(&mut self, src: usize, dst: usize, service: (u8, u16, &'static str), agg: &Agg) {
        let (proto, port, verdict) = service;
        self.edges
            .entry((src, dst, proto, port, verdict))
            .or_default()
            .add(agg);
    }

    /// Rows of [`FROM_RECORDS`] or [`FROM_ROLLUPS`] for `range`.
    fn add_rows(
        &mut self,
        conn: &rusqlite::Connection,
        sql: &str,
        (a, z): (i64, i64),
        level: Level,
    ) -> Result<(), rusqlite::Error> {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query([a, z])?;
        while let Some(r) = rows.next()? {
            let GraphRow {
                src,
                dst,
                service,
                agg,
            } = graph_row(r)?;
            let nodes = |b: &mut Builder, e: &EndKey| -> Vec<usize> {
                let groups = b
                    .parsed
                    .entry(e.groups.clone())
                    .or_insert_with(|| serde_json::from_str(&e.groups).unwrap_or_default())
                    .clone();
                let end = End {
                    mac: e.mac,
                    name: &e.name,
                    groups: &groups,
                    ip: &e.ip,
                };
                node_of(&end, level)
                    .into_iter()
                    .map(|n| b.node(n))
                    .collect()
            };
            let (s, d) = (nodes(self, &src), nodes(self, &dst));
            for &si in &s {
                for &di in &d {
                    self.edge(si, di, service, &agg);
                }
            }
        }
        Ok(())
    }

    /// Rows of [`FROM_GROUPS`] of one span for `range`.
    fn add_groups(
        &mut self,
        conn: &rusqlite::Connection,
        span_ms: i64,
        (a, z): (i64, i64),
    ) -> Result<(), rusqlite::Error> {
        let mut stmt = conn.prepare_cached(FROM_GROUPS)?;
        let mut rows = stmt.query([span_ms, a, z])?;
        while let Some(r) = rows.next()? {
            let src = self.node_row(conn, r.get(0)?)?;
            let dst = self.node_row(conn, r.get(1)?)?;
            let service = (
                u8::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                u16::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                verdict_of(r.get(4)?, r.get(5)?),
            );
            self.edge(src, dst, service, &Agg::read(r, 6)?);
        }
        Ok(())
    }

    /// The node of a `nodes` row (one a damaged store lacks is `unknown`).
    fn node_row(&mut self, conn: &rusqlite::Connection, id: i64) -> Result<usize, rusqlite::Error> {
        if let Some(&i) = self.node_rows.get(&id) {
            return Ok(i);
        }
        let node = conn
            .prepare_cached("SELECT kind, ident, name FROM nodes WHERE id = ?1")?
            .query_row([id], |r| {
                Ok(Node {
                    kind: r.get(0)?,
                    id: r.get(1)?,
                    name: r.get(2)?,
                })
            })
            .optional()?
            .unwrap_or_else(|| Node {
                kind: "unknown".into(),
                id: id.to_string(),
                name: String::new(),
            });
        let i = self.node(node);
        self.node_rows.insert(id, i);
        Ok(i)
    }

    fn finish(self, q: &GraphQuery) -> Graph {
        // Nodes in their order (kind, id, name), whatever order the rows
        // came in; edges by their ends' positions.
        let mut position = vec![0; self.nodes.len()];
        for (at, &i) in self.nodes.values().enumerate() {
            position[i] = at;
        }
        let mut edges: Vec<Edge> = self
            .edges
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
        Graph {
            level: q.level,
            since: super::query::time_text(q.since_ms),
            until: super::query::time_text(q.until_ms),
            nodes: self.nodes.into_keys().collect(),
            edges,
            truncated,
        }
    }
}

fn verdict_of(allowed: bool, would_deny: bool) -> &'static str {
    match (allowed, would_deny) {
        (false, _) => "deny",
        (true, true) => "would-deny",
        (true, false) => "allow",
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
    let verdict = verdict_of(r.get(10)?, r.get(11)?);
    let agg = Agg::read(r, 12)?;
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
    /// Flows, packets, bytes, first and last seen from the columns at `at`..
    /// (both the records' and the rollups' reads give them in this order).
    fn read(r: &rusqlite::Row<'_>, at: usize) -> Result<Agg, rusqlite::Error> {
        Ok(Agg {
            flows: count_at(r, at)?,
            packets: count_at(r, at + 1)?,
            bytes: count_at(r, at + 2)?,
            first_ms: r.get(at + 3)?,
            last_ms: r.get(at + 4)?,
        })
    }

    fn add(&mut self, o: &Agg) {
        self.first_ms = self.first_ms.min(o.first_ms);
        self.last_ms = self.last_ms.max(o.last_ms);
        self.flows += o.flows;
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}
