//! The UMEM area and the AF_XDP sockets over it (with `xdpilone`).
//!
//! One UMEM serves every socket of both ports. The first socket is the UMEM's
//! own file descriptor; every other (another port, or later another queue) is a
//! new socket bound with `XDP_SHARED_UMEM` and its own fill and completion rings,
//! so a frame received on one port can be transmitted on the other in place.

use super::{sys, AfXdpError};
use crate::io::Desc;
use crate::io::SocketDrops;
use std::num::NonZeroU32;
use std::os::unix::io::RawFd;
use std::ptr::NonNull;
use std::time::Duration;
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, Errno, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, User};

fn os_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// How the sockets move frames between the device and the UMEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// The device DMAs straight into the UMEM.
    ZeroCopy,
    /// The kernel copies each frame (any device; veth only has this).
    Copy,
}

impl std::fmt::Display for BindMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Copy => "copy",
        })
    }
}

/// Which bind modes to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindPreference {
    /// Zero-copy, then copy.
    #[default]
    Auto,
    ZeroCopy,
    Copy,
}

impl BindPreference {
    pub(crate) fn candidates(self) -> &'static [BindMode] {
        match self {
            BindPreference::Auto => &[BindMode::ZeroCopy, BindMode::Copy],
            BindPreference::ZeroCopy => &[BindMode::ZeroCopy],
            BindPreference::Copy => &[BindMode::Copy],
        }
    }
}

