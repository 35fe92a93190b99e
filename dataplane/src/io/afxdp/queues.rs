//! Several workers on one port pair: [`AfXdpIo::split`] gives worker `i` the
//! AF_XDP sockets of queue `i` on both ports ([`QueueIo`]), and keeps the XDP
//! programs in an [`AfXdpPorts`] for the shutdown.
//!
//! Each worker owns a flow table, so both directions of a flow must reach the
//! same worker. A NIC with a symmetric RSS key does that itself; veth and NICs
//! that cannot spread frames by their sender's choice. So the worker that
//! receives a frame parses it, asks [`steer::owner`](crate::io::steer::owner),
//! and hands a frame that belongs to another worker to it, with its parse
//! ([`PacketIo::hand_off`]), over a lock-free single-producer ring (`rtrb`),
//! with an eventfd to wake it if it sleeps. The owner forwards it on its own
//! socket without parsing it again. One worker (one `QueueIo` on every queue)
//! is the case n = 1: nothing is handed.
//!
//! Frames: the UMEM is cut into one share per worker. A frame handed away is
//! transmitted or freed by its new holder, and then goes home over a return
//! ring, so no worker runs dry while another piles up frames.

use super::socket::QueueSocket;
use super::{sys, AfXdpError, AfXdpIo, SharedUmem};
use crate::io::SocketDrops;
use crate::io::{Desc, Handed, IoError, Lane, PacketIo, Port};
use rtrb::{Consumer, Producer, RingBuffer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A worker's eventfd and whether it is about to sleep.
struct Waker {
    fd: sys::EventFd,
    sleeping: AtomicBool,
}

/// What workers share: how to wake each other.
struct Crew {
    wakers: Vec<Waker>,
}

/// Counters of one worker's queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames this worker received and handed to their owner.
    pub handed_out: u64,
    /// Frames other workers handed to this one.
    pub handed_in: u64,
    /// Frames dropped because the owner's ring was full.
    pub handoff_full: u64,
    /// `sendto` kicks of a tx ring.
    pub tx_kicks: u64,
    /// Wake-ups of a fill ring the kernel asked for (need-wakeup mode).
    pub fill_kicks: u64,
    /// Frames refused by `tx` for lying outside their chunk.
    pub bad_descriptors: u64,
}

/// Queue `index` of both ports, for one worker. Implements [`PacketIo`].
pub struct QueueIo {
    // Drop order: the sockets before the UMEM they use.
    /// By port: queue `index` (several workers), or every queue (one worker).
    sockets: [Vec<QueueSocket>; 2],
    umem: Arc<SharedUmem>,
    crew: Arc<Crew>,
    index: usize,
    workers: usize,
    free: Vec<u64>,
    fill_target: u32,
    chunk_mask: u64,
    chunk: u64,
    completion_ring: u32,
    /// Chunks per worker: frame `addr` belongs to worker `addr / chunk / share`.
    share: u64,
    busy_poll: bool,
    /// `to[j][port]`: frames for worker j, received on `port`.
    to: Vec<Option<[Producer<Handed>; 2]>>,
    from: Vec<Option<[Consumer<Handed>; 2]>>,
    /// Frames going back to their home worker.
    home_to: Vec<Option<Producer<u64>>>,
    home_from: Vec<Option<Consumer<u64>>>,
    wake: Vec<bool>,
    reaped: Vec<u64>,
    stats: QueueStats,
}

/// The XDP programs of both ports, after [`AfXdpIo::split`]: stop the workers
/// (dropping their [`QueueIo`]s closes the sockets), then shut this down.
pub struct AfXdpPorts {
    io: AfXdpIo,
}

impl AfXdpPorts {
    /// Shut down as configured by `on_shutdown`, with the error reported.
    pub fn shutdown(self) -> Result<(), AfXdpError> {
        self.io.shutdown()
    }

