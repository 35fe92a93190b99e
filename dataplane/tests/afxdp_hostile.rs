//! AF_XDP with hostile traffic: from host-a, a packet socket writes a flood of
//! what an attacker or a broken host sends (random bytes, truncated and
//! lying headers, fragments, a SYN scan of every port, spoofed-source UDP,
//! stacked VLAN tags), as fast as it can, through the worker with the kernel
//! tier on. The appliance must come out of it forwarding what the policy
//! allows, blocking the rest, and having counted what it dropped. Root rules
//! as in `afxdp.rs`.
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod afxdp_bed;

use afxdp_bed::*;
use dataplane::wire::emit::{Checksums, Frame, Ipv4Repr, L4Repr, TcpRepr, UdpRepr};
use dataplane::wire::{MacAddr, TcpFlags};
use dataplane::worker::DropReason;
use std::net::Ipv4Addr;

/// A small deterministic generator (xorshift64*): no seed file, same frames
/// every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// An IPv4 frame of `l4` and `payload`: the IPv4 header checksummed, the
/// transport's checksum left 0 (so host-b's stack takes none of them in).
fn ipv4(dst: [u8; 6], src: [u8; 6], ip: Ipv4Repr, l4: L4Repr, payload: &[u8]) -> Vec<u8> {
    let frame = Frame {
        checksums: Checksums::IpOnly,
        ..Frame::new(MacAddr(dst), MacAddr(src), ip, l4, payload)
    };
    frame.to_vec().expect("a short frame")
}

fn udp(src_port: u16, dst_port: u16) -> L4Repr {
    L4Repr::Udp(UdpRepr { src_port, dst_port })
}

fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + body.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn ipv4_addr(s: &str) -> Ipv4Addr {
    s.parse().expect("IPv4")
}

/// Frame `i` of the attack: eight kinds in turn.
fn hostile(i: u64, rng: &mut Rng, src: [u8; 6], dst: [u8; 6]) -> Vec<u8> {
    let (a, b) = (ipv4_addr(HOST_A), ipv4_addr(HOST_B));
    let from = |src_ip: Ipv4Addr| Ipv4Repr {
        ident: 0x1234,
        ..Ipv4Repr::new(src_ip, b)
    };
    match i % 8 {
        // Random bytes, random length (at least a header's worth, so the
        // kernel sends it: it pads short frames).
        0 => {
            let n = 14 + rng.below(1500) as usize;
            rng.bytes(n)
        }
        // IPv4 ethertype, truncated anywhere in the IP header.
        1 => {
            let f = ipv4(dst, src, from(a), L4Repr::Raw(6), &[0; 20]);
            let cut = rng.below(20) as usize;
            f[..14 + cut].to_vec()
        }
        // IPv4 whose header lies: IHL below 5, or a total length past the frame.
        2 => {
            let mut f = ipv4(dst, src, from(a), L4Repr::Raw(17), &[0; 8]);
            if rng.below(2) == 0 {
                f[14] = 0x40 | rng.below(5) as u8;
            } else {
                f[16..18].copy_from_slice(&9000u16.to_be_bytes());
            }
            f[34..].copy_from_slice(&rng.bytes(8));
            f
        }
        // Fragments to a denied port: first ones (MF), and later ones whose
        // first never came (ids of their own).
        3 => {
            let later = !(i / 8).is_multiple_of(2);
            let ip = Ipv4Repr {
                ident: (i / 8) as u16,
                more_frags: !later,
                frag_offset: if later {
                    (1 + rng.below(100)) as u16
                } else {
                    0
                },
                ..Ipv4Repr::new(a, b)
            };
            ipv4(dst, src, ip, udp(4000, 445), &rng.bytes(8))
        }
        // A SYN scan: every port of host-b in turn.
        4 | 5 => {
            let port = ((i / 8) * 2 + i % 8 - 4) % 65535 + 1;
            let syn = TcpRepr {
                src_port: 40000 + (i % 20000) as u16,
                dst_port: port as u16,
                seq: i as u32,
                flags: TcpFlags(TcpFlags::SYN),
                window: 0xfaf0,
                ..TcpRepr::default()
            };
            ipv4(dst, src, from(a), L4Repr::Tcp(syn), b"")
        }
        // UDP from spoofed sources all over 10.0.0.0/8, random ports.
        6 => {
            let spoofed = Ipv4Addr::new(10, rng.next() as u8, rng.next() as u8, rng.next() as u8);
            let l4 = udp(rng.next() as u16, rng.next() as u16);
            ipv4(dst, src, from(spoofed), l4, &[1, 2, 3, 4])
        }
        // Stacked VLAN tags (QinQ, then 802.1Q, then more), random inside.
        _ => {
            let mut body = Vec::new();
            for _ in 0..1 + rng.below(4) {
                body.extend_from_slice(&(rng.below(4095) as u16).to_be_bytes());
                body.extend_from_slice(&[0x81, 0x00]);
            }
            body.extend_from_slice(&rng.bytes(40));
            ether(dst, src, 0x88a8, &body)
        }
    }
}

/// Writes `count` hostile frames out of host-a as fast as the socket takes
/// them; returns how many the kernel accepted.
fn attack(t: &Topology, count: u64) -> u64 {
    let (src, dst) = (mac_of(&t.a, "host-a"), mac_of(&t.b, "host-b"));
    in_netns(&t.a, move || {
        let (fd, _) = packet_socket("host-a");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut sent = 0;
        for i in 0..count {
            let frame = hostile(i, &mut rng, src, dst);
            // SAFETY: the buffer is valid for its length; the socket is bound.
            let n = unsafe {
                libc::send(
                    std::os::fd::AsRawFd::as_raw_fd(&fd),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                )
            };
            if n > 0 {
                sent += 1;
            }
        }
        sent
    })
    .join()
    .expect("attacker thread")
    .expect("attacker in host-a")
}

#[test]
fn a_hostile_flood_is_dropped_and_counted_and_allowed_traffic_goes_on() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::named("bh-hos").expect("topology");
    let mut cfg = dut_config(FailMode::Closed);
    cfg.offload = true;
    let mut dut = Dut::start(&t, cfg, DENY_445).expect("DUT starts");
    let _listeners = listen(&t, &[22, 445]);
    assert!(t.ping_eventually(), "ping before the attack");
    assert!(connects(&t, 22), "SSH before the attack");

    let sent = attack(&t, 200_000);
    eprintln!("hostile frames written: {sent}");
    assert!(sent > 100_000, "the attack went out: {sent}");

    // Afterwards: still forwarding what is allowed, still blocking the rest.
    assert!(t.ping_eventually(), "ping after the attack");
    assert!(connects(&t, 22), "SSH after the attack");
    assert!(!connects(&t, 445), "SMB still blocked");
    std::thread::sleep(Duration::from_millis(100));
    let s = dut.stats();
    eprintln!("drops after the attack: {s:?}");
    // (Non-IP frames are forwarded by default: random bytes and stacked tags
    // with unknown insides pass, as on a bridge.)
    for reason in [
        DropReason::Malformed,
        DropReason::Fragment,
        DropReason::DefaultDeny,
    ] {
        assert!(
            s.drops(reason) > 0,
            "{} drops counted: {s:?}",
            reason.name()
        );
    }
    // The worker survived: it stops cleanly and saw frames.
    assert!(dut.stop(Stop::Detach) > 0);
}
