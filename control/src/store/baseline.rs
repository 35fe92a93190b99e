//! Anomaly detection's baselines as stored (`crate::detect`): read once when
//! the control thread starts, written by it in one transaction a second
//! with what its detectors learned.

use super::{Store, StoreError};
use crate::detect::fanout::Peak;
use crate::detect::first_seen::{BaselineWrite, ServiceKey};
use dataplane::policy::parse_mac;
use dataplane::wire::MacAddr;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

/// Every baseline the store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredBaselines {
    pub groups: Vec<(String, i64)>,
    pub services: Vec<ServiceKey>,
    pub fanout: Vec<(MacAddr, Peak)>,
    pub names_started_ms: Option<i64>,
    pub names: Vec<String>,
}

/// What the detectors learned since the last write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaselineWrites {
    pub services: Vec<BaselineWrite>,
    pub fanout: Vec<(MacAddr, Peak)>,
    pub names_started_ms: Option<i64>,
    pub names: Vec<Box<str>>,
}

impl BaselineWrites {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.fanout.is_empty()
            && self.names_started_ms.is_none()
            && self.names.is_empty()
    }
}

const NAMES_STARTED: &str = "names_started_ms";

fn narrow<T: TryFrom<i64>>(what: &'static str, v: i64) -> Result<T, StoreError> {
    T::try_from(v).map_err(|_| StoreError::Corrupt {
        what,
        detail: v.to_string(),
    })
}

impl Store {
    /// Every baseline (rows that do not read back are an error: the
    /// schema's checks keep them out).
    pub fn baselines(&self) -> Result<StoredBaselines, StoreError> {
        let mut out = StoredBaselines::default();
        let mut stmt = self
            .conn
            .prepare("SELECT name, started_ms FROM baseline_groups")?;
        for r in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            out.groups.push(r?);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT src_group, dst_group, proto, port FROM baseline_services")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for r in rows {
            let (src, dst, proto, port) = r?;
            out.services.push(ServiceKey {
                src: src.into_boxed_str(),
                dst: dst.into_boxed_str(),
                proto: narrow("baseline protocol", proto)?,
                port: narrow("baseline port", port)?,
            });
        }
        let mut stmt = self
            .conn
            .prepare("SELECT mac, first_ms, peak FROM baseline_fanout")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for r in rows {
            let (mac, first_ms, peak) = r?;
            let mac = parse_mac(&mac).ok_or(StoreError::Corrupt {
                what: "baseline MAC",
                detail: mac,
            })?;
            out.fanout.push((
                mac,
                Peak {
                    first_ms,
                    peak: narrow("baseline peak", peak)?,
                },
            ));
        }
        out.names_started_ms = self
            .conn
            .query_row(
                "SELECT value FROM baseline_meta WHERE key = ?1",
                [NAMES_STARTED],
                |r| r.get(0),
            )
            .optional()?;
        let mut stmt = self.conn.prepare("SELECT name FROM baseline_names")?;
        for r in stmt.query_map([], |r| r.get::<_, String>(0))? {
            out.names.push(r?);
        }
        Ok(out)
    }

    /// Writes what the detectors learned, in one transaction. A service or
    /// name already stored keeps its first time.
    pub fn write_baselines(&mut self, w: &BaselineWrites, now_ms: i64) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut group = tx.prepare(
                "INSERT OR IGNORE INTO baseline_groups (name, started_ms) VALUES (?1, ?2)",
            )?;
            let mut service = tx.prepare(
                "INSERT OR IGNORE INTO baseline_services \
                 (src_group, dst_group, proto, port, first_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for s in &w.services {
                match s {
                    BaselineWrite::Group { name, started_ms } => {
                        group.execute(params![name.as_ref(), started_ms])?;
                    }
                    BaselineWrite::Service { key, first_ms } => {
                        service.execute(params![
                            key.src.as_ref(),
                            key.dst.as_ref(),
                            key.proto,
                            key.port,
                            first_ms
                        ])?;
                    }
                }
            }
            let mut fanout = tx.prepare(
                "INSERT INTO baseline_fanout (mac, first_ms, peak) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (mac) DO UPDATE SET peak = max(peak, excluded.peak)",
            )?;
            for (mac, p) in &w.fanout {
                fanout.execute(params![mac.to_string(), p.first_ms, p.peak])?;
            }
            if let Some(at) = w.names_started_ms {
                tx.execute(
                    "INSERT OR IGNORE INTO baseline_meta (key, value) VALUES (?1, ?2)",
                    params![NAMES_STARTED, at],
                )?;
            }
            let mut name = tx
                .prepare("INSERT OR IGNORE INTO baseline_names (name, first_ms) VALUES (?1, ?2)")?;
            for n in &w.names {
                name.execute(params![n.as_ref(), now_ms])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets every baseline: each starts learning again from the next flow.
    pub fn clear_baselines(&mut self) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "DELETE FROM baseline_groups; DELETE FROM baseline_services; \
             DELETE FROM baseline_fanout; DELETE FROM baseline_names; \
             DELETE FROM baseline_meta;",
        )?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a cfg(test) module: unwrap fails a test on a fixture the test wrote"
    )]
    use super::*;

    #[test]
    fn baselines_read_back_as_written_and_keep_their_first_times() {
        let dir = crate::testutil::TempDir::new("baselines");
        let mut store = Store::open(&dir.db()).unwrap();
        assert_eq!(store.baselines().unwrap(), StoredBaselines::default());
        let key = ServiceKey {
            src: "web".into(),
            dst: "db".into(),
            proto: 6,
            port: 3389,
        };
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let w = BaselineWrites {
            services: vec![
                BaselineWrite::Group {
                    name: "web".into(),
                    started_ms: 5,
                },
                BaselineWrite::Service {
                    key: key.clone(),
                    first_ms: 6,
                },
            ],
            fanout: vec![(
                mac,
                Peak {
                    first_ms: 7,
                    peak: 40,
                },
            )],
            names_started_ms: Some(8),
            names: vec!["example.com".into()],
        };
        store.write_baselines(&w, 9).unwrap();
        // Again, later: firsts stay, a peak only rises.
        let again = BaselineWrites {
            services: vec![BaselineWrite::Group {
                name: "web".into(),
                started_ms: 50,
            }],
            fanout: vec![(
                mac,
                Peak {
                    first_ms: 70,
                    peak: 30,
                },
            )],
            names_started_ms: Some(80),
            names: vec!["example.com".into()],
        };
        store.write_baselines(&again, 90).unwrap();
        let b = store.baselines().unwrap();
        assert_eq!(b.groups, [("web".to_string(), 5)]);
        assert_eq!(b.services, [key]);
        assert_eq!(
            b.fanout,
            [(
                mac,
                Peak {
                    first_ms: 7,
                    peak: 40
                }
            )]
        );
        assert_eq!(b.names_started_ms, Some(8));
        assert_eq!(b.names, ["example.com"]);
        store.clear_baselines().unwrap();
        assert_eq!(store.baselines().unwrap(), StoredBaselines::default());
    }
}
