//! AF_XDP with real packets: three network namespaces, host-a <-> dut-a and
//! dut-b <-> host-b veth pairs, the worker on `AfXdpIo` in the DUT namespace,
//! ping and TCP from host-a (10.99.0.1) to host-b (10.99.0.2).
//!
//! Needs root and `ip netns`; without them the tests print why and pass, except
//! in CI (`CI=true`), where they must run. Namespaces are named
//! `bh-t-<role>-<pid>-<n>`, deleted on drop and, if a run died, on the next start.
#![cfg(target_os = "linux")]

use dataplane::event;
use dataplane::io::afxdp::{
    self, AfXdpConfig, AfXdpIo, BindMode, FailMode, OnShutdown, XdpMode, DEFAULT_PIN_DIR,
};
use dataplane::policy::{PolicySnapshot, PolicySpec, SnapshotCell};
use dataplane::worker::{Worker, WorkerConfig};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const HOST_A: &str = "10.99.0.1";
const HOST_B: &str = "10.99.0.2";
/// The VLAN of the tagged-traffic tests and the addresses host-a and host-b
/// use on it.
const VLAN_ID: u16 = 20;
const VLAN_A: [u8; 4] = [10, 99, 20, 1];
const VLAN_B: [u8; 4] = [10, 99, 20, 2];

const ALLOW_ALL: &str = "default_mode: learn\ngroups: []\nrules: []\n";
const DENY_445: &str = r#"
default_mode: enforce
rules:
  - { id: 1, src: [any], dst: [any], proto: icmp, action: allow }
  - { id: 2, src: [any], dst: [any], proto: tcp, ports: [22], action: allow }
