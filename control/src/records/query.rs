//! Reading the records store: flows by window, end, verdict, reason, protocol
//! and port, newest first, paged by cursor. The API, `bulkhead ctl` and the
//! offline `bulkhead records` all answer through [`RecordsReader`], so the
//! same filters give the same rows.

use super::filter::{Cursor, FlowFilter, Side, VerdictFilter, DEFAULT_LIMIT, MAX_LIMIT};
use super::nodes::{local_nets, Network};
use super::{ip_bytes, mac_int, schema, RecordsError};
use ipnet::IpNet;
use rusqlite::types::Value;
use rusqlite::{Connection, Row};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

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
    /// `rule`, `default`, `quarantine`, `blocklist`, `management` or `intel`.
    pub reason: String,
    /// The user rule's id, with reason `rule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    /// With reason `intel`: the feed and what its entry lists
    /// (`c2 203.0.113.66`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intel: Option<String>,
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

/// How much of a store a reader maps (SQLite caps it at its build's
/// maximum, 2 GiB by default).
const READER_MMAP_BYTES: i64 = 1 << 34;

/// A records store opened for queries.
pub struct RecordsReader {
    conn: Connection,
    /// The file, for readers of the same store on other threads.
    path: std::path::PathBuf,
}

impl RecordsReader {
    /// Opens an existing store: see `schema::open_existing`.
    pub fn open(path: &Path) -> Result<RecordsReader, RecordsError> {
        let conn = schema::open_existing(path)?;
        // Pages read straight from the OS's page cache (a map of the file)
        // instead of a read call each into a 2 MiB cache of this
        // connection's, which an API call (a reader each) starts empty: the
        // forensic queries seek across tables of gigabytes (bench/RESULTS.md).
        let _ = conn.pragma_update(None, "mmap_size", READER_MMAP_BYTES);
        Ok(RecordsReader {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
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
                s.name, s.labels_json, s.groups_json, d.name, d.labels_json, d.groups_json,
                f.intel
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
                Some(Side::External(network)) => {
                    // As the group-level graph has it: no workload, no
                    // group, an address in (or out of) the local ranges.
                    q.sql.push_str(&format!(
                        " AND {ident}.name = '' AND {ident}.groups_json = '[]' AND {}(0",
                        match network {
                            Network::Private => "",
                            Network::Internet => "NOT ",
                        }
                    ));
                    for net in local_nets() {
                        let (lo, hi) = net_range(net);
                        q.push(&format!(" OR {ip} BETWEEN ?"), Value::Blob(lo));
                        q.push(" AND ?", Value::Blob(hi));
                    }
                    q.sql.push(')');
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
pub(crate) fn time_text(ms: i64) -> String {
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
    super::mac_of(v).to_string()
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
        intel: r.get(29)?,
        mode: r.get(19)?,
        state: r.get(21)?,
        end: r.get(22)?,
    };
    Ok((Cursor { last_ms: last, id }, flow))
}
