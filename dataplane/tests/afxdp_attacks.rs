//! The policy and quarantine bypasses found by attacking the live appliance,
//! sent again with real packets: host-a <-> DUT (the worker on AF_XDP, kernel
//! tier on) <-> host-b in namespaces, real sockets, and raw frames written on
//! the hosts' veths where an attacker forges them. Each test failed on the
//! appliance before its fix (`docs/decisions.md`, "Closing the policy and
//! quarantine bypasses"). Root rules as in `afxdp.rs`.
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod afxdp_bed;

use afxdp_bed::*;
use dataplane::worker::DropReason;
use etherparse::PacketBuilder;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::FromRawFd;

const STRANGER: [u8; 6] = [2, 0xbd, 0, 0, 0, 0x99];

fn ip4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().expect("IPv4").octets()
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The hosts' MACs as policy text.
fn macs(t: &Topology) -> (String, String) {
    (
        fmt_mac(mac_of(&t.a, "host-a")),
        fmt_mac(mac_of(&t.b, "host-b")),
    )
}

/// host-a in group `a`, host-b in group `b`, ping allowed, `rules` after.
fn policy(t: &Topology, rules: &str, extra: &str) -> String {
    let (a, b) = macs(t);
    format!(
        "default_mode: enforce\ngroups: [{{name: a}}, {{name: b}}]\n\
         endpoints:\n  - {{ mac: \"{a}\", groups: [a] }}\n  - {{ mac: \"{b}\", groups: [b] }}\n\
         rules:\n  - {{ id: 1, src: [any], dst: [any], proto: icmp, action: allow }}\n{rules}{extra}"
    )
}

fn start(t: &Topology, policy: &str) -> Dut {
    let mut cfg = dut_config(FailMode::Closed);
    cfg.offload = true;
    let dut = Dut::start(t, cfg, policy).expect("DUT starts");
    assert!(t.ping_eventually(), "ping through the DUT");
    dut
}

fn tcp_frame(
    src: ([u8; 6], [u8; 4], u16),
    dst: ([u8; 6], [u8; 4], u16),
    syn: bool,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(src.1, dst.1, 64)
        .tcp(src.2, dst.2, 7, 65535);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("builder writes to a Vec");
    out
}

/// A TCP connect from host-a's `sport` to host-b's `dport`: true if the
/// handshake completes within 1.5 s.
fn connect_from_port(t: &Topology, sport: u16, dport: u16) -> bool {
    in_netns(&t.a, move || {
        // SAFETY: plain socket syscalls on an fd owned (and closed) by the
        // TcpStream it is wrapped in at once; sockaddr_in and timeval are live
        // values of the sizes passed.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket");
            let _owned = TcpStream::from_raw_fd(fd);
            let on: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&on as *const libc::c_int).cast(),
                4,
            );
            let tv = libc::timeval {
                tv_sec: 1,
                tv_usec: 500_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            let sin = |ip: &str, port: u16| libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(ip4(ip)),
                },
                sin_zero: [0; 8],
            };
            let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
            let local = sin(HOST_A, sport);
            let rc = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len);
            assert_eq!(rc, 0, "bind {sport}: {}", std::io::Error::last_os_error());
            let remote = sin(HOST_B, dport);
            libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) == 0
        }
    })
    .join()
    .unwrap()
    .unwrap()
}

