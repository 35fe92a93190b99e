//! AF_XDP with real packets: VLAN-tagged frames (written on packet sockets,
//! as this kernel has no 802.1Q devices, or tagged by a tc program the way a
//! VLAN device tags them) through the worker, classified with their VLAN and
//! forwarded tagged. Root rules as in `afxdp.rs`.
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod afxdp_bed;

use afxdp_bed::*;
use aya::programs::{tc, SchedClassifier, TcAttachType};
use dataplane::wire::emit::{Frame, IcmpRepr, Ipv4Repr, L4Repr, TcpRepr, VlanTag, Vlans};
use dataplane::wire::{icmp, MacAddr, TcpFlags};

/// tc programs pushing a tag beside the frame (tests/bpf/vlan_push.c).
const VLAN_PUSH: &[u8] = include_bytes!("bpf/vlan_push.o");

/// What an IPv4 frame of these tests carries: a transport header and its payload.
type Transport = (L4Repr, &'static [u8]);

/// An Ethernet frame tagged with VLAN_ID, IPv4 VLAN_A -> VLAN_B, carrying `l4`.
fn tagged_ipv4(src: [u8; 6], dst: [u8; 6], l4: Transport) -> Vec<u8> {
    ipv4_frame(src, dst, Vlans::One(VlanTag::dot1q(VLAN_ID)), l4)
}

/// An Ethernet frame with `vlans`, IPv4 VLAN_A -> VLAN_B, carrying `l4`, every
/// checksum filled in.
fn ipv4_frame(src: [u8; 6], dst: [u8; 6], vlans: Vlans, (l4, payload): Transport) -> Vec<u8> {
    let ip = Ipv4Repr {
        ident: 0x1234,
        dont_frag: true,
        ..Ipv4Repr::new(VLAN_A.into(), VLAN_B.into())
    };
    let mut frame = Frame::new(MacAddr(dst), MacAddr(src), ip, l4, payload);
    frame.eth.vlans = vlans;
    frame.to_vec().expect("a short frame")
}

/// An ICMP echo request with this identifier.
fn icmp_echo(ident: u16) -> Transport {
    let echo = IcmpRepr::echo(icmp::v4::ECHO_REQUEST, ident, 1);
    (L4Repr::Icmp(echo), b"bulkhead-vlan-test")
}

/// A TCP SYN from `sport` to `dport`.
fn tcp_syn(sport: u16, dport: u16) -> Transport {
    let syn = TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq: 0x0102_0304,
        flags: TcpFlags(TcpFlags::SYN),
        window: 64240,
        ..TcpRepr::default()
    };
    (L4Repr::Tcp(syn), b"")
}

/// Send `frame` out of host-a, `count` times.
fn send_from_a(t: &Topology, frame: Vec<u8>, count: usize) {
    in_netns(&t.a, move || send_here(&frame, count))
        .join()
        .unwrap()
        .unwrap();
}

