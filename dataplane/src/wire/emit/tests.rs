//! The write side against `etherparse` as the oracle (lengths and checksums), and
//! round trips through [`parse`](crate::wire::parse).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{LinkExtSlice, NetSlice, SlicedPacket, TransportSlice};
use proptest::prelude::*;

use super::*;
use crate::wire::{self, icmp, Fragment, L3Info, L4Info, ParseError};

const DST: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const SRC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const V4_SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const V4_DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const V6_SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const V6_DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

#[test]
fn rfc_1071_example_and_odd_parts() {
    // RFC 1071 section 3: the sum of these words is 0xddf2.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(checksum(&data), !0xddf2);
    // Split anywhere, odd parts included, the sum is the same.
    for at in 0..=data.len() {
        let (a, b) = data.split_at(at);
        assert_eq!(
            Checksum::new().add_bytes(a).add_bytes(b).finish(),
            !0xddf2,
            "split {at}"
        );
    }
    let three = Checksum::new()
        .add_bytes(&data[..1])
        .add_bytes(&[])
        .add_bytes(&data[1..3]);
    assert_eq!(three.add_bytes(&data[3..]).finish(), !0xddf2);
    // An odd last byte is padded with a zero.
    assert_eq!(checksum(&[0xab]), !0xab00);
    assert_eq!(checksum(&[]), 0xffff);
    // Carries fold back in, more than once where needed.
    assert_eq!(checksum(&[0xff; 4096]), 0);
}

#[test]
fn a_buffer_with_its_checksum_sums_to_zero() {
    let f = Frame::new(DST, SRC, Ipv4Repr::new(V4_SRC, V4_DST), udp(1, 2), b"x")
        .to_vec()
        .unwrap();
    assert_eq!(checksum(&f[14..34]), 0);
    let pseudo = Checksum::pseudo_header(V4_SRC.into(), V4_DST.into(), 17, 9);
    assert_eq!(pseudo.add_bytes(&f[34..]).finish(), 0);
}

fn udp(src_port: u16, dst_port: u16) -> L4Repr {
    L4Repr::Udp(UdpRepr { src_port, dst_port })
}

fn syn(src_port: u16, dst_port: u16) -> L4Repr {
    L4Repr::Tcp(TcpRepr {
        src_port,
        dst_port,
        seq: 0x0102_0304,
        ack: 0,
        flags: TcpFlags(TcpFlags::SYN),
        window: 64240,
    })
}

/// Every checksum of `frame` as etherparse computes it, asserted equal to the one
/// in the frame; the transport (absent from a fragment) returned for more checks.
fn assert_valid(frame: &[u8]) -> Option<TransportSlice<'_>> {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse slices the frame");
    let (src, dst) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 header");
            (IpAddr::from(h.source), IpAddr::from(h.destination))
        }
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        other => panic!("not IP: {other:?}"),
    };
    match (&p.transport, src, dst) {
        (Some(TransportSlice::Tcp(t)), IpAddr::V4(s), IpAddr::V4(d)) => {
            let want = t.calc_checksum_ipv4(s.octets(), d.octets()).unwrap();
            assert_eq!(t.checksum(), want, "TCP over IPv4");
        }
        (Some(TransportSlice::Tcp(t)), IpAddr::V6(s), IpAddr::V6(d)) => {
            let want = t.calc_checksum_ipv6(s.octets(), d.octets()).unwrap();
            assert_eq!(t.checksum(), want, "TCP over IPv6");
        }
        (Some(TransportSlice::Udp(u)), IpAddr::V4(s), IpAddr::V4(d)) => {
            let h = u.to_header();
            let want = h.calc_checksum_ipv4_raw(s.octets(), d.octets(), u.payload());
            assert_eq!(u.checksum(), want.unwrap(), "UDP over IPv4");
        }
        (Some(TransportSlice::Udp(u)), IpAddr::V6(s), IpAddr::V6(d)) => {
            let h = u.to_header();
            let want = h.calc_checksum_ipv6_raw(s.octets(), d.octets(), u.payload());
            assert_eq!(u.checksum(), want.unwrap(), "UDP over IPv6");
        }
        (Some(TransportSlice::Icmpv4(i)), _, _) => {
            assert_eq!(
                i.checksum(),
                i.icmp_type().calc_checksum(i.payload()),
                "ICMPv4"
            );
        }
        (Some(TransportSlice::Icmpv6(i)), IpAddr::V6(s), IpAddr::V6(d)) => {
            assert!(i.is_checksum_valid(s.octets(), d.octets()), "ICMPv6");
        }
        (None, _, _) => {}
        (other, _, _) => panic!("unexpected transport {other:?}"),
    }
    p.transport
}

