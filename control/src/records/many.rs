//! Rows written many a statement: one statement run per [`ROWS_AT_ONCE`]
//! rows instead of one per row (SQLite's per-statement work, binding and
//! resetting, was a third of the DNS ingest's time; docs/decisions.md).

use rusqlite::{Connection, ToSql};

/// Rows an INSERT statement takes at once.
const ROWS_AT_ONCE: usize = 64;

/// A row's values, in the order of the statement's columns.
pub(super) trait Values<const W: usize> {
    fn values(&self) -> [&dyn ToSql; W];
}

/// `{head} VALUES (?, ...), ... {tail}` with `rows` rows of `width`
/// placeholders.
fn sql(head: &str, tail: &str, width: usize, rows: usize) -> String {
    let one = format!("({})", vec!["?"; width].join(", "));
    format!("{head} VALUES {} {tail}", vec![one; rows].join(", "))
}

/// Run `{head} VALUES ... {tail}` for every row, [`ROWS_AT_ONCE`] a
/// statement and the rest one by one, in order. `tail` may be an upsert
/// clause; rows of one statement must not conflict with each other.
pub(super) fn execute<R: Values<W>, const W: usize>(
    conn: &Connection,
    head: &str,
    tail: &str,
    rows: &[R],
) -> Result<(), rusqlite::Error> {
    let mut chunks = rows.chunks_exact(ROWS_AT_ONCE);
    if chunks.len() > 0 {
        let mut many = conn.prepare_cached(&sql(head, tail, W, ROWS_AT_ONCE))?;
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(W * ROWS_AT_ONCE);
        for chunk in &mut chunks {
            values.clear();
            values.extend(chunk.iter().flat_map(Values::values));
            many.execute(values.as_slice())?;
        }
    }
    if !chunks.remainder().is_empty() {
        let mut one = conn.prepare_cached(&sql(head, tail, W, 1))?;
        for row in chunks.remainder() {
            one.execute(row.values().as_slice())?;
        }
    }
    Ok(())
}
