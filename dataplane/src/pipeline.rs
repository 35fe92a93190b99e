//! The packet path assembled once, for `bulkhead run`, the AF_XDP test beds
//! and the benchmarks alike: the opened ports split into one [`QueueIo`] per
//! worker ([`AfXdpIo::split`]; one worker takes every queue), each worker on
//! its own flow table, the kernel tier's [`Offloader`] on each when offload is
//! on, and the publish fence that moves the kernel generation with every
//! policy publication, so that no offloaded flow is forwarded on an old policy
//! once a commit or a quarantine has returned.
//!
//! Workers are built first ([`workers`]): their flow tables are allocated and
//! faulted in before the ports are bound, so the first frames do not wait for
//! them. Each [`Lane`] then runs on a thread of the caller's choosing
//! ([`Lane::run`]).

use crate::event::EventSink;
use crate::io::afxdp::{
    AfXdpError, AfXdpIo, AfXdpPorts, BindMode, QueueIo, XdpGenerationFence, XdpMode,
};
use crate::io::IoError;
use crate::offload::{self, OffloadError, Offloader};
use crate::policy::SnapshotCell;
use crate::worker::{Worker, WorkerConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the packet path could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("splitting the queues among the workers: {0}")]
    Split(#[from] AfXdpError),
    #[error("{workers} workers were built for {lanes} queue sets")]
    WorkerCount { workers: usize, lanes: usize },
    #[error("fencing publications with the kernel tier's generation: {0}")]
    Fence(#[from] OffloadError),
}

/// `count` workers on `cell`, each with its share of `cfg.flow_capacity` (the
/// total) and a sibling of `sink`.
pub fn workers(
    count: usize,
    cfg: &WorkerConfig,
    cell: &Arc<SnapshotCell>,
    sink: EventSink,
) -> Vec<Worker> {
    let count = count.max(1);
    let per_worker = WorkerConfig {
        flow_capacity: (cfg.flow_capacity / count).max(1),
        ..cfg.clone()
    };
    let mut sinks = Vec::with_capacity(count);
    while sinks.len() + 1 < count {
        sinks.push(sink.sibling());
    }
    sinks.push(sink);
    sinks
        .into_iter()
        .map(|s| Worker::new(per_worker.clone(), cell.clone(), s))
        .collect()
}

/// One worker on its queues.
pub struct Lane {
    pub io: QueueIo,
    pub worker: Worker,
}

/// The assembled packet path: the lanes, and the ports' programs for the
/// shutdown (after the lanes are dropped).
pub struct Pipeline {
    pub lanes: Vec<Lane>,
    pub ports: AfXdpPorts,
    /// With offload: the kernel tier's generation, which every publication on
    /// the cell moves before it returns.
    pub fence: Option<Arc<XdpGenerationFence>>,
    pub modes: (XdpMode, BindMode),
}

impl Pipeline {
    /// Splits `io` among `workers` (one per queue set; see
    /// [`crate::io::afxdp::AfXdpConfig::queues`]) and, with `offload`, gives each
    /// an offloader on the kernel tier and fences `cell`'s publications with the
    /// kernel generation. A failed generation write during a publication is
    /// handed to `on_fence_error` (the publisher cannot be refused its swap).
    pub fn assemble(
        mut io: AfXdpIo,
        workers: Vec<Worker>,
        cell: &SnapshotCell,
        offload: bool,
        on_fence_error: impl Fn(u64, OffloadError) + Send + Sync + 'static,
    ) -> Result<Pipeline, PipelineError> {
        let modes = io.mode();
        let maps = io.take_offload_all().filter(|_| offload);
        let fence = match maps.as_ref().and_then(|m| m.first()) {
            Some(first) => {
                let fence = first.generation_fence()?;
                offload::fence_publications(cell, fence.clone(), on_fence_error)?;
                Some(fence)
            }
            None => None,
        };
        let (queues, ports) = io.split()?;
        if queues.len() != workers.len() {
            return Err(PipelineError::WorkerCount {
                workers: workers.len(),
                lanes: queues.len(),
            });
        }
        let mut maps = maps.map(Vec::into_iter);
        let lanes = queues
            .into_iter()
            .zip(workers)
            .map(|(io, mut worker)| {
                if let Some(map) = maps.as_mut().and_then(Iterator::next) {
                    worker.set_offload(Offloader::new(Box::new(map)).with_publish_fence());
                }
                Lane { io, worker }
            })
            .collect();
        Ok(Pipeline {
            lanes,
            ports,
            fence,
            modes,
        })
    }
}

impl Lane {
    /// Polls until `stop`, sleeping in the socket poll for up to `idle` when
    /// nothing came, and calls `report` about every `every` and once at the
    /// end. `now` for the worker is the time since `start`. Returns the frames
    /// handled.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        start: Instant,
        idle: Duration,
        every: Duration,
        mut report: impl FnMut(&Worker, &QueueIo),
    ) -> Result<u64, IoError> {
        let mut handled = 0u64;
        let mut next_report = Duration::ZERO;
        let result = loop {
            if stop.load(Ordering::Relaxed) {
                break Ok(handled);
            }
            let now = start.elapsed().as_nanos() as u64 + 1;
            let n = match self.worker.poll(&mut self.io, now) {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            handled += n as u64;
            if n == 0 {
                if let Err(e) = self.io.poll_wait(idle) {
                    break Err(e);
                }
            }
            let elapsed = start.elapsed();
            if elapsed >= next_report {
                next_report = elapsed + every;
                report(&self.worker, &self.io);
            }
        };
        report(&self.worker, &self.io);
        result
    }
}