fn ip_info(frame: &[u8]) -> (wire::PacketInfo, wire::IpInfo) {
    let info = wire::parse(frame).expect("wire::parse reads the frame");
    match info.l3 {
        L3Info::Ip(ip) => (info, ip),
        other => panic!("not IP: {other:?}"),
    }
}

#[test]
fn ipv4_tcp_udp_icmp_are_valid_with_zero_one_and_two_tags() {
    let tag_sets = [
        Vlans::Untagged,
        Vlans::One(VlanTag::dot1q(20)),
        Vlans::Two(VlanTag::qinq(300), VlanTag::dot1q(4000)),
    ];
    let l4s = [
        syn(40000, 5432),
        udp(40001, 53),
        L4Repr::Icmp(IcmpRepr::echo(icmp::v4::ECHO_REQUEST, 0x4242, 7)),
    ];
    for vlans in tag_sets {
        for l4 in l4s {
            let ip = Ipv4Repr {
                ident: 0x1234,
                dont_frag: true,
                ..Ipv4Repr::new(V4_SRC, V4_DST)
            };
            let mut frame = Frame::new(DST, SRC, ip, l4, b"hello, odd");
            frame.eth.vlans = vlans;
            let f = frame.to_vec().unwrap();
            assert_eq!(f.len(), frame.len());
            assert!(assert_valid(&f).is_some(), "{l4:?}");
            let (info, ip) = ip_info(&f);
            let vids: Vec<u16> = vlans.tags().map(|t| t.tci).collect();
            assert_eq!(&info.vlan[..vids.len()], &vids[..]);
            let sliced = SlicedPacket::from_ethernet(&f).unwrap();
            let oracle_vids: Vec<u16> = sliced
                .link_exts
                .iter()
                .map(|ext| match ext {
                    LinkExtSlice::Vlan(tag) => tag.vlan_identifier().value(),
                    other => panic!("not a VLAN tag: {other:?}"),
                })
                .collect();
            assert_eq!(oracle_vids, vids);
            assert_eq!((info.dst_mac, info.src_mac), (DST, SRC));
            assert_eq!((ip.src, ip.dst), (V4_SRC.into(), V4_DST.into()));
            assert_eq!(ip.frag, Fragment::None);
            assert_eq!(usize::from(ip.payload_offset), f.len() - 10);
            assert_eq!(usize::from(ip.ip_end), f.len());
        }
    }
}

#[test]
fn icmpv6_and_transports_over_ipv6_are_valid() {
    let ns = L4Repr::Icmp(IcmpRepr {
        kind: 135,
        code: 0,
        rest: [0; 4],
    });
    for l4 in [
        syn(443, 54321),
        udp(5353, 5353),
        L4Repr::Icmp(IcmpRepr::echo(icmp::v6::ECHO_REQUEST, 0xbeef, 1)),
        ns,
    ] {
        let ip = Ipv6Repr {
            flow_label: 0xabcde,
            ..Ipv6Repr::new(V6_SRC, V6_DST)
        };
        let mut frame = Frame::new(DST, SRC, ip, l4, &[0x5a; 33]);
        frame.eth.vlans = Vlans::One(VlanTag::dot1q(7));
        let f = frame.to_vec().unwrap();
        assert!(assert_valid(&f).is_some(), "{l4:?}");
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(NetSlice::Ipv6(v6)) = p.net else {
            panic!("IPv6")
        };
        assert_eq!(v6.header().flow_label().value(), 0xabcde);
        let (_, ip) = ip_info(&f);
        assert_eq!(ip.proto, l4.proto(true));
        assert_eq!(usize::from(ip.payload_offset), f.len() - 33);
    }
}

