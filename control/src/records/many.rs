//! Rows written many a statement: one statement run per tens of rows
//! instead of one per row (SQLite's per-statement work, binding and
//! resetting, was a third of the flow and the DNS ingest's time;
//! docs/decisions.md). Flow records, raw DNS responses, passive DNS and
//! the responses by name are written through here.

use rusqlite::{Connection, ToSql};

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

/// Run `{head} VALUES ... {tail}` for every row, `at_once` rows a
/// statement and the rest one by one, in order. `tail` may be an upsert
/// clause; rows of one statement must not conflict with each other.
pub(super) fn execute<R: Values<W>, const W: usize>(
    conn: &Connection,
    head: &str,
    tail: &str,
    rows: &[R],
    at_once: usize,
) -> Result<(), rusqlite::Error> {
    let at_once = at_once.max(1);
    let mut chunks = rows.chunks_exact(at_once);
    if chunks.len() > 0 {
        let mut many = conn.prepare_cached(&sql(head, tail, W, at_once))?;
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(W * at_once);
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
