//! The AF_XDP test bed shared by the AF_XDP test binaries: namespaces, veth
//! pairs, and the packet path `bulkhead run` assembles (`dataplane::pipeline`)
//! in the DUT namespace.
#![allow(dead_code, unused_imports)]

pub use dataplane::event;
pub use dataplane::io::afxdp::{
    self, keep_vlan_tags, AfXdpConfig, AfXdpIo, BindMode, FailMode, OnShutdown, XdpMode,
    DEFAULT_PIN_DIR,
};
pub use dataplane::offload::Offloader;
pub use dataplane::pipeline::{self, Lane, Pipeline};
pub use dataplane::policy::{named, PolicySnapshot, SnapshotCell};
pub use dataplane::worker::{Worker, WorkerConfig, WorkerStats};
pub use std::net::{SocketAddr, TcpListener, TcpStream};
pub use std::os::unix::fs::MetadataExt;
pub use std::path::Path;
pub use std::process::Command;
pub use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
pub use std::sync::{mpsc, Arc};
pub use std::thread::JoinHandle;
pub use std::time::{Duration, Instant};

pub const HOST_A: &str = "10.99.0.1";
pub const HOST_B: &str = "10.99.0.2";
/// The VLAN of the tagged-traffic tests and the addresses host-a and host-b
/// use on it.
pub const VLAN_ID: u16 = 20;
pub const VLAN_A: [u8; 4] = [10, 99, 20, 1];
pub const VLAN_B: [u8; 4] = [10, 99, 20, 2];

pub const ALLOW_ALL: &str = "default_mode: learn\ngroups: []\nrules: []\n";
pub const DENY_445: &str = r#"
default_mode: enforce
rules:
  - { id: 1, src: [any], dst: [any], proto: icmp, action: allow }
  - { id: 2, src: [any], dst: [any], proto: tcp, ports: [22], action: allow }
"#;

pub use dataplane::hostenv::in_ci;

/// Run `cmd`; Err with its output when it fails.
pub fn run(cmd: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| format!("{}: {e}", cmd.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}{}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Why these tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !dataplane::hostenv::is_root() {
        return Some("not root".into());
    }
    if let Err(e) = run(&["ip", "netns", "list"]) {
        return Some(format!("`ip netns` unavailable: {e}"));
    }
    dataplane::hostenv::missing_tool(&["ping", "ethtool"])
}

/// Skip (print why) outside CI; fail in CI.
pub fn skip_reason() -> Option<String> {
    let why = unavailable();
    if dataplane::hostenv::can_run("the AF_XDP tests", why.clone()) {
        return None;
    }
    why
}

/// The nsfs inode of a named namespace (what the pins are named by).
pub fn netns_inode(name: &str) -> Option<u64> {
    std::fs::metadata(format!("/run/netns/{name}"))
        .ok()
        .map(|m| m.ino())
}

pub fn delete_netns(name: &str) {
    if let Some(ino) = netns_inode(name) {
        afxdp::remove_pins(Path::new(DEFAULT_PIN_DIR), ino);
    }
    let _ = run(&["ip", "netns", "delete", name]);
}

/// Delete namespaces named `<prefix>-<role>-<pid>-<n>` left by test processes
/// that no longer run.
pub fn clean_stale(prefix: &str) {
    let Ok(list) = run(&["ip", "netns", "list"]) else {
        return;
    };
    let prefix = format!("{prefix}-");
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let pid = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            delete_netns(name);
        }
    }
}

/// host-a (ns a) <-> dut-a (ns dut) ... dut-b (ns dut) <-> host-b (ns b).
pub struct Topology {
    pub a: String,
    pub b: String,
    pub dut: String,
}

impl Topology {
    pub fn new() -> Result<Topology, String> {
        Topology::build("bh-t", 1)
    }

    /// The topology with `queues` tx and rx queues on every veth end.
    pub fn with_queues(queues: u32) -> Result<Topology, String> {
        Topology::build("bh-t", queues)
    }