#[test]
fn round_trip_summaries() {
    let f = Frame::new(DST, SRC, Ipv4Repr::new(V4_SRC, V4_DST), syn(1, 2), b"")
        .to_vec()
        .unwrap();
    let (_, ip) = ip_info(&f);
    assert_eq!(
        ip.l4,
        L4Info::Tcp {
            src_port: 1,
            dst_port: 2,
            flags: TcpFlags(TcpFlags::SYN)
        }
    );
    let echo = IcmpRepr::echo(icmp::v6::ECHO_REPLY, 9, 1);
    let f = Frame::new(
        DST,
        SRC,
        Ipv6Repr::new(V6_SRC, V6_DST),
        L4Repr::Icmp(echo),
        b"",
    )
    .to_vec()
    .unwrap();
    assert_eq!(
        ip_info(&f).1.l4,
        L4Info::IcmpEcho {
            id: 9,
            request: false
        }
    );
}

#[test]
fn fragments_carry_their_fields() {
    let first = Ipv4Repr {
        ident: 0x1234,
        more_frags: true,
        ..Ipv4Repr::new(V4_SRC, V4_DST)
    };
    let f = Frame::new(DST, SRC, first, udp(40001, 53), &[0; 16])
        .to_vec()
        .unwrap();
    assert_valid(&f);
    assert_eq!(ip_info(&f).1.frag, Fragment::First { id: 0x1234 });
    let later = Ipv4Repr {
        frag_offset: 3,
        ..first
    };
    let f = Frame::new(DST, SRC, later, L4Repr::Raw(17), &[0; 16])
        .to_vec()
        .unwrap();
    assert_eq!(ip_info(&f).1.frag, Fragment::Later { id: 0x1234 });
    assert_eq!(&f[20..22], &[0x20, 0x03]);

    let v6 = Ipv6Repr {
        fragment: Some(Ipv6Fragment {
            offset: 0,
            more_frags: true,
            ident: 0x5555,
        }),
        ..Ipv6Repr::new(V6_SRC, V6_DST)
    };
    let f = Frame::new(DST, SRC, v6, udp(40001, 53), &[0; 16])
        .to_vec()
        .unwrap();
    assert_valid(&f);
    let (_, ip) = ip_info(&f);
    assert_eq!(ip.frag, Fragment::First { id: 0x5555 });
    assert_eq!(ip.proto, ip_proto::UDP);
    assert_eq!(usize::from(ip.l4_offset), 14 + 40 + 8);
}

#[test]
fn padding_fills_to_sixty_bytes_outside_the_ip_packet() {
    let mut frame = Frame::new(DST, SRC, Ipv4Repr::new(V4_SRC, V4_DST), syn(1, 2), b"");
    frame.pad = true;
    let f = frame.to_vec().unwrap();
    assert_eq!((f.len(), frame.len()), (MIN_FRAME_LEN, MIN_FRAME_LEN));
    assert_eq!(&f[54..], &[0; 6]);
    assert_eq!(usize::from(ip_info(&f).1.ip_end), 54);
    assert_valid(&f);
    // A frame already long enough is left as it is.
    frame.payload = &[1; 10];
    assert_eq!(frame.to_vec().unwrap().len(), 64);
}

#[test]
fn checksums_off_and_ip_only_leave_zeros() {
    let mut frame = Frame::new(DST, SRC, Ipv4Repr::new(V4_SRC, V4_DST), syn(1, 2), b"ab");
    frame.checksums = Checksums::IpOnly;
    let f = frame.to_vec().unwrap();
    assert_eq!(checksum(&f[14..34]), 0);
    assert_eq!(&f[50..52], &[0, 0]);
    frame.checksums = Checksums::Off;
    let f = frame.to_vec().unwrap();
    assert_eq!((&f[24..26], &f[50..52]), (&[0, 0][..], &[0, 0][..]));
}

#[test]
fn a_udp_checksum_of_zero_is_sent_as_all_ones() {
    // Find a payload word that makes the sum come out 0: the complement of the rest.
    let frame = |payload: &[u8]| {
        Frame::new(DST, SRC, Ipv4Repr::new(V4_SRC, V4_DST), udp(1, 2), payload)
            .to_vec()
            .unwrap()
    };
    let f = frame(&[0, 0]);
    let sum = u16::from_be_bytes([f[40], f[41]]);
    let f = frame(&sum.to_be_bytes());
    assert_eq!(&f[40..42], &[0xff, 0xff]);
    assert_valid(&f);
}

