//! Group-level rollups: the group-level graph's edges per hour and per day
//! (`group_rollups`, `span_ms` one or the other), so that the graph of a day
//! reads a few thousand rows and the graph of months a few hundred thousand,
//! not a row per workload pair and internet address.
//!
//! They are made from the hourly rows as the writer writes those
//! ([`super::rollup::Rollups`]), in the same transaction and under the same
//! mark, so they count exactly what the hourly rollups count. An end stands
//! for its group-level nodes ([`super::nodes`]): each of its groups, itself
//! when named and in none, else the internet or a private network. Nodes are
//! stored once (`nodes`) and the rows reference them.

use super::graph::{Level, Node};
use super::nodes::{node_of, End, Network};
use super::rollup::{read_hour, HourAgg, HourKey, COLUMNS, HOUR_MS, MAX_WAITING};
use super::sat;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;

/// Milliseconds in a day: the long rollups' period (UTC days).
pub(super) const DAY_MS: i64 = 86_400_000;

/// Identities' and nodes' row ids, as the writer's transactions made them.
#[derive(Debug, Default)]
pub(super) struct NodeIds {
    /// Identity id -> its nodes; empty for an end that is its address.
    ends: HashMap<i64, Vec<i64>, ahash::RandomState>,
    ids: HashMap<Node, i64, ahash::RandomState>,
    /// The nodes of the internet and of the private networks, once made.
    networks: Option<[i64; 2]>,
}

/// Entries kept at most; past it the caches start again.
const MAX_CACHED: usize = 100_000;

impl NodeIds {
    /// Make sure the nodes of both ends' identities and of the networks are
    /// known (a cache past its size starts again first, never between).
    fn learn(&mut self, conn: &Connection, ends: [i64; 2]) -> Result<(), rusqlite::Error> {
        if self.ends.len() >= MAX_CACHED || self.ids.len() >= MAX_CACHED {
            *self = NodeIds::default();
        }
        for identity in ends {
            self.learn_one(conn, identity)?;
        }
        Ok(())
    }

    fn learn_one(&mut self, conn: &Connection, identity: i64) -> Result<(), rusqlite::Error> {
        if self.networks.is_none() {
            self.networks = Some([
                self.id(conn, Network::Internet.node())?,
                self.id(conn, Network::Private.node())?,
            ]);
        }
        if !self.ends.contains_key(&identity) {
            let ids = match identity_nodes(conn, identity)? {
                Some(nodes) => nodes
                    .into_iter()
                    .map(|n| self.id(conn, n))
                    .collect::<Result<_, _>>()?,
                None => Vec::new(),
            };
            self.ends.insert(identity, ids);
        }
        Ok(())
    }

    /// The node ids of an end whose identity was [`NodeIds::learn`]ed: its
    /// identity's, or its address's network.
    fn of(&self, identity: i64, ip: &Option<[u8; 16]>) -> &[i64] {
        match (self.ends.get(&identity), &self.networks) {
            (Some(ids), _) if !ids.is_empty() => ids,
            (_, Some(networks)) => {
                let ip = super::nodes::ip_of(ip.as_ref().map_or(&[][..], |b| &b[..]));
                match Network::of(ip) {
                    Network::Internet => &networks[..1],
                    Network::Private => &networks[1..],
                }
            }
            (_, None) => &[],
        }
    }

    fn id(&mut self, conn: &Connection, node: Node) -> Result<i64, rusqlite::Error> {
        if let Some(&id) = self.ids.get(&node) {
            return Ok(id);
        }
        let id: i64 = conn
            .prepare_cached(
                "INSERT INTO nodes (kind, ident, name) VALUES (?1, ?2, ?3)
                 ON CONFLICT (kind, ident, name) DO UPDATE SET kind = kind RETURNING id",
            )?
            .query_row(params![node.kind, node.id, node.name], |r| r.get(0))?;
        self.ids.insert(node, id);
        Ok(id)
    }
}

/// An identity's group-level nodes, or `None` when it stands for its
/// address (no name, no group). An identity that is not there (a damaged
/// store) stands for its address.
fn identity_nodes(conn: &Connection, id: i64) -> Result<Option<Vec<Node>>, rusqlite::Error> {
    let row: Option<(i64, String, String)> = conn
        .prepare_cached("SELECT mac, name, groups_json FROM identities WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((mac, name, groups_json)) = row else {
        return Ok(None);
    };
    let groups: Vec<String> = serde_json::from_str(&groups_json).unwrap_or_default();
    if name.is_empty() && groups.is_empty() {
        return Ok(None);
    }
    let end = End {
        mac,
        name: &name,
        groups: &groups,
        ip: &[],
    };
    Ok(Some(node_of(&end, Level::Group)))
}

