//! The kernel tier with real packets: the topology of `afxdp.rs` (host-a <->
//! DUT <-> host-b veths in namespaces named `bh-off-*`), a TCP stream from host-a
//! to host-b, and the worker's counters to tell which tier carried it.
//!
//! Needs root and `ip netns`; without them the tests print why and pass, except
//! in CI (`CI=true`), where they must run.
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod afxdp_bed;

use afxdp_bed::*;
use std::io::{Read, Write};
use std::sync::atomic::AtomicU64;

const STREAM_PORT: u16 = 5001;
const SSH_PORT: u16 = 22;

/// Enforce: ping, the stream's port and SSH allowed, the rest denied.
/// `quarantine`: the quarantined MAC and the management host's (host-b's).
fn policy(stream_allowed: bool, quarantine: Option<(&str, &str)>) -> String {
    let mut p = String::from(
        "default_mode: enforce\nrules:\n  \
         - { id: 1, src: [any], dst: [any], proto: icmp, action: allow }\n  \
         - { id: 2, src: [any], dst: [any], proto: tcp, ports: [22], action: allow }\n",
    );
    if stream_allowed {
        p.push_str(
            "  - { id: 3, src: [any], dst: [any], proto: tcp, ports: [5001], action: allow }\n",
        );
    }
    if let Some((mac, mgmt)) = quarantine {
        p.push_str(&format!(
            "quarantine: [\"{mac}\"]\nmanagement:\n  - {{ cidr: {HOST_B}/32, macs: [\"{mgmt}\"], proto: tcp, ports: [22] }}\n"
        ));
    }
    p
}

fn mac_of(ns: &str, dev: &str) -> String {
    run(&[
        "ip",
        "netns",
        "exec",
        ns,
        "cat",
        &format!("/sys/class/net/{dev}/address"),
    ])
    .expect("read the MAC")
    .trim()
    .to_string()
}

/// A TCP stream host-a -> host-b: a writer that writes as fast as it can and a
/// reader that counts what arrives.
struct Stream {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    threads: Vec<JoinHandle<Result<(), String>>>,
}