    /// A topology whose namespaces are `<prefix>-{a,b,dut}-<pid>-<n>`.
    pub fn named(prefix: &str) -> Result<Topology, String> {
        Topology::build(prefix, 1)
    }

    fn build(prefix: &str, queues: u32) -> Result<Topology, String> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        clean_stale(prefix);
        let tag = format!(
            "{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let t = Topology {
            a: format!("{prefix}-a-{tag}"),
            b: format!("{prefix}-b-{tag}"),
            dut: format!("{prefix}-dut-{tag}"),
        };
        for ns in [&t.a, &t.b, &t.dut] {
            run(&["ip", "netns", "add", ns])?;
        }
        let (a, b, dut) = (t.a.as_str(), t.b.as_str(), t.dut.as_str());
        let (addr_a, addr_b) = (format!("{HOST_A}/24"), format!("{HOST_B}/24"));
        let q = queues.to_string();
        let cmds: Vec<Vec<&str>> = vec![
            vec![
                "ip",
                "link",
                "add",
                "host-a",
                "netns",
                a,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                "dut-a",
                "netns",
                dut,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
            ],
            vec![
                "ip",
                "link",
                "add",
                "host-b",
                "netns",
                b,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                "dut-b",
                "netns",
                dut,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
            ],
            vec!["ip", "-n", a, "addr", "add", &addr_a, "dev", "host-a"],
            vec!["ip", "-n", b, "addr", "add", &addr_b, "dev", "host-b"],
        ];
        for c in &cmds {
            run(c)?;
        }
        for (ns, dev) in [(a, "host-a"), (b, "host-b"), (dut, "dut-a"), (dut, "dut-b")] {
            // IPv6 off: keeps the segments quiet (no DAD, router solicitations).
            run(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        }
        // Frames the DUT redirects with XDP (fail-open, devmap) arrive on the
        // hosts' veths through NAPI, which a veth only has with GRO or XDP on.
        // A veth hands its peer TCP/UDP with the checksum left to "hardware"
        // (CHECKSUM_PARTIAL); AF_XDP sees the raw bytes and forwards them as they
        // are, so the hosts must compute checksums themselves: tx offload off.
        for (ns, dev) in [(a, "host-a"), (b, "host-b")] {
            run(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "on", "tx", "off",
            ])?;
        }
        Ok(t)
    }

    /// Ping host-b from host-a: true when all `count` replies arrive.
    pub fn ping(&self, count: u32) -> bool {
        let count = count.to_string();
        let args = [
            "ip", "netns", "exec", &self.a, "ping", "-q", "-c", &count, "-i", "0.2", "-W", "1",
            HOST_B,
        ];
        run(&args).is_ok()
    }

    /// Flood-ping host-b from host-a; the share of replies received.
    pub fn flood(&self, count: u32) -> f64 {
        let count = count.to_string();
        let args = [
            "ip", "netns", "exec", &self.a, "ping", "-q", "-f", "-c", &count, "-w", "20", HOST_B,
        ];
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("ping -f");
        let text = String::from_utf8_lossy(&out.stdout);
        // "2000 packets transmitted, 2000 received, 0% packet loss, ..."
        let received = text
            .split(',')
            .find_map(|f| f.trim().strip_suffix(" received")?.parse::<f64>().ok())
            .unwrap_or(0.0);
        received / count.parse::<f64>().unwrap()
    }

    /// Ping until it works (the first packets may race the ARP exchange).
    pub fn ping_eventually(&self) -> bool {
        (0..5).any(|_| self.ping(2))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.dut, &self.a, &self.b] {
            delete_netns(ns);
        }
    }
}

/// Run `f` on a thread inside network namespace `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<Result<T, String>> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        enter_netns(&path)?;
        Ok(f())
    })
}

pub fn enter_netns(path: &str) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: setns on a valid namespace fd changes only this thread's network
    // namespace (the thread was spawned for this and runs nothing else there).
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// How the DUT stops.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stop {
    /// Close the sockets, keep the program: the fail mode takes over.
    LeaveAttached,
    /// Remove the program.
    Detach,
}

