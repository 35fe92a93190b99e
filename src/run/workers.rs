//! The worker threads: one per queue pair, each with its own flow table, on its
//! own core when pinning is on. They publish their counters to the stats board;
//! the main thread only watches.

use dataplane::io::afxdp::{QueueIo, XdpOffloadMap};
use dataplane::offload::Offloader;
use dataplane::worker::{IoCounters, StatsBoard, Worker};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a worker thread needs besides its queues.
pub struct Crew {
    pub stop: Arc<AtomicBool>,
    pub board: Arc<StatsBoard>,
    pub start: Instant,
    /// Pin worker `i` to core `i` (modulo the cores there are).
    pub pin: bool,
}

/// How often a worker publishes its counters.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// Starts one thread per queue, each running `workers[i]` on `queues[i]`.
pub fn spawn(
    crew: &Crew,
    queues: Vec<QueueIo>,
    workers: Vec<Worker>,
    mut offload: Option<Vec<XdpOffloadMap>>,
) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut handles = Vec::with_capacity(queues.len());
    for (i, (mut io, mut worker)) in queues.into_iter().zip(workers).enumerate() {
        if let Some(map) = offload
            .as_mut()
            .and_then(|m| (!m.is_empty()).then(|| m.remove(0)))
        {
            // `run` set the publish fence: the publisher writes the generation.
            worker.set_offload(Offloader::new(Box::new(map)).with_publish_fence());
        }
        let core = (crew.pin && !cores.is_empty()).then(|| cores[i % cores.len()]);
        let (stop, board, start) = (crew.stop.clone(), crew.board.clone(), crew.start);
        let handle = std::thread::Builder::new()
            .name(format!("bulkhead-worker-{i}"))
            .spawn(move || -> anyhow::Result<()> {
                if let Some(core) = core {
                    // Best effort: a refused pin leaves the thread where it is.
                    core_affinity::set_for_current(core);
                }
                run_worker(i, &mut io, &mut worker, &stop, &board, start)
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

/// The worker loop: poll, sleep in `poll` when idle, publish counters.
fn run_worker(
    i: usize,
    io: &mut QueueIo,
    worker: &mut Worker,
    stop: &AtomicBool,
    board: &StatsBoard,
    start: Instant,
) -> anyhow::Result<()> {
    let mut next_report = Duration::ZERO;
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let now = start.elapsed().as_nanos() as u64;
        let n = match worker.poll(io, now) {
            Ok(n) => n,
            Err(e) => break Err(anyhow::Error::new(e).context(format!("worker {i}: packet I/O"))),
        };
        if n == 0 {
            if let Err(e) = io.poll_wait(Duration::from_millis(20)) {
                break Err(anyhow::Error::new(e).context(format!("worker {i}: waiting")));
            }
        }
        let elapsed = start.elapsed();
        if elapsed >= next_report {
            next_report = elapsed + REPORT_EVERY;
            board.publish(i, report(worker, io));
        }
    };
    board.publish(i, report(worker, io));
    result
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
