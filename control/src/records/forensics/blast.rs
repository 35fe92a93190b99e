//! Blast radius: breadth first over allowed flows from a workload, causally:
//! a hop from B counts only for flows B began after the path first reached
//! B. Denied flows of the workloads reached are listed apart: tried, not
//! reached.

use super::{hour_of, service_text};
use crate::records::addresses::held;
use crate::records::nodes::ip_of;
use crate::records::query::{mac_text, time_text};
use crate::records::{mac_int, RecordsError, RecordsReader};
use dataplane::wire::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Depth at most.
pub const MAX_DEPTH: u32 = 10;
/// Nodes reached at most: past it the answer is cut (`truncated`).
const MAX_REACHED: usize = 10_000;
/// Attempts listed at most.
const MAX_ATTEMPTS: usize = 10_000;
/// Frontier workloads left to expand from which a level may be walked
/// backwards (by destination), when fewer nodes are left to reach.
const BACKWARDS_MIN: usize = 64;

/// A workload (by MAC) or an address no workload holds, reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reached {
    /// A workload's MAC (absent for an external address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The address reached (for a workload, the address the first flow went to).
    pub ip: String,
    /// The workload's name as the store last knew it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Hops from the origin (1: it reached this itself).
    pub depth: u32,
    /// When the first flow that reached it began.
    pub first_contact: String,
    /// The nodes from the origin to this one (MACs, or the address).
    pub path: Vec<String>,
    /// The services reached on it by the node before it on the path.
    pub services: Vec<String>,
    /// Flows and bytes from that node to it since the node was reached
    /// (by the hour: an hour with a flow begun after counts whole).
    pub flows: u64,
    pub bytes: u64,
    #[serde(skip, default)]
    pub first_ms: i64,
}

/// Flows a reached workload tried and policy denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    /// The reached workload that tried.
    pub from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_mac: Option<String>,
    pub to_ip: String,
    pub service: String,
    pub flows: u64,
    pub first: String,
    pub last: String,
}

/// A blast radius's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlastRadius {
    pub origin: String,
    pub since: String,
    pub until: String,
    pub depth: u32,
    /// In the order reached: by depth, then first contact.
    pub reached: Vec<Reached>,
    pub attempted: Vec<Attempt>,
    pub truncated: bool,
}

/// An edge as read.
#[derive(Debug, Clone, Copy)]
pub(super) struct EdgeRow {
    pub(super) dst_mac: i64,
    pub(super) dst_ip: [u8; 16],
    pub(super) proto: i64,
    pub(super) port: i64,
    pub(super) allowed: bool,
    pub(super) flows: u64,
    pub(super) bytes: u64,
    pub(super) first_ms: i64,
    pub(super) last_ms: i64,
}

/// A node of the walk: a workload's MAC, or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum NodeKey {
    Mac(i64),
    Ip([u8; 16]),
}

/// A node reached (the origin first): when, and from which node (its
/// index), so that a path is the chain of parents, not a copy a node.
struct Node {
    key: NodeKey,
    time_ms: i64,
    parent: Option<usize>,
}

/// Where a walk edge by edge reads an edge: its source's place in the
/// frontier, then the edge's destination MAC, address, protocol and port.
type ReadOrder = (usize, i64, [u8; 16], i64, i64);

/// An allowed edge from a frontier node to a node not reached yet.
struct Candidate {
    /// No flow on it began before this: the later of the source's reach
    /// and the edge's first flow.
    bound_ms: i64,
    /// The order a walk edge by edge reads it in: its source's place in
    /// the frontier, then the edge's key (of two equal first contacts the
    /// first read wins).
    order: ReadOrder,
    /// The source: its index among the nodes, its MAC and reach time.
    from: usize,
    src: i64,
    t: i64,
    edge: EdgeRow,
    /// What [`RecordsReader::after`] found, once looked up.
    exact: Option<Option<(i64, u64, u64)>>,
}

