//! The worker end to end on the in-memory backend: real frames (built with
//! etherparse) in on one port, out on the other or dropped, events out.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod worker_bed;

use worker_bed::*;

#[test]
fn allowed_tcp_handshake_passes_both_ways() {
    let mut bed = Bed::new("");
    let (c, s) = ((WEB, WEB_IP, 40000), (DB, DB_IP, 5432));
    assert!(bed.passes(Port::A, &tcp(c, s, "S", b"")));
    assert!(bed.passes(Port::B, &tcp(s, c, "SA", b"")));
    assert!(bed.passes(Port::A, &tcp(c, s, "A", b"")));
    assert!(bed.passes(Port::A, &tcp(c, s, "PA", b"SELECT 1")));
    assert!(bed.passes(Port::B, &tcp(s, c, "PA", b"1 row")));
    let starts: Vec<_> = bed
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::FlowStart(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 1, "both directions are one flow");
    assert_eq!(starts[0].verdict.reason, Reason::Rule(10));
    assert_eq!(starts[0].dst_port, 5432);
    let stats = bed.worker.stats();
    assert_eq!(stats.total_drops(), 0);
    assert_eq!(stats.port(Port::B).tx_packets, 3);
    assert_eq!(stats.port(Port::A).tx_packets, 2);
}

#[test]
fn syn_to_smb_is_dropped_in_enforce() {
    let mut bed = Bed::new("");
    assert!(!bed.passes(
        Port::A,
        &tcp((WEB, WEB_IP, 40001), (DB, DB_IP, 445), "S", b"")
    ));
    assert!(!bed.passes(
        Port::A,
        &tcp((WEB, WEB_IP, 40001), (DB, DB_IP, 445), "S", b"")
    ));
    assert_eq!(bed.worker.stats().drops(DropReason::RuleDeny), 2);
    assert_eq!(
        bed.io.free_frames(),
        256,
        "dropped frames go back to the pool"
    );
    // A port no rule mentions is denied by enforce's default.
    assert!(!bed.passes(
        Port::A,
        &tcp((WEB, WEB_IP, 40002), (DB, DB_IP, 6379), "S", b"")
    ));
    assert_eq!(bed.worker.stats().drops(DropReason::DefaultDeny), 1);
}

#[test]
fn audit_mode_passes_smb_and_reports_a_would_deny() {
    let mut bed = Bed::new("");
    let (c, s) = ((LEGACY, LEGACY_IP, 40003), (LEGACY2, LEGACY2_IP, 445));
    assert!(bed.passes(Port::A, &tcp(c, s, "S", b"")));
    assert!(bed.passes(Port::B, &tcp(s, c, "SA", b"")));
    let would: Vec<_> = bed
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::WouldDeny(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(would.len(), 1);
    assert_eq!(would[0].verdict.action, Action::Allow);
    assert!(would[0].verdict.would_deny);
    assert_eq!(would[0].verdict.reason, Reason::Rule(50));
    assert_eq!(would[0].src_mac.0, LEGACY);

    // Where the two endpoints' modes differ, the strictest applies: legacy (audit)
    // to db (enforce) is enforced.
    assert!(!bed.passes(
        Port::A,
        &tcp((LEGACY, LEGACY_IP, 40004), (DB, DB_IP, 445), "S", b"")
    ));
    assert_eq!(bed.worker.stats().drops(DropReason::RuleDeny), 1);
}

#[test]
fn quarantine_cuts_an_established_flow_but_keeps_the_management_channel() {
    let mut bed = Bed::new("");
    let (c, s) = ((WEB2, WEB2_IP, 40004), (DB, DB_IP, 5432));
    let (admin, ssh) = ((ADMIN, ADMIN_IP, 50022), (WEB2, WEB2_IP, 22));
    for (port, f) in [
        (Port::A, tcp(c, s, "S", b"")),
        (Port::B, tcp(s, c, "SA", b"")),
        (Port::A, tcp(c, s, "A", b"")),
        (Port::A, tcp(admin, ssh, "S", b"")),
        (Port::B, tcp(ssh, admin, "SA", b"")),
    ] {
        assert!(bed.passes(port, &f));
    }
    bed.events();

    bed.publish("quarantine: [\"02:00:00:00:01:02\"]\n", 2);
    assert!(
        !bed.passes(Port::A, &tcp(c, s, "PA", b"SELECT 1")),
        "first packet after the swap is cut"
    );
    assert!(
        !bed.passes(Port::B, &tcp(s, c, "A", b"")),
        "and the other direction too"
    );
    assert!(
        bed.passes(Port::A, &tcp(admin, ssh, "PA", b"uptime")),
        "management SSH still passes"
    );
    assert!(bed.passes(Port::B, &tcp(ssh, admin, "PA", b" 10:00 up")));
    assert_eq!(bed.worker.stats().drops(DropReason::Quarantine), 2);
    let cut: Vec<_> = bed
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Reclassified(r) => Some(r),
            _ => None,
        })
        .collect();
    assert!(cut
        .iter()
        .any(|r| r.verdict.reason == Reason::Quarantine && r.dst_port == 5432));
    assert!(cut
        .iter()
        .any(|r| r.verdict.reason == Reason::Management && r.dst_port == 22));

    // Release: the next packet is re-decided under the normal policy.
    bed.publish("", 3);
    assert!(bed.passes(Port::A, &tcp(c, s, "PA", b"SELECT 2")));
}

