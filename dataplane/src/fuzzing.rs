//! The harnesses of the coverage-guided fuzz targets (`fuzz/`, see
//! `docs/fuzzing.md`), kept here so that the AFL binaries and the tests that
//! replay their corpora and regressions (`tests/fuzz_regressions.rs`) run the
//! same code. Not an API: it may change with the fuzz targets.
//!
//! Each harness builds a fresh worker over [`MemIo`] with a small fixed policy,
//! primes its flow and fragment tables with a few flows between known hosts (so
//! an input can hit a flow, quote it in an ICMP error or continue a fragmented
//! datagram), feeds the input through, and checks what must always hold: the
//! frame leaves by the other port or is dropped, every buffer returns to the
//! pool, a DNS response is copied into its event byte for byte. A violated
//! check is a panic, which is what the fuzzer reports.
#![allow(
    clippy::expect_used,
    reason = "a harness asserts its own set-up; a failure there is a bug the fuzzer must report"
)]

use crate::event::{self, DnsMessage, Event};
use crate::io::mem::MemIo;
use crate::io::Port;
use crate::policy::{named, PolicySnapshot, SnapshotCell};
use crate::wire::emit::{
    Checksums, EthernetRepr, Frame, IcmpRepr, IpRepr, Ipv4Repr, Ipv6Fragment, Ipv6Repr, L4Repr,
    TcpRepr, UdpRepr, VlanTag, Vlans,
};
use crate::wire::{self, icmp, MacAddr, TcpFlags};
use crate::worker::{FragmentPolicy, Worker, WorkerConfig};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// The longest input frame the harnesses pass on (longer inputs are cut).
pub const MAX_FRAME: usize = 2048;
/// How many bytes of a DNS message the harnesses' worker copies into an event.
pub const DNS_COPY_BYTES: usize = 512;

/// Hosts of the harness policy; the seed corpus (`fuzz/make-corpus.py`) uses them.
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
pub const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
pub const CLIENT_IP4: [u8; 4] = [10, 0, 1, 11];
pub const SERVER_IP4: [u8; 4] = [10, 0, 2, 21];
pub const CLIENT_IP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0x11];
pub const SERVER_IP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x21];
/// Client ports of the primed flows: TCP/5432, UDP/53, TCP/53.
pub const PG_PORT: u16 = 40000;
pub const DNS_UDP_PORT: u16 = 40001;
pub const DNS_TCP_PORT: u16 = 40004;
/// ICMP echo id of the primed ping, and ids of the primed first fragments.
pub const ECHO_ID: u16 = 0x4242;
pub const FRAG_ID4: u16 = 0x1234;
pub const FRAG_ID6: u32 = 0x5555;
/// The VLAN of the primed tagged UDP/53 flow.
pub const DNS_VLAN: u16 = 7;

const POLICY: &str = r#"
default_mode: audit
groups:
  - { name: client, mode: enforce }
  - { name: server, mode: enforce }
  - { name: legacy, mode: audit }
  - { name: lab, mode: learn }
endpoints:
  - { mac: "02:00:00:00:01:01", groups: [client] }
  - { mac: "02:00:00:00:02:01", groups: [server] }
  - { mac: "02:00:00:00:04:01", groups: [legacy] }
  - { cidr: "10.0.4.0/24", groups: [legacy] }
  - { cidr: "fd00::4:0/112", groups: [legacy] }
  - { mac: "02:00:00:00:05:01", groups: [lab] }
rules:
  - { id: 10, src: [client], dst: [server], proto: tcp, ports: [5432, 22, "8000-8100"], action: allow }
  - { id: 20, src: [client], dst: [server], proto: udp, ports: [53, 67, 68, 123], action: allow }
  - { id: 21, src: [client], dst: [server], proto: tcp, ports: [53], action: allow }
  - { id: 22, src: [server], dst: [client], proto: udp, ports: [68], action: allow }
  - { id: 30, src: [client], dst: [server], proto: icmp, action: allow }
  - { id: 31, src: [client], dst: [server], proto: icmpv6, action: allow }
  - { id: 40, order: -5, src: [any], dst: [any], proto: tcp, ports: [445, 3389], action: deny }
  - { id: 50, src: [legacy], dst: [server], proto: 47, action: allow }