#[test]
fn a_crafted_ack_then_connect_does_not_reach_a_port_only_the_other_side_may_open() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let t = Topology::named("bh-atk").expect("topology");
    // host-b may open port 2222 on host-a; host-a may not open it on host-b.
    let rules = "  - { id: 2, src: [b], dst: [a], proto: tcp, ports: [2222], action: allow }\n";
    let mut dut = start(&t, &policy(&t, rules, ""));
    let _listener = listen(&t, &[2222]);
    let (a_mac, b_mac) = (mac_of(&t.a, "host-a"), mac_of(&t.b, "host-b"));

    // One ACK from host-a:2222 to host-b:2222 with a bad checksum (host-b's
    // stack drops it silently), then a real connect() from that port.
    let mut ack = tcp_frame(
        (a_mac, ip4(HOST_A), 2222),
        (b_mac, ip4(HOST_B), 2222),
        false,
        b"",
    );
    ack[14 + 20 + 16] ^= 0xff;
    send_frames(&t.a, "host-a", vec![ack]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !connect_from_port(&t, 2222, 2222),
        "host-a reached host-b:2222 by riding the crafted ACK's entry"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(dut.stats().syn_refused >= 1, "{:?}", dut.stats());
    // The attack from an ephemeral port, the other form of the bug.
    let mut ack = tcp_frame(
        (a_mac, ip4(HOST_A), 41000),
        (b_mac, ip4(HOST_B), 2222),
        false,
        b"",
    );
    ack[14 + 20 + 16] ^= 0xff;
    send_frames(&t.a, "host-a", vec![ack]);
    assert!(!connect_from_port(&t, 41000, 2222));
    dut.stop(Stop::Detach);
}

#[test]
fn connections_picked_up_after_a_restart_with_the_servers_packet_first_go_on() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let t = Topology::named("bh-atk").expect("topology");
    let rules = "  - { id: 2, src: [a], dst: [b], proto: tcp, ports: [5001], action: allow }\n";
    let policy = policy(&t, rules, "");
    let mut dut = start(&t, &policy);
    let listener = listen(&t, &[5001]).remove(0);
    let addr: SocketAddr = format!("{HOST_B}:5001").parse().unwrap();
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..4 {
        let c = in_netns(&t.a, move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect")
        })
        .join()
        .unwrap()
        .unwrap();
        let (s, _) = listener.accept().expect("accept");
        for conn in [&c, &s] {
            conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        }
        clients.push(c);
        servers.push(s);
    }
    // As after `kill -9`: the program stays attached (fail-closed while
    // down), a new worker starts with an empty flow table.
    dut.stop(Stop::LeaveAttached);
    let mut dut = start(&t, &policy);

    // Each server speaks first: the first packet the new worker sees of each
    // connection is from host-b:5001, a reply of a flow host-a may open.
    for (i, (c, s)) in clients.iter_mut().zip(&mut servers).enumerate() {
        for line in 0..50 {
            let msg = format!("stream {i} line {line:02}\n");
            s.write_all(msg.as_bytes()).expect("server writes");
            let mut got = vec![0u8; msg.len()];
            c.read_exact(&mut got)
                .unwrap_or_else(|e| panic!("stream {i} line {line} lost after the restart: {e}"));
            assert_eq!(got, msg.as_bytes());
            c.write_all(b"ok\n").expect("client answers");
            let mut ok = [0u8; 3];
            s.read_exact(&mut ok).expect("server reads the answer");
        }
    }
    dut.stop(Stop::Detach);
}

#[test]
fn a_frame_from_another_mac_does_not_ride_an_offloaded_flow() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let t = Topology::named("bh-atk").expect("topology");
    let rules = "  - { id: 2, src: [a], dst: [b], proto: udp, ports: [6000], action: allow }\n";
    let mut dut = start(&t, &policy(&t, rules, ""));
    let sink = in_netns(&t.b, || {
        let s = UdpSocket::bind((HOST_B, 6000)).expect("bind in host-b");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s
    })
    .join()
    .unwrap()
    .unwrap();
    let source = in_netns(&t.a, || {
        UdpSocket::bind((HOST_A, 5000)).expect("bind in host-a")
    })
    .join()
    .unwrap()
    .unwrap();
    let send = |what: &str| {
        source
            .send_to(what.as_bytes(), (HOST_B, 6000))
            .expect("send");
        std::thread::sleep(Duration::from_millis(5));
    };
    for i in 0..40 {
        send(&format!("real {i}"));
    }
    std::thread::sleep(Duration::from_millis(100));
    let carried = dut.stats().offload;
    assert!(
        carried.tier.forwarded_packets > 0,
        "the flow rides the kernel tier: {carried:?}"
    );

    // The same addresses and ports from another MAC.
    let b_mac = mac_of(&t.b, "host-b");
    let spoof = {
        let b = PacketBuilder::ethernet2(STRANGER, b_mac)
            .ipv4(ip4(HOST_A), ip4(HOST_B), 64)
            .udp(5000, 6000);
        let mut out = Vec::new();
        b.write(&mut out, b"SPOOF")
            .expect("builder writes to a Vec");
        out
    };
    send_frames(&t.a, "host-a", vec![spoof; 20]);
    send("real after");

    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while let Ok(n) = sink.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(got.iter().any(|m| m == "real after"), "{got:?}");
    assert!(
        !got.iter().any(|m| m == "SPOOF"),
        "a frame from another MAC rode the flow"
    );
    std::thread::sleep(Duration::from_millis(100));
    let s = dut.stats();
    assert_eq!(
        s.spoofed, 20,
        "every spoofed frame reached userspace: {s:?}"
    );
    dut.stop(Stop::Detach);
}