#[test]
fn a_full_event_channel_drops_and_counts_instead_of_blocking() {
    let mut bed = Bed::with("", WorkerConfig::default(), 2);
    for port in 41000..41010 {
        assert!(bed.passes(
            Port::A,
            &tcp((WEB, WEB_IP, port), (DB, DB_IP, 5432), "S", b"")
        ));
    }
    assert_eq!(bed.events().len(), 2);
    assert_eq!(bed.worker.stats().events_lost, 8);
}

#[test]
fn dns_responses_are_copied_to_events() {
    let mut bed = Bed::new("");
    let (c, s) = ((WEB, WEB_IP, 33333), (DB, DB_IP, 53));
    assert!(bed.passes(Port::A, &udp(c, s, b"\x12\x34query")));
    assert!(bed.passes(Port::B, &udp(s, c, b"\x12\x34answer")));
    let dns: Vec<_> = bed
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Dns(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(dns.len(), 1, "responses only");
    assert_eq!(&dns[0].payload[..], b"\x12\x34answer");
    assert_eq!(dns[0].client_mac.0, WEB);
    assert!(!dns[0].truncated);
    assert!(!dns[0].unsolicited, "the client asked first");

    // A "response" that starts its flow (audit mode lets it pass): marked,
    // so the records keep it out.
    let (fake, victim) = ((LEGACY, LEGACY_IP, 53), (LEGACY2, DB_IP, 40000));
    assert!(bed.passes(Port::B, &udp(fake, victim, b"\x12\x34forged")));
    let dns: Vec<_> = bed
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Dns(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(dns.len(), 1);
    assert!(dns[0].unsolicited);
}

/// A DHCP ACK from `server` leasing `ip` to the client MAC `client`.
fn dhcp_ack(client: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    let mut m = vec![0u8; 240];
    m[0] = 2; // BOOTREPLY
    m[1] = 1;
    m[2] = 6;
    m[16..20].copy_from_slice(&ip);
    m[28..34].copy_from_slice(&client);
    m[236..240].copy_from_slice(&[99, 130, 83, 99]);
    m.extend_from_slice(&[53, 1, 5, 255]);
    m
}

#[test]
fn a_dhcp_ack_that_passes_reports_the_lease() {
    // Server and client in the audit group: the ACK passes (as a would-deny).
    let mut bed = Bed::new("");
    let server = (LEGACY, LEGACY_IP, 67);
    let client = (LEGACY2, [255, 255, 255, 255], 68);
    assert!(bed.passes(
        Port::B,
        &udp(server, client, &dhcp_ack(WEB2, [10, 0, 1, 99]))
    ));
    // A request (client -> server) leases nothing, and a broken ACK neither.
    let mut broken = dhcp_ack(WEB2, [10, 0, 1, 98]);
    broken.truncate(200);
    assert!(bed.passes(Port::B, &udp(server, client, &broken)));
    let leases: Vec<_> = bed
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::DhcpLease(l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].mac.0, WEB2);
    assert_eq!(leases[0].ip.octets(), [10, 0, 1, 99]);
}

#[test]
fn malformed_frames_are_dropped_and_counted() {
    let mut bed = Bed::new("");
    let mut f = tcp((WEB, WEB_IP, 40005), (DB, DB_IP, 5432), "S", b"");
    f.truncate(30);
    assert!(!bed.passes(Port::A, &f));
    assert!(!bed.passes(Port::A, &[0u8; 5]));
    assert_eq!(bed.worker.stats().drops(DropReason::Malformed), 2);
}

#[test]
fn arp_passes_and_is_reported() {
    let mut bed = Bed::new("");
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&WEB);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&WEB);
    f.extend_from_slice(&WEB_IP);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&DB_IP);
    f.resize(60, 0);
    assert!(bed.passes(Port::A, &f));
    assert!(bed
        .events()
        .iter()
        .any(|e| matches!(e, Event::Arp(a) if a.mac.0 == WEB && a.ip.octets() == WEB_IP)));
}

