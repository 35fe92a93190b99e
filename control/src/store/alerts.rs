//! Alerts as stored: written by the control thread's [`crate::alerts::Alerter`],
//! listed and moved between states by the API.

use super::{Store, StoreError};
use crate::alerts::{Alert, AlertFilter, Kind, NewAlert, State};
use crate::intel::Severity;
use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

fn severity_from(rank: i64) -> Result<Severity, StoreError> {
    Severity::ALL
        .into_iter()
        .find(|s| i64::from(s.rank()) == rank)
        .ok_or_else(|| StoreError::Corrupt {
            what: "alert severity",
            detail: rank.to_string(),
        })
}

fn corrupt(what: &'static str) -> impl Fn(String) -> StoreError {
    move |detail| StoreError::Corrupt { what, detail }
}

const COLUMNS: &str = "id, first_ms, last_ms, count, kind, severity, mac, workload, indicator, \
                       summary, evidence, state, state_by, state_ms";

fn row(r: &Row<'_>) -> Result<Result<Alert, StoreError>, rusqlite::Error> {
    let kind: String = r.get(4)?;
    let severity: i64 = r.get(5)?;
    let evidence: String = r.get(10)?;
    let state: String = r.get(11)?;
    let count: i64 = r.get(3)?;
    let (id, first_ms, last_ms) = (r.get(0)?, r.get(1)?, r.get(2)?);
    let (mac, workload, indicator, summary) = (r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?);
    let (state_by, state_ms) = (r.get(12)?, r.get(13)?);
    Ok((|| {
        Ok(Alert {
            id,
            first_ms,
            last_ms,
            count: super::u64_from_sql("alert count", count)?,
            kind: kind.parse::<Kind>().map_err(corrupt("alert kind"))?,
            severity: severity_from(severity)?,
            mac,
            workload,
            indicator,
            summary,
            evidence: serde_json::from_str(&evidence)?,
            state: state.parse::<State>().map_err(corrupt("alert state"))?,
            state_by,
            state_ms,
        })
    })())
}

impl Store {
    /// Stores a new alert (open, count 1); returns its id.
    pub fn insert_alert(&mut self, a: &NewAlert) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO alerts (first_ms, last_ms, count, kind, severity, mac, workload, \
             indicator, summary, evidence) VALUES (?1, ?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                a.at_ms,
                a.kind.name(),
                a.severity.rank(),
                a.mac.to_string(),
                a.workload,
                a.indicator,
                a.summary,
                serde_json::to_string(&a.evidence)?,
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Adds repeats `(id, count, last_ms)` to alerts not closed, in one
    /// transaction; returns the ids that were closed (or gone) and so got
    /// nothing.
    pub fn bump_alerts(&mut self, bumps: &[(i64, u64, i64)]) -> Result<Vec<i64>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut gone = Vec::new();
        {
            let mut stmt = tx.prepare(
                "UPDATE alerts SET count = count + ?2, last_ms = max(last_ms, ?3) \
                 WHERE id = ?1 AND state != 'closed'",
            )?;
            for &(id, n, last) in bumps {
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                if stmt.execute(params![id, n, last])? == 0 {
                    gone.push(id);
                }
            }
        }
        tx.commit()?;
        Ok(gone)
    }

    /// One alert.
    pub fn alert(&self, id: i64) -> Result<Option<Alert>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM alerts WHERE id = ?1"),
                params![id],
                row,
            )
            .optional()?
            .transpose()
    }

    /// Alerts matching `f`, newest first (by id), at most `f.limit`.
    pub fn alerts(&self, f: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM alerts \
             WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR kind = ?2) \
             AND (?3 IS NULL OR severity >= ?3) AND (?4 IS NULL OR mac = ?4) \
             AND (?5 IS NULL OR last_ms >= ?5) AND (?6 IS NULL OR id < ?6) \
             ORDER BY id DESC LIMIT ?7"
        ))?;
        let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(
            params![
                f.state.map(State::name),
                f.kind.map(Kind::name),
                f.severity.map(Severity::rank),
                f.mac,
                f.since_ms,
                f.before,
                limit
            ],
            row,
        )?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }

    /// Alerts by state (for the metrics).
    pub fn alert_states(&self) -> Result<Vec<(State, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT state, count(*) FROM alerts GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for r in rows {
            let (state, n) = r?;
            out.push((
                state.parse::<State>().map_err(corrupt("alert state"))?,
                super::u64_from_sql("alert count", n)?,
            ));
        }
        Ok(out)
    }

    /// Moves an alert to `state`, by `actor`; `None` if there is no such
    /// alert.
    pub fn set_alert_state(
        &mut self,
        id: i64,
        state: State,
        actor: &str,
        at_ms: i64,
    ) -> Result<Option<Alert>, StoreError> {
        let n = self.conn.execute(
            "UPDATE alerts SET state = ?2, state_by = ?3, state_ms = ?4 WHERE id = ?1",
            params![id, state.name(), actor, at_ms],
        )?;
        if n == 0 {
            return Ok(None);
        }
        self.alert(id)
    }
}