quarantine: ["02:00:00:00:0f:01"]
management:
  - { cidr: "10.0.3.0/24", macs: ["02:00:00:00:03:01"], proto: tcp, ports: [22] }
blocklist: [198.51.100.0/24, "2001:db8:bad::/48"]
"#;

/// The second generation, published halfway through: re-decides the primed flows.
const POLICY2_EXTRA: &str = r#"
  - { id: 60, order: -9, src: [client], dst: [server], proto: tcp, ports: [5432], action: deny }
"#;

struct Snapshots {
    first: Arc<PolicySnapshot>,
    second: Arc<PolicySnapshot>,
}

fn snapshots() -> &'static Snapshots {
    static SNAPS: OnceLock<Snapshots> = OnceLock::new();
    SNAPS.get_or_init(|| {
        let compile = |text: &str, generation| {
            Arc::new(named::snapshot(text, generation).expect("the harness policy compiles"))
        };
        // The extra rule goes at the end of the rules list, before `quarantine:`.
        let second = POLICY.replacen(
            "quarantine:",
            &format!("{}quarantine:", POLICY2_EXTRA.trim_start_matches('\n')),
            1,
        );
        Snapshots {
            first: compile(POLICY, 1),
            second: compile(&second, 2),
        }
    })
}

/// A worker over in-memory I/O, primed with the harness flows.
struct Bed {
    io: MemIo,
    worker: Worker,
    cell: Arc<SnapshotCell>,
    events: crossbeam_channel::Receiver<Event>,
    now: u64,
    frames: usize,
}

const MS: u64 = 1_000_000;

impl Bed {
    fn new(fragments: FragmentPolicy) -> Bed {
        let cell = Arc::new(SnapshotCell::default());
        cell.publish_arc(snapshots().first.clone());
        let (sink, events) = event::channel(256);
        let cfg = WorkerConfig {
            batch_size: 8,
            flow_capacity: 16,
            fragments,
            dns_copy_bytes: DNS_COPY_BYTES,
            expire_budget: 16,
            ..WorkerConfig::default()
        };
        let frames = 16;
        let mut bed = Bed {
            io: MemIo::new(frames, MAX_FRAME),
            worker: Worker::new(cfg, cell.clone(), sink),
            cell,
            events,
            now: 1_000 * MS,
            frames,
        };
        let c4 = Host::v4(CLIENT_MAC, CLIENT_IP4);
        let s4 = Host::v4(SERVER_MAC, SERVER_IP4);
        let c6 = Host::v6(CLIENT_MAC, CLIENT_IP6);
        let s6 = Host::v6(SERVER_MAC, SERVER_IP6);
        let c4v = Host {
            vlan: Some(DNS_VLAN),
            ..c4
        };
        let s4v = Host {
            vlan: Some(DNS_VLAN),
            ..s4
        };
        let syn = TcpFlags::SYN;
        let synack = TcpFlags::SYN | TcpFlags::ACK;
        let prime = [
            (Port::A, tcp(&c4, &s4, PG_PORT, 5432, syn, b"")),
            (Port::B, tcp(&s4, &c4, 5432, PG_PORT, synack, b"")),
            (
                Port::A,
                udp(
                    &c4,
                    &s4,
                    DNS_UDP_PORT,
                    53,
                    b"\x12\x34\x01\x00\0\x01\0\0\0\0\0\0",
                ),
            ),
            (Port::A, tcp(&c4, &s4, DNS_TCP_PORT, 53, syn, b"")),
            (Port::B, tcp(&s4, &c4, 53, DNS_TCP_PORT, synack, b"")),
            (Port::A, tcp(&c4, &s4, DNS_TCP_PORT, 53, TcpFlags::ACK, b"")),
            (Port::A, icmp_echo(&c4, &s4, ECHO_ID)),
            (
                Port::A,
                udp(&c6, &s6, DNS_UDP_PORT, 53, b"\x56\x78\x01\x00"),
            ),
            (
                Port::A,
                udp(&c4v, &s4v, DNS_UDP_PORT, 53, b"\x9a\xbc\x01\x00"),
            ),
            (Port::A, tcp(&c6, &s6, PG_PORT, 5432, syn, b"")),
            (Port::A, udp4_first_fragment(&c4, &s4, FRAG_ID4)),
            (Port::A, udp6_first_fragment(&c6, &s6, FRAG_ID6)),
        ];
        for (port, frame) in prime {
            assert!(
                bed.send(port, &frame),
                "the policy lets every primed frame pass"
            );
        }
        bed
    }