"#;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Run `cmd`; Err with its output when it fails.
fn run(cmd: &[&str]) -> Result<String, String> {
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
fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some("not root".into());
    }
    if let Err(e) = run(&["ip", "netns", "list"]) {
        return Some(format!("`ip netns` unavailable: {e}"));
    }
    for tool in ["ping", "ethtool"] {
        if run(&["sh", "-c", &format!("command -v {tool}")]).is_err() {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// Skip (print why) outside CI; fail in CI.
fn skip_reason() -> Option<String> {
    let why = unavailable()?;
    assert!(!in_ci(), "AF_XDP tests must run in CI, but: {why}");
    eprintln!("skipping AF_XDP test: {why}");
    Some(why)
}

/// The nsfs inode of a named namespace (what the pins are named by).
fn netns_inode(name: &str) -> Option<u64> {
    std::fs::metadata(format!("/run/netns/{name}"))
        .ok()
        .map(|m| m.ino())
}

fn delete_netns(name: &str) {
    if let Some(ino) = netns_inode(name) {
        afxdp::remove_pins(Path::new(DEFAULT_PIN_DIR), ino);
    }
    let _ = run(&["ip", "netns", "delete", name]);
}

/// Delete namespaces left by test processes that no longer run.
fn clean_stale() {
    let Ok(list) = run(&["ip", "netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix("bh-t-") else {
            continue;
        };
        let pid = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            delete_netns(name);
        }
    }
}

/// host-a (ns a) <-> dut-a (ns dut) ... dut-b (ns dut) <-> host-b (ns b).
struct Topology {
    a: String,
    b: String,
    dut: String,
}

impl Topology {
    fn new() -> Result<Topology, String> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        clean_stale();
        let tag = format!(
            "{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let t = Topology {
            a: format!("bh-t-a-{tag}"),
            b: format!("bh-t-b-{tag}"),
            dut: format!("bh-t-dut-{tag}"),
        };
        for ns in [&t.a, &t.b, &t.dut] {
            run(&["ip", "netns", "add", ns])?;
        }
        let (a, b, dut) = (t.a.as_str(), t.b.as_str(), t.dut.as_str());
        let (addr_a, addr_b) = (format!("{HOST_A}/24"), format!("{HOST_B}/24"));
        let cmds: Vec<Vec<&str>> = vec![
            vec![
                "ip", "link", "add", "host-a", "netns", a, "type", "veth", "peer", "name", "dut-a",
                "netns", dut,
            ],
            vec![
                "ip", "link", "add", "host-b", "netns", b, "type", "veth", "peer", "name", "dut-b",
                "netns", dut,
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
    fn ping(&self, count: u32) -> bool {
        let count = count.to_string();
        let args = [
            "ip", "netns", "exec", &self.a, "ping", "-q", "-c", &count, "-i", "0.2", "-W", "1",
            HOST_B,
        ];
        run(&args).is_ok()
    }

    /// Flood-ping host-b from host-a; the share of replies received.
    fn flood(&self, count: u32) -> f64 {
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
    fn ping_eventually(&self) -> bool {
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
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<Result<T, String>> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        enter_netns(&path)?;
        Ok(f())
    })
}

fn enter_netns(path: &str) -> Result<(), String> {
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
enum Stop {
    /// Close the sockets, keep the program: the fail mode takes over.
    LeaveAttached,
    /// Remove the program.
    Detach,
}

/// The worker on AfXdpIo, running on a thread in the DUT namespace.
struct Dut {
    stop: Arc<AtomicBool>,
    how: Arc<std::sync::Mutex<Stop>>,
    handle: Option<JoinHandle<Result<Result<u64, String>, String>>>,
    modes: (XdpMode, BindMode),
    policy: Arc<SnapshotCell>,
}

fn snapshot(yaml: &str, generation: u64) -> PolicySnapshot {
    let spec = PolicySpec::from_yaml_str(yaml).expect("test policy parses");
    PolicySnapshot::compile(&spec, generation).expect("test policy compiles")
}

fn dut_config(fail_mode: FailMode) -> AfXdpConfig {
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
    fn start(t: &Topology, cfg: AfXdpConfig, policy: &str) -> Result<Dut, String> {
        let cell = Arc::new(SnapshotCell::new(snapshot(policy, 1)));
        let stop = Arc::new(AtomicBool::new(false));
        let how = Arc::new(std::sync::Mutex::new(Stop::Detach));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop2, how2, cell2) = (stop.clone(), how.clone(), cell.clone());
        let handle = in_netns(&t.dut, move || -> Result<u64, String> {
            let mut io = match AfXdpIo::open(&cfg) {
                Ok(io) => io,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return Err(e.to_string());
                }
            };
            let _ = ready_tx.send(Ok(io.mode()));
            let (sink, _events) = event::channel(4096);
            let mut worker = Worker::new(WorkerConfig::default(), cell2, sink);
            let start = Instant::now();
            let mut handled = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let now = start.elapsed().as_nanos() as u64 + 1;
                let n = worker.poll(&mut io, now).map_err(|e| e.to_string())?;
                handled += n as u64;
                if n == 0 {
                    io.poll_wait(Duration::from_millis(5))
                        .map_err(|e| e.to_string())?;
                }
            }
            match *how2.lock().unwrap() {
                Stop::LeaveAttached => io.leave_attached(),
                Stop::Detach => io.detach().map_err(|e| e.to_string())?,
            }
            Ok(handled)
        });
        let modes = ready_rx
            .recv_timeout(Duration::from_secs(20))
            .map_err(|e| format!("DUT did not start: {e}"))??;
        Ok(Dut {
            stop,
            how,
            handle: Some(handle),
            modes,
            policy: cell,
        })
    }

    /// Stop the worker; returns the frames it handled.
    fn stop(&mut self, how: Stop) -> u64 {
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
fn listen(t: &Topology, ports: &[u16]) -> Vec<TcpListener> {
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
fn connects(t: &Topology, port: u16) -> bool {
    let addr: SocketAddr = format!("{HOST_B}:{port}").parse().unwrap();
    in_netns(&t.a, move || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(1500)).is_ok()
    })
    .join()
    .unwrap()
    .unwrap()
}

#[test]
fn allow_all_policy_forwards_ping_and_fail_open_keeps_forwarding_after_stop() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::new().expect("topology");
    assert!(!t.ping(1), "nothing forwards before the DUT runs");

    let mut dut = Dut::start(&t, dut_config(FailMode::Open), ALLOW_ALL).expect("DUT starts");
    eprintln!("modes on veth: XDP {}, AF_XDP {}", dut.modes.0, dut.modes.1);
    assert!(t.ping_eventually(), "ping through the DUT");
    let _listeners = listen(&t, &[8080]);
    assert!(connects(&t, 8080), "TCP through the DUT");
    // Far more frames than the UMEM holds (1024): buffers must be recycled.
    let got = t.flood(3000);
    eprintln!("flood ping: {:.1}% answered", got * 100.0);
    assert!(
        got > 0.95,
        "flood ping through the DUT: {:.1}% answered",
        got * 100.0
    );
    let handled = dut.stop(Stop::LeaveAttached);
    assert!(handled > 0, "the worker saw the frames");

    // No socket now: the program forwards to the peer port in the kernel.
    assert!(t.ping(3), "fail-open forwards with the worker stopped");
    assert!(connects(&t, 8080), "fail-open forwards TCP too");

    // A new DUT takes over the pinned program, then detaches it for good.
    let mut again = Dut::start(&t, dut_config(FailMode::Open), ALLOW_ALL).expect("restart");
    assert!(t.ping_eventually(), "ping after the restart");
    again.stop(Stop::Detach);
    assert!(
        !t.ping(2),
        "after detach the DUT is a plain host: no forwarding"
    );
}

#[test]
fn enforce_policy_blocks_tcp_445_and_passes_ping_and_ssh() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::new().expect("topology");
    let mut dut = Dut::start(&t, dut_config(FailMode::Closed), ALLOW_ALL).expect("DUT starts");
    let _listeners = listen(&t, &[22, 445]);
    assert!(t.ping_eventually(), "ping under allow-all");
    assert!(connects(&t, 445), "445 connects under allow-all");

    dut.policy.publish(snapshot(DENY_445, 2));
    assert!(!connects(&t, 445), "445 is denied in enforce");
    assert!(connects(&t, 22), "22 is allowed");
    assert!(t.ping(3), "icmp is allowed");
    dut.stop(Stop::Detach);
}

