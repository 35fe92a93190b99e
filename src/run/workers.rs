//! The worker threads: one per queue pair ([`Lane`]), each with its own flow
//! table, on its own core when pinning is on. They publish their counters to
//! the stats board; the main thread only watches.

use dataplane::io::afxdp::QueueIo;
use dataplane::pipeline::Lane;
use dataplane::worker::{IoCounters, StatsBoard, Worker};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a worker thread needs besides its lane.
pub struct Crew {
    pub stop: Arc<AtomicBool>,
    pub board: Arc<StatsBoard>,
    pub start: Instant,
    /// Pin worker `i` to core `i` (modulo the cores there are).
    pub pin: bool,
}

/// How often a worker publishes its counters.
const REPORT_EVERY: Duration = Duration::from_millis(250);
/// How long an idle worker sleeps in `poll` before looking at the stop flag.
const IDLE: Duration = Duration::from_millis(20);

/// Starts one thread per lane.
pub fn spawn(crew: &Crew, lanes: Vec<Lane>) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut handles = Vec::with_capacity(lanes.len());
    for (i, mut lane) in lanes.into_iter().enumerate() {
        let core = (crew.pin && !cores.is_empty()).then(|| cores[i % cores.len()]);
        let (stop, board, start) = (crew.stop.clone(), crew.board.clone(), crew.start);
        let handle = std::thread::Builder::new()
            .name(format!("bulkhead-worker-{i}"))
            .spawn(move || -> anyhow::Result<()> {
                if let Some(core) = core {
                    // Best effort: a refused pin leaves the thread where it is.
                    core_affinity::set_for_current(core);
                }
                let outcome = lane.run(&stop, start, IDLE, REPORT_EVERY, |worker, io| {
                    board.publish(i, report(worker, io))
                });
                // The flows still in the table end here: their records go out.
                lane.worker.flush();
                outcome.map_err(|e| {
                    anyhow::Error::new(e).context(format!("worker {i}: packet I/O"))
                })?;
                Ok(())
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

fn report(worker: &Worker, io: &QueueIo) -> dataplane::worker::StatsReport {
    let mut r = worker.report();
    let q = io.stats();
    r.io = IoCounters {
        free_frames: io.free_frames(),
        handed_out: q.handed_out,
        handed_in: q.handed_in,
        handoff_full: q.handoff_full,
        socket: io.socket_drops(),
    };
    r
}
