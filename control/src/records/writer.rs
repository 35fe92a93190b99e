//! The writer thread: batches in over a bounded queue, one transaction for
//! a batch and those waiting behind it (rows made in [`super::insert`]),
//! rollups every few seconds,
//! retention by age and size between batches.

use super::addresses::AddressSeen;
use super::checkpoint::Checkpointer;
use super::dns_rows::StoredDns;
use super::insert::{write_batch, IdentityIds};
use super::rollup::{self, Rollups};
use super::{schema, RecordsError, StoredFlow};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the writer keeps the store.
#[derive(Debug, Clone)]
pub struct RecordsConfig {
    /// Batches waiting at most; one more is dropped and counted.
    pub queue_batches: usize,
    /// Flow records older than this (by their last packet) are deleted.
    pub max_age: Duration,
    /// Hourly rollups older than this are deleted.
    pub rollup_max_age: Duration,
    /// The store's size at most (the database's pages in use): past it the
    /// oldest records are deleted.
    pub max_bytes: u64,
    /// Free space the filesystem keeps: below it records pause (dropped and
    /// counted) until there is half as much again, so that the policy store,
    /// usually on the same filesystem, never starves.
    pub reserve_bytes: u64,
    /// How often retention runs.
    pub retention_every: Duration,
    /// How often retention also trims the long-kept tables (rollups, passive
    /// DNS, contacts, addresses): their periods are hours and days, and
    /// `pdns` has no index by time (a scan an hour costs less than one).
    pub long_retention_every: Duration,
}

impl RecordsConfig {
    /// For records whose times are not now (a capture imported by a replay):
    /// no retention by age, which would delete them as they arrive.
    pub fn for_import() -> RecordsConfig {
        RecordsConfig {
            max_age: Duration::MAX,
            rollup_max_age: Duration::MAX,
            ..RecordsConfig::default()
        }
    }
}

impl Default for RecordsConfig {
    fn default() -> Self {
        RecordsConfig {
            queue_batches: 64,
            max_age: Duration::from_secs(7 * 24 * 3600),
            rollup_max_age: Duration::from_secs(400 * 24 * 3600),
            max_bytes: 2 << 30,
            reserve_bytes: 128 << 20,
            retention_every: Duration::from_secs(60),
            long_retention_every: Duration::from_secs(3600),
        }
    }
}

/// What the writer did; shared with the stats line, the API and `/metrics`.
#[derive(Debug, Default)]
pub struct RecordsCounters {
    /// Flow records committed.
    pub written: AtomicU64,
    /// Flow records dropped: their batch found the queue full, or the write
    /// failed (see [`RecordsCounters::errors`]).
    pub lost: AtomicU64,
    /// Batches whose write failed (a full disk, a damaged file).
    pub errors: AtomicU64,
    /// Flow records deleted by retention (by age or size).
    pub expired: AtomicU64,
    /// Records are paused: the filesystem is below its reserve, or full.
    pub paused: AtomicBool,
    /// Bytes of the store in use, as of the last retention pass.
    pub bytes: AtomicU64,
    /// DNS records committed.
    pub dns_written: AtomicU64,
    /// DNS records dropped, as [`RecordsCounters::lost`] for flows.
    pub dns_lost: AtomicU64,
    /// The recorder's DNS decoder: responses parsed, messages dropped by why
    /// (copied in by the recorder every second).
    pub dns_decoder: std::sync::Mutex<crate::dns::DnsCounters>,
}