#[test]
fn fail_closed_drops_when_the_worker_stops_and_a_restart_resumes() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::new().expect("topology");
    let mut dut = Dut::start(&t, dut_config(FailMode::Closed), ALLOW_ALL).expect("DUT starts");
    assert!(t.ping_eventually(), "ping through the DUT");
    dut.stop(Stop::LeaveAttached);
    assert!(
        !t.ping(3),
        "fail-closed: nothing passes with the worker stopped"
    );

    // Rebinding right after the close may meet EBUSY: open retries.
    let mut again = Dut::start(&t, dut_config(FailMode::Closed), ALLOW_ALL).expect("restart");
    assert!(t.ping_eventually(), "forwarding resumes after the restart");
    again.stop(Stop::Detach);
}

#[test]
fn missing_interface_is_a_clear_error() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::new().expect("topology");
    let cfg = AfXdpConfig::new("dut-a", "no-such-if");
    let err = in_netns(&t.dut, move || AfXdpIo::open(&cfg).map(|_| ()))
        .join()
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "interface no-such-if does not exist (in this network namespace)"
    );
}

#[test]
fn mtu_too_large_for_the_chunk_is_refused() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::new().expect("topology");
    run(&["ip", "-n", &t.dut, "link", "set", "dut-b", "mtu", "9000"]).expect("set mtu");
    let cfg = AfXdpConfig::new("dut-a", "dut-b");
    let err = in_netns(&t.dut, move || AfXdpIo::open(&cfg).map(|_| ()))
        .join()
        .unwrap()
        .unwrap()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("dut-b: MTU 9000 needs 9018-byte frames"),
        "{msg}"
    );
}

