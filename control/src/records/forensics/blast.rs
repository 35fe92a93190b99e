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
struct EdgeRow {
    dst_mac: i64,
    dst_ip: Vec<u8>,
    proto: i64,
    port: i64,
    allowed: bool,
    flows: u64,
    bytes: u64,
    first_ms: i64,
    last_ms: i64,
}

/// A node of the walk: a workload's MAC, or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum NodeKey {
    Mac(i64),
    Ip(Vec<u8>),
}

impl RecordsReader {
    /// Everything `origin` reached from `since_ms` to `until_ms`, to `depth`
    /// hops.
    pub fn blast_radius(
        &self,
        origin: MacAddr,
        since_ms: i64,
        until_ms: i64,
        depth: u32,
    ) -> Result<BlastRadius, RecordsError> {
        let depth = depth.clamp(1, MAX_DEPTH);
        let origin_key = NodeKey::Mac(mac_int(origin));
        // Node -> when it was reached and the path to it.
        let mut reached: HashMap<NodeKey, (i64, Vec<NodeKey>)> = HashMap::new();
        reached.insert(origin_key.clone(), (since_ms, vec![origin_key.clone()]));
        let mut out: Vec<Reached> = Vec::new();
        let mut attempts: BTreeMap<(i64, i64, Vec<u8>, i64, i64), Attempt> = BTreeMap::new();
        let mut frontier = vec![mac_int(origin)];
        let mut truncated = false;
        for level in 1..=depth {
            // The nodes this level reaches, each by its earliest contact.
            let mut next: BTreeMap<NodeKey, Candidate> = BTreeMap::new();
            for &src in &frontier {
                let Some((t, path)) = reached.get(&NodeKey::Mac(src)).cloned() else {
                    continue;
                };
                for e in self.edges_from(src, t, until_ms)? {
                    let node = if held(e.dst_mac, ip_of(&e.dst_ip)) {
                        NodeKey::Mac(e.dst_mac)
                    } else {
                        NodeKey::Ip(e.dst_ip.clone())
                    };
                    // An allowed edge to a node reached before, or a denied
                    // one once the attempts are full, adds nothing: no
                    // look-up of its first flow after `t` (most edges, a few
                    // levels in).
                    if (e.allowed && reached.contains_key(&node))
                        || (!e.allowed && attempts.len() >= MAX_ATTEMPTS)
                    {
                        continue;
                    }
                    let Some((contact_ms, flows, bytes)) = self.after(src, &e, t, until_ms)? else {
                        continue;
                    };
                    if !e.allowed {
                        if attempts.len() < MAX_ATTEMPTS {
                            let a = attempts
                                .entry((src, e.dst_mac, e.dst_ip.clone(), e.proto, e.port))
                                .or_insert_with(|| Attempt {
                                    from: mac_text(src),
                                    to_mac: matches!(node, NodeKey::Mac(_))
                                        .then(|| mac_text(e.dst_mac)),
                                    to_ip: ip_of(&e.dst_ip).to_string(),
                                    service: service_text(e.proto, e.port),
                                    flows: 0,
                                    first: time_text(contact_ms),
                                    last: time_text(e.last_ms),
                                });
                            a.flows += flows;
                        }
                        continue;
                    }
                    if reached.contains_key(&node) {
                        continue;
                    }
                    let c = next.entry(node).or_insert_with(|| Candidate {
                        time_ms: contact_ms,
                        via: path.clone(),
                        ip: e.dst_ip.clone(),
                        from: src,
                        services: BTreeSet::new(),
                        flows: 0,
                        bytes: 0,
                    });
                    if contact_ms < c.time_ms {
                        *c = Candidate {
                            time_ms: contact_ms,
                            via: path.clone(),
                            ip: e.dst_ip.clone(),
                            from: src,
                            services: BTreeSet::new(),
                            flows: 0,
                            bytes: 0,
                        };
                    }
                    if c.from == src {
                        c.services.insert(service_text(e.proto, e.port));
                        c.flows += flows;
                        c.bytes += bytes;
                    }
                }
            }
            let mut level_out: Vec<Reached> = Vec::new();
            frontier = Vec::new();
            for (node, c) in next {
                if reached.len() > MAX_REACHED {
                    truncated = true;
                    break;
                }
                let mut path = c.via.clone();
                path.push(node.clone());
                let (mac, name) = match &node {
                    NodeKey::Mac(m) => {
                        frontier.push(*m);
                        (
                            Some(mac_text(*m)),
                            self.identity_now(*m)?.map(|i| i.name).unwrap_or_default(),
                        )
                    }
                    NodeKey::Ip(_) => (None, String::new()),
                };
                level_out.push(Reached {
                    mac,
                    ip: ip_of(&c.ip).to_string(),
                    name,
                    depth: level,
                    first_contact: time_text(c.time_ms),
                    path: path.iter().map(node_text).collect(),
                    services: c.services.into_iter().collect(),
                    flows: c.flows,
                    bytes: c.bytes,
                    first_ms: c.time_ms,
                });
                reached.insert(node, (c.time_ms, path));
            }
            level_out.sort_by_key(|r| r.first_ms);
            out.extend(level_out);
            if frontier.is_empty() || truncated {
                break;
            }
        }
        let mut attempted: Vec<Attempt> = attempts.into_values().collect();
        attempted.sort_by(|a, b| a.first.cmp(&b.first));
        Ok(BlastRadius {
            origin: origin.to_string(),
            since: time_text(since_ms),
            until: time_text(until_ms),
            depth,
            reached: out,
            attempted,
            truncated,
        })
    }