fn arp_request(src: [u8; 6], sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&sender);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}

fn router_advertisement(src: [u8; 6]) -> Vec<u8> {
    use etherparse::Icmpv6Type;
    let from = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99];
    let all_nodes = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let b = PacketBuilder::ethernet2(src, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(from, all_nodes, 255)
        .icmpv6(Icmpv6Type::Unknown {
            type_u8: 134,
            code_u8: 0,
            bytes5to8: [64, 0, 0x07, 0x08],
        });
    let mut out = Vec::new();
    b.write(&mut out, &[0; 8]).expect("builder writes to a Vec");
    out
}

fn is_arp(f: &[u8]) -> bool {
    f.get(12..14) == Some(&[0x08, 0x06])
}

fn is_router_advertisement(f: &[u8]) -> bool {
    f.get(12..14) == Some(&[0x86, 0xdd]) && f.get(20) == Some(&58) && f.get(54) == Some(&134)
}

#[test]
fn quarantine_cuts_arp_router_advertisements_and_impostors_of_the_management_host() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let t = Topology::named("bh-atk").expect("topology");
    let (a_text, b_text) = macs(&t);
    let rules = "  - { id: 2, src: [b], dst: [a], proto: tcp, ports: [22], action: allow }\n";
    let quarantine = format!(
        "quarantine: [\"{a_text}\"]\nmanagement:\n  - {{ cidr: {HOST_B}/32, macs: [\"{b_text}\"], proto: tcp, ports: [22] }}\n"
    );
    let mut dut = start(&t, &policy(&t, rules, ""));
    let _ssh = in_netns(&t.a, || {
        TcpListener::bind((HOST_A, 22)).expect("bind in host-a")
    })
    .join()
    .unwrap()
    .unwrap();
    dut.policy
        .publish(snapshot(&policy(&t, rules, &quarantine), 2));
    let a_mac = mac_of(&t.a, "host-a");

    // The management host itself still connects (its ARP and the quarantined
    // host's answer included: flush the neighbour caches first).
    for (ns, dev) in [(&t.a, "host-a"), (&t.b, "host-b")] {
        run(&["ip", "-n", ns, "neigh", "flush", "dev", dev]).expect("neigh flush");
    }
    let addr: SocketAddr = format!("{HOST_A}:22").parse().unwrap();
    let ssh = in_netns(&t.b, move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok()
    });
    assert!(
        ssh.join().unwrap().unwrap(),
        "management SSH reaches the quarantined host"
    );

    // From the quarantined host: ARP for a host that is not a management
    // host, a gratuitous ARP (a poisoning attempt), a router advertisement.
    let at_b = Sniffer::open(&t.b, "host-b");
    send_frames(
        &t.a,
        "host-a",
        vec![
            arp_request(a_mac, ip4(HOST_A), [10, 99, 0, 77]),
            arp_request(a_mac, ip4(HOST_A), ip4(HOST_A)),
            router_advertisement(a_mac),
        ],
    );
    let forbidden = |f: &[u8]| {
        let target = f.get(38..42);
        (is_arp(f) && (target == Some(&[10, 99, 0, 77]) || target == Some(&ip4(HOST_A))))
            || is_router_advertisement(f)
    };
    assert_eq!(
        at_b.count(Duration::from_millis(300), forbidden),
        0,
        "ARP or a router advertisement from the quarantined host crossed"
    );

    // A host with no rights that takes the management host's address.
    let at_a = Sniffer::open(&t.a, "host-a");
    let impostor = tcp_frame(
        (STRANGER, ip4(HOST_B), 50022),
        (a_mac, ip4(HOST_A), 22),
        true,
        b"",
    );
    send_frames(&t.b, "host-b", vec![impostor; 5]);
    let reached = at_a.count(Duration::from_millis(300), |f| {
        f.get(6..12) == Some(&STRANGER) && f.get(12..14) == Some(&[0x08, 0x00])
    });
    assert_eq!(reached, 0, "the impostor reached the quarantined host");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        dut.stats().drops(DropReason::Quarantine) >= 8,
        "{:?}",
        dut.stats()
    );
    dut.stop(Stop::Detach);
}

