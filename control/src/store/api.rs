//! What the management API keeps: its bearer tokens (only their SHA-256) and
//! its entries in the audit trail (with the caller's role and the HTTP status).
//!
//! Roles are stored as text (`viewer`, `operator`, `admin`; the schema checks
//! the set); what a role may do is the API's business.

use super::{ts_from_sql, ts_to_sql, Store, StoreError};
use crate::time::Timestamp;
use rusqlite::{params, ErrorCode, OptionalExtension};

/// A token as listed: never its secret, nor its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub role: String,
    pub created_at: Timestamp,
    pub created_by: String,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
}

/// An active token's hash, for the API to compare a presented token against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash {
    pub name: String,
    pub role: String,
    pub sha256: [u8; 32],
}

/// An API call for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAudit<'a> {
    /// The token's name.
    pub actor: &'a str,
    pub role: &'a str,
    /// `POST /api/v1/quarantine`.
    pub action: &'a str,
    /// A bounded summary of the request body.
    pub detail: &'a str,
    /// `ok`, or the error.
    pub result: &'a str,
    pub status: u16,
}

/// One audit entry, API call or not (`role` and `status` are `None` for
/// entries written by other parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Timestamp,
    pub actor: String,
    pub role: Option<String>,
    pub action: String,
    pub detail: String,
    pub result: String,
    pub status: Option<u16>,
}