    /// One frame in on `port`, one poll; checks where it went and drains the
    /// output. Whether it was forwarded.
    fn send(&mut self, port: Port, frame: &[u8]) -> bool {
        self.io
            .inject(port, frame)
            .expect("a frame of at most MAX_FRAME bytes fits a free buffer");
        self.now += MS;
        let handled = self
            .worker
            .poll(&mut self.io, self.now)
            .expect("in-memory I/O cannot fail");
        assert_eq!(handled, 1, "the worker takes the one frame injected");
        assert_eq!(
            self.io.tx_pending(port),
            0,
            "nothing goes back out of the port it came in on"
        );
        let out = self.io.take_tx(port.peer());
        assert!(out.len() <= 1, "one frame in, at most one out");
        if let Some(f) = out.first() {
            assert_eq!(f.as_slice(), frame, "a forwarded frame is unchanged");
        }
        assert_eq!(
            self.io.free_frames(),
            self.frames,
            "every buffer is back in the pool"
        );
        !out.is_empty()
    }

    /// Lets time pass far enough for every flow to expire, then flushes the rest.
    fn finish(&mut self) {
        self.now += 3_600_000 * MS;
        self.worker
            .poll(&mut self.io, self.now)
            .expect("in-memory I/O cannot fail");
        self.worker.flush();
        assert!(self.worker.flows().is_empty(), "a flush empties the table");
        let _ = self.worker.report();
    }
}

/// Arbitrary bytes as one Ethernet frame through the whole userspace path: the
/// parser, then a primed worker (in on port A under policy generation 1, the same
/// bytes in on port B under generation 2, then idle expiry and a flush), with
/// later fragments dropped, and for a later fragment once more with them forwarded.
pub fn frame(data: &[u8]) {
    let data = &data[..data.len().min(MAX_FRAME)];
    let later_fragment = matches!(
        wire::parse(data),
        Ok(wire::PacketInfo { l3: wire::L3Info::Ip(ip), .. })
            if matches!(ip.frag, wire::Fragment::Later { .. })
    );
    let policies: &[FragmentPolicy] = if later_fragment {
        &[FragmentPolicy::Drop, FragmentPolicy::Forward]
    } else {
        &[FragmentPolicy::Drop]
    };
    for &fragments in policies {
        let mut bed = Bed::new(fragments);
        bed.send(Port::A, data);
        bed.cell.publish_arc(snapshots().second.clone());
        bed.send(Port::B, data);
        bed.send(Port::A, data);
        bed.finish();
        for e in bed.events.try_iter() {
            if let Event::Dns(m) = e {
                assert!(m.payload.len() <= DNS_COPY_BYTES);
            }
        }
    }
}

