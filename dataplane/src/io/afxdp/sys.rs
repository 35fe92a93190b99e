//! Small system queries for the AF_XDP backend: interface index and MTU (in the
//! calling thread's network namespace), privileges, and `poll`.

use std::ffi::CString;
use std::os::unix::io::RawFd;
use std::time::Duration;

/// The index of `ifname` in the calling thread's network namespace.
#[allow(unsafe_code)]
pub(crate) fn ifindex(ifname: &str) -> Option<u32> {
    let name = CString::new(ifname).ok()?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// A datagram socket of the calling thread's network namespace and an `ifreq`
/// naming `ifname`, for interface ioctls (`/sys/class/net` would show the
/// namespace sysfs was mounted in, not the thread's).
#[allow(unsafe_code)]
pub(crate) fn ifreq_socket(ifname: &str) -> std::io::Result<(std::os::fd::OwnedFd, libc::ifreq)> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let bytes = ifname.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifreq` is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // The name is shorter than IFNAMSIZ and the rest is zero: NUL-terminated.
    for (dst, &b) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = b as libc::c_char;
    }
    Ok((fd, req))
}

/// The MTU of `ifname` (SIOCGIFMTU).
#[allow(unsafe_code)]
pub(crate) fn mtu(ifname: &str) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    let (fd, mut req) = ifreq_socket(ifname)?;
    // SAFETY: SIOCGIFMTU reads `ifr_name` and writes `ifr_mtu` inside `req`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: after a successful SIOCGIFMTU the union holds `ifru_mtu`.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(mtu.max(0) as u32)
}

/// Put `ifname` in promiscuous mode (IFF_PROMISC), if it is not: a port of
/// a bump in the wire receives frames for every MAC of its segment, and a
/// NIC that filters by its own MAC (virtio-net once the guest sets its
/// receive filter, vmxnet3, most hardware) would drop them before XDP. The
/// flag stays after exit, so that a fail mode left attached still sees
/// everything. Returns whether it was set here.
#[allow(unsafe_code)]
pub(crate) fn set_promiscuous(ifname: &str) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let (fd, mut req) = ifreq_socket(ifname)?;
    // SAFETY: SIOCGIFFLAGS reads `ifr_name` and writes `ifr_flags` inside `req`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: after a successful SIOCGIFFLAGS the union holds `ifru_flags`.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    let promisc = libc::IFF_PROMISC as libc::c_short;
    if flags & promisc != 0 {
        return Ok(false);
    }
    req.ifr_ifru.ifru_flags = flags | promisc;
    // SAFETY: SIOCSIFFLAGS reads `ifr_name` and `ifr_flags` inside `req`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Root, or CAP_NET_ADMIN with CAP_BPF (or CAP_SYS_ADMIN) in the effective set.
pub(crate) fn has_privileges() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/thread-self/status") else {
        return false;
    };
    let Some(eff) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    else {
        return false;
    };
    let has = |cap: u32| eff & (1 << cap) != 0;
    has(CAP_NET_ADMIN) && (has(CAP_BPF) || has(CAP_SYS_ADMIN))
}

/// Wait until one of `fds` is readable or `timeout` passes. On error, the index
/// of the first descriptor (for the caller to name the port).
#[allow(unsafe_code)]
pub(crate) fn poll_readable(
    fds: &[RawFd],
    timeout: Duration,
) -> Result<bool, (usize, std::io::Error)> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd entries for the
    // duration of the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err((0, e));
    }
    Ok(rc > 0)
}

/// Set FD_CLOEXEC on `fd`. xdpilone creates its sockets without it, so every
/// process spawned meanwhile (a `ping`, a helper) would inherit the AF_XDP
/// socket and keep it, and its XSKMAP entry, alive after bulkhead closes it:
/// frames would go on to a socket nobody reads instead of the fail mode.
#[allow(unsafe_code)]
pub(crate) fn set_cloexec(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD on a descriptor we own only change its flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Socket options of busy polling (include/uapi/asm-generic/socket.h).
const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

#[allow(unsafe_code)]
fn setsockopt_int(fd: RawFd, opt: libc::c_int, value: libc::c_int) -> Result<(), i32> {
    // SAFETY: `value` is a live c_int for the duration of the call and its size
    // is passed; setsockopt does not keep the pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    Ok(())
}

/// Turns on preferred busy polling for an AF_XDP socket: the application's own
/// syscalls drive the device queue for up to `usecs` each, `budget` frames at a
/// time. On error, the option that failed and the errno.
pub(crate) fn set_busy_poll(fd: RawFd, usecs: u32, budget: u32) -> Result<(), (&'static str, i32)> {
    let int = |v: u32| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
    setsockopt_int(fd, SO_PREFER_BUSY_POLL, 1)
        .map_err(|e| ("setsockopt SO_PREFER_BUSY_POLL", e))?;
    setsockopt_int(fd, SO_BUSY_POLL, int(usecs)).map_err(|e| ("setsockopt SO_BUSY_POLL", e))?;
    setsockopt_int(fd, SO_BUSY_POLL_BUDGET, int(budget))
        .map_err(|e| ("setsockopt SO_BUSY_POLL_BUDGET", e))
}

/// A non-blocking `recvfrom` on an AF_XDP socket: with busy polling on, the
/// kernel polls the device queue in this call. Errors (EAGAIN above all) say
/// nothing the rings do not, so they are ignored.
#[allow(unsafe_code)]
pub(crate) fn busy_poll_rx(fd: RawFd) {
    // SAFETY: a zero-length receive into no buffer; AF_XDP ignores both.
    let _ = unsafe {
        libc::recvfrom(
            fd,
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
#[allow(unsafe_code)]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which outlives the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// An eventfd (non-blocking, close-on-exec): how one worker wakes another that
/// sleeps in `poll` when it hands it frames.
pub(crate) struct EventFd(std::os::fd::OwnedFd);

impl EventFd {
    #[allow(unsafe_code)]
    pub(crate) fn new() -> std::io::Result<EventFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain eventfd(2); the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        Ok(EventFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }

    /// Make the eventfd readable (a waiting `poll` returns).
    #[allow(unsafe_code)]
    pub(crate) fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of `one`, which outlives the call. A full
        // counter (EAGAIN) still leaves the fd readable: ignored.
        let _ = unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
    }

    /// Reset it to not readable.
    #[allow(unsafe_code)]
    pub(crate) fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into `v`; EAGAIN (not signalled) is fine.
        let _ = unsafe { libc::read(self.fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

/// An error and its sources on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}
