//! [`parse`] against `etherparse` as an oracle, and no-panic property tests.

use std::net::IpAddr;

use etherparse::{
    IpFragOffset, IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv4Options, Ipv6Extensions,
    Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, Ipv6RoutingExtensions, LinkExtSlice,
    LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TcpHeader, TcpOptions, TransportSlice,
    VlanId,
};
use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Net {
    V4 {
        src: [u8; 4],
        dst: [u8; 4],
        /// IPv4 options, a multiple of 4 bytes up to 40.
        options: Vec<u8>,
        first_fragment: bool,
        ident: u16,
    },
    V6 {
        src: [u8; 16],
        dst: [u8; 16],
        hop_by_hop: Option<Vec<u8>>,
        dest_opts: Option<Vec<u8>>,
        routing: Option<Vec<u8>>,
        /// Fragment header: `Some(more_fragments)` with offset 0.
        fragment: Option<bool>,
        ident: u32,
    },
}

#[derive(Debug, Clone)]
enum Transport {
    Tcp {
        src: u16,
        dst: u16,
        flags: u8,
        options: Vec<u8>,
    },
    Udp {
        src: u16,
        dst: u16,
    },
    Echo {
        id: u16,
        seq: u16,
        request: bool,
    },
}

#[derive(Debug, Clone)]
struct Spec {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vids: Vec<u16>,
    net: Net,
    transport: Transport,
    payload: Vec<u8>,
}

/// Extension header contents: 6 bytes plus a multiple of 8.
fn ext_payload() -> impl Strategy<Value = Vec<u8>> {
    (0usize..3).prop_flat_map(|n| prop::collection::vec(any::<u8>(), 6 + 8 * n))
}

fn net() -> impl Strategy<Value = Net> {
    let v4 = (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        (0usize..=10).prop_flat_map(|n| prop::collection::vec(any::<u8>(), 4 * n)),
        any::<bool>(),
        any::<u16>(),
    )
        .prop_map(|(src, dst, options, first_fragment, ident)| Net::V4 {
            src,
            dst,
            options,
            first_fragment,
            ident,
        });
    let v6 = (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        prop::option::of(ext_payload()),
        prop::option::of(ext_payload()),
        prop::option::of(ext_payload()),
        prop::option::of(any::<bool>()),
        any::<u32>(),
    )
        .prop_map(
            |(src, dst, hop_by_hop, dest_opts, routing, fragment, ident)| Net::V6 {
                src,
                dst,
                hop_by_hop,
                dest_opts,
                routing,
                fragment,
                ident,
            },
        );
    prop_oneof![v4, v6]
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        (
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
            (0usize..=10).prop_flat_map(|n| prop::collection::vec(1u8..=1, 4 * n)),
        )
            .prop_map(|(src, dst, flags, options)| Transport::Tcp {
                src,
                dst,
                flags,
                options
            }),
        (any::<u16>(), any::<u16>()).prop_map(|(src, dst)| Transport::Udp { src, dst }),
        (any::<u16>(), any::<u16>(), any::<bool>())
            .prop_map(|(id, seq, request)| Transport::Echo { id, seq, request }),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        prop::collection::vec(0u16..4096, 0..=2),
        net(),
        transport(),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(src_mac, dst_mac, vids, net, transport, payload)| Spec {
            src_mac,
            dst_mac,
            vids,
            net,
            transport,
            payload,
        })
}

fn raw_ext(bytes: &[u8]) -> Ipv6RawExtHeader {
    Ipv6RawExtHeader::new_raw(IpNumber(0), bytes).expect("valid extension length")
}