impl Store {
    /// Stores a new token's hash. `Ok(false)`: an active token already has this
    /// name (nothing is stored).
    pub fn insert_token(
        &mut self,
        name: &str,
        role: &str,
        sha256: &[u8; 32],
        created_by: &str,
    ) -> Result<bool, StoreError> {
        let now = ts_to_sql(Timestamp::now())?;
        let inserted = self.conn.execute(
            "INSERT INTO api_tokens (name, role, sha256, created_at, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, role, &sha256[..], now, created_by],
        );
        match inserted {
            Ok(_) => Ok(true),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation
                    && e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                // The active-name index, or (astronomically unlikely) a hash collision.
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The active tokens' hashes.
    pub fn active_token_hashes(&self) -> Result<Vec<TokenHash>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT name, role, sha256 FROM api_tokens WHERE revoked_at IS NULL ORDER BY id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(name, role, hash)| {
                let sha256 =
                    <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| StoreError::Corrupt {
                        what: "token hash",
                        detail: format!("{} bytes for token {name:?}", hash.len()),
                    })?;
                Ok(TokenHash { name, role, sha256 })
            })
            .collect()
    }

    /// Tokens, oldest first; revoked ones too if `include_revoked`.
    pub fn tokens(&self, include_revoked: bool) -> Result<Vec<TokenInfo>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT name, role, created_at, created_by, revoked_at, revoked_by FROM api_tokens
             WHERE ?1 OR revoked_at IS NULL ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![include_revoked], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(name, role, at, by, rev_at, rev_by)| {
                Ok(TokenInfo {
                    name,
                    role,
                    created_at: ts_from_sql(at)?,
                    created_by: by,
                    revoked_at: rev_at.map(ts_from_sql).transpose()?,
                    revoked_by: rev_by,
                })
            })
            .collect()
    }

    /// Makes a token known only by its hash active as `name` with `role`,
    /// in one transaction: if an active token already has this hash, nothing
    /// changes and its name is returned; otherwise an active token named
    /// `name` is revoked (by `by`) and the hash stored under that name.
    pub fn import_token(
        &mut self,
        name: &str,
        role: &str,
        sha256: &[u8; 32],
        by: &str,
    ) -> Result<Option<String>, StoreError> {
        let now = ts_to_sql(Timestamp::now())?;
        let tx = self.conn.transaction()?;
        let active: Option<String> = tx
            .query_row(
                "SELECT name FROM api_tokens WHERE sha256 = ?1 AND revoked_at IS NULL",
                params![&sha256[..]],
                |r| r.get(0),
            )
            .optional()?;
        if active.is_some() {
            return Ok(active);
        }
        tx.execute(
            "UPDATE api_tokens SET revoked_at = ?1, revoked_by = ?2
             WHERE name = ?3 AND revoked_at IS NULL",
            params![now, by, name],
        )?;
        tx.execute(
            "INSERT INTO api_tokens (name, role, sha256, created_at, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, role, &sha256[..], now, by],
        )?;
        tx.commit()?;
        Ok(None)
    }

    /// Revokes the active token of this name; `false` if there is none.
    pub fn revoke_token(&mut self, name: &str, by: &str) -> Result<bool, StoreError> {
        let now = ts_to_sql(Timestamp::now())?;
        Ok(self.conn.execute(
            "UPDATE api_tokens SET revoked_at = ?1, revoked_by = ?2
             WHERE name = ?3 AND revoked_at IS NULL",
            params![now, by, name],
        )? > 0)
    }

    /// Appends an API call to the audit trail, stamped now; returns its id.
    pub fn append_api_audit(&mut self, e: &ApiAudit<'_>) -> Result<i64, StoreError> {
        let now = ts_to_sql(Timestamp::now())?;
        self.conn.execute(
            "INSERT INTO audit (at, actor, action, detail, result, role, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![now, e.actor, e.action, e.detail, e.result, e.role, e.status],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Audit entries newest first: at most `limit`, with an id below `before` if given.
    pub fn audit_entries(
        &self,
        limit: usize,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare(
            "SELECT id, at, actor, role, action, detail, result, status FROM audit
             WHERE ?2 IS NULL OR id < ?2 ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt
            .query_map(params![limit, before], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, at, actor, role, action, detail, result, status)| {
                Ok(AuditEntry {
                    id,
                    at: ts_from_sql(at)?,
                    actor,
                    role,
                    action,
                    detail,
                    result,
                    status: status.and_then(|s| u16::try_from(s).ok()),
                })
            })
            .collect()
    }

    /// The role of the active token of this name, if any.
    pub fn token_role(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT role FROM api_tokens WHERE name = ?1 AND revoked_at IS NULL",
                params![name],
                |r| r.get(0),
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (std::path::PathBuf, Store) {
        let dir = std::env::temp_dir().join(format!(
            "bulkhead-store-api-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let s = Store::open(&dir.join("t.db")).expect("open");
        (dir, s)
    }

    #[test]
    fn tokens_insert_list_revoke_and_reuse_the_name() {
        let (dir, mut s) = store();
        assert!(s
            .insert_token("ci", "viewer", &[1; 32], "cli")
            .expect("insert"));
        assert!(!s.insert_token("ci", "admin", &[2; 32], "cli").expect("dup"));
        assert_eq!(s.active_token_hashes().expect("hashes").len(), 1);
        assert_eq!(s.token_role("ci").expect("role").as_deref(), Some("viewer"));
        assert!(s.revoke_token("ci", "alice").expect("revoke"));
        assert!(!s.revoke_token("ci", "alice").expect("again"));
        assert!(s.active_token_hashes().expect("hashes").is_empty());
        assert!(s
            .insert_token("ci", "admin", &[2; 32], "cli")
            .expect("reuse"));
        let all = s.tokens(true).expect("all");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].revoked_by.as_deref(), Some("alice"));
        assert_eq!(s.tokens(false).expect("active").len(), 1);
        // The schema refuses roles it does not know.
        assert!(s.insert_token("x", "root", &[3; 32], "cli").is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn api_audit_entries_carry_role_and_status_beside_plain_ones() {
        let (dir, mut s) = store();
        s.append_audit("engine", "policy.commit", "{}", "ok")
            .expect("plain");
        let id = s
            .append_api_audit(&ApiAudit {
                actor: "alice",
                role: "admin",
                action: "POST /api/v1/policy/commit",
                detail: "{\"comment\":\"x\"}",
                result: "ok",
                status: 200,
            })
            .expect("api");
        let log = s.audit_entries(10, None).expect("log");
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].id, id);
        assert_eq!(log[0].role.as_deref(), Some("admin"));
        assert_eq!(log[0].status, Some(200));
        assert_eq!(log[1].status, None);
        assert_eq!(s.audit_entries(10, Some(id)).expect("before").len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