/// The DNS path: `data[0]` picks a framing (UDP or TCP, IPv4 or IPv6, response or
/// query, VLAN tag, first fragment), the rest is the port-53 payload, sent on a
/// flow the worker already allows. A response's payload must come out in a DNS
/// event, copied byte for byte up to [`DNS_COPY_BYTES`]. Returns the DNS
/// events, for the control plane's decoder (`control::fuzzing::dns_decode`).
pub fn dns(data: &[u8]) -> Vec<DnsMessage> {
    let Some((&sel, payload)) = data.split_first() else {
        return Vec::new();
    };
    // Room for Ethernet, a VLAN tag, IPv6 and TCP headers (and TCP's length prefix).
    let payload = &payload[..payload.len().min(MAX_FRAME - 100)];
    let c4 = Host::v4(CLIENT_MAC, CLIENT_IP4);
    let s4 = Host::v4(SERVER_MAC, SERVER_IP4);
    let c6 = Host::v6(CLIENT_MAC, CLIENT_IP6);
    let s6 = Host::v6(SERVER_MAC, SERVER_IP6);
    let psh = TcpFlags::PSH | TcpFlags::ACK;
    let mut with_len = Vec::with_capacity(payload.len() + 2);
    with_len.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    with_len.extend_from_slice(payload);
    // (port, frame, the DNS payload the worker must report, if any)
    let (port, frame, expect): (Port, Vec<u8>, Option<&[u8]>) = match sel % 8 {
        0 => (
            Port::B,
            udp(&s4, &c4, 53, DNS_UDP_PORT, payload),
            Some(payload),
        ),
        1 => (
            Port::B,
            udp(&s6, &c6, 53, DNS_UDP_PORT, payload),
            Some(payload),
        ),
        2 => (
            Port::B,
            tcp(&s4, &c4, 53, DNS_TCP_PORT, psh, payload),
            Some(payload),
        ),
        3 => {
            let f = tcp(&s4, &c4, 53, DNS_TCP_PORT, psh, &with_len);
            (Port::B, f, Some(&with_len))
        }
        4 => (Port::A, udp(&c4, &s4, DNS_UDP_PORT, 53, payload), None),
        5 => (
            Port::A,
            tcp(&c4, &s4, DNS_TCP_PORT, 53, psh, &with_len),
            None,
        ),
        6 => {
            let s = Host {
                vlan: Some(DNS_VLAN),
                ..s4
            };
            let c = Host {
                vlan: Some(DNS_VLAN),
                ..c4
            };
            (
                Port::B,
                udp(&s, &c, 53, DNS_UDP_PORT, payload),
                Some(payload),
            )
        }
        _ => {
            let mut f = udp(&s4, &c4, 53, DNS_UDP_PORT, payload);
            f[14 + 6] |= 0x20; // IPv4 flags: more fragments
            (Port::B, f, None)
        }
    };
    let mut bed = Bed::new(FragmentPolicy::Drop);
    while bed.events.try_recv().is_ok() {}
    let passed = bed.send(port, &frame);
    assert!(passed, "a message on an allowed flow passes");
    let dns: Vec<_> = bed
        .events
        .try_iter()
        .filter_map(|e| match e {
            Event::Dns(m) => Some(m),
            _ => None,
        })
        .collect();
    match expect {
        Some(p) if !p.is_empty() => {
            assert_eq!(dns.len(), 1, "one DNS event per response");
            let m = &dns[0];
            let n = p.len().min(DNS_COPY_BYTES);
            assert_eq!(&m.payload[..], &p[..n], "the message is copied as sent");
            assert_eq!(m.truncated, p.len() > DNS_COPY_BYTES);
        }
        Some(_) => assert!(dns.is_empty(), "an empty payload is no DNS message"),
        None => {}
    }
    for m in &dns {
        assert!(m.payload.len() <= DNS_COPY_BYTES);
        // TCP carries its sequence number (for the stream's order), UDP none.
        assert_eq!(m.tcp_seq.is_some(), m.proto == 6);
        assert!(matches!(m.client_port, DNS_UDP_PORT | DNS_TCP_PORT));
    }
    bed.finish();
    dns
}

/// One end of a harness frame.
#[derive(Debug, Clone, Copy)]
struct Host {
    mac: [u8; 6],
    ip: IpAddr,
    vlan: Option<u16>,
}

impl Host {
    fn v4(mac: [u8; 6], ip: [u8; 4]) -> Host {
        Host {
            mac,
            ip: ip.into(),
            vlan: None,
        }
    }

    fn v6(mac: [u8; 6], ip: [u8; 16]) -> Host {
        Host {
            mac,
            ip: ip.into(),
            vlan: None,
        }
    }
}