fn ip_headers(net: &Net) -> IpHeaders {
    match net {
        Net::V4 {
            src,
            dst,
            options,
            first_fragment,
            ident,
        } => {
            let mut h = Ipv4Header::new(0, 64, IpNumber(0), *src, *dst).unwrap();
            h.options = Ipv4Options::try_from(&options[..]).unwrap();
            h.more_fragments = *first_fragment;
            h.identification = *ident;
            IpHeaders::Ipv4(h, Ipv4Extensions::default())
        }
        Net::V6 {
            src,
            dst,
            hop_by_hop,
            dest_opts,
            routing,
            fragment,
            ident,
        } => {
            let h = Ipv6Header {
                hop_limit: 64,
                source: *src,
                destination: *dst,
                ..Default::default()
            };
            let exts = Ipv6Extensions {
                hop_by_hop_options: hop_by_hop.as_deref().map(raw_ext),
                destination_options: dest_opts.as_deref().map(raw_ext),
                routing: routing.as_deref().map(|r| Ipv6RoutingExtensions {
                    routing: raw_ext(r),
                    final_destination_options: None,
                }),
                fragment: fragment.map(|more| {
                    Ipv6FragmentHeader::new(IpNumber(0), IpFragOffset::ZERO, more, *ident)
                }),
                auth: None,
            };
            IpHeaders::Ipv6(h, exts)
        }
    }
}

fn build(spec: &Spec) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(spec.src_mac, spec.dst_mac);
    let ip = ip_headers(&spec.net);
    let vid = |i: usize| VlanId::try_new(spec.vids[i]).unwrap();
    let step = match spec.vids.len() {
        0 => eth.ip(ip),
        1 => eth.single_vlan(vid(0)).ip(ip),
        _ => eth.double_vlan(vid(0), vid(1)).ip(ip),
    };
    let is_v6 = matches!(spec.net, Net::V6 { .. });
    let mut out = Vec::new();
    let payload = &spec.payload[..];
    match &spec.transport {
        Transport::Tcp {
            src,
            dst,
            flags,
            options,
        } => {
            let mut h = TcpHeader::new(*src, *dst, 1, 1024);
            h.fin = flags & TcpFlags::FIN != 0;
            h.syn = flags & TcpFlags::SYN != 0;
            h.rst = flags & TcpFlags::RST != 0;
            h.psh = flags & TcpFlags::PSH != 0;
            h.ack = flags & TcpFlags::ACK != 0;
            h.urg = flags & TcpFlags::URG != 0;
            h.ece = flags & 0x40 != 0;
            h.cwr = flags & 0x80 != 0;
            h.options = TcpOptions::try_from_slice(options).unwrap();
            step.tcp_header(h).write(&mut out, payload).unwrap();
        }
        Transport::Udp { src, dst } => step.udp(*src, *dst).write(&mut out, payload).unwrap(),
        Transport::Echo { id, seq, request } => match (is_v6, request) {
            (false, true) => step.icmpv4_echo_request(*id, *seq).write(&mut out, payload),
            (false, false) => step.icmpv4_echo_reply(*id, *seq).write(&mut out, payload),
            (true, true) => step.icmpv6_echo_request(*id, *seq).write(&mut out, payload),
            (true, false) => step.icmpv6_echo_reply(*id, *seq).write(&mut out, payload),
        }
        .unwrap(),
    }
    out
}

fn tcp_flags_of(t: &etherparse::TcpSlice<'_>) -> u8 {
    [
        t.fin(),
        t.syn(),
        t.rst(),
        t.psh(),
        t.ack(),
        t.urg(),
        t.ece(),
        t.cwr(),
    ]
    .iter()
    .enumerate()
    .map(|(bit, set)| u8::from(*set) << bit)
    .sum()
}

