//! Blast radius walked backwards (by destination): the destinations of
//! the edges, and the allowed edges to one.

use super::blast::{ip16, EdgeRow};
use crate::records::{RecordsError, RecordsReader};

impl RecordsReader {
    /// Every distinct destination of an edge, address and MAC (the
    /// `destinations` table the triggers on `edges` keep).
    pub(super) fn destinations(&self) -> Result<Vec<([u8; 16], i64)>, RecordsError> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT dst_ip, dst_mac FROM destinations ORDER BY dst_ip, dst_mac")?;
        let mut out = Vec::new();
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            out.push((ip16(r.get_ref(0)?.as_blob().unwrap_or_default()), r.get(1)?));
        }
        Ok(out)
    }

    /// The allowed edges to `ip` at `mac` with a flow begun by `until`:
    /// their source, protocol and port, and their latest start with the
    /// rest of the row.
    #[allow(clippy::type_complexity)]
    pub(super) fn edges_to(
        &self,
        ip: &[u8; 16],
        mac: i64,
        until: i64,
    ) -> Result<Vec<(i64, i64, i64, (i64, EdgeRow))>, RecordsError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT src_mac, proto, port, flows, bytes, first_ms, last_start_ms, last_ms
             FROM edges WHERE dst_ip = ?1 AND dst_mac = ?2 AND allowed = 1 AND first_ms <= ?3",
        )?;
        let rows = stmt.query_map(rusqlite::params![ip.to_vec(), mac, until], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                (
                    r.get(6)?,
                    EdgeRow {
                        dst_mac: mac,
                        dst_ip: *ip,
                        proto: r.get(1)?,
                        port: r.get(2)?,
                        allowed: true,
                        flows: crate::records::count_at(r, 3)?,
                        bytes: crate::records::count_at(r, 4)?,
                        first_ms: r.get(5)?,
                        last_ms: r.get(7)?,
                    },
                ),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