/// Anonymous, page-aligned memory registered as the UMEM.
pub(crate) struct UmemArea {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the area is plain memory owned by this value; nothing in it is tied to
// the thread that mapped it.
#[allow(unsafe_code)]
unsafe impl Send for UmemArea {}
// SAFETY: shared only to read frames (`bytes`), each owned by exactly one worker
// at a time by the descriptor protocol (the kernel writes a chunk only while it
// sits on a fill ring; a worker reads only chunks it took off an rx ring or was
// handed). Nothing writes through `&UmemArea`.
#[allow(unsafe_code)]
unsafe impl Sync for UmemArea {}

impl UmemArea {
    #[allow(unsafe_code)]
    pub(crate) fn new(len: usize) -> std::io::Result<Self> {
        // SAFETY: an anonymous private mapping at an address the kernel picks
        // aliases nothing; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(std::io::Error::last_os_error)?;
        Ok(UmemArea { ptr, len })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn as_slice_ptr(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    /// The bytes at `addr..addr + len`, or `None` outside the area.
    #[inline]
    #[allow(unsafe_code)]
    pub(crate) fn bytes(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(len as usize)?;
        if end > self.len {
            return None;
        }
        // SAFETY: `start..end` lies inside the mapping, which lives as long as
        // `self`. The kernel writes a chunk only while it owns it (queued on a
        // fill ring); a descriptor the caller got from `rx` is owned by the
        // caller until it is transmitted or freed, so nothing writes these bytes
        // while the returned borrow (tied to `&self`) is alive.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), end - start) })
    }
}

impl Drop for UmemArea {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `new`; it is
        // unmapped once. The kernel holds its own pin on the pages of a
        // registered UMEM, and the Umem (and every socket) is dropped before this.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// The UMEM registration, kept for adding sockets (more queues) later.
#[allow(dead_code)] // held, not read yet: new queues bind through it
pub(crate) struct UmemHandle(pub Umem);

// SAFETY: `Umem` is not `Send` only because it holds a `NonNull` to the UMEM
// area, which is plain memory owned by the `UmemArea` beside it (itself `Send`);
// its other fields are `Arc`s of `Send + Sync` data. `AfXdpIo` owns the handle
// exclusively and never shares it between threads, it only moves.
#[allow(unsafe_code)]
unsafe impl Send for UmemHandle {}
// SAFETY: once the sockets are bound nothing calls into the `Umem`; it is only
// kept alive (sockets are created through it on one thread, before sharing).
#[allow(unsafe_code)]
unsafe impl Sync for UmemHandle {}

/// Ring and UMEM sizes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingSizes {
    pub fill: u32,
    pub completion: u32,
    pub rx: u32,
    pub tx: u32,
}

/// Register `area` as a UMEM of `chunk`-byte frames.
#[allow(unsafe_code)]
pub(crate) fn register_umem(
    ifname: &str,
    area: &UmemArea,
    chunk: u32,
    rings: RingSizes,
) -> Result<Umem, AfXdpError> {
    let config = xdpilone::UmemConfig {
        fill_size: rings.fill,
        complete_size: rings.completion,
        frame_size: chunk,
        headroom: 0,
        flags: 0,
    };
    // SAFETY: the area is page-aligned (mmap) and outlives the Umem: `AfXdpIo`
    // declares its `UmemArea` after the `Umem` and every socket, so it is dropped
    // last. Nothing else writes it except through descriptors we own.
    unsafe { Umem::new(config, area.as_slice_ptr()) }
        .map_err(|e| AfXdpError::socket(ifname, 0, "register the UMEM", e.get_raw()))
}

/// The AF_XDP socket of one rx/tx queue of a port, with its fill and completion
/// rings.
pub(crate) struct QueueSocket {
    pub queue_id: u32,
    pub device: DeviceQueue,
    pub rx: RingRx,
    pub tx: RingTx,
    /// Frames given to the fill ring and not yet seen on the rx ring.
    pub in_fill: u32,
    fd: RawFd,
    _user: User,
}

impl QueueSocket {
    /// Create, map and bind the socket of `ifname` queue `queue_id`. The first
    /// socket on a UMEM (`first`) carries the bind mode; the others share it
    /// (the kernel takes the mode of the UMEM's socket; bind flags must be 0).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        umem: &Umem,
        ifname: &str,
        ifindex: u32,
        queue_id: u32,
        first: bool,
        mode: BindMode,
        rings: RingSizes,
        bind_retries: u32,
    ) -> Result<QueueSocket, AfXdpError> {
        let err = |op: &'static str| {
            move |e: Errno| AfXdpError::socket(ifname, queue_id, op, e.get_raw())
        };
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex)
            .map_err(err("look up the interface"))?;
        info.set_queue(queue_id);
        let sock = if first {
            Socket::with_shared(&info, umem)
        } else {
            Socket::new(&info)
        }
        .map_err(err("create the socket"))?;
        sys::set_cloexec(sock.as_raw_fd())
            .map_err(|e| AfXdpError::socket(ifname, queue_id, "set FD_CLOEXEC", os_errno(&e)))?;
        let device = umem
            .fq_cq(&sock)
            .map_err(err("set up fill/completion rings"))?;
        let bind_flags = if first {
            SocketConfig::XDP_BIND_NEED_WAKEUP
                | match mode {
                    BindMode::ZeroCopy => SocketConfig::XDP_BIND_ZEROCOPY,
                    BindMode::Copy => SocketConfig::XDP_BIND_COPY,
                }
        } else {
            0
        };
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(rings.rx),
                    tx_size: NonZeroU32::new(rings.tx),
                    bind_flags,
                },
            )
            .map_err(err("set up rx/tx rings"))?;
        let rx = user.map_rx().map_err(err("map the rx ring"))?;
        let tx = user.map_tx().map_err(err("map the tx ring"))?;

        // Right after the previous socket on this queue closed, the kernel may
        // still hold the queue for a moment: EBUSY, retried with a bound.
        let mut tries = 0;
        loop {
            match umem.bind(&user) {
                Ok(()) => break,
                Err(e) if e.get_raw() == libc::EBUSY && tries < bind_retries => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) if e.get_raw() == libc::EBUSY => {
                    return Err(AfXdpError::Busy {
                        ifname: ifname.to_string(),
                        queue: queue_id,
                        tries: tries + 1,
                    })
                }
                Err(e) => return Err(AfXdpError::socket(ifname, queue_id, "bind", e.get_raw())),
            }
        }
        Ok(QueueSocket {
            queue_id,
            fd: user.as_raw_fd(),
            device,
            rx,
            tx,
            in_fill: 0,
            _user: user,
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// The kernel's drop counters of this socket (a getsockopt: off the
    /// packet path). Zero when the kernel does not answer.
    pub(crate) fn drops(&self) -> SocketDrops {
        match self.device.statistics_v2() {
            Ok(s) => SocketDrops {
                rx_ring_full: s.rx_ring_full,
                fill_ring_empty: s.rx_fill_ring_empty_descs,
                rx_dropped: s.rx_dropped,
                rx_invalid: s.rx_invalid_descs,
                tx_invalid: s.tx_invalid_descs,
            },
            Err(_) => SocketDrops::default(),
        }
    }

    /// Put frames (chunk addresses) on the fill ring; returns how many were taken.
    pub(crate) fn fill(&mut self, frames: &mut Vec<u64>, max: u32) -> u32 {
        let want = max.min(frames.len() as u32);
        let mut filled = 0;
        // As on the tx ring (see `transmit`), a reservation may see only the
        // room left in a stale view of the ring; a second one reads the
        // kernel's consumer.
        while filled < want {
            let mut w = self.device.fill(want - filled);
            // `insert` zips our iterator before the ring's free slots, so it
            // pulls one item more than it stores when the ring has less room
            // than frames (xdpilone 1.3 marks this FIXME). Offer exactly the
            // room, or every such call loses a frame: the UMEM drained under
            // load and forwarding stalled.
            let room = w.capacity().min(frames.len() as u32);
            let mut offered = 0;
            let n = w.insert(std::iter::from_fn(|| {
                if offered == room {
                    return None;
                }
                offered += 1;
                frames.pop()
            }));
            w.commit();
            drop(w);
            if n == 0 {
                break;
            }
            filled += n;
        }
        self.in_fill += filled;
        filled
    }

    /// Take completed transmissions off the completion ring, as chunk addresses.
    pub(crate) fn reap(&mut self, chunk_mask: u64, frames: &mut Vec<u64>, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mut r = self.device.complete(max);
        let mut n = 0;
        while let Some(addr) = r.read() {
            frames.push(addr & chunk_mask);
            n += 1;
        }
        r.release();
        n
    }

    /// Queue descriptors on the tx ring; returns how many were taken.
    pub(crate) fn transmit(&mut self, descs: &[Desc]) -> u32 {
        // xdpilone reserves from its cached view of the kernel's consumer and
        // refreshes that view only when it shows no room at all, so a batch
        // larger than the cached room was cut short although the ring had
        // space: the `tx-full` drops in bursts of 32-50 frames at a few kpps.
        // Reserving again once the cached room is used up reads the kernel's
        // consumer. (`insert` may pull one item more than it stores; the count
        // it returns is what was stored, and the rest is taken from `descs`.)
        let mut sent = 0;
        while sent < descs.len() {
            let rest = &descs[sent..];
            let mut w = self.tx.transmit(rest.len() as u32);
            let n = w.insert(rest.iter().map(|d| XdpDesc {
                addr: d.addr,
                len: d.len,
                options: 0,
            }));
            w.commit();
            if n == 0 {
                break;
            }
            sent += n as usize;
        }
        sent as u32
    }

    /// Make the kernel process the tx ring. In copy mode each kick sends a bounded
    /// batch (32 frames), so kick until the ring is drained or the kernel makes no
    /// progress (device queue full; the next call kicks again). Frames waiting on
    /// the ring are always kicked, whatever the need-wakeup flag says, so a ring
    /// left waiting after a full device queue cannot hold its frames for long.
    pub(crate) fn kick_tx(&mut self) -> u32 {
        let mut kicks = 0;
        loop {
            let before = self.tx.pending();
            if before == 0 {
                break;
            }
            self.tx.wake();
            kicks += 1;
            if self.tx.pending() >= before || kicks >= 64 {
                break;
            }
        }
        kicks
    }
}