/// Parse `frame` with both parsers and assert that they agree.
fn assert_agrees_with_etherparse(frame: &[u8]) {
    let ours = parse(frame).expect("our parse");
    let theirs = SlicedPacket::from_ethernet(frame).expect("etherparse");
    let base = frame.as_ptr() as usize;
    let off = |s: &[u8]| (s.as_ptr() as usize - base) as u16;

    let Some(LinkSlice::Ethernet2(eth)) = &theirs.link else {
        panic!("no Ethernet II link: {:?}", theirs.link)
    };
    assert_eq!(ours.dst_mac, MacAddr(eth.destination()));
    assert_eq!(ours.src_mac, MacAddr(eth.source()));
    let mut vlan = [0u16; 2];
    let mut after_tags = eth.ether_type().0;
    for (i, ext) in theirs.link_exts.iter().enumerate() {
        let LinkExtSlice::Vlan(tag) = ext else {
            panic!("{ext:?}")
        };
        vlan[i] = tag.vlan_identifier().value();
        after_tags = tag.ether_type().0;
    }
    assert_eq!(ours.vlan, vlan);
    assert_eq!(ours.ethertype, after_tags);

    let L3Info::Ip(ip) = ours.l3 else {
        panic!("not IP: {ours:?}")
    };
    let (src, dst, header, payload): (IpAddr, IpAddr, _, _) = match theirs.net.as_ref() {
        Some(NetSlice::Ipv4(s)) => (
            s.header().source_addr().into(),
            s.header().destination_addr().into(),
            s.header().slice(),
            s.payload(),
        ),
        Some(NetSlice::Ipv6(s)) => (
            s.header().source_addr().into(),
            s.header().destination_addr().into(),
            s.header().slice(),
            s.payload(),
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!(ours.l3_offset, off(header));
    assert_eq!((ip.src, ip.dst), (src, dst));
    assert_eq!(ip.proto, payload.ip_number.0);
    assert_eq!(ip.l4_offset, off(payload.payload));
    assert_eq!(
        ip.ip_end,
        off(payload.payload) + payload.payload.len() as u16
    );
    assert_eq!(ip.frag != Fragment::None, payload.fragmented);

    match (&theirs.transport, ip.l4) {
        (
            Some(TransportSlice::Tcp(t)),
            L4Info::Tcp {
                src_port,
                dst_port,
                flags,
            },
        ) => {
            assert_eq!(
                (src_port, dst_port),
                (t.source_port(), t.destination_port())
            );
            assert_eq!(flags.0, tcp_flags_of(t));
            assert_eq!(ip.payload_offset, off(t.payload()));
        }
        (Some(TransportSlice::Udp(u)), L4Info::Udp { src_port, dst_port }) => {
            assert_eq!(
                (src_port, dst_port),
                (u.source_port(), u.destination_port())
            );
            assert_eq!(ip.payload_offset, off(u.payload()));
        }
        (Some(TransportSlice::Icmpv4(i)), L4Info::IcmpEcho { id, request }) => {
            use etherparse::Icmpv4Type::{EchoReply, EchoRequest};
            match i.icmp_type() {
                EchoRequest(h) => assert!(request && h.id == id),
                EchoReply(h) => assert!(!request && h.id == id),
                other => panic!("{other:?}"),
            }
            assert_eq!(ip.payload_offset, off(i.payload()));
        }
        (Some(TransportSlice::Icmpv6(i)), L4Info::IcmpEcho { id, request }) => {
            use etherparse::Icmpv6Type::{EchoReply, EchoRequest};
            match i.icmp_type() {
                EchoRequest(h) => assert!(request && h.id == id),
                EchoReply(h) => assert!(!request && h.id == id),
                other => panic!("{other:?}"),
            }
            assert_eq!(ip.payload_offset, off(i.payload()));
        }
        // etherparse leaves the transport of a first fragment alone; we read it.
        (None, l4) => {
            assert!(matches!(ip.frag, Fragment::First { .. }), "{ip:?}");
            assert!(!matches!(l4, L4Info::Fragment | L4Info::Other), "{l4:?}");
        }
        (theirs, ours) => panic!("transport differs: {theirs:?} vs {ours:?}"),
    }
}

proptest! {
    #[test]
    fn agrees_with_etherparse_on_built_packets(spec in spec()) {
        let frame = build(&spec);
        assert_agrees_with_etherparse(&frame);
        let info = parse(&frame).unwrap();
        // The fields we asked the builder for come back.
        prop_assert_eq!(info.src_mac, MacAddr(spec.src_mac));
        let L3Info::Ip(ip) = info.l3 else { unreachable!() };
        match (&spec.net, ip.frag) {
            (Net::V4 { ident, first_fragment: true, .. }, Fragment::First { id }) => {
                prop_assert_eq!(u32::from(*ident), id);
            }
            (Net::V6 { ident, fragment: Some(true), .. }, Fragment::First { id }) => {
                prop_assert_eq!(*ident, id);
            }
            (_, Fragment::None) => {}
            (net, frag) => prop_assert!(false, "{:?} gave {:?}", net, frag),
        }
        prop_assert_eq!(usize::from(ip.ip_end), frame.len());
        prop_assert_eq!(usize::from(ip.payload_offset) + spec.payload.len(), frame.len());
    }

    #[test]
    fn ethernet_padding_does_not_change_the_result(spec in spec(), pad in 1usize..64) {
        let frame = build(&spec);
        let mut padded = frame.clone();
        padded.resize(frame.len() + pad, 0xa5);
        prop_assert_eq!(parse(&padded), parse(&frame));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn mutated_packets_never_panic(
        spec in spec(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = build(&spec);
        for (at, byte) in edits {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        let _ = parse(&frame);
        let _ = parse(&frame[..cut.index(frame.len() + 1)]);
    }

    #[test]
    fn arbitrary_bytes_behind_valid_ip_headers_never_panic(
        tags in prop::collection::vec(prop::sample::select(vec![ethertype::VLAN, ethertype::QINQ]), 0..=2),
        v6 in any::<bool>(),
        proto in prop::sample::select(vec![0u8, 1, 6, 17, 43, 44, 47, 50, 51, 58, 59, 60]),
        flg_off in prop::sample::select(vec![0u16, 0x2000, 0x0010]),
        tail in prop::collection::vec(any::<u8>(), 0..300),
        pad in 0usize..20,
    ) {
        let tags: Vec<(u16, u16)> = tags.into_iter().map(|t| (t, 5)).collect();
        let l3 = if v6 {
            super::tests::ipv6(proto, &tail)
        } else {
            super::tests::ipv4(proto, 1, flg_off, &[], &tail)
        };
        let ethertype = if v6 { ethertype::IPV6 } else { ethertype::IPV4 };
        let mut frame = super::tests::eth_tagged(&tags, ethertype, &l3);
        frame.resize(frame.len() + pad, 0);
        if let Ok(PacketInfo { l3: L3Info::Ip(ip), .. }) = parse(&frame) {
            prop_assert!(ip.l4_offset <= ip.ip_end);
            prop_assert!(ip.payload_offset <= ip.ip_end);
            prop_assert!(usize::from(ip.ip_end) <= frame.len());
        }
    }
}

#[test]
fn single_and_double_vlan_examples_agree() {
    let base = Spec {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        vids: vec![],
        net: Net::V4 {
            src: [192, 0, 2, 1],
            dst: [192, 0, 2, 2],
            options: vec![0x94, 4, 0, 0],
            first_fragment: false,
            ident: 1,
        },
        transport: Transport::Tcp {
            src: 40000,
            dst: 22,
            flags: TcpFlags::SYN,
            options: vec![1; 8],
        },
        payload: b"hello".to_vec(),
    };
    for vids in [vec![], vec![10], vec![4095, 1]] {
        let spec = Spec {
            vids: vids.clone(),
            ..base.clone()
        };
        let frame = build(&spec);
        assert_agrees_with_etherparse(&frame);
        let info = parse(&frame).unwrap();
        assert_eq!(info.vlan[..vids.len()], vids[..]);
    }
}

#[test]
fn ipv6_with_every_extension_header_agrees() {
    let spec = Spec {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        vids: vec![7],
        net: Net::V6 {
            src: [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            dst: [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            hop_by_hop: Some(vec![0; 6]),
            dest_opts: Some(vec![0; 14]),
            routing: Some(vec![0; 6]),
            fragment: Some(false),
            ident: 99,
        },
        transport: Transport::Udp { src: 547, dst: 546 },
        payload: vec![1, 2, 3],
    };
    let frame = build(&spec);
    assert_agrees_with_etherparse(&frame);
    let L3Info::Ip(ip) = parse(&frame).unwrap().l3 else {
        panic!()
    };
    assert_eq!(ip.l4_offset, 18 + 40 + 8 + 16 + 8 + 8);
    assert_eq!(ip.frag, Fragment::None); // atomic fragment
}
