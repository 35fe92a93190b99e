//! The one raw system call the generator needs: `bpf(BPF_PROG_TEST_RUN)` with
//! `BPF_F_TEST_XDP_LIVE_FRAMES`, which runs an XDP program over `repeat`
//! copies of a frame and really transmits the frames it returns `XDP_TX` for,
//! out of the interface given as the context's ingress. aya 0.14 has no
//! wrapper for it, so this module holds the crate's only `unsafe` code: one
//! `syscall` over a zeroed attribute block laid out as the kernel's
//! `union bpf_attr` (its `test` member, 80 bytes), `setitimer` and `if_nametoindex`
//! (`/sys/class/net` shows the namespace sysfs was mounted in, which under
//! `nsenter --net` is not ours); and, for the fallback engine, an
//! `AF_PACKET` socket bound to the interface, `send` and `CLOCK_MONOTONIC`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// Arms a one-shot `SIGALRM` for the process after `after` (`setitimer`,
/// `ITIMER_REAL`). A pending signal ends a running `BPF_PROG_RUN` with `EINTR`
/// after its current batch of frames: that is how a run is bounded in time.
pub fn alarm_after(after: std::time::Duration) -> io::Result<()> {
    let tv = |d: std::time::Duration| libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(d.subsec_micros()),
    };
    let it = libc::itimerval {
        it_interval: tv(std::time::Duration::ZERO),
        it_value: tv(after.max(std::time::Duration::from_micros(1))),
    };
    // SAFETY: `it` is a valid itimerval for the duration of the call; the old
    // value is not asked for (null is allowed).
    let rc = unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The index of interface `name` in this process's network namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call;
    // if_nametoindex only reads it.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(idx)
}

/// `union bpf_attr`'s `test` member (include/uapi/linux/bpf.h).
#[repr(C, align(8))]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `struct xdp_md`, the context given in: where the frame "arrived".
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// Runs the XDP program `prog_fd` `repeat` times over `frame` in live-frames
/// mode, as if the frames arrived on `ifindex` queue 0 (so `XDP_TX` sends them
/// out of `ifindex`). Returns when all runs are done, or with `EINTR` when a
/// signal arrived (see [`alarm_after`]).
pub fn run_live_frames(
    prog_fd: RawFd,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
    batch: u32,
) -> io::Result<()> {
    let len = u32::try_from(frame.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let ctx = XdpMd {
        data_end: len,
        ingress_ifindex: ifindex,
        ..XdpMd::default()
    };
    let attr = TestAttr {
        prog_fd: u32::try_from(prog_fd).map_err(|_| io::ErrorKind::InvalidInput)?,
        data_size_in: len,
        data_in: frame.as_ptr() as u64,
        repeat,
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_in: &ctx as *const XdpMd as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size: batch,
        ..TestAttr::default()
    };
    // SAFETY: `attr` is a fully initialised, 8-aligned block of the size we
    // pass; the kernel reads `data_in` (`len` bytes of `frame`) and `ctx_in`
    // (one `XdpMd`), both alive and unaliased for the duration of the call,
    // and writes only into `attr` itself (retval, duration): no output buffers
    // are given (live-frames mode refuses them). The call does not retain any
    // pointer after it returns.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &attr as *const TestAttr,
            std::mem::size_of::<TestAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A raw `AF_PACKET` socket that sends on `ifindex` only (protocol 0:
/// nothing is received), past the qdisc (`PACKET_QDISC_BYPASS`, as pktgen).
pub fn packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid sockaddr_ll; the fields set below are the
    // family and the interface.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::c_ushort;
    addr.sll_ifindex = i32::try_from(ifindex).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `addr` is a valid sockaddr_ll of the size given, alive for the call.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let one: libc::c_int = 1;
    // SAFETY: `one` is a c_int of the size given, alive for the call. A
    // kernel without the option keeps the qdisc: not an error.
    let _ = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Ok(sock)
}

/// Sends `frames` on a bound packet socket with one `sendmmsg`; returns how
/// many the kernel took (from the first: the rest were not sent).
pub fn send_many(sock: &OwnedFd, frames: &[Vec<u8>]) -> io::Result<usize> {
    let mut iovs: Vec<libc::iovec> = frames
        .iter()
        .map(|f| libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: f.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: all-zero is a valid msghdr (no name, no control data);
            // the one iovec is set below.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let n = u32::try_from(msgs.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `msgs` holds `n` headers, each pointing at one iovec of
    // `iovs` that points at a frame of `frames`: all alive for the call,
    // and the kernel only reads the frames.
    let rc = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), n, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `bpf_ktime_get_ns` reads,
/// which the sink compares stamps with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_attribute_block_has_the_kernels_layout() {
        assert_eq!(std::mem::size_of::<super::TestAttr>(), 80);
        assert_eq!(std::mem::size_of::<super::XdpMd>(), 24);
    }
}
