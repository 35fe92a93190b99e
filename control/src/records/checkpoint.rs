//! The records store's WAL checkpoints, off the writer's thread.
//!
//! A checkpoint copies the pages committed to the write-ahead log back into
//! the database file; run by the writer after a commit (SQLite's automatic
//! checkpoint) it took a tenth of the writer's time under a DNS flood
//! (bench/RESULTS.md). Here a thread of its own runs a passive checkpoint
//! (it never blocks the writer, readers or itself) every
//! [`CHECKPOINT_EVERY`], beside the writer, on another core when there is
//! one. The log restarts only at a checkpoint that catches up with the
//! writer, which a writer that never pauses never lets this one do: the
//! writer's own automatic checkpoint stays as the backstop at
//! [`super::writer`]'s larger threshold, and finds little left to copy.

use super::writer::below_the_packet_path;
use super::RecordsError;
use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the log is copied back.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// The checkpoint thread; stopped (and joined) when dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Start checkpointing the store at `path` (opened, in WAL mode, by the
    /// writer already).
    pub(super) fn start(path: &Path) -> Result<Checkpointer, RecordsError> {
        let at = |source| RecordsError::Open {
            path: path.to_path_buf(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(at)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(at)?;
        let (stop, stopped) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("bulkhead-ckpt".into())
            .spawn(move || {
                below_the_packet_path();
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    // A checkpoint that cannot run now (the writer's own is
                    // running, an I/O error) is the next one's to do.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .map_err(|e| RecordsError::Thread(e.to_string()))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
