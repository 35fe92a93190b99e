//! DNS names as integers: the `names` table (each name once, labels
//! reversed so that a domain and its subdomains are one range of its
//! index) and the writer's cache of the ids it has made or read. Passive
//! DNS and the responses by name are keyed by these ids: integer keys
//! compare and pack better than text, which doubled the DNS ingest rate
//! (bench/RESULTS.md).

use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;

/// A name with its labels reversed (`www.example.com` -> `com.example.www`),
/// so that a domain's subdomains are one range of an index. Its own
/// inverse.
pub fn reversed(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, label) in name.rsplit('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(label);
    }
    out
}

/// Names of the rows waiting for a flush, each once: a row keeps an index
/// here, resolved to the store's id when written.
#[derive(Debug, Default)]
pub(super) struct LocalNames {
    index: HashMap<Box<str>, u32, ahash::RandomState>,
    names: Vec<Box<str>>,
}

impl LocalNames {
    pub(super) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(name.into());
        self.index.insert(name.into(), i);
        i
    }

    pub(super) fn clear(&mut self) {
        self.index.clear();
        self.names.clear();
    }

    /// The store's id of each name, in index order (made where missing).
    pub(super) fn resolve(
        &self,
        conn: &Connection,
        ids: &mut NameIds,
    ) -> Result<Vec<i64>, rusqlite::Error> {
        ids.start(self.names.len());
        self.names.iter().map(|n| ids.id(conn, n)).collect()
    }
}

/// Entries the writer's cache keeps at most; past it, it starts again.
const MAX_CACHED: usize = 262_144;

/// The store's ids of names the writer has seen. Dropped whenever the ids
/// may have changed under it: a failed transaction (ids made in it are
/// gone) and the hourly trim of names no row refers to.
#[derive(Debug, Default)]
pub(super) struct NameIds {
    ids: HashMap<Box<str>, i64, ahash::RandomState>,
}

impl NameIds {
    /// Before resolving `more` names: a cache that would pass its size
    /// starts again (never in the middle of a flush).
    fn start(&mut self, more: usize) {
        if self.ids.len() + more > MAX_CACHED {
            self.ids.clear();
        }
    }

    fn id(&mut self, conn: &Connection, name: &str) -> Result<i64, rusqlite::Error> {
        if let Some(&id) = self.ids.get(name) {
            return Ok(id);
        }
        let rname = reversed(name);
        let found: Option<i64> = conn
            .prepare_cached("SELECT id FROM names WHERE rname = ?1")?
            .query_row([&rname], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                conn.prepare_cached("INSERT INTO names (rname) VALUES (?1)")?
                    .execute([&rname])?;
                conn.last_insert_rowid()
            }
        };
        self.ids.insert(name.into(), id);
        Ok(id)
    }

    pub(super) fn clear(&mut self) {
        self.ids.clear();
    }
}

/// Delete the names no passive-DNS row and no response by name refers to
/// (a question's name always has a passive-DNS row of its own while any
/// row asked by it is kept). The caller drops its [`NameIds`].
pub(super) fn trim(conn: &Connection) -> Result<usize, rusqlite::Error> {
    conn.execute(
        "DELETE FROM names WHERE NOT EXISTS (SELECT 1 FROM pdns WHERE name_id = names.id)
            AND NOT EXISTS (SELECT 1 FROM dns_names WHERE name_id = names.id)",
        [],
    )
}

/// `bh_reversed(name)` for SQL: the migration that made the names table
/// reads the text keys of the tables before it.
pub(super) fn register(conn: &Connection) -> Result<(), rusqlite::Error> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "bh_reversed",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| Ok(reversed(ctx.get_raw(0).as_str().unwrap_or_default())),
    )
}

#[cfg(test)]
mod tests {
    use super::reversed;

    #[test]
    fn reversed_is_its_own_inverse() {
        for n in ["www.example.com", "com", "", "a..b", "x.y."] {
            assert_eq!(reversed(&reversed(n)), n);
        }
        assert_eq!(reversed("www.example.com"), "com.example.www");
    }
}