    /// Remove the programs whatever `on_shutdown` says.
    pub fn detach(self) -> Result<(), AfXdpError> {
        self.io.detach()
    }

    /// Leave the programs attached (pinned) whatever `on_shutdown` says: the
    /// fail mode applies from now on, also after this process exits.
    pub fn leave_attached(self) {
        self.io.leave_attached()
    }
}

impl AfXdpIo {
    /// One [`QueueIo`] per bound queue (worker `i` gets queue `i` of both
    /// ports), and the programs. With one queue it is one worker on everything.
    pub fn split(mut self) -> Result<(Vec<QueueIo>, AfXdpPorts), AfXdpError> {
        // One worker takes every queue; several take one queue each (`open`
        // made sure both ports have exactly one per worker).
        let workers = if self.workers > 1 {
            self.ports[0].queues.len().min(self.ports[1].queues.len())
        } else {
            1
        };
        let mut wakers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let fd = sys::EventFd::new()
                .map_err(|e| AfXdpError::Umem(format!("eventfd for a worker: {e}")))?;
            wakers.push(Waker {
                fd,
                sleeping: AtomicBool::new(false),
            });
        }
        let crew = Arc::new(Crew { wakers });
        let frames = self.umem.area.len() as u64 / u64::from(self.chunk);
        let share = frames.div_ceil(workers.max(1) as u64).max(1);
        let chunk = u64::from(self.chunk);
        // Rings between every ordered pair: a whole share fits, so a hand-off
        // is refused only when the owner has fallen a share behind.
        let ring = share as usize;
        let mut to: Vec<Vec<Option<[Producer<Handed>; 2]>>> = (0..workers)
            .map(|_| (0..workers).map(|_| None).collect())
            .collect();
        let mut from: Vec<Vec<Option<[Consumer<Handed>; 2]>>> = (0..workers)
            .map(|_| (0..workers).map(|_| None).collect())
            .collect();
        let mut home_to: Vec<Vec<Option<Producer<u64>>>> = (0..workers)
            .map(|_| (0..workers).map(|_| None).collect())
            .collect();
        let mut home_from: Vec<Vec<Option<Consumer<u64>>>> = (0..workers)
            .map(|_| (0..workers).map(|_| None).collect())
            .collect();
        for i in 0..workers {
            for j in (0..workers).filter(|&j| j != i) {
                let (pa, ca) = RingBuffer::new(ring);
                let (pb, cb) = RingBuffer::new(ring);
                to[i][j] = Some([pa, pb]);
                from[j][i] = Some([ca, cb]);
                let (p, c) = RingBuffer::new(frames as usize);
                home_to[i][j] = Some(p);
                home_from[j][i] = Some(c);
            }
        }
        let mut free: Vec<Vec<u64>> = vec![Vec::new(); workers];
        for addr in self.free.drain(..) {
            let home = ((addr / chunk) / share) as usize;
            free[home.min(workers - 1)].push(addr);
        }
        let deal = |all: Vec<QueueSocket>| -> Vec<Vec<QueueSocket>> {
            let mut per: Vec<Vec<QueueSocket>> = (0..workers).map(|_| Vec::new()).collect();
            for (q, s) in all.into_iter().enumerate() {
                per[q % workers].push(s);
            }
            per
        };
        let sockets_a = deal(std::mem::take(&mut self.ports[0].queues));
        let sockets_b = deal(std::mem::take(&mut self.ports[1].queues));
        let mut queues = Vec::with_capacity(workers);
        let parts = sockets_a
            .into_iter()
            .zip(sockets_b)
            .zip(to)
            .zip(from)
            .zip(home_to)
            .zip(home_from)
            .zip(free);
        for (index, ((((((a, b), to), from), home_to), home_from), free)) in parts.enumerate() {
            // A quarter of the share in each port's fill rings, as in `open`.
            let per_port = a.len().max(b.len()).max(1) as u32;
            let fill_target = (share as u32 / 4 / per_port).max(1);
            queues.push(QueueIo {
                sockets: [a, b],
                umem: self.umem.clone(),
                crew: crew.clone(),
                index,
                workers,
                free,
                fill_target,
                chunk_mask: self.chunk_mask,
                chunk,
                completion_ring: self.completion_ring,
                share,
                busy_poll: self.busy_poll,
                to,
                from,
                home_to,
                home_from,
                wake: vec![false; workers],
                reaped: Vec::with_capacity(self.completion_ring as usize),
                stats: QueueStats::default(),
            });
        }
        Ok((queues, AfXdpPorts { io: self }))
    }
}