/// Not a test on its own: the DUT of `a_crashed_dut_fails_open_and_a_restart_takes_over`,
/// run in a child process (so it can be killed with SIGKILL).
#[test]
#[ignore = "helper, run by a_crashed_dut_fails_open_and_a_restart_takes_over"]
fn dut_child_process() {
    let Ok(ns) = std::env::var("BH_DUT_NS") else {
        return;
    };
    let handle = in_netns(&ns, move || {
        let mut io = AfXdpIo::open(&dut_config(FailMode::Open)).expect("child DUT opens");
        let cell = Arc::new(SnapshotCell::new(snapshot(ALLOW_ALL, 1)));
        let (sink, _events) = event::channel(4096);
        let mut worker = Worker::new(WorkerConfig::default(), cell, sink);
        println!("BH-READY");
        let start = Instant::now();
        loop {
            let now = start.elapsed().as_nanos() as u64 + 1;
            if worker.poll(&mut io, now).expect("poll") == 0 {
                io.poll_wait(Duration::from_millis(5)).expect("poll_wait");
            }
        }
    });
    let _ = handle.join();
}

#[test]
fn a_crashed_dut_fails_open_and_a_restart_takes_over() {
    use std::io::BufRead;
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::new().expect("topology");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["dut_child_process", "--exact", "--ignored", "--nocapture"])
        .env("BH_DUT_NS", &t.dut)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the DUT process");
    let stdout = child.stdout.take().expect("child stdout");
    let ready = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("BH-READY"));
    assert!(ready, "the DUT process started");
    assert!(t.ping_eventually(), "ping through the DUT process");

    child.kill().expect("SIGKILL the DUT");
    child.wait().expect("reap the DUT");
    assert!(
        t.ping(3),
        "after the crash the pinned program forwards (fail-open)"
    );

    let mut again = Dut::start(&t, dut_config(FailMode::Open), ALLOW_ALL).expect("restart");
    assert!(t.ping_eventually(), "the restarted DUT forwards");
    let handled = again.stop(Stop::Detach);
    assert!(
        handled > 0,
        "the restarted worker, not the kernel, forwarded"
    );
    assert!(!t.ping(2), "detached: no forwarding");
}

#[test]
fn zero_copy_only_on_veth_is_refused_with_the_interface_named() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::new().expect("topology");
    let mut cfg = dut_config(FailMode::Closed);
    cfg.bind = afxdp::BindPreference::ZeroCopy;
    let result = in_netns(&t.dut, move || {
        AfXdpIo::open(&cfg).map(|io| {
            let mode = io.mode();
            io.detach().expect("detach");
            mode
        })
    })
    .join()
    .unwrap()
    .unwrap();
    match result {
        // veth has no zero-copy AF_XDP (Linux 6.18); a kernel that adds it passes too.
        Ok(mode) => assert_eq!(mode.1, BindMode::ZeroCopy),
        Err(e) => {
            let msg = e.to_string();
            eprintln!("zero-copy on veth: {msg}");
            assert!(
                msg.starts_with("AF_XDP on dut-a: no bind mode worked"),
                "{msg}"
            );
        }
    }
}

// Tagged traffic. This kernel (6.18, the CI machine's) is built without
// CONFIG_VLAN_8021Q, so `ip link add ... type vlan` fails ("Unknown device
// type") and tc has no vlan action: host-a writes 802.1Q frames itself on an
// AF_PACKET socket, and host-b captures what arrives on its veth. The receiving
// kernel moves the tag out of the frame into the packet's metadata before a
// packet socket sees it, so the capture reads the VLAN id from PACKET_AUXDATA
// (and from the bytes, should a kernel leave it there).

/// A host's MAC address, from `ip -o link show`.
fn mac_of(ns: &str, dev: &str) -> [u8; 6] {
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

/// The ones' complement sum of RFC 1071, folded.
fn csum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame tagged with VLAN_ID, IPv4 VLAN_A -> VLAN_B, `proto`, `l4`.
fn tagged_ipv4(src: [u8; 6], dst: [u8; 6], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x8100u16.to_be_bytes());
    f.extend_from_slice(&VLAN_ID.to_be_bytes());
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&VLAN_A);
    ip.extend_from_slice(&VLAN_B);
    let c = csum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

