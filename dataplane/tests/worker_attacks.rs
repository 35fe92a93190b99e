//! Attacks on the worker's state, on the in-memory backend with real frames:
//! what a hostile workload sends to ride, spoof or escape a flow. Each test
//! failed on the worker before the fix it names (`docs/decisions.md`,
//! "Closing the policy and quarantine bypasses"); the same attacks run with
//! real sockets through the live appliance in `afxdp_attacks.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod worker_bed;

use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder};
use worker_bed::*;

const STRANGER: [u8; 6] = [2, 0, 0, 0, 9, 9];
const QUARANTINE_WEB2: &str = "quarantine: [\"02:00:00:00:01:02\"]\n";

fn spoofs(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Spoof(_)))
        .count()
}

#[test]
fn a_crafted_ack_does_not_let_a_later_syn_through_the_reverse_rule() {
    // admin may open SSH to anyone; web may not open SSH to admin.
    for attacker_port in [22, 40000] {
        let mut bed = Bed::new("");
        let (web, admin) = ((WEB, WEB_IP, attacker_port), (ADMIN, ADMIN_IP, 22));
        // One stray ACK from web to admin:22 (it never reaches a socket: a bad
        // checksum, or the host answers RST). From port 22 it looks like the
        // reply of an SSH session admin opened to web, and is picked up as
        // one; from another port it is denied.
        let stray_passes = bed.passes(Port::A, &tcp(web, admin, "A", b""));
        assert_eq!(stray_passes, attacker_port == 22);
        // Then a real connect() from the same port: a new connection, denied.
        assert!(
            !bed.passes(Port::A, &tcp(web, admin, "S", b"")),
            "the SYN is decided as a new connection (source port {attacker_port})"
        );
        assert!(
            !bed.passes(Port::A, &tcp(web, admin, "S", b"")),
            "retransmitted"
        );
        let s = bed.worker.stats();
        assert_eq!(s.syn_refused, 2, "source port {attacker_port}");
    }
}

#[test]
fn a_syn_never_rides_an_entry_picked_up_in_the_other_direction() {
    // The entry exists the right way round: admin's SSH session to web, picked
    // up mid-stream. web then opens its own connection on the same ports.
    let mut bed = Bed::new("");
    let (admin, web) = ((ADMIN, ADMIN_IP, 22), (WEB, WEB_IP, 22));
    assert!(bed.passes(Port::B, &tcp(admin, web, "PA", b"mid-stream")));
    assert!(bed.passes(Port::A, &tcp(web, admin, "A", b"")));
    assert!(
        !bed.passes(Port::A, &tcp(web, admin, "S", b"")),
        "web's SYN to admin:22 is refused"
    );
    assert_eq!(bed.worker.stats().syn_refused, 1);
    // The session it tried to ride is untouched.
    assert!(bed.passes(Port::B, &tcp(admin, web, "PA", b"still here")));
    assert!(bed.passes(Port::A, &tcp(web, admin, "A", b"")));
}

#[test]
fn a_connection_picked_up_with_the_servers_packet_first_goes_on() {
    // After an eviction or a restart, the first packet seen may be the
    // server's: db:5432 -> web's ephemeral port.
    let mut bed = Bed::new("");
    let (c, s) = ((WEB, WEB_IP, 40123), (DB, DB_IP, 5432));
    assert!(
        bed.passes(Port::B, &tcp(s, c, "PA", b"row 1")),
        "the server's packet is the reply of an allowed flow"
    );
    for i in 0..50 {
        assert!(bed.passes(Port::A, &tcp(c, s, "A", b"")), "client ack {i}");
        assert!(bed.passes(Port::B, &tcp(s, c, "PA", b"row")), "row {i}");
    }
    // The client reconnecting on the same port is a new, allowed connection.
    assert!(bed.passes(Port::A, &tcp(c, s, "S", b"")));
    assert!(bed.passes(Port::B, &tcp(s, c, "SA", b"")));
}