impl RecordsCounters {
    /// The DNS decoder's counters as last copied in.
    pub fn dns_decoder(&self) -> crate::dns::DnsCounters {
        match self.dns_decoder.lock() {
            Ok(g) => *g,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

/// What the recorder hands the writer at once.
#[derive(Debug, Default)]
pub struct Batch {
    pub flows: Vec<StoredFlow>,
    pub dns: Vec<StoredDns>,
    /// Addresses seen held (ARP, DHCP).
    pub addresses: Vec<AddressSeen>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty() && self.dns.is_empty() && self.addresses.is_empty()
    }

    /// Records in it (flows, DNS responses, addresses).
    pub fn len(&self) -> usize {
        self.flows.len() + self.dns.len() + self.addresses.len()
    }
}

impl From<Vec<StoredFlow>> for Batch {
    fn from(flows: Vec<StoredFlow>) -> Batch {
        Batch {
            flows,
            ..Batch::default()
        }
    }
}

impl RecordsCounters {
    fn lose(&self, b: &Batch) {
        self.lost.fetch_add(b.flows.len() as u64, Ordering::Relaxed);
        self.dns_lost
            .fetch_add(b.dns.len() as u64, Ordering::Relaxed);
    }
}

/// The records store's writer: a thread owning the database.
#[derive(Debug)]
pub struct RecordsWriter {
    tx: Option<Sender<Batch>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<RecordsCounters>,
    path: PathBuf,
}

impl RecordsWriter {
    /// Open (or create) the store at `path` and start its writer thread.
    pub fn start(path: &Path, cfg: RecordsConfig) -> Result<RecordsWriter, RecordsError> {
        let mut conn = schema::open(path)?;
        tune_for_ingest(&conn).map_err(|source| RecordsError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        // Records a crash left without their rollups.
        rollup::catch_up(&mut conn).map_err(|source| RecordsError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let checkpoints = Checkpointer::start(path)?;
        let (tx, rx) = bounded(cfg.queue_batches.max(1));
        let counters = Arc::new(RecordsCounters::default());
        let mut w = Writer {
            conn,
            identities: IdentityIds::default(),
            counters: counters.clone(),
            cfg,
            last_retention: None,
            last_long_retention: None,
            rollups: Rollups::new(),
            _checkpoints: checkpoints,
            dir: path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        };
        let thread = std::thread::Builder::new()
            .name("bulkhead-records".into())
            .spawn(move || {
                below_the_packet_path();
                w.run(&rx)
            })
            .map_err(|e| RecordsError::Thread(e.to_string()))?;
        Ok(RecordsWriter {
            tx: Some(tx),
            thread: Some(thread),
            counters,
            path: path.to_path_buf(),
        })
    }

    /// Hand a batch to the writer; never blocks. False (and counted as lost)
    /// when the queue is full or the writer has stopped.
    pub fn submit(&self, batch: Vec<StoredFlow>) -> bool {
        self.submit_batch(batch.into())
    }

    /// [`RecordsWriter::submit`] of a whole batch.
    pub fn submit_batch(&self, batch: Batch) -> bool {
        match self.try_submit_batch(batch) {
            Ok(()) => true,
            Err(back) => {
                self.counters.lose(&back);
                false
            }
        }
    }

    /// [`RecordsWriter::submit`] without giving up: a batch that finds the
    /// queue full (or the writer stopped) comes back, not counted, for a
    /// caller that can wait (a replay, the benchmark).
    pub fn try_submit(&self, batch: Vec<StoredFlow>) -> Result<(), Vec<StoredFlow>> {
        self.try_submit_batch(batch.into()).map_err(|b| b.flows)
    }

    /// [`RecordsWriter::try_submit`] of a whole batch.
    pub fn try_submit_batch(&self, batch: Batch) -> Result<(), Batch> {
        if batch.is_empty() {
            return Ok(());
        }
        match &self.tx {
            Some(tx) => tx.try_send(batch).map_err(|e| match e {
                TrySendError::Full(b) | TrySendError::Disconnected(b) => b,
            }),
            None => Err(batch),
        }
    }

    pub fn counters(&self) -> Arc<RecordsCounters> {
        self.counters.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write what is queued, then stop the thread.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RecordsWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Writer {
    conn: Connection,
    /// Identity -> row id, for identities written by this writer.
    identities: IdentityIds,
    counters: Arc<RecordsCounters>,
    cfg: RecordsConfig,
    last_retention: Option<Instant>,
    /// When the long-kept tables were last trimmed by age.
    last_long_retention: Option<Instant>,
    /// Rollup rows gathered from committed records, written every few seconds.
    rollups: Rollups,
    /// The store's directory: whose filesystem's free space is watched.
    dir: PathBuf,
    /// Copies the log back beside the writer; stops with it.
    _checkpoints: Checkpointer,
}

impl Writer {
    fn run(&mut self, rx: &Receiver<Batch>) {
        loop {
            // Wake at least every second: the paused flag follows the
            // filesystem's free space even when no batch comes.
            match rx.recv_timeout(self.cfg.retention_every.min(Duration::from_secs(1))) {
                Ok(batch) => {
                    let batches = group(batch, rx);
                    if !self.room() {
                        batches.iter().for_each(|b| self.counters.lose(b));
                        continue;
                    }
                    match self.write(&batches) {
                        Ok(()) => {
                            for b in &batches {
                                self.counters
                                    .dns_written
                                    .fetch_add(b.dns.len() as u64, Ordering::Relaxed);
                                self.counters
                                    .written
                                    .fetch_add(b.flows.len() as u64, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            // Ids made in the transaction that failed are
                            // not in the store: forget them all.
                            self.rollups.failed();
                            self.identities = IdentityIds::default();
                            if is_full(&e) {
                                self.counters.paused.store(true, Ordering::Relaxed);
                            }
                            batches.iter().for_each(|b| self.counters.lose(b));
                            self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.room();
                    if self.rollups.due() {
                        self.flush_rollups();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush_rollups();
                    return;
                }
            }
            if self
                .last_retention
                .is_none_or(|t| t.elapsed() >= self.cfg.retention_every)
            {
                self.last_retention = Some(Instant::now());
                // The waiting rollup rows first, so that retention sees them.
                self.flush_rollups();
                if let Ok(n) = self.retain(now_ms()) {
                    self.counters.expired.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    }

    /// The waiting rollup rows, in a transaction of their own.
    fn flush_rollups(&mut self) {
        if self.rollups.recover(&mut self.conn).is_err() || self.rollups.is_empty() {
            return;
        }
        let done = self.conn.transaction().and_then(|tx| {
            self.rollups.flush(&tx)?;
            tx.commit()
        });
        if done.is_err() {
            self.rollups.failed();
        }
    }

    /// One transaction for the batches (with the waiting rollup rows, when
    /// it is time).
    fn write(&mut self, batches: &[Batch]) -> Result<(), rusqlite::Error> {
        self.rollups.recover(&mut self.conn)?;
        let tx = self.conn.transaction()?;
        for batch in batches {
            write_batch(&tx, &mut self.identities, &mut self.rollups, batch)?;
        }
        if self.rollups.due() {
            self.rollups.flush(&tx)?;
        }
        tx.commit()
    }

    /// Whether a batch may be written: the filesystem has more free space
    /// than the reserve (half as much again to leave a pause), and the last
    /// write did not find the disk full with no space freed since.
    fn room(&mut self) -> bool {
        let paused = self.counters.paused.load(Ordering::Relaxed);
        let want = if paused {
            self.cfg
                .reserve_bytes
                .saturating_add(self.cfg.reserve_bytes / 2)
        } else {
            self.cfg.reserve_bytes
        };
        // A filesystem that cannot say is taken as roomy: SQLite's own
        // "disk full" still pauses.
        let room = fs4::available_space(&self.dir).map_or(true, |free| free > want);
        self.counters.paused.store(!room, Ordering::Relaxed);
        room
    }

    /// Delete flow records and rollups older than their maximum ages, then
    /// the oldest flow records until the store is within its size (the oldest
    /// rollups once no flow record is left); oldest first either way. Returns
    /// the flow records deleted.
    fn retain(&mut self, now_ms: i64) -> Result<u64, rusqlite::Error> {
        let cutoff = |age: Duration| {
            now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
        };
        // The long-kept tables every `long_retention_every` (an hour): their
        // periods are hours and days, and `pdns` has no index by time (it
        // moved on every upsert and cost 2x the DNS ingest rate).
        if self
            .last_long_retention
            .is_none_or(|t| t.elapsed() >= self.cfg.long_retention_every)
        {
            self.last_long_retention = Some(Instant::now());
            for table in [
                "hourly WHERE hour_ms",
                "daily WHERE day_ms",
                "group_rollups WHERE period_ms",
                "contacts WHERE hour_ms",
                "edges WHERE last_ms",
                "addresses WHERE day_ms",
                "pdns WHERE last_ms",
            ] {
                self.conn.execute(
                    &format!("DELETE FROM {table} < ?1"),
                    [cutoff(self.cfg.rollup_max_age)],
                )?;
            }
            // The names of responses gone (a query joins them away anyway).
            self.conn.execute(
                "DELETE FROM dns_names WHERE id < (SELECT coalesce(min(id),
                    (SELECT max(id) + 1 FROM dns_names)) FROM dns)",
                [],
            )?;
            // The names no row refers to any more; the ids the writer knows
            // may be among them.
            super::names::trim(&self.conn)?;
            self.rollups.forget_name_ids();
        }
        let mut n = self.conn.execute(
            "DELETE FROM flows WHERE last_ms < ?1",
            [cutoff(self.cfg.max_age)],
        )? as u64;
        self.conn.execute(
            "DELETE FROM dns WHERE time_ms < ?1",
            [cutoff(self.cfg.max_age)],
        )?;
        loop {
            let used = self.used_bytes()?;
            self.counters.bytes.store(used, Ordering::Relaxed);
            if used <= self.cfg.max_bytes {
                return Ok(n);
            }
            let rows: i64 = self
                .conn
                .query_row("SELECT count(*) FROM flows", [], |r| r.get(0))?;
            if rows == 0 {
                // DNS records next, a tenth at a time.
                let dns = self.conn.execute(
                    "DELETE FROM dns WHERE id IN (SELECT id FROM dns ORDER BY time_ms, id
                        LIMIT max(1, (SELECT count(*) FROM dns) / 10))",
                    [],
                )?;
                if dns > 0 {
                    continue;
                }
                // The oldest hour, and the group and derived rows of periods
                // that began before the hours left (all of them once none is).
                let mut deleted = self.conn.execute(
                    "DELETE FROM hourly WHERE hour_ms = (SELECT min(hour_ms) FROM hourly)",
                    [],
                )?;
                for (table, column) in [
                    ("daily", "day_ms"),
                    ("group_rollups", "period_ms"),
                    ("contacts", "hour_ms"),
                    ("edges", "last_ms"),
                    ("addresses", "day_ms"),
                    ("pdns", "last_ms"),
                ] {
                    deleted += self.conn.execute(
                        &format!(
                            "DELETE FROM {table} WHERE {column} < (SELECT coalesce(min(hour_ms),
                                (SELECT max({column}) + 1 FROM {table})) FROM hourly)"
                        ),
                        [],
                    )?;
                }
                if deleted == 0 {
                    return Ok(n);
                }
                continue;
            }
            // Down to 90% of the limit, at the store's average row size.
            let per_row = (used / rows as u64).max(1);
            let excess = used - self.cfg.max_bytes + self.cfg.max_bytes / 10;
            let k = (excess / per_row).clamp(1, rows as u64);
            let deleted = self.conn.execute(
                "DELETE FROM flows WHERE id IN (SELECT id FROM flows ORDER BY last_ms, id LIMIT ?1)",
                [k as i64],
            )?;
            n += deleted as u64;
            if deleted == 0 {
                return Ok(n);
            }
            // The DNS records of the time no flow record is left for.
            self.conn.execute(
                "DELETE FROM dns WHERE time_ms < (SELECT min(last_ms) FROM flows)",
                [],
            )?;
        }
    }

    /// The database's pages in use (free pages left by deletions excluded).
    fn used_bytes(&self) -> Result<u64, rusqlite::Error> {
        let pragma = |name: &str| -> Result<i64, rusqlite::Error> {
            self.conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        };
        let pages = pragma("page_count")? - pragma("freelist_count")?;
        Ok(u64::try_from(pages.max(0) * pragma("page_size")?).unwrap_or(0))
    }
}

/// The writer (and the IPFIX exporter) yields to everything else of the
/// appliance: on a machine
/// where it shares a core with a worker (two cores: the generator's and the
/// appliance's in bench/e2e.sh), a worker that needs the core gets it and
/// the records fall behind, dropped and counted, instead of the packets.
/// Nice 10 (a tenth of a nice-0 thread's share when both want the core).
#[allow(
    unsafe_code,
    reason = "one setpriority(2) call on the calling thread; no safe wrapper in the dependencies"
)]
pub(crate) fn below_the_packet_path() {
    // On Linux a nice value is a thread's: `who` 0 is the calling thread.
    // SAFETY: setpriority takes plain integers and changes only this
    // thread's scheduling; its failure (no permission) leaves it as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// The writer's connection: its own WAL checkpoint only past 16,384 pages
/// (64 MiB): the checkpoint thread copies the log back beside it twice a
/// second, and this is the backstop at which the log restarts (see
/// [`super::checkpoint`]). SQLite's default, a checkpoint by the writer
/// every 1,000 pages, copied the pages every batch touches (the tables' and
/// the time index's right edges) back again every few batches
/// (bench/RESULTS.md; a larger page cache made no difference there, and
/// would cost memory).
fn tune_for_ingest(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.pragma_update(None, "wal_autocheckpoint", 16_384)
}

/// Records one transaction takes at most when batches wait: a writer that
/// fell behind catches up in fewer, larger commits (each commit writes the
/// pages every batch touches to the WAL again; bench/RESULTS.md), and a
/// failed write loses no more than this.
const GROUP_RECORDS: usize = 16_384;

/// `first` and the batches already waiting behind it, up to
/// [`GROUP_RECORDS`] records: one transaction for them all.
fn group(first: Batch, rx: &Receiver<Batch>) -> Vec<Batch> {
    let mut n = first.len();
    let mut out = vec![first];
    while n < GROUP_RECORDS {
        match rx.try_recv() {
            Ok(b) => {
                n += b.len();
                out.push(b);
            }
            Err(_) => break,
        }
    }
    out
}

/// A write refused for want of space (`SQLITE_FULL`).
fn is_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