#[test]
fn a_quarantined_host_back_under_a_new_mac_cannot_use_its_bound_address() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let t = Topology::named("bh-atk").expect("topology");
    let mut dut = start(&t, &policy(&t, "", ""));
    let a_mac = dataplane::wire::MacAddr(mac_of(&t.a, "host-a"));
    // The control plane binds host-a's address to its MAC (declared, leased
    // or first seen), then quarantines it.
    let host_a: std::net::IpAddr = HOST_A.parse().unwrap();
    let bound = dut.policy.load().with_bindings([(host_a, a_mac)]);
    dut.policy.publish(bound);
    assert!(t.ping(2), "ping with the binding in place");
    let quarantined = dut.policy.load().with_quarantine([a_mac], 2);
    dut.policy.publish(quarantined);
    assert!(!t.ping(1), "quarantined");

    // The host comes back under a new MAC, with the same address.
    run(&[
        "ip",
        "-n",
        &t.a,
        "link",
        "set",
        "host-a",
        "address",
        "02:bd:00:00:00:42",
    ])
    .expect("new MAC");
    for (ns, dev) in [(&t.a, "host-a"), (&t.b, "host-b")] {
        run(&["ip", "-n", ns, "neigh", "flush", "dev", dev]).expect("neigh flush");
    }
    assert!(!t.ping(3), "the quarantined host is back under a new MAC");
    std::thread::sleep(Duration::from_millis(100));
    let s = dut.stats();
    assert!(s.drops(DropReason::Spoofed) >= 1, "{s:?}");
    dut.stop(Stop::Detach);
}

#[test]
fn non_ip_frames_carrying_ip_do_not_cross_to_an_enforcing_host() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let t = Topology::named("bh-atk").expect("topology");
    let mut dut = start(&t, &policy(&t, "", ""));
    let (a_mac, b_mac) = (mac_of(&t.a, "host-a"), mac_of(&t.b, "host-b"));
    // An IPv4 SYN to host-b:5432, wrapped in MPLS, PPPoE and LLC/SNAP, and a
    // local experimental ethertype.
    let ip = tcp_frame(
        (a_mac, ip4(HOST_A), 40000),
        (b_mac, ip4(HOST_B), 5432),
        true,
        b"",
    );
    let inner = &ip[14..];
    let frame = |ethertype: u16, head: &[u8]| {
        [
            &b_mac[..],
            &a_mac[..],
            &ethertype.to_be_bytes(),
            head,
            inner,
        ]
        .concat()
    };
    let snap_len = (8 + inner.len()) as u16;
    let frames = vec![
        frame(0x88b5, &[0x42; 8]),
        frame(0x8847, &[0x00, 0x01, 0x01, 0x40]),
        frame(0x8864, &[0x11, 0x00, 0x00, 0x01, 0x00, 0x2a, 0x00, 0x21]),
        frame(snap_len, &[0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00]),
    ];
    let at_b = Sniffer::open(&t.b, "host-b");
    send_frames(&t.a, "host-a", frames);
    let crossed = at_b.count(Duration::from_millis(300), |f| {
        f.get(6..12) == Some(&a_mac[..])
            && !matches!(f.get(12..14), Some([0x08, 0x00] | [0x08, 0x06]))
    });
    assert_eq!(crossed, 0, "non-IP frames crossed to an enforcing host");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(dut.stats().drops(DropReason::NonIp), 4, "{:?}", dut.stats());
    dut.stop(Stop::Detach);
}