#[test]
fn idle_flows_end_with_their_counters() {
    let cfg = WorkerConfig {
        flow_capacity: 16,
        expire_budget: 1 << 10,
        ..WorkerConfig::default()
    };
    let mut bed = Bed::with("", cfg, 1024);
    let (c, s) = ((WEB, WEB_IP, 33334), (DB, DB_IP, 53));
    assert!(bed.passes(Port::A, &udp(c, s, b"q")));
    bed.events();
    bed.now += 600 * SEC;
    bed.worker.poll(&mut bed.io, bed.now).expect("mem io");
    let ends: Vec<_> = bed
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::FlowEnd(r, why) => Some((r, why)),
            _ => None,
        })
        .collect();
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].1, EndReason::Idle);
    assert_eq!(ends[0].0.packets, [1, 0]);
}

#[test]
fn later_fragment_without_first_follows_the_fragment_policy() {
    let mut frame = udp((WEB, WEB_IP, 33335), (DB, DB_IP, 53), &[0; 40]);
    // Mark as a later fragment: offset 64 bytes, no MF.
    frame[20] = 0;
    frame[21] = 8;
    let mut bed = Bed::new("");
    assert!(!bed.passes(Port::A, &frame));
    assert_eq!(bed.worker.stats().drops(DropReason::Fragment), 1);
    let cfg = WorkerConfig {
        fragments: FragmentPolicy::Forward,
        ..WorkerConfig::default()
    };
    let mut bed = Bed::with("", cfg, 16);
    assert!(bed.passes(Port::A, &frame));
}

#[test]
fn a_flood_of_denied_syns_does_not_push_out_an_allowed_flow() {
    let cfg = WorkerConfig {
        flow_capacity: 64,
        ..WorkerConfig::default()
    };
    let mut bed = Bed::with("", cfg, 1 << 16);
    let (c, s) = ((WEB, WEB_IP, 40100), (DB, DB_IP, 5432));
    assert!(bed.passes(Port::A, &tcp(c, s, "S", b"")));
    assert!(bed.passes(Port::B, &tcp(s, c, "SA", b"")));
    assert!(bed.passes(Port::A, &tcp(c, s, "A", b"")));
    // A port scan from web to db: 5000 SYNs, every one denied by default.
    for port in 0..5000u16 {
        let syn = tcp((WEB, WEB_IP, 50000), (DB, DB_IP, 6000 + port), "S", b"");
        assert!(!bed.passes(Port::A, &syn));
    }
    assert!(bed.passes(Port::A, &tcp(c, s, "PA", b"still here")));
    let evicted_allowed = bed.events().into_iter().any(
        |e| matches!(e, Event::FlowEnd(r, EndReason::Evicted) if r.verdict.action == Action::Allow),
    );
    assert!(!evicted_allowed, "the allowed flow kept its entry");
    let stats = bed.worker.stats();
    assert_eq!(stats.drops(DropReason::DefaultDeny), 5000);
    assert!(bed.worker.flows().len() <= 64);
    assert_eq!(bed.io.free_frames(), 256, "no frame buffer leaked");
}