    /// The edges of `src` with a flow begun at or after `t` and by `until`.
    fn edges_from(&self, src: i64, t: i64, until: i64) -> Result<Vec<EdgeRow>, RecordsError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT dst_mac, dst_ip, proto, port, allowed, flows, bytes, first_ms, last_ms
             FROM edges WHERE src_mac = ?1 AND last_start_ms >= ?2 AND first_ms <= ?3",
        )?;
        let rows = stmt.query_map(rusqlite::params![src, t, until], |r| {
            Ok(EdgeRow {
                dst_mac: r.get(0)?,
                dst_ip: r.get(1)?,
                proto: r.get(2)?,
                port: r.get(3)?,
                allowed: r.get(4)?,
                flows: crate::records::count_at(r, 5)?,
                bytes: crate::records::count_at(r, 6)?,
                first_ms: r.get(7)?,
                last_ms: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The flows on `e` begun at or after `t` (by `until`): the first one's
    /// start, how many, their bytes. From the edge's totals when all of it
    /// is in that span, else from its hourly contacts from `t`'s hour: the
    /// earliest start in an hour if it is late enough, else that hour's
    /// latest (a flow that provably began after, possibly not the first);
    /// an hour with a flow begun after counts whole.
    fn after(
        &self,
        src: i64,
        e: &EdgeRow,
        t: i64,
        until: i64,
    ) -> Result<Option<(i64, u64, u64)>, RecordsError> {
        if e.first_ms >= t && e.last_ms <= until {
            return Ok(Some((e.first_ms, e.flows, e.bytes)));
        }
        let mut stmt = self.conn().prepare_cached(
            "SELECT min(CASE WHEN first_ms >= ?7 THEN first_ms ELSE last_start_ms END),
                coalesce(sum(flows), 0), coalesce(sum(bytes), 0)
             FROM contacts WHERE src_mac = ?1 AND dst_mac = ?2 AND dst_ip = ?3 AND proto = ?4
                AND port = ?5 AND allowed = ?6 AND hour_ms BETWEEN ?8 AND ?9
                AND last_start_ms >= ?7",
        )?;
        let (first, flows, bytes): (Option<i64>, u64, u64) = stmt.query_row(
            rusqlite::params![
                src,
                e.dst_mac,
                e.dst_ip,
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

/// The best way to a node found at a level.
struct Candidate {
    time_ms: i64,
    via: Vec<NodeKey>,
    ip: Vec<u8>,
    from: i64,
    services: BTreeSet<String>,
    flows: u64,
    bytes: u64,
}

fn node_text(n: &NodeKey) -> String {
    match n {
        NodeKey::Mac(m) => mac_text(*m),
        NodeKey::Ip(ip) => ip_of(ip).to_string(),
    }
}
