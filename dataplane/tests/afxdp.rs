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
