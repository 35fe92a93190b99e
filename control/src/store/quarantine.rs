//! The quarantines in force. Each change writes the active set and the history
//! (`quarantine_events`) in one transaction, so the two never disagree.

use super::records::canonical_mac;
use super::{ts_from_sql, ts_to_sql, QuarantineAction, Store, StoreError};
use crate::time::Timestamp;
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

/// Who put a quarantine in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuarantineSource {
    /// A quarantine command (API, CLI): it stays until released.
    Command,
    /// The `quarantine:` list of the live policy: it ends when a new live policy
    /// no longer lists the MAC, or with a release.
    Policy,
}

impl QuarantineSource {
    fn as_str(self) -> &'static str {
        match self {
            QuarantineSource::Command => "command",
            QuarantineSource::Policy => "policy",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "command" => Ok(QuarantineSource::Command),
            "policy" => Ok(QuarantineSource::Policy),
            other => Err(StoreError::Corrupt {
                what: "quarantine source",
                detail: format!("{other:?}"),
            }),
        }
    }
}

/// A quarantine in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveQuarantine {
    /// Canonical form, `02:00:00:00:01:0a`.
    pub mac: String,
    pub reason: Option<String>,
    pub actor: String,
    pub at: Timestamp,
    pub source: QuarantineSource,
}

fn insert_event(
    tx: &Transaction<'_>,
    mac: &str,
    action: QuarantineAction,
    reason: Option<&str>,
    actor: &str,
    at: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO quarantine_events (mac, action, reason, actor, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![mac, action.as_str(), reason, actor, at],
    )?;
    Ok(())
}

impl Store {
    /// Puts `mac` in quarantine. `false` (and nothing written) if it already is;
    /// a command-sourced quarantine of a MAC that the policy quarantined takes
    /// it over, so a later policy change no longer ends it.
    pub fn quarantine(&mut self, q: &ActiveQuarantine) -> Result<bool, StoreError> {
        let mac = canonical_mac(&q.mac)?;
        let at = ts_to_sql(q.at)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<String> = tx
            .query_row(
                "SELECT source FROM quarantine_active WHERE mac = ?1",
                params![mac],
                |r| r.get(0),
            )
            .optional()?;
        let changed = match current
            .as_deref()
            .map(QuarantineSource::parse)
            .transpose()?
        {
            None => {
                tx.execute(
                    "INSERT INTO quarantine_active (mac, reason, actor, at, source)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![mac, q.reason, q.actor, at, q.source.as_str()],
                )?;
                insert_event(
                    &tx,
                    &mac,
                    QuarantineAction::Quarantine,
                    q.reason.as_deref(),
                    &q.actor,
                    at,
                )?;
                true
            }
            Some(QuarantineSource::Policy) if q.source == QuarantineSource::Command => {
                tx.execute(
                    "UPDATE quarantine_active SET reason = ?2, actor = ?3, at = ?4, source = ?5
                     WHERE mac = ?1",
                    params![mac, q.reason, q.actor, at, q.source.as_str()],
                )?;
                false
            }
            Some(_) => false,
        };
        tx.commit()?;
        Ok(changed)
    }

    /// Ends the quarantine of `mac`: the entry in force, if any, is removed and
    /// the release recorded. `false` (and nothing written) if it was not in force.
    pub fn release(
        &mut self,
        mac: &str,
        reason: Option<&str>,
        actor: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mac = canonical_mac(mac)?;
        let at = ts_to_sql(at)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let removed = tx.execute("DELETE FROM quarantine_active WHERE mac = ?1", params![mac])?;
        if removed > 0 {
            insert_event(&tx, &mac, QuarantineAction::Release, reason, actor, at)?;
        }
        tx.commit()?;
        Ok(removed > 0)
    }

    /// The quarantines in force, by MAC.
    pub fn active_quarantines(&self) -> Result<Vec<ActiveQuarantine>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT mac, reason, actor, at, source FROM quarantine_active ORDER BY mac")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(mac, reason, actor, at, source)| {
                Ok(ActiveQuarantine {
                    mac,
                    reason,
                    actor,
                    at: ts_from_sql(at)?,
                    source: QuarantineSource::parse(&source)?,
                })
            })
            .collect()
    }
}