impl Stream {
    fn start(t: &Topology, port: u16) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_r, got) = (stop.clone(), received.clone());
        let reader = in_netns(&t.b, move || {
            let listener = TcpListener::bind((HOST_B, port)).expect("bind in host-b");
            ready_tx.send(()).expect("test waits");
            let (mut conn, _) = listener.accept().expect("accept the stream");
            conn.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let mut buf = vec![0u8; 1 << 16];
            while !stop_r.load(Ordering::Relaxed) {
                match conn.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        got.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("listener up");
        let stop_w = stop.clone();
        let addr: SocketAddr = format!("{HOST_B}:{port}").parse().unwrap();
        let writer = in_netns(&t.a, move || {
            let mut conn = (0..20)
                .find_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok())
                .expect("the stream connects");
            conn.set_write_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let chunk = vec![0x5au8; 16 << 10];
            while !stop_w.load(Ordering::Relaxed) {
                let _ = conn.write(&chunk);
            }
        });
        Stream {
            stop,
            received,
            threads: vec![reader, writer],
        }
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Wait until at least `bytes` arrived (or `limit` passed).
    fn wait_for(&self, bytes: u64, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.received() >= bytes {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// How long after `from` the byte count last grew, watching for `watch`.
    fn last_progress_after(&self, from: Instant, watch: Duration) -> Duration {
        let mut last = self.received();
        let mut last_at = Duration::ZERO;
        while from.elapsed() < watch {
            std::thread::sleep(Duration::from_millis(10));
            let now = self.received();
            if now != last {
                (last, last_at) = (now, from.elapsed());
            }
        }
        last_at
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// An echo server on host-b.
fn echo_server(t: &Topology, port: u16) {
    let (ready_tx, ready_rx) = mpsc::channel();
    // Detached: it ends with its namespace.
    let _ = in_netns(&t.b, move || {
        let listener = TcpListener::bind((HOST_B, port)).expect("bind in host-b");
        ready_tx.send(()).expect("test waits");
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("echo server up");
}

/// A connection from host-a, usable from any thread.
fn connect_from_a(t: &Topology, port: u16) -> Option<TcpStream> {
    let addr: SocketAddr = format!("{HOST_B}:{port}").parse().unwrap();
    in_netns(&t.a, move || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(1500)).ok()
    })
    .join()
    .unwrap()
    .unwrap()
}

/// Send a line and read its echo within a second.
fn echoes(conn: &mut TcpStream, line: &str) -> bool {
    conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    if conn.write_all(line.as_bytes()).is_err() {
        return false;
    }
    let mut got = vec![0u8; line.len()];
    conn.read_exact(&mut got).is_ok() && got == line.as_bytes()
}

fn start(t: &Topology, offload: bool, policy: &str) -> Dut {
    let mut cfg = dut_config(FailMode::Closed);
    cfg.offload = offload;
    let dut = Dut::start(t, cfg, policy).expect("DUT starts");
    assert_eq!(dut.offloaded, offload);
    assert!(t.ping_eventually(), "ping through the DUT");
    dut
}

#[test]
fn an_established_tcp_stream_is_carried_by_the_kernel_tier() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::named("bh-off").expect("topology");
    let mut dut = start(&t, true, &policy(true, None));
    let stream = Stream::start(&t, STREAM_PORT);
    assert!(
        stream.wait_for(20 << 20, Duration::from_secs(20)),
        "20 MiB through the DUT"
    );
    std::thread::sleep(Duration::from_millis(200)); // a fresh stats snapshot
    let s = dut.stats();
    let user = s.ports[0].rx_packets + s.ports[1].rx_packets;
    let kernel = s.offload.tier.forwarded_packets;
    eprintln!(
        "20 MiB stream: kernel tier {kernel} packets ({} bytes), userspace {user} packets; offload {:?}",
        s.offload.tier.forwarded_bytes, s.offload
    );
    assert!(
        s.offload.installed >= 1 && s.offload.live >= 1,
        "{:?}",
        s.offload
    );
    assert!(
        kernel > 20 * user,
        "the kernel tier carries the stream: {kernel} kernel vs {user} userspace packets"
    );
    assert!(s.offload.tier.forwarded_bytes > 20 << 20);
    stream.stop();

    // The FIN goes to userspace, which takes the flow back out of the kernel.
    let deadline = Instant::now() + Duration::from_secs(3);
    while dut.stats().offload.removed == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        dut.stats().offload.removed >= 1,
        "{:?}",
        dut.stats().offload
    );
    dut.stop(Stop::Detach);
}

#[test]
fn a_quarantine_stalls_an_offloaded_stream_within_a_second_but_not_the_management_channel() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::named("bh-off").expect("topology");
    let mut dut = start(&t, true, &policy(true, None));
    echo_server(&t, SSH_PORT);
    let mut ssh = connect_from_a(&t, SSH_PORT).expect("SSH connects");
    for i in 0..3 {
        assert!(echoes(&mut ssh, &format!("hello {i}\n")), "SSH echoes");
    }
    let stream = Stream::start(&t, STREAM_PORT);
    assert!(
        stream.wait_for(4 << 20, Duration::from_secs(20)),
        "stream runs"
    );
    std::thread::sleep(Duration::from_millis(200));
    let before = dut.stats().offload;
    assert!(before.live >= 2, "stream and SSH offloaded: {before:?}");
    assert!(before.tier.forwarded_packets > 1000, "{before:?}");

    let host_a = mac_of(&t.a, "host-a");
    let host_b = mac_of(&t.b, "host-b");
    let t0 = Instant::now();
    dut.policy
        .publish(snapshot(&policy(true, Some((&host_a, &host_b))), 2));
    // Before `publish` returned (before a control thread would answer), the
    // kernel stopped honouring the entries decided under generation 1,
    // whether or not the worker has polled since.
    let fence = dut.fence.as_ref().expect("offload on");
    assert_eq!(fence.current().expect("kernel generation"), 3);
    let stalled_after = stream.last_progress_after(t0, Duration::from_secs(2));
    eprintln!("stream's last progress {stalled_after:?} after the quarantine");
    assert!(
        stalled_after < Duration::from_secs(1),
        "the stream stalls within a second (last progress after {stalled_after:?})"
    );
    // The established management channel goes on, a new one opens, ping does not.
    assert!(
        echoes(&mut ssh, "still here\n"),
        "SSH echoes after the quarantine"
    );
    assert!(connect_from_a(&t, SSH_PORT).is_some(), "a new SSH connects");
    assert!(!t.ping(2), "ping is quarantined");
    let during = dut.stats().offload;
    eprintln!("after the quarantine: {during:?}");
    assert!(during.invalidated >= 2, "{during:?}");
    assert!(
        during.tier.dropped_packets > 0,
        "the cut stream's retransmissions are dropped in the kernel: {during:?}"
    );

    // Released: the stream resumes (after TCP's retransmission backoff).
    let resumed_from = stream.received();
    dut.policy.publish(snapshot(&policy(true, None), 3));
    assert!(
        stream.wait_for(resumed_from + (1 << 20), Duration::from_secs(15)),
        "the stream resumes after the release"
    );
    stream.stop();
    dut.stop(Stop::Detach);
}

#[test]
fn a_policy_that_denies_the_service_cuts_its_offloaded_stream() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::named("bh-off").expect("topology");
    let mut dut = start(&t, true, &policy(true, None));
    let _ssh = listen(&t, &[SSH_PORT]);
    let stream = Stream::start(&t, STREAM_PORT);
    assert!(
        stream.wait_for(4 << 20, Duration::from_secs(20)),
        "stream runs"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(dut.stats().offload.tier.forwarded_packets > 1000);

    let t0 = Instant::now();
    dut.policy.publish(snapshot(&policy(false, None), 2));
    let stalled_after = stream.last_progress_after(t0, Duration::from_secs(2));
    eprintln!("stream's last progress {stalled_after:?} after the commit");
    assert!(
        stalled_after < Duration::from_secs(1),
        "the denied stream stalls within a second (last progress after {stalled_after:?})"
    );
    assert!(connects(&t, SSH_PORT), "SSH is still allowed");
    assert!(t.ping(2), "ping is still allowed");
    stream.stop();
    dut.stop(Stop::Detach);
}

#[test]
fn offload_off_keeps_every_packet_in_userspace() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::named("bh-off").expect("topology");
    let mut dut = start(&t, false, &policy(true, None));
    let stream = Stream::start(&t, STREAM_PORT);
    assert!(
        stream.wait_for(4 << 20, Duration::from_secs(20)),
        "4 MiB through the DUT"
    );
    std::thread::sleep(Duration::from_millis(200));
    let s = dut.stats();
    let user = s.ports[0].rx_packets + s.ports[1].rx_packets;
    eprintln!(
        "offload off, 4 MiB stream: userspace {user} packets; {:?}",
        s.offload
    );
    assert_eq!(s.offload, Default::default(), "no kernel tier at all");
    assert!(
        user > (4 << 20) / 1500,
        "every segment crossed userspace: {user}"
    );
    stream.stop();
    dut.stop(Stop::Detach);
}

#[test]
fn an_offloaded_stream_follows_the_fail_mode_once_the_worker_stops() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::named("bh-off").expect("topology");
    let mut dut = start(&t, true, &policy(true, None));
    let stream = Stream::start(&t, STREAM_PORT);
    assert!(
        stream.wait_for(4 << 20, Duration::from_secs(20)),
        "stream runs"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(dut.stats().offload.tier.forwarded_packets > 1000);

    // Fail-closed: with no socket bound, the kernel tier must not go on alone.
    let t0 = Instant::now();
    dut.stop(Stop::LeaveAttached);
    let stalled_after = stream.last_progress_after(t0, Duration::from_secs(2));
    eprintln!("stream's last progress {stalled_after:?} after the worker stopped");
    assert!(
        stalled_after < Duration::from_secs(1),
        "fail-closed stops the offloaded stream (last progress after {stalled_after:?})"
    );
    stream.stop();
}