#[test]
fn a_frame_with_a_live_flows_addresses_from_another_mac_is_decided_alone() {
    let mut bed = Bed::new("");
    let (c, s) = ((WEB, WEB_IP, 40000), (DB, DB_IP, 5432));
    assert!(bed.passes(Port::A, &tcp(c, s, "S", b"")));
    assert!(bed.passes(Port::B, &tcp(s, c, "SA", b"")));
    assert!(bed.passes(Port::A, &tcp(c, s, "A", b"")));
    bed.events();

    // A host with no group sends as web, with web's ports.
    let spoofed = ((STRANGER, WEB_IP, 40000), (DB, DB_IP, 5432));
    assert!(!bed.passes(Port::A, &tcp(spoofed.0, spoofed.1, "PA", b"x")));
    // ... or answers as db.
    assert!(!bed.passes(Port::B, &tcp((STRANGER, DB_IP, 5432), c, "PA", b"y")));
    assert_eq!(bed.worker.stats().spoofed, 2);
    assert_eq!(spoofs(&bed.events()), 2);

    // A quarantined host that takes web's addresses is still quarantined.
    bed.publish(QUARANTINE_WEB2, 2);
    assert!(bed.passes(Port::A, &tcp(c, s, "PA", b"web itself")));
    let as_web = ((WEB2, WEB_IP, 40000), (DB, DB_IP, 5432));
    assert!(!bed.passes(Port::A, &tcp(as_web.0, as_web.1, "PA", b"z")));
    assert_eq!(bed.worker.stats().drops(DropReason::Quarantine), 1);
}

fn arp(src: [u8; 6], dst: [u8; 6], op: u16, sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&src);
    f.extend_from_slice(&sender_ip);
    f.extend_from_slice(&if op == 1 { [0; 6] } else { dst });
    f.extend_from_slice(&target_ip);
    f
}

fn icmpv6(src: [u8; 6], dst: [u8; 6], kind: Icmpv6Type, payload: &[u8]) -> Vec<u8> {
    let from = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2];
    let to = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let b = PacketBuilder::ethernet2(src, dst)
        .ipv6(from, to, 255)
        .icmpv6(kind);
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("builder writes to a Vec");
    out
}

const BROADCAST: [u8; 6] = [0xff; 6];
const ALL_NODES: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

