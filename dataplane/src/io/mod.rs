//! Packet I/O between the worker and the two data ports.
//!
//! Frames live in one buffer area (the UMEM of AF_XDP; a `Vec` for the [`mem`]
//! backend) and move as [`Desc`]riptors: receiving hands the worker a descriptor,
//! transmitting on the peer port hands it back without a copy, and a dropped
//! frame is given back with [`PacketIo::free`] so its buffer is reused.

#[cfg(target_os = "linux")]
pub mod afxdp;
pub mod mem;
pub mod steer;

/// One of the two data ports of the bump in the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    /// Segment A.
    A,
    /// Segment B.
    B,
}

impl Port {
    pub const BOTH: [Port; 2] = [Port::A, Port::B];

    /// The port a frame received here is forwarded to.
    #[inline]
    pub fn peer(self) -> Port {
        match self {
            Port::A => Port::B,
            Port::B => Port::A,
        }
    }

    #[inline]
    pub fn index(self) -> usize {
        match self {
            Port::A => 0,
            Port::B => 1,
        }
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Port::A => "A",
            Port::B => "B",
        })
    }
}

/// Which of the workers sharing a port pair a backend serves: `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    pub index: usize,
    pub count: usize,
}

impl Lane {
    /// The only worker on the port pair.
    pub const ONLY: Lane = Lane { index: 0, count: 1 };
}

/// A frame one worker received and parsed, handed to the worker that owns its
/// flow ([`steer::owner`]) with its parse, so the owner does not parse it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handed {
    pub desc: Desc,
    pub info: crate::wire::PacketInfo,
}

/// A frame in the backend's buffer area: where it starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
}

/// Errors of a packet I/O backend.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("frame of {len} bytes does not fit a {chunk}-byte buffer")]
    FrameTooLong { len: usize, chunk: usize },
    #[error("no free frame buffer")]
    NoFreeFrame,
    #[error("descriptor {addr:#x}+{len} lies outside the frame area")]
    BadDescriptor { addr: u64, len: u32 },
    #[error("I/O on port {port}: {source}")]
    Os {
        port: Port,
        #[source]
        source: std::io::Error,
    },
}

/// Batch receive and transmit on two ports, with buffer recycling.
///
/// Ownership of a frame's buffer: after `rx` the caller owns the descriptor and
/// must either `tx` it (on any port) or `free` it, exactly once.
pub trait PacketIo {
    /// Receive up to `out.len()` frames from `port`; returns how many were written.
    fn rx(&mut self, port: Port, out: &mut [Desc]) -> Result<usize, IoError>;

    /// The bytes of a received frame.
    fn frame(&self, desc: Desc) -> &[u8];

    /// Queue frames for transmission on `port`. The backend takes the first `n`
    /// (returned); the caller still owns the rest (a full ring) and must free them.
    fn tx(&mut self, port: Port, descs: &[Desc]) -> Result<usize, IoError>;

    /// Give frames back to the backend for reuse (dropped frames).
    fn free(&mut self, descs: &[Desc]);

    /// Which worker of the port pair this backend serves; each has its own
    /// flow table, so a frame whose flow another owns goes to that one
    /// ([`PacketIo::hand_off`]). One worker unless the backend says otherwise.
    fn lane(&self) -> Lane {
        Lane::ONLY
    }

    /// Hands a frame received on `port` to worker `owner`, which forwards (or
    /// drops) it. `false` when it cannot take it now (its ring is full, or
    /// there is no such worker): the caller still owns the frame.
    fn hand_off(&mut self, port: Port, frame: Handed, owner: usize) -> bool {
        let _ = (port, frame, owner);
        false
    }

    /// Appends to `out` up to `max` frames other workers handed to this one
    /// that arrived on `port`; the caller owns them as if received.
    fn take_handed(&mut self, port: Port, out: &mut Vec<Handed>, max: usize) {
        let _ = (port, out, max);
    }
}

/// Frames the kernel dropped at AF_XDP sockets (`XDP_STATISTICS`), before the
/// worker saw them: the drops no worker counter can show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketDrops {
    /// The rx ring was full: the worker did not keep up (or did not run).
    pub rx_ring_full: u64,
    /// No free frame on the fill ring to receive into.
    pub fill_ring_empty: u64,
    /// Every frame the kernel could not deliver to the socket (includes the
    /// two above).
    pub rx_dropped: u64,
    /// Descriptors the kernel refused: frames on rx, and on tx.
    pub rx_invalid: u64,
    pub tx_invalid: u64,
}

impl SocketDrops {
    pub fn merge(&mut self, o: &SocketDrops) {
        self.rx_ring_full += o.rx_ring_full;
        self.fill_ring_empty += o.fill_ring_empty;
        self.rx_dropped += o.rx_dropped;
        self.rx_invalid += o.rx_invalid;
        self.tx_invalid += o.tx_invalid;
    }

    /// By name, for logs and metrics: (`rx-ring-full`, n) ...
    pub fn by_name(&self) -> [(&'static str, u64); 5] {
        [
            ("rx-ring-full", self.rx_ring_full),
            ("fill-ring-empty", self.fill_ring_empty),
            ("rx-dropped", self.rx_dropped),
            ("rx-invalid", self.rx_invalid),
            ("tx-invalid", self.tx_invalid),
        ]
    }
}
