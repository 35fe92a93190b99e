//! The control plane's embedded database: SQLite (rusqlite, bundled) holding the
//! policy version history with its draft and live pointer, the quarantine history,
//! the audit trail and learned workloads.
//!
//! - One file, WAL journal, `synchronous=FULL`: a commit that returned survives a
//!   process kill *and* a power loss (NORMAL would keep the database consistent
//!   but could lose the last commits on power loss; policy commits are rare and an
//!   operator was told "version N is live", so the fsync per commit is worth it).
//! - Foreign keys on, a busy timeout of [`BUSY_TIMEOUT`] for a second process
//!   (e.g. a CLI) reading the same file.
//! - Schema migrations by `PRAGMA user_version` ([`schema`]); a database written
//!   by a newer build is refused with [`StoreError::TooNew`].
//! - Models are stored as JSON text (rendering and parsing a 100k-rule model
//!   takes tens of milliseconds; YAML took ten times as long). Rows written as
//!   YAML by earlier builds are still read.
//!   Every policy change is one transaction: a crash leaves the old or the new
//!   version live, never a mix.

mod alerts;
mod api;
mod baseline;
mod policy;
mod quarantine;
mod records;
pub mod schema;

#[cfg(test)]
mod tests;

pub use api::{ApiAudit, AuditEntry, TokenHash, TokenInfo};
pub use baseline::{BaselineWrites, StoredBaselines};
pub(crate) use policy::render_model;
pub use policy::VersionInfo;
pub use quarantine::{ActiveQuarantine, QuarantineSource};
pub use records::{AuditRecord, QuarantineAction, QuarantineEvent, WorkloadRecord};
pub use schema::SCHEMA_VERSION;

use crate::time::Timestamp;
use rusqlite::Connection;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a statement waits for another connection's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A committed policy version number (1, 2, ...; never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {}: journal mode is {mode:?}, WAL could not be enabled", path.display())]
    NoWal { path: PathBuf, mode: String },
    #[error(
        "database schema version {found} is newer than this build supports ({supported}); \
         use a newer bulkhead or another database file"
    )]
    TooNew { found: i64, supported: i64 },
    #[error("database migration to schema version {version} failed: {source}")]
    Migration {
        version: i64,
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("policy version {0} does not exist")]
    NoSuchVersion(Version),
    #[error("stored model ({what}) does not parse: {detail}")]
    BadModel { what: String, detail: String },
    #[error("invalid MAC address {0:?}")]
    BadMac(String),
    #[error("stored {what} is invalid: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The database. Writes take `&mut self` (each is one transaction); share it
/// behind a mutex or give each thread its own [`Store::open`].
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, sets WAL, FULL sync,
    /// foreign keys and the busy timeout, and applies pending migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NoWal {
                path: path.to_path_buf(),
                mode,
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_err)?;
        schema::migrate(&mut conn)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// `PRAGMA integrity_check`: `Ok(())` or the problems SQLite reports.
    pub fn integrity_check(&self) -> Result<Result<(), Vec<String>>, StoreError> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        if lines.len() == 1 && lines.first().is_some_and(|l| l == "ok") {
            Ok(Ok(()))
        } else {
            Ok(Err(lines))
        }
    }
}

/// A timestamp as stored (INTEGER nanoseconds since the epoch).
fn ts_to_sql(t: Timestamp) -> Result<i64, StoreError> {
    i64::try_from(t.0).map_err(|_| StoreError::Corrupt {
        what: "timestamp",
        detail: format!("{} ns is beyond the year 2262", t.0),
    })
}

fn ts_from_sql(v: i64) -> Result<Timestamp, StoreError> {
    u64::try_from(v)
        .map(Timestamp)
        .map_err(|_| StoreError::Corrupt {
            what: "timestamp",
            detail: format!("{v} is negative"),
        })
}

fn u64_from_sql(what: &'static str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        what,
        detail: format!("{v} is negative"),
    })
}