/// The worker on its AF_XDP queues, assembled as `bulkhead run` does it,
/// running on a thread in the DUT namespace.
pub struct Dut {
    pub stop: Arc<AtomicBool>,
    pub how: Arc<std::sync::Mutex<Stop>>,
    pub handle: Option<JoinHandle<Result<Result<u64, String>, String>>>,
    pub modes: (XdpMode, BindMode),
    pub policy: Arc<SnapshotCell>,
    /// The worker's counters, refreshed about every 50 ms while it runs.
    pub stats: Arc<std::sync::Mutex<WorkerStats>>,
    /// The worker carries decided flows in the kernel tier.
    pub offloaded: bool,
    /// With offload: the kernel generation, moved by each `policy.publish`
    /// before it returns (as `bulkhead run` wires it).
    pub fence: Option<Arc<afxdp::XdpGenerationFence>>,
}

pub fn snapshot(yaml: &str, generation: u64) -> PolicySnapshot {
    named::snapshot(yaml, generation).expect("test policy compiles")
}

pub fn dut_config(fail_mode: FailMode) -> AfXdpConfig {
    let mut cfg = AfXdpConfig::new("dut-a", "dut-b");
    cfg.frames = 1024;
    cfg.fill_ring = 512;
    cfg.completion_ring = 512;
    cfg.rx_ring = 512;
    cfg.tx_ring = 512;
    cfg.fail_mode = fail_mode;
    cfg.on_shutdown = OnShutdown::Detach;
    cfg
}

impl Dut {
    pub fn start(t: &Topology, cfg: AfXdpConfig, policy: &str) -> Result<Dut, String> {
        let cell = Arc::new(SnapshotCell::new(snapshot(policy, 1)));
        let stop = Arc::new(AtomicBool::new(false));
        let how = Arc::new(std::sync::Mutex::new(Stop::Detach));
        let stats = Arc::new(std::sync::Mutex::new(WorkerStats::default()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop2, how2, cell2, stats2) = (stop.clone(), how.clone(), cell.clone(), stats.clone());
        let handle = in_netns(&t.dut, move || -> Result<u64, String> {
            let started = AfXdpIo::open(&cfg)
                .map_err(|e| e.to_string())
                .and_then(|io| {
                    let (sink, _events) = event::channel(4096);
                    let workers = pipeline::workers(1, &WorkerConfig::default(), &cell2, sink);
                    Pipeline::assemble(io, workers, &cell2, true, |g, e| {
                        panic!("kernel generation of policy generation {g}: {e}")
                    })
                    .map_err(|e| e.to_string())
                });
            let mut p = match started {
                Ok(p) => p,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.clone()));
                    return Err(e);
                }
            };
            let _ = ready_tx.send(Ok((p.modes, p.fence.clone())));
            let mut lane = p.lanes.pop().ok_or("no lane")?;
            let handled = lane
                .run(
                    &stop2,
                    Instant::now(),
                    Duration::from_millis(5),
                    Duration::from_millis(50),
                    |worker, _| *stats2.lock().unwrap() = worker.stats(),
                )
                .map_err(|e| e.to_string())?;
            drop(lane);
            match *how2.lock().unwrap() {
                Stop::LeaveAttached => p.ports.leave_attached(),
                Stop::Detach => p.ports.detach().map_err(|e| e.to_string())?,
            }
            Ok(handled)
        });
        let (modes, fence) = ready_rx
            .recv_timeout(Duration::from_secs(20))
            .map_err(|e| format!("DUT did not start: {e}"))??;
        Ok(Dut {
            stop,
            how,
            handle: Some(handle),
            modes,
            policy: cell,
            stats,
            offloaded: fence.is_some(),
            fence,
        })
    }

    /// The worker's latest counters (at most about 50 ms old).
    pub fn stats(&self) -> WorkerStats {
        self.stats.lock().unwrap().clone()
    }

    /// Stop the worker; returns the frames it handled.
    pub fn stop(&mut self, how: Stop) -> u64 {
        *self.how.lock().unwrap() = how;
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().expect("stopped once");
        handle
            .join()
            .expect("DUT thread panicked")
            .expect("DUT entered its namespace")
            .expect("DUT ran without I/O errors")
    }
}