#[test]
fn a_long_flow_is_reported_while_it_runs_and_an_idle_one_is_not_reported_again() {
    let mut bed = Bed::new("");
    let (c, s) = ((WEB, WEB_IP, 40200), (DB, DB_IP, 5432));
    assert!(bed.passes(Port::A, &tcp(c, s, "S", b"")));
    assert!(bed.passes(Port::B, &tcp(s, c, "SA", b"")));
    assert!(bed.passes(Port::A, &tcp(c, s, "A", b"")));
    let interim = |bed: &Bed| -> Vec<dataplane::event::FlowRecord> {
        bed.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::FlowActive(r) => Some(r),
                _ => None,
            })
            .collect()
    };
    // A packet every 10 s for 150 s: a report in each 60-second period.
    let mut reports = Vec::new();
    for _ in 0..15 {
        bed.now += 10 * SEC;
        assert!(bed.passes(Port::A, &tcp(c, s, "PA", b"ping")));
        reports.extend(interim(&bed));
    }
    assert_eq!(reports.len(), 2, "at 60 s and 120 s: {reports:?}");
    assert!(reports[0].packets[0] < reports[1].packets[0]);
    assert_eq!(reports[1].packets, [2 + 12, 1], "counters so far");
    assert_eq!(reports[0].dst_port, 5432);
    // Then silent for ten minutes (established TCP stays for days): one
    // more report for the packets of the period that ended at 180 s, then
    // none.
    for _ in 0..60 {
        bed.now += 10 * SEC;
        bed.worker.poll(&mut bed.io, bed.now).expect("mem io");
        reports.extend(interim(&bed));
    }
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert_eq!(reports[2].packets, [2 + 15, 1]);
    assert_eq!(bed.worker.flows().len(), 1, "the flow is still there");
}

/// Ends every flow and returns their end records.
fn flushed(bed: &mut Bed) -> Vec<dataplane::event::FlowRecord> {
    bed.worker.flush();
    bed.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::FlowEnd(r, _) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn a_flow_record_names_the_initiators_segment_and_the_tcp_flags_seen() {
    let mut bed = Bed::new("");
    // The client is on segment B this time: its SYN comes in there.
    let (c, s) = ((WEB, WEB_IP, 40100), (DB, DB_IP, 5432));
    assert!(bed.passes(Port::B, &tcp(c, s, "S", b"")));
    assert!(bed.passes(Port::A, &tcp(s, c, "SA", b"")));
    assert!(bed.passes(Port::B, &tcp(c, s, "PA", b"SELECT 1")));
    assert!(bed.passes(Port::B, &tcp(c, s, "FA", b"")));
    let ends = flushed(&mut bed);
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].orig_port, Port::B);
    // FIN | SYN | PSH | ACK; never URG or RST.
    assert_eq!(ends[0].tcp_flags, 0x01 | 0x02 | 0x08 | 0x10);
    assert_eq!(ends[0].packets, [3, 1]);

    // A UDP flow from segment A carries no flags.
    let (c, s) = ((WEB, WEB_IP, 33335), (DB, DB_IP, 53));
    assert!(bed.passes(Port::A, &udp(c, s, b"q")));
    let ends = flushed(&mut bed);
    assert_eq!(ends.len(), 1);
    assert_eq!((ends[0].orig_port, ends[0].tcp_flags), (Port::A, 0));
}