#[test]
fn lengths_past_16_bits_are_refused_and_leave_the_buffer_alone() {
    let big = vec![0u8; 65536 - 20 - 8];
    let mut out = vec![7u8; 3];
    let v4 = Frame::new(DST, SRC, Ipv4Repr::new(V4_SRC, V4_DST), udp(1, 2), &big);
    assert_eq!(
        v4.emit(&mut out),
        Err(EmitError::TooLong {
            layer: Layer::Ipv4,
            len: 65536
        })
    );
    assert_eq!(out, [7, 7, 7]);
    let fits = Frame {
        payload: &big[1..],
        ..v4
    };
    assert_eq!(fits.emit(&mut out), Ok(14 + 65535));
    let v6 = Frame::new(
        DST,
        SRC,
        Ipv6Repr::new(V6_SRC, V6_DST),
        udp(1, 2),
        &[0; 65536 - 8],
    );
    assert!(matches!(
        v6.to_vec(),
        Err(EmitError::TooLong {
            layer: Layer::Ipv6,
            ..
        })
    ));
    let mut header = Vec::new();
    assert!(UdpRepr::default().emit(65536, &mut header).is_err());
    let far = Ipv4Repr {
        frag_offset: 0x2000,
        ..Ipv4Repr::new(V4_SRC, V4_DST)
    };
    assert_eq!(
        Frame::new(DST, SRC, far, udp(1, 2), b"").to_vec(),
        Err(EmitError::FragmentOffset(0x2000))
    );
}

#[test]
fn raw_transport_is_written_as_given() {
    let gre = [0u8, 0, 0x08, 0x00];
    let f = Frame::new(
        DST,
        SRC,
        Ipv4Repr::new(V4_SRC, V4_DST),
        L4Repr::Raw(47),
        &gre,
    )
    .to_vec()
    .unwrap();
    assert_eq!(&f[34..], &gre);
    let (_, ip) = ip_info(&f);
    assert_eq!((ip.proto, ip.l4), (47, L4Info::Other));
    assert_eq!(
        wire::parse(&f[..36]).map(|_| ()),
        Err(ParseError::BadLength { layer: Layer::Ipv4 })
    );
}

/// A frame's parts, owned, for the property test.
#[derive(Debug, Clone)]
struct Case {
    eth: EthernetRepr,
    ip: IpRepr,
    l4: L4Repr,
    payload: Vec<u8>,
    pad: bool,
}

fn vlans() -> impl Strategy<Value = Vlans> {
    let tag = (any::<bool>(), any::<u16>()).prop_map(|(qinq, tci)| VlanTag {
        tpid: if qinq {
            ethertype::QINQ
        } else {
            ethertype::VLAN
        },
        tci,
    });
    prop_oneof![
        Just(Vlans::Untagged),
        tag.clone().prop_map(Vlans::One),
        (tag.clone(), tag).prop_map(|(o, i)| Vlans::Two(o, i)),
    ]
}

fn ip() -> impl Strategy<Value = IpRepr> {
    let v4 = (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        1u8..=255,
        any::<u16>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(s, d, ttl, ident, dont_frag, more_frags)| {
            IpRepr::V4(Ipv4Repr {
                src: s.into(),
                dst: d.into(),
                ttl,
                ident,
                dont_frag,
                more_frags,
                frag_offset: 0,
            })
        });
    let v6 = (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        1u8..=255,
        0u32..0x10_0000,
        prop::option::of((any::<bool>(), any::<u32>())),
    )
        .prop_map(|(s, d, hop_limit, flow_label, frag)| {
            IpRepr::V6(Ipv6Repr {
                src: s.into(),
                dst: d.into(),
                hop_limit,
                flow_label,
                fragment: frag.map(|(more_frags, ident)| Ipv6Fragment {
                    offset: 0,
                    more_frags,
                    ident,
                }),
            })
        });
    prop_oneof![v4, v6]
}

