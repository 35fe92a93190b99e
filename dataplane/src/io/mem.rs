//! In-memory packet I/O: two ports as queues over one frame area.
//!
//! Used by `bulkhead replay`, by the tests and by the benchmarks. Frames are
//! copied in once ([`MemIo::inject`]); from then on they move as descriptors,
//! exactly as with AF_XDP. [`MemIo::loop_back`] puts what was sent on a port
//! back on a receive queue, so a benchmark can circulate a fixed set of frames
//! with no copy at all.

use super::{Desc, IoError, PacketIo, Port};
use std::collections::VecDeque;

/// Two in-memory ports sharing one frame area of `frames` chunks of `chunk` bytes.
#[derive(Debug)]
pub struct MemIo {
    area: Vec<u8>,
    chunk: usize,
    free: Vec<u64>,
    rx: [VecDeque<Desc>; 2],
    tx: [VecDeque<Desc>; 2],
    /// How many frames a `tx` call accepts per port before the ring is "full"
    /// (`usize::MAX`: unbounded).
    tx_capacity: usize,
}

impl MemIo {
    /// A frame area of `frames` buffers of `chunk` bytes each.
    pub fn new(frames: usize, chunk: usize) -> Self {
        let free = (0..frames as u64).rev().map(|i| i * chunk as u64).collect();
        MemIo {
            area: vec![0; frames * chunk],
            chunk,
            free,
            rx: [VecDeque::new(), VecDeque::new()],
            tx: [VecDeque::new(), VecDeque::new()],
            tx_capacity: usize::MAX,
        }
    }

    /// Bound the transmit queues (to test what a worker does with a full ring).
    pub fn with_tx_capacity(mut self, capacity: usize) -> Self {
        self.tx_capacity = capacity;
        self
    }

    /// Copy a frame into a free buffer and queue it for receipt on `port`.
    pub fn inject(&mut self, port: Port, bytes: &[u8]) -> Result<(), IoError> {
        if bytes.len() > self.chunk {
            return Err(IoError::FrameTooLong {
                len: bytes.len(),
                chunk: self.chunk,
            });
        }
        let addr = self.free.pop().ok_or(IoError::NoFreeFrame)?;
        let start = addr as usize;
        self.area[start..start + bytes.len()].copy_from_slice(bytes);
        self.rx[port.index()].push_back(Desc {
            addr,
            len: bytes.len() as u32,
        });
        Ok(())
    }

    /// Frames received on `port` and not yet taken by the worker.
    pub fn rx_pending(&self, port: Port) -> usize {
        self.rx[port.index()].len()
    }

    /// Frames transmitted on `port` and not yet taken.
    pub fn tx_pending(&self, port: Port) -> usize {
        self.tx[port.index()].len()
    }

    /// Take the frames transmitted on `port`: call `f` on each, then free its buffer.
    pub fn drain_tx(&mut self, port: Port, mut f: impl FnMut(&[u8])) {
        while let Some(d) = self.tx[port.index()].pop_front() {
            f(self.frame(d));
            self.free.push(d.addr);
        }
    }

    /// The frames transmitted on `port`, copied out (for tests).
    pub fn take_tx(&mut self, port: Port) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.drain_tx(port, |b| out.push(b.to_vec()));
        out
    }

    /// Move everything transmitted on `tx_port` to the receive queue of `rx_port`.
    pub fn loop_back(&mut self, tx_port: Port, rx_port: Port) {
        let (tx, rx) = (&mut self.tx[tx_port.index()], &mut self.rx[rx_port.index()]);
        rx.extend(tx.drain(..));
    }

    /// Buffers neither queued nor held by the worker.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }
}

impl PacketIo for MemIo {
    fn rx(&mut self, port: Port, out: &mut [Desc]) -> Result<usize, IoError> {
        let q = &mut self.rx[port.index()];
        let n = out.len().min(q.len());
        for (slot, d) in out.iter_mut().zip(q.drain(..n)) {
            *slot = d;
        }
        Ok(n)
    }

    #[inline]
    fn frame(&self, desc: Desc) -> &[u8] {
        let start = desc.addr as usize;
        let end = start.saturating_add(desc.len as usize);
        self.area.get(start..end).unwrap_or(&[])
    }

    fn tx(&mut self, port: Port, descs: &[Desc]) -> Result<usize, IoError> {
        let q = &mut self.tx[port.index()];
        let room = self.tx_capacity.saturating_sub(q.len());
        let n = descs.len().min(room);
        q.extend(&descs[..n]);
        Ok(n)
    }

    fn free(&mut self, descs: &[Desc]) {
        self.free.extend(descs.iter().map(|d| d.addr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_frame_is_received_and_forwarded_without_copy() {
        let mut io = MemIo::new(4, 2048);
        io.inject(Port::A, b"hello").unwrap();
        let mut descs = [Desc::default(); 8];
        assert_eq!(io.rx(Port::A, &mut descs).unwrap(), 1);
        assert_eq!(io.frame(descs[0]), b"hello");
        assert_eq!(io.tx(Port::B, &descs[..1]).unwrap(), 1);
        assert_eq!(io.take_tx(Port::B), vec![b"hello".to_vec()]);
        assert_eq!(io.free_frames(), 4);
    }

    #[test]
    fn oversized_frame_and_exhausted_pool_are_errors() {
        let mut io = MemIo::new(1, 64);
        assert!(matches!(
            io.inject(Port::A, &[0; 65]),
            Err(IoError::FrameTooLong { len: 65, chunk: 64 })
        ));
        io.inject(Port::A, &[0; 64]).unwrap();
        assert!(matches!(
            io.inject(Port::A, &[0; 1]),
            Err(IoError::NoFreeFrame)
        ));
    }

    #[test]
    fn full_tx_ring_leaves_the_rest_to_the_caller() {
        let mut io = MemIo::new(4, 64).with_tx_capacity(1);
        io.inject(Port::A, b"a").unwrap();
        io.inject(Port::A, b"b").unwrap();
        let mut descs = [Desc::default(); 4];
        let n = io.rx(Port::A, &mut descs).unwrap();
        assert_eq!(io.tx(Port::B, &descs[..n]).unwrap(), 1);
        io.free(&descs[1..n]);
        assert_eq!(io.take_tx(Port::B), vec![b"a".to_vec()]);
        assert_eq!(io.free_frames(), 4);
    }

    #[test]
    fn loop_back_recirculates_sent_frames() {
        let mut io = MemIo::new(2, 64);
        io.inject(Port::A, b"x").unwrap();
        let mut descs = [Desc::default(); 2];
        let n = io.rx(Port::A, &mut descs).unwrap();
        io.tx(Port::B, &descs[..n]).unwrap();
        io.loop_back(Port::B, Port::A);
        assert_eq!(io.rx_pending(Port::A), 1);
        assert_eq!(io.tx_pending(Port::B), 0);
    }
}
