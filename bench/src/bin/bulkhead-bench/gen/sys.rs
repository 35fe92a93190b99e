//! The one raw system call the generator needs: `bpf(BPF_PROG_TEST_RUN)` with
//! `BPF_F_TEST_XDP_LIVE_FRAMES`, which runs an XDP program over `repeat`
//! copies of a frame and really transmits the frames it returns `XDP_TX` for,
//! out of the interface given as the context's ingress. aya 0.14 has no
//! wrapper for it, so this module holds the crate's only `unsafe` code: one
//! `syscall` over a zeroed attribute block laid out as the kernel's
//! `union bpf_attr` (its `test` member, 80 bytes), `setitimer` and `if_nametoindex`
//! (`/sys/class/net` shows the namespace sysfs was mounted in, which under
//! `nsenter --net` is not ours).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

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

#[cfg(test)]
mod tests {
    #[test]
    fn the_attribute_block_has_the_kernels_layout() {
        assert_eq!(std::mem::size_of::<super::TestAttr>(), 80);
        assert_eq!(std::mem::size_of::<super::XdpMd>(), 24);
    }
}