/// Send `frame` `count` times on host-a (the calling thread is in its namespace).
fn send_here(frame: &[u8], count: usize) {
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
        assert_eq!(n, frame.len() as isize, "send a frame");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Send `frame` from host-a `count` times with tc program `prog` on host-a's
/// egress: the tag it pushes rides beside the frame (skb metadata) until
/// host-a's veth inserts it, as a tag from a VLAN sub-interface does.
fn send_from_a_tagged_by(t: &Topology, prog: &'static str, frame: Vec<u8>, count: usize) {
    in_netns(&t.a, move || {
        let mut bpf = aya::Ebpf::load(VLAN_PUSH).expect("load vlan_push.o");
        let p: &mut SchedClassifier = bpf
            .program_mut(prog)
            .expect("the program is in the object")
            .try_into()
            .expect("a tc program");
        p.load().expect("the verifier accepts it");
        // Needed before Linux 6.6 (no tcx); an existing clsact is fine.
        let _ = tc::qdisc_add_clsact("host-a");
        let link = p
            .attach("host-a", TcAttachType::Egress)
            .expect("attach on egress");
        send_here(&frame, count);
        p.detach(link).expect("detach");
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
        self.find_tags(wait, want).map(|tags| tags.last().copied())
    }

    /// [`Capture::find`] with every tag, outermost first (the receiving
    /// kernel moves the outer one into the packet's auxiliary data).
    fn find_tags(&self, wait: Duration, want: impl Fn(u8, &[u8]) -> bool) -> Option<Vec<u16>> {
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
            let mut tags: Vec<u16> = aux_vlan.into_iter().collect();
            let mut l3 = 14;
            while matches!(frame[l3 - 2..l3], [0x81, 0x00] | [0x88, 0xa8]) && frame.len() >= l3 + 4
            {
                tags.push(u16::from_be_bytes([frame[l3], frame[l3 + 1]]) & 0x0fff);
                l3 += 4;
            }
            if frame.len() < l3 + 20 || frame[l3 - 2..l3] != [0x08, 0x00] {
                continue;
            }
            let ip = &frame[l3..];
            if ip[12..16] != VLAN_A || ip[16..20] != VLAN_B {
                continue;
            }
            if want(ip[9], &ip[20..]) {
                return Some(tags);
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
    let echo = tagged_ipv4(mac_a, mac_b, icmp_echo(0x2020));
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
    let syn = tagged_ipv4(mac_a, mac_b, tcp_syn(40080, 8080));
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
    let syn_445 = tagged_ipv4(mac_a, mac_b, tcp_syn(40445, 445));
    assert_eq!(
        cross(&t, &syn_445, is_syn_to(445)),
        Some(Some(VLAN_ID)),
        "under allow-all a VLAN 20 SYN to 445 crosses (so a miss below is the policy)"
    );

    dut.policy.publish(snapshot(DENY_445, 2));
    // A new source port: a new flow, classified by the enforce policy.
    let syn_445 = tagged_ipv4(mac_a, mac_b, tcp_syn(40446, 445));
    assert_eq!(
        cross(&t, &syn_445, is_syn_to(445)),
        None,
        "a VLAN 20 SYN to 445 is denied in enforce"
    );
    let syn_22 = tagged_ipv4(mac_a, mac_b, tcp_syn(40022, 22));
    assert_eq!(
        cross(&t, &syn_22, is_syn_to(22)),
        Some(Some(VLAN_ID)),
        "a VLAN 20 SYN to 22 is allowed"
    );
    let echo = tagged_ipv4(mac_a, mac_b, icmp_echo(0x2121));
    assert_eq!(
        cross(&t, &echo, is_echo(0x2121)),
        Some(Some(VLAN_ID)),
        "a VLAN 20 echo request is allowed"
    );
    dut.stop(Stop::Detach);
}

#[test]
fn tags_a_sender_inserts_in_hardware_cross_with_the_tag() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::new().expect("topology");
    let (mac_a, mac_b) = (mac_of(&t.a, "host-a"), mac_of(&t.b, "host-b"));
    // host-a's veth inserts tags in "hardware" (the veth default, set again
    // here in case an earlier run changed it): the tag would travel beside
    // the frame into the DUT's XDP program, which cannot see it there. The
    // DUT turns it off on its peer at start.
    run(&[
        "ip",
        "netns",
        "exec",
        &t.a,
        "ethtool",
        "-K",
        "host-a",
        "txvlan",
        "on",
        "tx-vlan-stag-hw-insert",
        "on",
    ])
    .expect("tx VLAN offload on");
    let mut dut = Dut::start(&t, dut_config(FailMode::Closed), ALLOW_ALL).expect("DUT starts");
    assert!(t.ping_eventually(), "untagged ping through the DUT");

    // An untagged frame tagged 20 on its way out of host-a, as a VLAN 20
    // sub-interface tags it.
    let echo = ipv4_frame(mac_a, mac_b, Vlans::Untagged, icmp_echo(0x3030));
    let cap = Capture::open(&t);
    send_from_a_tagged_by(&t, "push_ctag", echo, 3);
    assert_eq!(
        cap.find_tags(Duration::from_millis(1500), is_echo(0x3030)),
        Some(vec![VLAN_ID]),
        "the echo request reaches host-b tagged 20"
    );

    // QinQ: a VLAN 20 frame gets an 802.1ad service tag 200 on top.
    let echo = tagged_ipv4(mac_a, mac_b, icmp_echo(0x3131));
    let cap = Capture::open(&t);
    send_from_a_tagged_by(&t, "push_stag", echo, 3);
    assert_eq!(
        cap.find_tags(Duration::from_millis(1500), is_echo(0x3131)),
        Some(vec![200, VLAN_ID]),
        "the QinQ echo request reaches host-b with both tags"
    );
    dut.stop(Stop::Detach);
}

#[test]
fn opening_a_port_stops_it_and_its_veth_peer_moving_tags_out_of_the_frame() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::new().expect("topology");
    let feature = |dev: &str, name: &str| {
        let out = run(&["ip", "netns", "exec", &t.dut, "ethtool", "-k", dev]).expect("ethtool -k");
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{dev} reports {name}"))
            .to_string();
        line.contains(": on")
    };
    // A veth pair inside the DUT's namespace: the peer is reachable.
    run(&[
        "ip", "-n", &t.dut, "link", "add", "vx0", "type", "veth", "peer", "name", "vx1",
    ])
    .expect("veth pair");
    assert!(feature("vx0", "rx-vlan-offload") && feature("vx1", "tx-vlan-offload"));
    let setup = in_netns(&t.dut, || keep_vlan_tags("vx0").map_err(|e| e.to_string()))
        .join()
        .unwrap()
        .unwrap()
        .expect("vx0 can stop stripping tags");
    assert_eq!(
        setup.turned_off,
        [
            "vx0: rx-vlan-hw-parse",
            "vx0: rx-vlan-stag-hw-parse",
            "vx1: tx-vlan-hw-insert",
            "vx1: tx-vlan-stag-hw-insert"
        ]
    );
    assert_eq!(setup.unchecked_peer, None);
    assert!(!feature("vx0", "rx-vlan-offload") && !feature("vx1", "tx-vlan-offload"));
    assert!(!feature("vx1", "tx-vlan-stag-hw-insert"));

    // Again: nothing left to change.
    let again = in_netns(&t.dut, || keep_vlan_tags("vx0").map_err(|e| e.to_string()))
        .join()
        .unwrap()
        .unwrap()
        .expect("still fine");
    assert!(again.turned_off.is_empty(), "{again:?}");

    // The DUT's port dut-a: its peer host-a is in another namespace, which
    // bulkhead finds and enters.
    let host_a = |args: &[&str]| {
        let mut cmd = vec!["ip", "netns", "exec", &t.a, "ethtool"];
        cmd.extend_from_slice(args);
        run(&cmd).expect("ethtool on host-a")
    };
    host_a(&[
        "-K",
        "host-a",
        "txvlan",
        "on",
        "tx-vlan-stag-hw-insert",
        "on",
    ]);
    let keep = |port: &'static str| {
        in_netns(&t.dut, move || {
            keep_vlan_tags(port).map_err(|e| e.to_string())
        })
        .join()
        .unwrap()
        .unwrap()
        .expect("the port can stop stripping tags")
    };
    let port = keep("dut-a");
    assert_eq!(port.unchecked_peer, None);
    assert!(
        port.turned_off
            .contains(&"host-a (peer of dut-a): tx-vlan-hw-insert".to_string())
            && port
                .turned_off
                .contains(&"host-a (peer of dut-a): tx-vlan-stag-hw-insert".to_string()),
        "{port:?}"
    );
    let features = host_a(&["-k", "host-a"]);
    assert!(features.contains("tx-vlan-offload: off"), "{features}");
    assert!(
        features.contains("tx-vlan-stag-hw-insert: off"),
        "{features}"
    );

    // A peer namespace that no process is in and that is not under
    // /run/netns (kept alive by a mount elsewhere) is out of reach: said at
    // start, not guessed at.
    let hidden = std::env::temp_dir().join(format!("bh-hidden-netns-{}", std::process::id()));
    std::fs::File::create(&hidden).expect("mount point");
    let hidden_s = hidden.to_str().unwrap().to_string();
    let ns_b = format!("/run/netns/{}", t.b);
    run(&["mount", "--bind", &ns_b, &hidden_s]).expect("bind-mount host-b's namespace");
    run(&["umount", &ns_b]).expect("unmount it from /run/netns");
    let port = keep("dut-b");
    run(&["umount", &hidden_s]).expect("unmount the hidden namespace");
    let _ = std::fs::remove_file(&hidden);
    let warning = port.unchecked_peer.expect("the peer is out of reach");
    assert!(
        warning.contains("dut-b") && warning.contains("txvlan off"),
        "{warning}"
    );
}