impl QueueIo {
    /// Which worker this is (its queue index).
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// What the kernel dropped at this worker's sockets (getsockopt per
    /// socket: call it off the packet path, e.g. when reporting stats).
    pub fn socket_drops(&self) -> SocketDrops {
        let mut d = SocketDrops::default();
        for s in self.sockets.iter().flatten() {
            d.merge(&s.drops());
        }
        d
    }

    /// Frames on this worker's free list.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    fn home(&self, addr: u64) -> usize {
        (((addr / self.chunk) / self.share) as usize).min(self.workers - 1)
    }

    /// A frame this worker is done with: to its free list, or home.
    fn release(&mut self, addr: u64) {
        let home = self.home(addr);
        if home != self.index {
            if let Some(Some(p)) = self.home_to.get_mut(home) {
                if p.push(addr).is_ok() {
                    return;
                }
            }
        }
        self.free.push(addr);
    }

    /// Frames come home; `port`'s completions are reaped and its fill ring
    /// topped up.
    fn service(&mut self, port: Port) {
        for c in self.home_from.iter_mut().flatten() {
            while let Ok(addr) = c.pop() {
                self.free.push(addr);
            }
        }
        let i = port.index();
        let mut reaped = std::mem::take(&mut self.reaped);
        for s in &mut self.sockets[i] {
            s.reap(self.chunk_mask, &mut reaped, self.completion_ring);
        }
        for addr in reaped.drain(..) {
            self.release(addr);
        }
        self.reaped = reaped;
        let target = self.fill_target;
        for s in &mut self.sockets[i] {
            let room = target.saturating_sub(s.in_fill);
            if room > 0 && !self.free.is_empty() {
                s.fill(&mut self.free, room);
            }
        }
    }

    /// Wake the workers that were handed frames and may be asleep.
    fn wake_targets(&mut self) {
        for (j, w) in self.wake.iter_mut().enumerate() {
            if std::mem::take(w) {
                if let Some(waker) = self.crew.wakers.get(j) {
                    if waker.sleeping.load(Ordering::SeqCst) {
                        waker.fd.signal();
                    }
                }
            }
        }
    }

    fn inbox_empty(&self) -> bool {
        self.from
            .iter()
            .flatten()
            .all(|[a, b]| a.is_empty() && b.is_empty())
    }

    /// Wait up to `timeout` for frames on this worker's sockets or from another
    /// worker; kicks pending transmissions first. With busy polling it polls the
    /// device queues once and returns.
    pub fn poll_wait(&mut self, timeout: Duration) -> Result<bool, IoError> {
        self.wake_targets();
        let mut timeout = timeout;
        for s in self.sockets.iter_mut().flatten() {
            self.stats.tx_kicks += u64::from(s.kick_tx());
            if s.tx.pending() > 0 {
                timeout = timeout.min(Duration::from_millis(1));
            }
        }
        if self.busy_poll {
            for s in self.sockets.iter().flatten() {
                sys::busy_poll_rx(s.fd());
            }
            return Ok(true);
        }
        let Some(me) = self.crew.wakers.get(self.index) else {
            return Ok(false);
        };
        // Announce the sleep, then look at the inbox: a worker handing frames
        // over either sees the flag or left them where this check finds them.
        me.sleeping.store(true, Ordering::SeqCst);
        if !self.inbox_empty() {
            me.sleeping.store(false, Ordering::SeqCst);
            return Ok(true);
        }
        let mut fds: Vec<_> = self.sockets.iter().flatten().map(|s| s.fd()).collect();
        let on_a = self.sockets[0].len();
        fds.push(me.fd.fd());
        let r = sys::poll_readable(&fds, timeout);
        me.sleeping.store(false, Ordering::SeqCst);
        me.fd.clear();
        r.map_err(|(i, source)| IoError::Os {
            port: if i < on_a { Port::A } else { Port::B },
            source,
        })
    }
}