#[test]
fn quarantine_cuts_arp_and_neighbour_discovery_except_with_management_hosts() {
    let mut bed = Bed::new(QUARANTINE_WEB2);
    // The quarantined host may resolve the management host, and be answered.
    assert!(bed.passes(Port::A, &arp(WEB2, BROADCAST, 1, WEB2_IP, ADMIN_IP)));
    assert!(bed.passes(Port::B, &arp(ADMIN, WEB2, 2, ADMIN_IP, WEB2_IP)));
    // Nothing else: questions for other hosts, gratuitous ARP (a poisoning
    // attempt), answers from other hosts, replies to them.
    assert!(!bed.passes(Port::A, &arp(WEB2, BROADCAST, 1, WEB2_IP, DB_IP)));
    assert!(!bed.passes(Port::A, &arp(WEB2, BROADCAST, 1, WEB2_IP, WEB2_IP)));
    assert!(!bed.passes(Port::A, &arp(WEB2, DB, 2, DB_IP, DB_IP)));
    assert!(!bed.passes(Port::B, &arp(DB, WEB2, 2, DB_IP, WEB2_IP)));
    // A router advertisement (a rogue default route) and a neighbour
    // advertisement to all nodes.
    let ra = icmpv6(
        WEB2,
        ALL_NODES,
        Icmpv6Type::Unknown {
            type_u8: 134,
            code_u8: 0,
            bytes5to8: [64, 0, 0x07, 0x08],
        },
        &[0; 8],
    );
    assert!(!bed.passes(Port::A, &ra));
    let na = icmpv6(
        WEB2,
        ALL_NODES,
        Icmpv6Type::Unknown {
            type_u8: 136,
            code_u8: 0,
            bytes5to8: [0x20, 0, 0, 0],
        },
        &[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    );
    assert!(!bed.passes(Port::A, &na));
    // Non-IP from or to it.
    let mut lldp = Vec::new();
    lldp.extend_from_slice(&[0x01, 0x80, 0xc2, 0, 0, 0x0e]);
    lldp.extend_from_slice(&WEB2);
    lldp.extend_from_slice(&[0x88, 0xcc]);
    lldp.extend_from_slice(&[0; 46]);
    assert!(!bed.passes(Port::A, &lldp));
    assert_eq!(bed.worker.stats().drops(DropReason::Quarantine), 7);

    // The same frames from a host that is not quarantined pass as before.
    let mut free = Bed::new("");
    assert!(free.passes(Port::A, &arp(WEB2, BROADCAST, 1, WEB2_IP, DB_IP)));
    assert!(free.passes(Port::A, &ra));
}

#[test]
fn the_management_exception_is_bound_to_the_management_hosts_mac() {
    let mut bed = Bed::new(QUARANTINE_WEB2);
    let ssh = (WEB2, WEB2_IP, 22);
    // admin's own MAC at admin's address reaches the quarantined host ...
    assert!(bed.passes(Port::B, &tcp((ADMIN, ADMIN_IP, 50022), ssh, "S", b"")));
    // ... a host that took admin's address does not.
    assert!(!bed.passes(Port::B, &tcp((LEGACY, ADMIN_IP, 50023), ssh, "S", b"")));
    assert!(!bed.passes(Port::B, &tcp((STRANGER, ADMIN_IP, 50024), ssh, "S", b"")));
    // Nor does one riding admin's live session from another MAC.
    assert!(!bed.passes(Port::B, &tcp((STRANGER, ADMIN_IP, 50022), ssh, "PA", b"")));
    assert_eq!(bed.worker.stats().drops(DropReason::Quarantine), 3);
}

/// An ICMP port-unreachable from `src` to `dst` quoting the first bytes of
/// `quoted` (an Ethernet frame).
fn unreachable(src: ([u8; 6], [u8; 4]), dst: ([u8; 6], [u8; 4]), quoted: &[u8]) -> Vec<u8> {
    use etherparse::icmpv4::DestUnreachableHeader;
    let b = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(src.1, dst.1, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Port,
        ));
    let mut out = Vec::new();
    b.write(&mut out, &quoted[14..14 + 28])
        .expect("builder writes to a Vec");
    out
}

#[test]
fn an_icmp_error_about_a_flow_must_come_from_that_flows_hosts() {
    let mut bed = Bed::new("");
    let (c, s) = ((WEB, WEB_IP, 40000), (DB, DB_IP, 5432));
    let syn = tcp(c, s, "S", b"");
    assert!(bed.passes(Port::A, &syn));
    // From another MAC, claiming db's address: dropped, reported.
    let forged = unreachable((STRANGER, DB_IP), (WEB, WEB_IP), &syn);
    assert!(!bed.passes(Port::B, &forged));
    assert_eq!(bed.worker.stats().drops(DropReason::Spoofed), 1);
    assert_eq!(spoofs(&bed.events()), 1);
    // From db itself: follows the flow.
    let real = unreachable((DB, DB_IP), (WEB, WEB_IP), &syn);
    assert!(bed.passes(Port::B, &real));
}

#[test]
fn an_address_another_mac_holds_is_refused_to_new_flows_arp_and_neighbour_discovery() {
    let mut bed = Bed::new("");
    let web_ip = std::net::IpAddr::from(WEB_IP);
    let bound = bed
        .cell
        .load()
        .with_bindings([(web_ip, dataplane::wire::MacAddr(WEB))]);
    bed.cell.publish(bound);
    let db = (DB, DB_IP, 5432);
    // web itself: a new flow, and its ARP.
    assert!(bed.passes(Port::A, &tcp((WEB, WEB_IP, 40000), db, "S", b"")));
    assert!(bed.passes(Port::A, &arp(WEB, BROADCAST, 1, WEB_IP, DB_IP)));
    // Another MAC (a quarantined host with a new MAC, an impostor) using
    // web's address: a new flow, ARP announcing it.
    assert!(!bed.passes(Port::A, &tcp((STRANGER, WEB_IP, 40001), db, "S", b"")));
    assert!(!bed.passes(Port::A, &arp(STRANGER, BROADCAST, 1, WEB_IP, DB_IP)));
    assert!(!bed.passes(Port::A, &arp(STRANGER, DB, 2, WEB_IP, DB_IP)));
    // The spoofed flow took no slot in the table; the frames are counted.
    assert_eq!(bed.worker.flows().len(), 1);
    let s = bed.worker.stats();
    assert_eq!((s.drops(DropReason::Spoofed), s.spoofed), (3, 3));
    assert_eq!(spoofs(&bed.events()), 3);
    // An unbound address is anyone's.
    let free = (STRANGER, [10, 0, 1, 99], 40002);
    assert!(
        !bed.passes(Port::A, &tcp(free, db, "S", b"")),
        "default deny"
    );
    assert_eq!(bed.worker.stats().drops(DropReason::Spoofed), 3);
}