/// An ICMP echo request with this identifier.
fn icmp_echo(ident: u16) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&ident.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(b"bulkhead-vlan-test");
    let c = csum(&[&m]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A TCP SYN from `sport` to `dport`, checksummed over the IPv4 pseudo-header.
fn tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&0x0102_0304u32.to_be_bytes()); // seq
    t.extend_from_slice(&0u32.to_be_bytes()); // ack
    t.extend_from_slice(&[5 << 4, 0x02]); // 20-byte header, SYN
    t.extend_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    let len = (t.len() as u16).to_be_bytes();
    let pseudo = [&VLAN_A[..], &VLAN_B[..], &[0, 6], &len[..]].concat();
    let c = csum(&[&pseudo, &t]);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// A packet socket on `dev` in the calling thread's namespace: (fd, ifindex).
fn packet_socket(dev: &str) -> (std::os::fd::OwnedFd, i32) {
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

/// Send `frame` out of host-a, `count` times.
fn send_from_a(t: &Topology, frame: Vec<u8>, count: usize) {
    in_netns(&t.a, move || {
        let (fd, _) = packet_socket("host-a");
        for _ in 0..count {
            // SAFETY: the buffer is valid for its length; the socket is bound.
            let n = unsafe {
                libc::send(
                    std::os::fd::AsRawFd::as_raw_fd(&fd),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                )
            };
            assert_eq!(n, frame.len() as isize, "send a tagged frame");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .join()
    .unwrap()
    .unwrap();
}

/// A capture on host-b's veth (packet socket with PACKET_AUXDATA).
struct Capture(std::os::fd::OwnedFd);

impl Capture {
    fn open(t: &Topology) -> Capture {
        let fd = in_netns(&t.b, || packet_socket("host-b").0)
            .join()
            .unwrap()
            .unwrap();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let on: libc::c_int = 1;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: setsockopt with pointers to live values of the stated sizes.
        unsafe {
            let rc = libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                (&on as *const libc::c_int).cast(),
                4,
            );
            assert_eq!(rc, 0, "PACKET_AUXDATA");
            let rc = libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            assert_eq!(rc, 0, "SO_RCVTIMEO");
        }
        Capture(fd)
    }

    /// The VLAN id (None: untagged) of the first IPv4 frame from VLAN_A for
    /// which `want(ip_proto, l4)` holds, seen within `wait`.
    fn find(&self, wait: Duration, want: impl Fn(u8, &[u8]) -> bool) -> Option<Option<u16>> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        let mut ctrl = [0u64; 16];
        while Instant::now() < deadline {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: msghdr points at the live buffers above; CMSG_* walk the
            // control buffer the kernel filled, within msg_controllen.
            let (n, aux_vlan) = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = ctrl.as_mut_ptr().cast();
                msg.msg_controllen = std::mem::size_of_val(&ctrl);
                let n = libc::recvmsg(std::os::fd::AsRawFd::as_raw_fd(&self.0), &mut msg, 0);
                let mut vlan = None;
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA
                    {
                        let aux = std::ptr::read_unaligned(
                            libc::CMSG_DATA(c) as *const libc::tpacket_auxdata
                        );
                        if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                            vlan = Some(aux.tp_vlan_tci & 0x0fff);
                        }
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
                (n, vlan)
            };
            if n < 14 {
                continue; // timeout (n < 0) or a runt
            }
            let frame = &buf[..n as usize];
            let (vlan, l3) = if frame[12..14] == [0x81, 0x00] && frame.len() >= 18 {
                let tci = u16::from_be_bytes([frame[14], frame[15]]);
                (Some(tci & 0x0fff), 18)
            } else {
                (aux_vlan, 14)
            };
            if frame.len() < l3 + 20 || frame[l3 - 2..l3] != [0x08, 0x00] {
                continue;
            }
            let ip = &frame[l3..];
            if ip[12..16] != VLAN_A || ip[16..20] != VLAN_B {
                continue;
            }
            if want(ip[9], &ip[20..]) {
                return Some(vlan);
            }
        }
        None
    }
}

/// Send `frame` from host-a (a few times) and report what host-b saw: the
/// VLAN id of the first match (None inside: arrived untagged), or None.
fn cross(t: &Topology, frame: &[u8], want: impl Fn(u8, &[u8]) -> bool) -> Option<Option<u16>> {
    let cap = Capture::open(t);
    send_from_a(t, frame.to_vec(), 3);
    cap.find(Duration::from_millis(1500), want)
}

fn is_echo(ident: u16) -> impl Fn(u8, &[u8]) -> bool {
    move |proto, l4| proto == 1 && l4.len() >= 8 && l4[0] == 8 && l4[4..6] == ident.to_be_bytes()
}

fn is_syn_to(dport: u16) -> impl Fn(u8, &[u8]) -> bool {
    move |proto, l4| proto == 6 && l4.len() >= 20 && l4[2..4] == dport.to_be_bytes()
}

#[test]
fn vlan_tagged_frames_are_forwarded_with_their_tag() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::new().expect("topology");
    let (mac_a, mac_b) = (mac_of(&t.a, "host-a"), mac_of(&t.b, "host-b"));
    let echo = tagged_ipv4(mac_a, mac_b, 1, &icmp_echo(0x2020));
    assert_eq!(
        cross(&t, &echo, is_echo(0x2020)),
        None,
        "nothing crosses before the DUT runs"
    );

    let mut dut = Dut::start(&t, dut_config(FailMode::Closed), ALLOW_ALL).expect("DUT starts");
    assert!(t.ping_eventually(), "untagged ping through the DUT");
    assert_eq!(
        cross(&t, &echo, is_echo(0x2020)),
        Some(Some(VLAN_ID)),
        "a VLAN 20 echo request reaches host-b, still tagged 20"
    );
    let syn = tagged_ipv4(mac_a, mac_b, 6, &tcp_syn(40080, 8080));
    assert_eq!(
        cross(&t, &syn, is_syn_to(8080)),
        Some(Some(VLAN_ID)),
        "a VLAN 20 TCP SYN reaches host-b, still tagged 20"
    );
    let handled = dut.stop(Stop::Detach);
    assert!(handled > 0, "the worker, not the kernel, forwarded");
}