/// Attempts listed at most, and the frontier left from which a level may
/// be walked backwards.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub attempts: usize,
    pub backwards_min: usize,
    /// Backwards whenever allowed, however many nodes are left.
    pub backwards_always: bool,
}

/// A reached node's depth, the address the winning edge went to, and its
/// services, flows and bytes from the node before it.
struct Found {
    level: u32,
    ip: [u8; 16],
    services: Vec<String>,
    flows: u64,
    bytes: u64,
}

type Hasher = ahash::RandomState;

impl RecordsReader {
    /// Everything `origin` reached from `since_ms` to `until_ms`, to `depth`
    /// hops.
    ///
    /// A level reads the edges of its frontier's workloads once (a query a
    /// workload) and keeps those to nodes not reached yet; a node's first
    /// contact is then looked up edge by edge in the order of the earliest
    /// it can be (the later of the source's reach and the edge's first
    /// flow), and the look-ups stop once none left can be earlier. Names
    /// are read once for every workload reached, at the end.
    pub fn blast_radius(
        &self,
        origin: MacAddr,
        since_ms: i64,
        until_ms: i64,
        depth: u32,
    ) -> Result<BlastRadius, RecordsError> {
        self.blast_radius_with(
            origin,
            since_ms,
            until_ms,
            depth,
            Limits {
                attempts: MAX_ATTEMPTS,
                backwards_min: BACKWARDS_MIN,
                backwards_always: false,
            },
        )
    }

