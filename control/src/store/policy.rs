//! Policy versions: the draft, commits, the live pointer, history and rollback.

use super::{ts_from_sql, ts_to_sql, u64_from_sql, Store, StoreError, Version};
use crate::compile::Compiled;
use crate::model::Model;
use crate::time::Timestamp;
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

/// One entry of the version history (without its model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub version: Version,
    pub created_at: Timestamp,
    pub actor: String,
    pub comment: String,
    /// Dataplane rules the model compiled to when it was committed.
    pub compiled_rules: u64,
    /// Set when this version is a rollback to an earlier one.
    pub rollback_of: Option<Version>,
    /// Whether this is the live version.
    pub live: bool,
}

fn version_to_sql(v: Version) -> Result<i64, StoreError> {
    i64::try_from(v.0).map_err(|_| StoreError::NoSuchVersion(v))
}

/// Parses a stored model: JSON, or YAML from earlier builds.
pub(crate) fn parse_model(text: &str, what: impl FnOnce() -> String) -> Result<Model, StoreError> {
    let parsed = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        Model::from_yaml_str(text).map_err(|e| e.to_string())
    };
    parsed.map_err(|detail| StoreError::BadModel {
        what: what(),
        detail,
    })
}

/// Renders a model as stored.
pub(crate) fn render_model(model: &Model) -> Result<String, StoreError> {
    Ok(serde_json::to_string(model)?)
}

/// Inserts a version row and points live at it, inside `tx`.
fn insert_live(
    tx: &Transaction<'_>,
    actor: &str,
    comment: &str,
    yaml: &str,
    compiled_rules: i64,
    rollback_of: Option<i64>,
) -> Result<Version, StoreError> {
    let now = ts_to_sql(Timestamp::now())?;
    tx.execute(
        "INSERT INTO policy_versions (created_at, actor, comment, model_yaml, compiled_rules, rollback_of)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![now, actor, comment, yaml, compiled_rules, rollback_of],
    )?;
    let version = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO live_version (id, version) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
        params![version],
    )?;
    Ok(Version(u64_from_sql("policy version", version)?))
}

impl Store {
    /// Saves (replaces) the draft.
    pub fn save_draft(&mut self, model: &Model) -> Result<(), StoreError> {
        let yaml = render_model(model)?;
        let now = ts_to_sql(Timestamp::now())?;
        self.conn.execute(
            "INSERT INTO policy_draft (id, updated_at, model_yaml) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at,
                                            model_yaml = excluded.model_yaml",
            params![now, yaml],
        )?;
        Ok(())
    }

    /// The draft, if one is saved.
    pub fn draft(&self) -> Result<Option<Model>, StoreError> {
        let yaml: Option<String> = self
            .conn
            .query_row(
                "SELECT model_yaml FROM policy_draft WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        yaml.map(|y| parse_model(&y, || "draft".to_string()))
            .transpose()
    }

    /// Discards the draft (no-op without one).
    pub fn discard_draft(&mut self) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM policy_draft", [])?;
        Ok(())
    }

    /// Commits `model`, which `compiled` was compiled from (so only a model
    /// that compiles is stored; the store does not compile it again), as a new
    /// version: in ONE transaction inserts the version, points live at it and
    /// clears the draft.
    pub fn commit(
        &mut self,
        actor: &str,
        comment: &str,
        model: &Model,
        compiled: &Compiled,
    ) -> Result<Version, StoreError> {
        let rules = u64::try_from(compiled.rules.compiled_len()).unwrap_or(u64::MAX);
        let yaml = render_model(model)?;
        self.commit_rendered(actor, comment, &yaml, rules, None, true)
    }

    /// The transaction of [`Store::commit`] for an already rendered model; the
    /// draft is cleared if `clear_draft`.
    pub(crate) fn commit_rendered(
        &mut self,
        actor: &str,
        comment: &str,
        yaml: &str,
        compiled_rules: u64,
        rollback_of: Option<i64>,
        clear_draft: bool,
    ) -> Result<Version, StoreError> {
        let rules = i64::try_from(compiled_rules).unwrap_or(i64::MAX);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = insert_live(&tx, actor, comment, yaml, rules, rollback_of)?;
        if clear_draft {
            tx.execute("DELETE FROM policy_draft", [])?;
        }
        tx.commit()?;
        Ok(version)
    }

    /// The live version and its model (`None` before the first commit).
    pub fn live(&self) -> Result<Option<(Version, Model)>, StoreError> {
        let row: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT v.version, v.model_yaml FROM live_version l
                 JOIN policy_versions v ON v.version = l.version WHERE l.id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((v, yaml)) = row else {
            return Ok(None);
        };
        let version = Version(u64_from_sql("policy version", v)?);
        let model = parse_model(&yaml, || format!("version {version}"))?;
        Ok(Some((version, model)))
    }

    /// The live version number only.
    pub fn live_version(&self) -> Result<Option<Version>, StoreError> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT version FROM live_version WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        v.map(|v| u64_from_sql("policy version", v).map(Version))
            .transpose()
    }

    /// The whole history, oldest first.
    pub fn versions(&self) -> Result<Vec<VersionInfo>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT v.version, v.created_at, v.actor, v.comment, v.compiled_rules, v.rollback_of,
                    v.version = (SELECT version FROM live_version WHERE id = 1)
             FROM policy_versions v ORDER BY v.version",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<bool>>(6)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(v, at, actor, comment, rules, rb, live)| {
                Ok(VersionInfo {
                    version: Version(u64_from_sql("policy version", v)?),
                    created_at: ts_from_sql(at)?,
                    actor,
                    comment,
                    compiled_rules: u64_from_sql("compiled rule count", rules)?,
                    rollback_of: rb
                        .map(|v| u64_from_sql("policy version", v).map(Version))
                        .transpose()?,
                    live: live.unwrap_or(false),
                })
            })
            .collect()
    }

    /// The model of version `n` (`None` if there is no such version).
    pub fn version(&self, n: Version) -> Result<Option<Model>, StoreError> {
        let Ok(id) = version_to_sql(n) else {
            return Ok(None);
        };
        let yaml: Option<String> = self
            .conn
            .query_row(
                "SELECT model_yaml FROM policy_versions WHERE version = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        yaml.map(|y| parse_model(&y, || format!("version {n}")))
            .transpose()
    }

    /// Rolls back to version `n`: a NEW version with `n`'s content becomes live
    /// (history only grows). The draft is left alone.
    pub fn rollback(&mut self, n: Version, actor: &str) -> Result<Version, StoreError> {
        let id = version_to_sql(n)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<(String, i64)> = tx
            .query_row(
                "SELECT model_yaml, compiled_rules FROM policy_versions WHERE version = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((yaml, rules)) = row else {
            return Err(StoreError::NoSuchVersion(n));
        };
        let comment = format!("rollback to version {n}");
        let version = insert_live(&tx, actor, &comment, &yaml, rules, Some(id))?;
        tx.commit()?;
        Ok(version)
    }
}