impl PacketIo for QueueIo {
    fn rx(&mut self, port: Port, out: &mut [Desc]) -> Result<usize, IoError> {
        // Wake whoever the last batch handed frames to.
        self.wake_targets();
        if out.is_empty() {
            return Ok(0);
        }
        self.service(port);
        let mut n = 0;
        for s in &mut self.sockets[port.index()] {
            let room = (out.len() - n) as u32;
            if room == 0 {
                break;
            }
            let start = n;
            let mut r = s.rx.receive(room);
            while let Some(d) = r.read() {
                out[n] = Desc {
                    addr: d.addr,
                    len: d.len,
                };
                n += 1;
            }
            r.release();
            drop(r);
            let got = (n - start) as u32;
            s.in_fill = s.in_fill.saturating_sub(got);
            if got == 0 && s.device.needs_wakeup() {
                s.device.wake();
                self.stats.fill_kicks += 1;
            }
        }
        Ok(n)
    }

    fn lane(&self) -> Lane {
        Lane {
            index: self.index,
            count: self.workers,
        }
    }

    fn hand_off(&mut self, port: Port, frame: Handed, owner: usize) -> bool {
        let pushed = match self.to.get_mut(owner) {
            Some(Some(rings)) => rings[port.index()].push(frame).is_ok(),
            _ => false,
        };
        if pushed {
            self.stats.handed_out += 1;
            if let Some(w) = self.wake.get_mut(owner) {
                *w = true;
            }
        } else {
            self.stats.handoff_full += 1;
        }
        pushed
    }

    fn take_handed(&mut self, port: Port, out: &mut Vec<Handed>, max: usize) {
        let p = port.index();
        let before = out.len();
        for inbox in self.from.iter_mut().flatten() {
            while out.len() - before < max {
                match inbox[p].pop() {
                    Ok(h) => out.push(h),
                    Err(_) => break,
                }
            }
        }
        self.stats.handed_in += (out.len() - before) as u64;
    }

    #[inline]
    fn frame(&self, desc: Desc) -> &[u8] {
        self.umem.area.bytes(desc.addr, desc.len).unwrap_or(&[])
    }

    fn tx(&mut self, port: Port, descs: &[Desc]) -> Result<usize, IoError> {
        let area = self.umem.area.len() as u64;
        if let Some(bad) = descs.iter().find(|d| {
            let base = d.addr & self.chunk_mask;
            let end = d.addr + u64::from(d.len);
            end > base + self.chunk || end > area
        }) {
            self.stats.bad_descriptors += 1;
            return Err(IoError::BadDescriptor {
                addr: bad.addr,
                len: bad.len,
            });
        }
        self.service(port);
        let Some(s) = self.sockets[port.index()].first_mut() else {
            return Ok(0);
        };
        let n = s.transmit(descs);
        self.stats.tx_kicks += u64::from(s.kick_tx());
        Ok(n as usize)
    }

    fn free(&mut self, descs: &[Desc]) {
        for d in descs {
            self.release(d.addr & self.chunk_mask);
        }
    }
}

/// A worker's queues move to the worker's thread.
const _: () = {
    const fn is_send<T: Send>() {}
    is_send::<QueueIo>();
};