    /// [`Self::blast_radius`] with other limits (a test walks a level
    /// backwards where the answer's would not).
    pub(crate) fn blast_radius_with(
        &self,
        origin: MacAddr,
        since_ms: i64,
        until_ms: i64,
        depth: u32,
        limits: Limits,
    ) -> Result<BlastRadius, RecordsError> {
        let Limits {
            attempts: max_attempts,
            backwards_min,
            backwards_always,
        } = limits;
        let depth = depth.clamp(1, MAX_DEPTH);
        // One read transaction: one snapshot of the store for the walk's
        // thousands of look-ups, and one lock taken for them all.
        let tx = self.conn().unchecked_transaction()?;
        let origin_key = NodeKey::Mac(mac_int(origin));
        let mut nodes: Vec<Node> = vec![Node {
            key: origin_key,
            time_ms: since_ms,
            parent: None,
        }];
        let mut index: HashMap<NodeKey, usize, Hasher> = HashMap::default();
        index.insert(origin_key, 0);
        // Per reached node (by index, past the origin).
        let mut found: Vec<Found> = Vec::new();
        let mut attempts: BTreeMap<(i64, i64, [u8; 16], i64, i64), Attempt> = BTreeMap::new();
        let mut frontier: Vec<usize> = vec![0];
        let mut truncated = false;

        // Every destination of an edge (address and MAC), read when a level
        // is first walked backwards.
        let mut destinations: Option<Vec<([u8; 16], i64)>> = None;
        // The node of each destination read (which asks whether its MAC
        // holds its address: a search of the local networks, once a
        // destination instead of once an edge read).
        let mut node_memo: HashMap<(i64, [u8; 16]), NodeKey, Hasher> = HashMap::default();
        let mut after_stmt = self.conn().prepare_cached(AFTER_SQL)?;
        let mut edges_stmt = self.conn().prepare_cached(
            "SELECT dst_mac, dst_ip, proto, port, allowed, flows, bytes, first_ms, last_ms
             FROM edges WHERE src_mac = ?1 AND last_start_ms >= ?2 AND first_ms <= ?3",
        )?;
        for level in 1..=depth {
            // The allowed edges to nodes not reached yet, by node.
            let mut next: HashMap<NodeKey, Vec<Candidate>, Hasher> = HashMap::default();
            let mut backwards: Option<usize> = None;
            // Destinations not reached yet (the reached set grows only
            // between levels).
            let mut unreached: Option<usize> = None;
            for (pos, &from) in frontier.iter().enumerate() {
                let (NodeKey::Mac(src), t) = (nodes[from].key, nodes[from].time_ms) else {
                    continue;
                };
                // Once the attempts are full, only edges to nodes not
                // reached yet matter: when those are fewer than the
                // workloads left to expand (the last level over a long
                // window: every workload's edges read to find a handful),
                // they are looked up by destination instead.
                let left = frontier.len() - pos;
                if attempts.len() >= max_attempts && left >= backwards_min {
                    if destinations.is_none() {
                        destinations = Some(self.destinations()?);
                    }
                    let n = *unreached.get_or_insert_with(|| {
                        destinations
                            .iter()
                            .flatten()
                            .filter(|(ip, mac)| !index.contains_key(&node_of(*mac, ip)))
                            .count()
                    });
                    if backwards_always || n <= left {
                        backwards = Some(pos);
                        break;
                    }
                }
                let mut denied: Vec<(NodeKey, EdgeRow)> = Vec::new();
                let mut rows = edges_stmt.query(rusqlite::params![src, t, until_ms])?;
                while let Some(r) = rows.next()? {
                    let dst_mac: i64 = r.get(0)?;
                    let dst_ip = ip16(r.get_ref(1)?.as_blob().unwrap_or_default());
                    let allowed: bool = r.get(4)?;
                    let node = *node_memo
                        .entry((dst_mac, dst_ip))
                        .or_insert_with(|| node_of(dst_mac, &dst_ip));
                    // An allowed edge to a node reached before, or a denied
                    // one once the attempts are full, adds nothing (most
                    // edges, a few levels in): skipped before the rest of
                    // the row is read.
                    if (allowed && index.contains_key(&node))
                        || (!allowed && attempts.len() >= max_attempts)
                    {
                        continue;
                    }
                    let edge = EdgeRow {
                        dst_mac,
                        dst_ip,
                        proto: r.get(2)?,
                        port: r.get(3)?,
                        allowed,
                        flows: crate::records::count_at(r, 5)?,
                        bytes: crate::records::count_at(r, 6)?,
                        first_ms: r.get(7)?,
                        last_ms: r.get(8)?,
                    };
                    if !allowed {
                        denied.push((node, edge));
                        continue;
                    }
                    next.entry(node).or_default().push(Candidate {
                        bound_ms: t.max(edge.first_ms),
                        order: (pos, dst_mac, dst_ip, edge.proto, edge.port),
                        from,
                        src,
                        t,
                        edge,
                        exact: None,
                    });
                }
                drop(rows);
                for (node, e) in denied {
                    if attempts.len() >= max_attempts {
                        break;
                    }
                    let Some((contact_ms, flows, _)) =
                        Self::after(&mut after_stmt, src, &e, t, until_ms)?
                    else {
                        continue;
                    };
                    let a = attempts
                        .entry((src, e.dst_mac, e.dst_ip, e.proto, e.port))
                        .or_insert_with(|| Attempt {
                            from: mac_text(src),
                            to_mac: matches!(node, NodeKey::Mac(_)).then(|| mac_text(e.dst_mac)),
                            to_ip: ip_of(&e.dst_ip).to_string(),
                            service: service_text(e.proto, e.port),
                            flows: 0,
                            first: time_text(contact_ms),
                            last: time_text(e.last_ms),
                        });
                    a.flows += flows;
                }
            }
            if let Some(first) = backwards {
                // The rest of the frontier, by MAC: its position and node.
                let rest: HashMap<i64, (usize, usize), Hasher> = frontier[first..]
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &n)| match nodes[n].key {
                        NodeKey::Mac(m) => Some((m, (first + i, n))),
                        NodeKey::Ip(_) => None,
                    })
                    .collect();
                for &(ip, mac) in destinations.iter().flatten() {
                    let node = node_of(mac, &ip);
                    if index.contains_key(&node) {
                        continue;
                    }
                    for (src, proto, port, edge) in self.edges_to(&ip, mac, until_ms)? {
                        let Some(&(pos, from)) = rest.get(&src) else {
                            continue;
                        };
                        let t = nodes[from].time_ms;
                        if edge.0 < t {
                            continue;
                        }
                        let edge = EdgeRow {
                            dst_mac: mac,
                            dst_ip: ip,
                            proto,
                            port,
                            allowed: true,
                            ..edge.1
                        };
                        next.entry(node).or_default().push(Candidate {
                            bound_ms: t.max(edge.first_ms),
                            order: (pos, mac, ip, proto, port),
                            from,
                            src,
                            t,
                            edge,
                            exact: None,
                        });
                    }
                }
            }
            // In the nodes' order, as the answer lists a level's ties.
            let mut keys: Vec<NodeKey> = next.keys().copied().collect();
            keys.sort_unstable();
            frontier = Vec::new();
            for key in keys {
                let Some(mut cands) = next.remove(&key) else {
                    continue;
                };
                let Some((best, contact_ms)) =
                    Self::earliest(&mut after_stmt, &mut cands, until_ms)?
                else {
                    continue;
                };
                if nodes.len() > MAX_REACHED {
                    truncated = true;
                    break;
                }
                let (from, src) = (cands[best].from, cands[best].src);
                // Flows, bytes and services of every edge from that source
                // to the node, after the source was reached.
                let mut services = BTreeSet::new();
                let (mut flows, mut bytes) = (0, 0);
                let ip = cands[best].edge.dst_ip;
                for c in cands.iter().filter(|c| c.src == src) {
                    let after = match c.exact {
                        Some(x) => x,
                        None => Self::after(&mut after_stmt, c.src, &c.edge, c.t, until_ms)?,
                    };
                    if let Some((_, f, b)) = after {
                        services.insert(service_text(c.edge.proto, c.edge.port));
                        flows += f;
                        bytes += b;
                    }
                }
                let i = nodes.len();
                nodes.push(Node {
                    key,
                    time_ms: contact_ms,
                    parent: Some(from),
                });
                index.insert(key, i);
                found.push(Found {
                    level,
                    ip,
                    services: services.into_iter().collect(),
                    flows,
                    bytes,
                });
                if matches!(key, NodeKey::Mac(_)) {
                    frontier.push(i);
                }
            }
            if frontier.is_empty() || truncated {
                break;
            }
        }
        let names = self.names_of(nodes.iter().filter_map(|n| match n.key {
            NodeKey::Mac(m) => Some(m),
            NodeKey::Ip(_) => None,
        }))?;
        let mut reached: Vec<Reached> = Vec::with_capacity(found.len());
        for (k, f) in found.into_iter().enumerate() {
            let Found {
                level,
                ip,
                services,
                flows,
                bytes,
            } = f;
            let i = k + 1;
            let mut path = Vec::new();
            let mut at = Some(i);
            while let Some(j) = at {
                path.push(node_text(&nodes[j].key));
                at = nodes[j].parent;
            }
            path.reverse();
            let (mac, name) = match nodes[i].key {
                NodeKey::Mac(m) => (
                    Some(mac_text(m)),
                    names.get(&m).cloned().unwrap_or_default(),
                ),
                NodeKey::Ip(_) => (None, String::new()),
            };
            reached.push(Reached {
                mac,
                ip: ip_of(&ip).to_string(),
                name,
                depth: level,
                first_contact: time_text(nodes[i].time_ms),
                path,
                services,
                flows,
                bytes,
                first_ms: nodes[i].time_ms,
            });
        }
        // By depth, then first contact (a level's ties in the nodes' order).
        reached.sort_by_key(|r| (r.depth, r.first_ms));
        drop(after_stmt);
        drop(edges_stmt);
        tx.commit()?;
        let mut attempted: Vec<Attempt> = attempts.into_values().collect();
        attempted.sort_by(|a, b| a.first.cmp(&b.first));
        Ok(BlastRadius {
            origin: origin.to_string(),
            since: time_text(since_ms),
            until: time_text(until_ms),
            depth,
            reached,
            attempted,
            truncated,
        })
    }

    /// Of the candidates to one node, the one with the earliest flow after
    /// its source was reached (ties: the first read), looked up in the
    /// order of the earliest each can be; `None` if none had a flow then.
    /// Each looked-up candidate keeps what it found (`exact`).
    fn earliest(
        stmt: &mut rusqlite::Statement<'_>,
        cands: &mut [Candidate],
        until: i64,
    ) -> Result<Option<(usize, i64)>, RecordsError> {
        cands.sort_unstable_by_key(|c| (c.bound_ms, c.order));
        let mut best: Option<(i64, ReadOrder, usize)> = None;
        for (i, c) in cands.iter_mut().enumerate() {
            if let Some((time, order, _)) = best {
                if (c.bound_ms, c.order) > (time, order) {
                    break;
                }
            }
            let after = Self::after(stmt, c.src, &c.edge, c.t, until)?;
            c.exact = Some(after);
            if let Some((first, ..)) = after {
                if best.is_none_or(|(time, order, _)| (first, c.order) < (time, order)) {
                    best = Some((first, c.order, i));
                }
            }
        }
        Ok(best.map(|(time, _, i)| (i, time)))
    }
    /// The flows on `e` begun at or after `t` (by `until`): the first one's
    /// start, how many, their bytes. From the edge's totals when all of it
    /// is in that span, else from its hourly contacts from `t`'s hour: the
    /// earliest start in an hour if it is late enough, else that hour's
    /// latest (a flow that provably began after, possibly not the first);
    /// an hour with a flow begun after counts whole.
    fn after(
        stmt: &mut rusqlite::Statement<'_>,
        src: i64,
        e: &EdgeRow,
        t: i64,
        until: i64,
    ) -> Result<Option<(i64, u64, u64)>, RecordsError> {
        if e.first_ms >= t && e.last_ms <= until {
            return Ok(Some((e.first_ms, e.flows, e.bytes)));
        }
        let (first, flows, bytes): (Option<i64>, u64, u64) = stmt.query_row(
            rusqlite::params![
                src,
                e.dst_mac,
                &e.dst_ip[..],
                e.proto,
                e.port,
                e.allowed,
                t,
                hour_of(t),
                until
            ],
            |r| {
                Ok((
                    r.get(0)?,
                    crate::records::count_at(r, 1)?,
                    crate::records::count_at(r, 2)?,
                ))
            },
        )?;
        Ok(first.filter(|&f| f <= until).map(|f| (f, flows, bytes)))
    }
}