/// Ethernet (tagged with the sender's VLAN, if any) + IP from `src` to `dst` around
/// `l4` and `payload`; `first_fragment`: the id of a first fragment (IPv4 more
/// fragments, or an IPv6 fragment header). Checksums are left 0: nothing on the
/// harness's path reads them.
fn ip_frame(
    src: &Host,
    dst: &Host,
    l4: L4Repr,
    payload: &[u8],
    first_fragment: Option<u32>,
) -> Vec<u8> {
    let ip = match (src.ip, dst.ip, first_fragment) {
        (IpAddr::V4(s), IpAddr::V4(d), None) => IpRepr::V4(Ipv4Repr {
            ident: 1,
            dont_frag: true,
            ..Ipv4Repr::new(s, d)
        }),
        (IpAddr::V4(s), IpAddr::V4(d), Some(id)) => IpRepr::V4(Ipv4Repr {
            ident: id as u16,
            more_frags: true,
            ..Ipv4Repr::new(s, d)
        }),
        (IpAddr::V6(s), IpAddr::V6(d), frag) => IpRepr::V6(Ipv6Repr {
            fragment: frag.map(|ident| Ipv6Fragment {
                offset: 0,
                more_frags: true,
                ident,
            }),
            ..Ipv6Repr::new(s, d)
        }),
        _ => unreachable!("harness frames keep one address family"),
    };
    let mut eth = EthernetRepr::new(MacAddr(dst.mac), MacAddr(src.mac));
    if let Some(vid) = src.vlan {
        eth.vlans = Vlans::One(VlanTag::dot1q(vid));
    }
    let frame = Frame {
        eth,
        ip,
        l4,
        payload,
        checksums: Checksums::Off,
        pad: false,
    };
    frame
        .to_vec()
        .expect("harness frames are shorter than 64 KiB")
}

fn udp(src: &Host, dst: &Host, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: sport,
        dst_port: dport,
    };
    ip_frame(src, dst, L4Repr::Udp(udp), payload, None)
}

fn tcp(src: &Host, dst: &Host, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let flags = TcpFlags(flags);
    let tcp = TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq: 1000,
        ack: u32::from(flags.ack()),
        flags,
        window: 0xffff,
    };
    ip_frame(src, dst, L4Repr::Tcp(tcp), payload, None)
}

fn icmp_echo(src: &Host, dst: &Host, id: u16) -> Vec<u8> {
    let kind = match src.ip {
        IpAddr::V4(_) => icmp::v4::ECHO_REQUEST,
        IpAddr::V6(_) => icmp::v6::ECHO_REQUEST,
    };
    let echo = L4Repr::Icmp(IcmpRepr::echo(kind, id, 1));
    ip_frame(src, dst, echo, b"ping", None)
}

fn udp4_first_fragment(src: &Host, dst: &Host, id: u16) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: DNS_UDP_PORT,
        dst_port: 53,
    };
    ip_frame(src, dst, L4Repr::Udp(udp), &[0; 16], Some(u32::from(id)))
}

fn udp6_first_fragment(src: &Host, dst: &Host, id: u32) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: DNS_UDP_PORT,
        dst_port: 53,
    };
    ip_frame(src, dst, L4Repr::Udp(udp), &[0; 16], Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_frames_parse_as_built() {
        let c4 = Host::v4(CLIENT_MAC, CLIENT_IP4);
        let s4 = Host::v4(SERVER_MAC, SERVER_IP4);
        let f = udp(&s4, &c4, 53, DNS_UDP_PORT, b"abc");
        let info = wire::parse(&f).expect("parses");
        let wire::L3Info::Ip(ip) = info.l3 else {
            panic!("IP")
        };
        assert_eq!(usize::from(ip.payload_offset), f.len() - 3);
        let f = udp6_first_fragment(
            &Host::v6(CLIENT_MAC, CLIENT_IP6),
            &Host::v6(SERVER_MAC, SERVER_IP6),
            FRAG_ID6,
        );
        let info = wire::parse(&f).expect("parses");
        let wire::L3Info::Ip(ip) = info.l3 else {
            panic!("IP")
        };
        assert_eq!(ip.frag, wire::Fragment::First { id: FRAG_ID6 });
    }

    #[test]
    fn harnesses_take_empty_and_tiny_inputs() {
        for input in [&b""[..], b"\0", b"\x03", &[0xff; 64]] {
            frame(input);
            dns(input);
        }
    }
}