#[test]
fn enforce_policy_classifies_vlan_tagged_frames() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::new().expect("topology");
    let (mac_a, mac_b) = (mac_of(&t.a, "host-a"), mac_of(&t.b, "host-b"));
    let mut dut = Dut::start(&t, dut_config(FailMode::Closed), ALLOW_ALL).expect("DUT starts");
    assert!(t.ping_eventually(), "untagged ping through the DUT");
    let syn_445 = tagged_ipv4(mac_a, mac_b, 6, &tcp_syn(40445, 445));
    assert_eq!(
        cross(&t, &syn_445, is_syn_to(445)),
        Some(Some(VLAN_ID)),
        "under allow-all a VLAN 20 SYN to 445 crosses (so a miss below is the policy)"
    );

    dut.policy.publish(snapshot(DENY_445, 2));
    // A new source port: a new flow, classified by the enforce policy.
    let syn_445 = tagged_ipv4(mac_a, mac_b, 6, &tcp_syn(40446, 445));
    assert_eq!(
        cross(&t, &syn_445, is_syn_to(445)),
        None,
        "a VLAN 20 SYN to 445 is denied in enforce"
    );
    let syn_22 = tagged_ipv4(mac_a, mac_b, 6, &tcp_syn(40022, 22));
    assert_eq!(
        cross(&t, &syn_22, is_syn_to(22)),
        Some(Some(VLAN_ID)),
        "a VLAN 20 SYN to 22 is allowed"
    );
    let echo = tagged_ipv4(mac_a, mac_b, 1, &icmp_echo(0x2121));
    assert_eq!(
        cross(&t, &echo, is_echo(0x2121)),
        Some(Some(VLAN_ID)),
        "a VLAN 20 echo request is allowed"
    );
    dut.stop(Stop::Detach);
}