#[test]
fn packets_with_ttl_or_hop_limit_zero_are_dropped_not_forwarded() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let t = Topology::named("bh-atk").expect("topology");
    let ping6 = "  - { id: 2, src: [any], dst: [any], proto: icmpv6, action: allow }\n";
    let mut dut = start(&t, &policy(&t, ping6, ""));
    let (a_mac, b_mac) = (mac_of(&t.a, "host-a"), mac_of(&t.b, "host-b"));
    let echo4 = |ttl: u8, id: u16| {
        let b = PacketBuilder::ethernet2(a_mac, b_mac)
            .ipv4(ip4(HOST_A), ip4(HOST_B), ttl)
            .icmpv4_echo_request(id, 1);
        let mut out = Vec::new();
        b.write(&mut out, b"ttl").expect("builder writes to a Vec");
        out
    };
    let (a6, b6) = (
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    );
    let echo6 = |hops: u8, id: u16| {
        let b = PacketBuilder::ethernet2(a_mac, b_mac)
            .ipv6(a6, b6, hops)
            .icmpv6_echo_request(id, 1);
        let mut out = Vec::new();
        b.write(&mut out, b"hops").expect("builder writes to a Vec");
        out
    };
    // (echo id, TTL or hop limit) of an echo request.
    let echo_id = |f: &[u8]| -> Option<(u16, u8)> {
        match f.get(12..14)? {
            [0x08, 0x00] if f.get(23) == Some(&1) && f.get(34) == Some(&8) => {
                Some((u16::from_be_bytes([*f.get(38)?, *f.get(39)?]), *f.get(22)?))
            }
            [0x86, 0xdd] if f.get(20) == Some(&58) && f.get(54) == Some(&128) => {
                Some((u16::from_be_bytes([*f.get(58)?, *f.get(59)?]), *f.get(21)?))
            }
            _ => None,
        }
    };
    let at_b = Sniffer::open(&t.b, "host-b");
    // New flows with TTL 0, then flows that start well (TTL 1, host-b
    // answers, the kernel tier takes them over) and go on with TTL 0.
    let mut frames = vec![echo4(0, 0x7701), echo6(0, 0x7702)];
    for _ in 0..4 {
        frames.extend([echo4(1, 0x7703), echo6(1, 0x7704)]);
    }
    send_frames(&t.a, "host-a", frames);
    std::thread::sleep(Duration::from_millis(300));
    send_frames(
        &t.a,
        "host-a",
        vec![
            echo4(0, 0x7703),
            echo6(0, 0x7704),
            echo4(0, 0x7703),
            echo6(0, 0x7704),
        ],
    );
    let seen = std::cell::RefCell::new(Vec::new());
    at_b.count(Duration::from_millis(800), |f| {
        seen.borrow_mut().extend(echo_id(f));
        true
    });
    let seen = seen.into_inner();
    let count = |id: u16, ttl: u8| seen.iter().filter(|&&s| s == (id, ttl)).count();
    assert_eq!(count(0x7701, 0), 0, "an IPv4 packet with TTL 0 crossed");
    assert_eq!(
        count(0x7702, 0),
        0,
        "an IPv6 packet with hop limit 0 crossed"
    );
    assert_eq!(
        count(0x7703, 1),
        4,
        "TTL 1 crosses (the appliance is no router)"
    );
    assert_eq!(count(0x7704, 1), 4, "hop limit 1 crosses");
    assert_eq!(count(0x7703, 0), 0, "TTL 0 crossed on an established flow");
    assert_eq!(
        count(0x7704, 0),
        0,
        "hop limit 0 crossed on an established flow"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        dut.stats().drops(DropReason::ZeroTtl),
        6,
        "{:?}",
        dut.stats()
    );
    dut.stop(Stop::Detach);
}