impl Drop for Dut {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = self.handle.take().map(|h| h.join());
        }
    }
}

/// A TCP listener in host-b's namespace on each port, accepting until dropped.
pub fn listen(t: &Topology, ports: &[u16]) -> Vec<TcpListener> {
    let ports = ports.to_vec();
    in_netns(&t.b, move || {
        ports
            .iter()
            .map(|p| TcpListener::bind((HOST_B, *p)).expect("bind in host-b"))
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap()
    .unwrap()
}

/// Connect from host-a's namespace; true if the handshake completes in time.
pub fn connects(t: &Topology, port: u16) -> bool {
    let addr: SocketAddr = format!("{HOST_B}:{port}").parse().unwrap();
    in_netns(&t.a, move || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(1500)).is_ok()
    })
    .join()
    .unwrap()
    .unwrap()
}

/// A host's MAC address, from `ip -o link show`.
pub fn mac_of(ns: &str, dev: &str) -> [u8; 6] {
    let out = run(&["ip", "-n", ns, "-o", "link", "show", dev]).expect("ip link show");
    let hex = out
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("a MAC in `ip link` output");
    let mut mac = [0u8; 6];
    for (b, h) in mac.iter_mut().zip(hex.split(':')) {
        *b = u8::from_str_radix(h, 16).expect("hex MAC");
    }
    mac
}

/// A packet socket on `dev` in the calling thread's namespace: (fd, ifindex).
pub fn packet_socket(dev: &str) -> (std::os::fd::OwnedFd, i32) {
    use std::os::fd::FromRawFd;
    let name = std::ffi::CString::new(dev).unwrap();
    // SAFETY: plain syscalls on values owned here; the fd is wrapped at once.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
        assert!(ifindex > 0, "{dev} exists");
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto);
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto as u16;
        sll.sll_ifindex = ifindex;
        let rc = libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        (fd, ifindex)
    }
}

/// Write each of `frames` out of `dev` in namespace `ns`, 2 ms apart.
pub fn send_frames(ns: &str, dev: &'static str, frames: Vec<Vec<u8>>) {
    in_netns(ns, move || {
        let (fd, _) = packet_socket(dev);
        for frame in &frames {
            // SAFETY: the buffer is valid for its length; the socket is bound.
            let n = unsafe {
                libc::send(
                    std::os::fd::AsRawFd::as_raw_fd(&fd),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                )
            };
            assert_eq!(n, frame.len() as isize, "send a frame on {dev}");
            std::thread::sleep(Duration::from_millis(2));
        }
    })
    .join()
    .unwrap()
    .unwrap();
}

/// Every frame that arrives on a host's veth from when it is opened.
pub struct Sniffer(std::os::fd::OwnedFd);

impl Sniffer {
    pub fn open(ns: &str, dev: &'static str) -> Sniffer {
        let fd = in_netns(ns, move || packet_socket(dev).0)
            .join()
            .unwrap()
            .unwrap();
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        // SAFETY: setsockopt with a pointer to a live timeval of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        assert_eq!(rc, 0, "SO_RCVTIMEO");
        Sniffer(fd)
    }

    /// How many received frames (incoming only) satisfy `want`, reading for `wait`.
    pub fn count(&self, wait: Duration, want: impl Fn(&[u8]) -> bool) -> usize {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while Instant::now() < deadline {
            // SAFETY: sockaddr_ll and the buffer are live and sized as passed.
            let (len, pkttype) = unsafe {
                let mut from: libc::sockaddr_ll = std::mem::zeroed();
                let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                let len = libc::recvfrom(
                    std::os::fd::AsRawFd::as_raw_fd(&self.0),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut from_len,
                );
                (len, from.sll_pkttype)
            };
            if len > 0 && pkttype != libc::PACKET_OUTGOING && want(&buf[..len as usize]) {
                n += 1;
            }
        }
        n
    }
}