/// A group rollup row's key: its span (an hour or a day) and period start,
/// both nodes, the service and the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct GroupKey {
    span_ms: i64,
    period_ms: i64,
    src: i64,
    dst: i64,
    proto: u8,
    port: u16,
    allowed: bool,
    would_deny: bool,
}

#[derive(Debug)]
struct GroupAgg {
    flows: i64,
    packets: u64,
    bytes: u64,
    first_ms: i64,
    last_ms: i64,
}

/// Group rollup rows gathered from hourly rows.
#[derive(Debug, Default)]
pub(super) struct GroupRows {
    rows: HashMap<GroupKey, GroupAgg, ahash::RandomState>,
}

impl GroupRows {
    /// Count an hourly row into its hour's and its day's group rows.
    pub(super) fn add(
        &mut self,
        k: &HourKey,
        a: &HourAgg,
        nodes: &mut NodeIds,
        conn: &Connection,
    ) -> Result<(), rusqlite::Error> {
        nodes.learn(conn, [k.src_id, k.dst_id])?;
        let (src, dst) = (nodes.of(k.src_id, &k.src_ip), nodes.of(k.dst_id, &k.dst_ip));
        let packets = a.packets[0].saturating_add(a.packets[1]);
        let bytes = a.bytes[0].saturating_add(a.bytes[1]);
        for &s in src {
            for &d in dst {
                for (span_ms, period_ms) in [
                    (HOUR_MS, k.hour_ms),
                    (DAY_MS, k.hour_ms.div_euclid(DAY_MS) * DAY_MS),
                ] {
                    let key = GroupKey {
                        span_ms,
                        period_ms,
                        src: s,
                        dst: d,
                        proto: k.proto,
                        port: k.port,
                        allowed: k.allowed,
                        would_deny: k.would_deny,
                    };
                    let g = self.rows.entry(key).or_insert(GroupAgg {
                        flows: 0,
                        packets: 0,
                        bytes: 0,
                        first_ms: i64::MAX,
                        last_ms: i64::MIN,
                    });
                    g.flows += a.flows;
                    g.packets = g.packets.saturating_add(packets);
                    g.bytes = g.bytes.saturating_add(bytes);
                    g.first_ms = g.first_ms.min(a.first_ms);
                    g.last_ms = g.last_ms.max(a.last_ms);
                }
            }
        }
        Ok(())
    }

    /// Add the gathered rows to the stored ones, in the caller's transaction.
    pub(super) fn write(&mut self, tx: &Connection) -> Result<(), rusqlite::Error> {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO group_rollups (span_ms, period_ms, src, dst, proto, port, allowed,
                would_deny, flows, packets, bytes, first_ms, last_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (span_ms, period_ms, src, dst, proto, port, allowed, would_deny)
             DO UPDATE SET
                flows = flows + excluded.flows,
                packets = packets + excluded.packets,
                bytes = bytes + excluded.bytes,
                first_ms = min(first_ms, excluded.first_ms),
                last_ms = max(last_ms, excluded.last_ms)",
        )?;
        for (k, g) in self.rows.drain() {
            upsert.execute(params![
                k.span_ms,
                k.period_ms,
                k.src,
                k.dst,
                k.proto,
                k.port,
                k.allowed,
                k.would_deny,
                g.flows,
                sat(g.packets),
                sat(g.bytes),
                g.first_ms,
                g.last_ms,
            ])?;
        }
        Ok(())
    }
}

/// Group rollups of the hourly rollups a store already has (a store made
/// before group rollups existed, when it is migrated).
pub(super) fn from_hourly(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut nodes = NodeIds::default();
        let mut groups = GroupRows::default();
        let mut stmt = tx.prepare(&format!("SELECT {COLUMNS} FROM hourly"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (k, a) = read_hour(row)?;
            groups.add(&k, &a, &mut nodes, &tx)?;
            if groups.rows.len() >= MAX_WAITING {
                groups.write(&tx)?;
            }
        }
        groups.write(&tx)?;
    }
    tx.commit()
}
