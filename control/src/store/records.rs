//! Quarantine history, the audit trail and learned workloads.

use super::{ts_from_sql, ts_to_sql, Store, StoreError};
use crate::model::Origin;
use crate::time::Timestamp;
use dataplane::policy::parse_mac;
use rusqlite::params;
use std::collections::BTreeMap;

/// What happened to a workload's quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineAction {
    Quarantine,
    Release,
}

impl QuarantineAction {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            QuarantineAction::Quarantine => "quarantine",
            QuarantineAction::Release => "release",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "quarantine" => Ok(QuarantineAction::Quarantine),
            "release" => Ok(QuarantineAction::Release),
            other => Err(StoreError::Corrupt {
                what: "quarantine action",
                detail: format!("{other:?}"),
            }),
        }
    }
}

/// One quarantine or release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineEvent {
    pub id: i64,
    /// Canonical form, `02:00:00:00:01:0a`.
    pub mac: String,
    pub action: QuarantineAction,
    pub reason: Option<String>,
    pub actor: String,
    pub at: Timestamp,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: Timestamp,
    pub actor: String,
    /// What was done, e.g. `policy.commit`.
    pub action: String,
    /// Free text (or JSON) describing the request.
    pub detail: String,
    /// `ok` or the error.
    pub result: String,
}

/// A workload as kept in the database (learned from the wire, imported or declared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRecord {
    /// Canonical form after [`Store::upsert_workload`].
    pub mac: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub origin: Origin,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

pub(super) fn canonical_mac(mac: &str) -> Result<String, StoreError> {
    parse_mac(mac)
        .map(|m| m.to_string())
        .ok_or_else(|| StoreError::BadMac(mac.to_string()))
}

fn origin_str(o: Origin) -> &'static str {
    match o {
        Origin::Declared => "declared",
        Origin::Imported => "imported",
        Origin::Observed => "observed",
    }
}

fn origin_parse(s: &str) -> Result<Origin, StoreError> {
    match s {
        "declared" => Ok(Origin::Declared),
        "imported" => Ok(Origin::Imported),
        "observed" => Ok(Origin::Observed),
        other => Err(StoreError::Corrupt {
            what: "workload origin",
            detail: format!("{other:?}"),
        }),
    }
}

impl Store {
    /// Quarantine events, oldest first: of one MAC, or of all.
    pub fn quarantine_history(
        &self,
        mac: Option<&str>,
    ) -> Result<Vec<QuarantineEvent>, StoreError> {
        let mac = mac.map(canonical_mac).transpose()?;
        let mut stmt = self.conn.prepare(
            "SELECT id, mac, action, reason, actor, at FROM quarantine_events
             WHERE ?1 IS NULL OR mac = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![mac], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, mac, action, reason, actor, at)| {
                Ok(QuarantineEvent {
                    id,
                    mac,
                    action: QuarantineAction::parse(&action)?,
                    reason,
                    actor,
                    at: ts_from_sql(at)?,
                })
            })
            .collect()
    }

    /// Appends an audit entry stamped now; returns its id.
    pub fn append_audit(
        &mut self,
        actor: &str,
        action: &str,
        detail: &str,
        result: &str,
    ) -> Result<i64, StoreError> {
        let now = ts_to_sql(Timestamp::now())?;
        self.conn.execute(
            "INSERT INTO audit (at, actor, action, detail, result) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now, actor, action, detail, result],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare(
            "SELECT id, at, actor, action, detail, result FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt
            .query_map(params![limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, at, actor, action, detail, result)| {
                Ok(AuditRecord {
                    id,
                    at: ts_from_sql(at)?,
                    actor,
                    action,
                    detail,
                    result,
                })
            })
            .collect()
    }

    /// Inserts or updates a workload by MAC: name, labels and origin are replaced;
    /// `first_seen` keeps the earliest and `last_seen` the latest time.
    pub fn upsert_workload(&mut self, w: &WorkloadRecord) -> Result<(), StoreError> {
        upsert_on(&self.conn, w)
    }

    /// [`Store::upsert_workload`] for many, in one transaction.
    pub fn upsert_workloads(&mut self, list: &[WorkloadRecord]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for w in list {
            upsert_on(&tx, w)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// All workloads, by MAC.
    pub fn workloads(&self) -> Result<Vec<WorkloadRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT mac, name, labels_json, origin, first_seen, last_seen FROM workloads ORDER BY mac",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(mac, name, labels, origin, first, last)| {
                Ok(WorkloadRecord {
                    mac,
                    name,
                    labels: serde_json::from_str(&labels)?,
                    origin: origin_parse(&origin)?,
                    first_seen: ts_from_sql(first)?,
                    last_seen: ts_from_sql(last)?,
                })
            })
            .collect()
    }

    /// Removes a workload; `true` if it was there.
    pub fn remove_workload(&mut self, mac: &str) -> Result<bool, StoreError> {
        let mac = canonical_mac(mac)?;
        Ok(self
            .conn
            .execute("DELETE FROM workloads WHERE mac = ?1", params![mac])?
            > 0)
    }
}

fn upsert_on(conn: &rusqlite::Connection, w: &WorkloadRecord) -> Result<(), StoreError> {
    let mac = canonical_mac(&w.mac)?;
    let labels = serde_json::to_string(&w.labels)?;
    conn.execute(
        "INSERT INTO workloads (mac, name, labels_json, origin, first_seen, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (mac) DO UPDATE SET
             name = excluded.name,
             labels_json = excluded.labels_json,
             origin = excluded.origin,
             first_seen = min(first_seen, excluded.first_seen),
             last_seen = max(last_seen, excluded.last_seen)",
        params![
            mac,
            w.name,
            labels,
            origin_str(w.origin),
            ts_to_sql(w.first_seen)?,
            ts_to_sql(w.last_seen)?
        ],
    )?;
    Ok(())
}