/// Non-IP frames a host with no rights sends to db: a local experimental
/// ethertype, MPLS and PPPoE session frames and LLC/SNAP, the last three
/// carrying an IPv4 packet to db's PostgreSQL port.
fn non_ip_frames(src: [u8; 6]) -> Vec<Vec<u8>> {
    let ip = tcp((src, [10, 0, 9, 9], 40000), (DB, DB_IP, 5432), "S", b"");
    let inner = &ip[14..];
    let frame = |ethertype: u16, body: &[u8]| {
        let mut f = Vec::new();
        f.extend_from_slice(&DB);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(body);
        f
    };
    let mpls = [&[0x00, 0x01, 0x01, 0x40][..], inner].concat();
    let pppoe = [&[0x11, 0x00, 0x00, 0x01, 0x00, 0x2a, 0x00, 0x21][..], inner].concat();
    let snap = [&[0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00][..], inner].concat();
    vec![
        frame(0x88b5, &[0x42; 46]),
        frame(0x8847, &mpls),
        frame(0x8864, &pppoe),
        frame(snap.len() as u16, &snap),
    ]
}

#[test]
fn non_ip_frames_follow_the_ends_modes() {
    let mut bed = Bed::new("");
    // From a MAC in no group (enforce by default) to db (enforce): dropped.
    for f in non_ip_frames(STRANGER) {
        assert!(!bed.passes(Port::A, &f));
    }
    assert_eq!(bed.worker.stats().drops(DropReason::NonIp), 4);
    // Between the two legacy workloads (audit): passed.
    let mut between_legacy = non_ip_frames(LEGACY);
    for f in &mut between_legacy {
        f[..6].copy_from_slice(&LEGACY2);
        assert!(bed.passes(Port::A, f));
    }
    // An ethertype the operator allows passes whatever the modes.
    let cfg = WorkerConfig {
        non_ip_allow: vec![0x88b5],
        ..WorkerConfig::default()
    };
    let mut allowing = Bed::with("", cfg, 64);
    let frames = non_ip_frames(STRANGER);
    assert!(allowing.passes(Port::A, &frames[0]));
    assert!(!allowing.passes(Port::A, &frames[1]));
}

#[test]
fn packets_with_ttl_zero_are_dropped() {
    let mut bed = Bed::new("");
    let (c, s) = ((WEB, WEB_IP, 40000), (DB, DB_IP, 5432));
    let mut v4 = tcp(c, s, "S", b"");
    v4[14 + 8] = 0;
    // (The IPv4 header checksum is stale now: nobody checks it on the way.)
    assert!(!bed.passes(Port::A, &v4));
    let mut out = Vec::new();
    PacketBuilder::ethernet2(WEB, DB)
        .ipv6(
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            0,
        )
        .tcp(40000, 5432, 1, 65535)
        .syn()
        .write(&mut out, b"")
        .expect("builder writes to a Vec");
    assert!(!bed.passes(Port::A, &out));
    assert_eq!(bed.worker.stats().drops(DropReason::ZeroTtl), 2);
    assert!(bed.passes(Port::A, &tcp(c, s, "S", b"")), "TTL 64 passes");
}