/// The flows of an edge begun from a time on, from its hourly contacts
/// ([`RecordsReader::after`]).
const AFTER_SQL: &str = "SELECT min(CASE WHEN first_ms >= ?7 THEN first_ms ELSE last_start_ms END),
        coalesce(sum(flows), 0), coalesce(sum(bytes), 0)
     FROM contacts WHERE src_mac = ?1 AND dst_mac = ?2 AND dst_ip = ?3 AND proto = ?4
        AND port = ?5 AND allowed = ?6 AND hour_ms BETWEEN ?8 AND ?9
        AND last_start_ms >= ?7";

fn node_text(n: &NodeKey) -> String {
    match n {
        NodeKey::Mac(m) => mac_text(*m),
        NodeKey::Ip(ip) => ip_of(ip).to_string(),
    }
}

/// The node an edge's destination is: its MAC's workload when the MAC
/// holds the address, else the address.
fn node_of(mac: i64, ip: &[u8; 16]) -> NodeKey {
    if held(mac, ip_of(ip)) {
        NodeKey::Mac(mac)
    } else {
        NodeKey::Ip(*ip)
    }
}

/// A stored address as its 16 bytes (a damaged one, shorter: zero-filled).
pub(super) fn ip16(b: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = b.len().min(16);
    out[..n].copy_from_slice(&b[..n]);
    out
}
