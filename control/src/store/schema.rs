//! Schema migrations: `PRAGMA user_version` is the schema version, the number of
//! entries of [`MIGRATIONS`] applied. Each migration runs in its own transaction
//! together with the `user_version` bump, so a crash leaves the schema at the old
//! or the new version. Append new migrations; never edit one that has shipped.

use super::StoreError;
use rusqlite::{Connection, TransactionBehavior};

/// Migration `i` (0-based) takes the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: policy versions, draft, live pointer, quarantine history, audit, workloads.
    r#"
    CREATE TABLE policy_versions (
        version        INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at     INTEGER NOT NULL,          -- ns since the Unix epoch
        actor          TEXT    NOT NULL,
        comment        TEXT    NOT NULL,
        model_yaml     TEXT    NOT NULL,
        compiled_rules INTEGER NOT NULL,
        rollback_of    INTEGER REFERENCES policy_versions(version)
    );
    CREATE TABLE policy_draft (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        updated_at INTEGER NOT NULL,
        model_yaml TEXT    NOT NULL
    );
    CREATE TABLE live_version (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL REFERENCES policy_versions(version)
    );
    CREATE TABLE quarantine_events (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        mac    TEXT    NOT NULL,
        action TEXT    NOT NULL CHECK (action IN ('quarantine', 'release')),
        reason TEXT,
        actor  TEXT    NOT NULL,
        at     INTEGER NOT NULL
    );
    CREATE INDEX quarantine_events_mac ON quarantine_events (mac, id);
    CREATE TABLE audit (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        at     INTEGER NOT NULL,
        actor  TEXT    NOT NULL,
        action TEXT    NOT NULL,
        detail TEXT    NOT NULL,
        result TEXT    NOT NULL
    );
    CREATE TABLE workloads (
        mac         TEXT    PRIMARY KEY,
        name        TEXT    NOT NULL,
        labels_json TEXT    NOT NULL,
        origin      TEXT    NOT NULL CHECK (origin IN ('declared', 'imported', 'observed')),
        first_seen  INTEGER NOT NULL,
        last_seen   INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 2: the quarantines in force (the history stays in quarantine_events).
    r#"
    CREATE TABLE quarantine_active (
        mac    TEXT    PRIMARY KEY,
        reason TEXT,
        actor  TEXT    NOT NULL,
        at     INTEGER NOT NULL,
        source TEXT    NOT NULL CHECK (source IN ('command', 'policy'))
    ) WITHOUT ROWID;
    "#,
    // 3: management API tokens (SHA-256 of the token only), and the audit
    //    trail's role and HTTP status for API calls.
    r#"
    CREATE TABLE api_tokens (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        name       TEXT    NOT NULL,
        role       TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
        sha256     BLOB    NOT NULL UNIQUE CHECK (length(sha256) = 32),
        created_at INTEGER NOT NULL,
        created_by TEXT    NOT NULL,
        revoked_at INTEGER,
        revoked_by TEXT
    );
    CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;
    ALTER TABLE audit ADD COLUMN role TEXT;
    ALTER TABLE audit ADD COLUMN status INTEGER;
    "#,
    // 4: alerts (threat intel now, anomaly detection next), deduplicated by
    //    the control thread into a count.
    r#"
    CREATE TABLE alerts (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        first_ms  INTEGER NOT NULL,              -- ms since the Unix epoch
        last_ms   INTEGER NOT NULL,
        count     INTEGER NOT NULL CHECK (count >= 1),
        kind      TEXT    NOT NULL,
        severity  INTEGER NOT NULL CHECK (severity BETWEEN 1 AND 4),
        mac       TEXT    NOT NULL,
        workload  TEXT,
        indicator TEXT    NOT NULL,
        summary   TEXT    NOT NULL,
        evidence  TEXT    NOT NULL,              -- JSON
        state     TEXT    NOT NULL DEFAULT 'open'
                  CHECK (state IN ('open', 'acknowledged', 'closed')),
        state_by  TEXT,
        state_ms  INTEGER
    );
    CREATE INDEX alerts_last ON alerts (last_ms);
    CREATE INDEX alerts_mac ON alerts (mac, id);
    CREATE INDEX alerts_state ON alerts (state);
    "#,
    // 5: anomaly detection's baselines: when each group's started, the
    //    services each group pair had, each workload's busiest hour of
    //    peers, the DNS names answered (and when that baseline started).
    r#"
    CREATE TABLE baseline_groups (
        name       TEXT    PRIMARY KEY,
        started_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE baseline_services (
        src_group TEXT    NOT NULL,
        dst_group TEXT    NOT NULL,
        proto     INTEGER NOT NULL CHECK (proto BETWEEN 0 AND 255),
        port      INTEGER NOT NULL CHECK (port BETWEEN 0 AND 65535),
        first_ms  INTEGER NOT NULL,
        PRIMARY KEY (src_group, dst_group, proto, port)
    ) WITHOUT ROWID;
    CREATE TABLE baseline_fanout (
        mac      TEXT    PRIMARY KEY,
        first_ms INTEGER NOT NULL,
        peak     INTEGER NOT NULL CHECK (peak >= 0)
    ) WITHOUT ROWID;
    CREATE TABLE baseline_names (
        name     TEXT    PRIMARY KEY,
        first_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE baseline_meta (
        key   TEXT    PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn user_version(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Brings the schema up to [`SCHEMA_VERSION`]; refuses a newer database.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let target = i as i64 + 1;
        // IMMEDIATE: take the write lock before reading the version, so two
        // processes opening a fresh file cannot both apply the same migration.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = user_version(&tx)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found >= target {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|source| StoreError::Migration {
                version: target,
                source,
            })?;
        tx.pragma_update(None, "user_version", target)?;
        tx.commit()?;
    }
    // A database already at the current version runs no migration: check it too.
    let found = user_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}