fn l4() -> impl Strategy<Value = L4Repr> {
    prop_oneof![
        (
            any::<[u16; 2]>(),
            any::<[u32; 2]>(),
            any::<u8>(),
            any::<u16>()
        )
            .prop_map(
                |([src_port, dst_port], [seq, ack], flags, window)| L4Repr::Tcp(TcpRepr {
                    src_port,
                    dst_port,
                    seq,
                    ack,
                    flags: TcpFlags(flags),
                    window,
                })
            ),
        any::<[u16; 2]>().prop_map(|[s, d]| udp(s, d)),
        (any::<bool>(), any::<u16>(), any::<u16>()).prop_map(|(request, id, seq)| L4Repr::Icmp(
            IcmpRepr::echo(u8::from(request), id, seq)
        )),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        vlans(),
        ip(),
        l4(),
        prop::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
    )
        .prop_map(|(dst, src, vlans, ip, l4, payload, pad)| Case {
            eth: EthernetRepr {
                dst: MacAddr(dst),
                src: MacAddr(src),
                vlans,
            },
            ip,
            l4,
            payload,
            pad,
        })
}

/// The echo kinds of the case's ICMP family (the strategy draws 0 or 1 for "reply or
/// request").
fn fix_echo(case: &mut Case) {
    if let L4Repr::Icmp(icmp) = &mut case.l4 {
        icmp.kind = match (&case.ip, icmp.kind) {
            (IpRepr::V4(_), 1) => icmp::v4::ECHO_REQUEST,
            (IpRepr::V4(_), _) => icmp::v4::ECHO_REPLY,
            (IpRepr::V6(_), 1) => icmp::v6::ECHO_REQUEST,
            (IpRepr::V6(_), _) => icmp::v6::ECHO_REPLY,
        };
    }
}

proptest! {
    #[test]
    fn any_frame_emitted_is_valid_and_parses_as_built(mut case in case()) {
        fix_echo(&mut case);
        let frame = Frame {
            eth: case.eth,
            ip: case.ip,
            l4: case.l4,
            payload: &case.payload,
            checksums: Checksums::All,
            pad: case.pad,
        };
        let f = frame.to_vec().unwrap();
        prop_assert_eq!(f.len(), frame.len());
        let fragmented = match case.ip {
            IpRepr::V4(ip) => ip.more_frags,
            IpRepr::V6(ip) => ip.fragment.is_some_and(|f| f.more_frags),
        };
        let transport = assert_valid(&f);
        prop_assert_eq!(transport.is_some(), !fragmented);

        let (info, ip) = ip_info(&f);
        prop_assert_eq!((info.dst_mac, info.src_mac), (case.eth.dst, case.eth.src));
        let mut vids = [0u16; 2];
        for (slot, tag) in vids.iter_mut().zip(case.eth.vlans.tags()) {
            *slot = tag.tci & 0x0fff;
        }
        prop_assert_eq!(info.vlan, vids);
        prop_assert_eq!((ip.src, ip.dst), (case.ip.src(), case.ip.dst()));
        let v6 = matches!(case.ip, IpRepr::V6(_));
        prop_assert_eq!(ip.proto, case.l4.proto(v6));
        let unpadded = usize::from(info.l3_offset)
            + case.ip.header_len()
            + case.l4.header_len()
            + case.payload.len();
        prop_assert_eq!(f.len(), if case.pad { unpadded.max(MIN_FRAME_LEN) } else { unpadded });
        prop_assert_eq!(usize::from(ip.ip_end), unpadded);
        prop_assert_eq!(usize::from(ip.payload_offset), unpadded - case.payload.len());
        let want = match case.l4 {
            L4Repr::Tcp(t) => L4Info::Tcp { src_port: t.src_port, dst_port: t.dst_port, flags: t.flags },
            L4Repr::Udp(u) => L4Info::Udp { src_port: u.src_port, dst_port: u.dst_port },
            L4Repr::Icmp(i) => L4Info::IcmpEcho {
                id: u16::from_be_bytes([i.rest[0], i.rest[1]]),
                request: i.kind == icmp::v4::ECHO_REQUEST || i.kind == icmp::v6::ECHO_REQUEST,
            },
            L4Repr::Raw(_) => L4Info::Other,
        };
        prop_assert_eq!(ip.l4, want);
    }
}