#[test]
fn a_burst_is_reported_once_it_has_been_idle_for_the_idle_report() {
    let cfg = WorkerConfig {
        idle_report: std::time::Duration::from_secs(15),
        expire_budget: 1 << 10,
        ..WorkerConfig::default()
    };
    let mut bed = Bed::with("", cfg, 1024);
    let (c, s) = ((WEB, WEB_IP, 40300), (DB, DB_IP, 5432));
    assert!(bed.passes(Port::A, &tcp(c, s, "S", b"")));
    assert!(bed.passes(Port::B, &tcp(s, c, "SA", b"")));
    assert!(bed.passes(Port::A, &tcp(c, s, "A", b"")));
    let mut reports = Vec::new();
    let tick = |bed: &mut Bed, secs: u64, reports: &mut Vec<[u64; 2]>| {
        for _ in 0..secs {
            bed.now += SEC;
            bed.worker.poll(&mut bed.io, bed.now).expect("mem io");
            for e in bed.events() {
                if let Event::FlowActive(r) = e {
                    reports.push(r.packets);
                }
            }
        }
    };
    // The handshake, then 14 s of silence: not idle long enough yet.
    tick(&mut bed, 14, &mut reports);
    assert!(reports.is_empty(), "{reports:?}");
    // At 15 s idle its packets are reported, well before the 60 s period.
    tick(&mut bed, 2, &mut reports);
    assert_eq!(reports, vec![[2, 1]]);
    // Silent on: nothing new to report, nothing is reported (not even at
    // the 60 s boundary).
    tick(&mut bed, 60, &mut reports);
    assert_eq!(reports.len(), 1, "{reports:?}");
    // A second burst is reported 15 s after it ends, with the totals so far.
    assert!(bed.passes(Port::A, &tcp(c, s, "PA", b"more")));
    assert!(bed.passes(Port::B, &tcp(s, c, "PA", b"reply")));
    tick(&mut bed, 16, &mut reports);
    assert_eq!(reports, vec![[2, 1], [3, 2]]);
}

/// A response for `name` (A `addr`, TTL 60), as a server sends it.
fn a_answer(name: &str, addr: [u8; 4]) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    m.extend_from_slice(&addr);
    m
}

#[test]
fn an_answer_for_a_blocked_domain_is_held_until_its_addresses_are_blocked() {
    use dataplane::intel::domains::DomainSet;
    let mut bed = Bed::new("");
    let cell = bed.cell.clone();
    let blocked = |resolved: &[([u8; 4], u32)], generation| {
        let resolved: dataplane::policy::Resolved = resolved
            .iter()
            .map(|&(a, id)| (std::net::IpAddr::from(a), id))
            .collect();
        cell.load().with_intel(
            dataplane::intel::Blocked::one(
                Arc::default(),
                Arc::new(DomainSet::new([("evil.test", 3)])),
            ),
            Arc::new(resolved),
            generation,
        )
    };
    let snap = blocked(&[], 2);
    bed.cell.publish(snap);
    let (c, s) = ((WEB, WEB_IP, 33334), (DB, DB_IP, 53));
    assert!(bed.passes(Port::A, &udp(c, s, b"\x12\x34query")));
    let c2 = udp(s, c, &a_answer("C2.evil.test", [203, 0, 113, 9]));
    assert!(
        !bed.passes(Port::B, &c2),
        "held: 203.0.113.9 is not blocked yet"
    );
    let dns = bed
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Dns(_)))
        .count();
    assert_eq!(dns, 1, "the control plane hears of it all the same");
    assert_eq!(bed.worker.stats().dns_held, 1);
    assert_eq!(bed.worker.stats().drops(DropReason::Intel), 1);
    // Other names pass; so does a sinkhole's answer (nothing to block).
    assert!(bed.passes(Port::B, &udp(s, c, &a_answer("ok.test", [203, 0, 113, 10]))));
    assert!(bed.passes(Port::B, &udp(s, c, &a_answer("x.evil.test", [0, 0, 0, 0]))));
    // A cut answer for a blocked name cannot be read whole: held.
    let cut = &a_answer("c2.evil.test", [203, 0, 113, 9])[..30];
    assert!(!bed.passes(Port::B, &udp(s, c, cut)));
    // The control plane blocked the address: the client's retry gets it.
    let snap = blocked(&[([203, 0, 113, 9], 3)], 3);
    bed.cell.publish(snap);
    assert!(bed.passes(Port::B, &c2));
}
