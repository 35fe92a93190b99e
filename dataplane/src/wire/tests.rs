//! Whole-frame tests of [`parse`] on hand-built frames.

use super::*;

const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const V4_SRC: [u8; 4] = [10, 0, 0, 1];
const V4_DST: [u8; 4] = [10, 0, 0, 2];
const V6_SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

pub(super) fn eth_tagged(tags: &[(u16, u16)], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = DST.to_vec();
    f.extend_from_slice(&SRC);
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

pub(super) fn eth(ethertype: u16, l3: &[u8]) -> Vec<u8> {
    eth_tagged(&[], ethertype, l3)
}

/// An IPv4 packet 10.0.0.1 -> 10.0.0.2 with the given flags/fragment offset word.
pub(super) fn ipv4(proto: u8, id: u16, flg_off: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let ihl = 5 + options.len() / 4;
    let total = (ihl * 4 + payload.len()) as u16;
    let mut p = vec![0x40 | ihl as u8, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&flg_off.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&V4_SRC);
    p.extend_from_slice(&V4_DST);
    p.extend_from_slice(options);
    p.extend_from_slice(payload);
    p
}

/// An IPv6 packet 2001:db8::1 -> 2001:db8::2; `payload` includes any extension headers.
pub(super) fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&V6_SRC);
    p.extend_from_slice(&V6_DST);
    p.extend_from_slice(payload);
    p
}

pub(super) fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = src_port.to_be_bytes().to_vec();
    d.extend_from_slice(&dst_port.to_be_bytes());
    d.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    d
}

pub(super) fn tcp(src_port: u16, dst_port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = src_port.to_be_bytes().to_vec();
    s.extend_from_slice(&dst_port.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    s.extend_from_slice(payload);
    s
}

fn ip_info(frame: &[u8]) -> IpInfo {
    match parse(frame) {
        Ok(PacketInfo {
            l3: L3Info::Ip(ip), ..
        }) => ip,
        other => panic!("not an IP packet: {other:?}"),
    }
}

fn err(frame: &[u8]) -> ParseError {
    match parse(frame) {
        Err(e) => e,
        Ok(info) => panic!("parsed: {info:?}"),
    }
}

#[test]
fn ipv4_udp_frame_is_summarised() {
    let frame = eth(
        ethertype::IPV4,
        &ipv4(17, 7, 0, &[], &udp(5353, 53, b"query")),
    );
    let info = parse(&frame).unwrap();
    assert_eq!(info.dst_mac, MacAddr(DST));
    assert_eq!(info.src_mac, MacAddr(SRC));
    assert_eq!(info.vlan, [0, 0]);
    assert_eq!(info.ethertype, ethertype::IPV4);
    assert_eq!(info.l3_offset, 14);
    assert_eq!(
        info.l3,
        L3Info::Ip(IpInfo {
            src: Ipv4Addr::from(V4_SRC).into(),
            dst: Ipv4Addr::from(V4_DST).into(),
            proto: 17,
            ttl: 64,
            frag: Fragment::None,
            l4_offset: 34,
            payload_offset: 42,
            ip_end: 47,
            l4: L4Info::Udp {
                src_port: 5353,
                dst_port: 53
            },
        })
    );
}

#[test]
fn short_frames_are_truncated_ethernet() {
    let frame = eth(ethertype::IPV4, &[]);
    for len in 0..14 {
        assert_eq!(
            err(&frame[..len]),
            ParseError::Truncated {
                layer: Layer::Ethernet
            }
        );
    }
    // A bare header with an IPv4 ethertype is a truncated IPv4 packet.
    assert_eq!(err(&frame), ParseError::Truncated { layer: Layer::Ipv4 });
}

#[test]
fn frame_longer_than_u16_offsets_is_rejected() {
    let mut frame = eth(0x88b5, &[]);
    frame.resize(MAX_FRAME_LEN + 1, 0);
    assert_eq!(err(&frame), ParseError::FrameTooLong);
    frame.truncate(MAX_FRAME_LEN);
    assert!(parse(&frame).is_ok());
}

#[test]
fn ieee_802_3_length_frame_is_other() {
    // 802.3 length 38 followed by an LLC header (STP).
    let frame = eth(38, &[0x42, 0x42, 0x03, 0, 0, 0]);
    let info = parse(&frame).unwrap();
    assert_eq!(info.ethertype, 38);
    assert_eq!(info.l3, L3Info::Other);
    assert_eq!(info.l3_offset, 14);
}

#[test]
fn unknown_ethertype_is_other() {
    let info = parse(&eth(0x88cc, &[1, 2, 3])).unwrap(); // LLDP
    assert_eq!((info.ethertype, info.l3), (0x88cc, L3Info::Other));
}

#[test]
fn arp_request_and_reply_behind_a_vlan_tag() {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&SRC);
    arp.extend_from_slice(&V4_SRC);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&V4_DST);
    let frame = eth_tagged(&[(ethertype::VLAN, 0x2064)], ethertype::ARP, &arp);
    let info = parse(&frame).unwrap();
    assert_eq!(info.vlan, [100, 0]);
    assert_eq!(info.l3_offset, 18);
    let L3Info::Arp(req) = info.l3 else {
        panic!("{info:?}")
    };
    assert_eq!(req.operation, 1);
    assert_eq!(req.sender_mac, MacAddr(SRC));
    assert_eq!(req.sender_ip, Ipv4Addr::from(V4_SRC));
    assert_eq!(req.target_ip, Ipv4Addr::from(V4_DST));

    arp[7] = 2;
    arp[18..24].copy_from_slice(&DST);
    let L3Info::Arp(rep) = parse(&eth(ethertype::ARP, &arp)).unwrap().l3 else {
        panic!()
    };
    assert_eq!((rep.operation, rep.target_mac), (2, MacAddr(DST)));

    assert_eq!(
        err(&eth(ethertype::ARP, &arp[..27])),
        ParseError::Truncated { layer: Layer::Arp }
    );
}

#[test]
fn qinq_frame_carries_both_vids() {
    let l3 = ipv4(6, 1, 0, &[], &tcp(1000, 22, TcpFlags::SYN, &[]));
    let tags = [(ethertype::QINQ, 0x0123), (ethertype::VLAN, 0xe456)];
    let frame = eth_tagged(&tags, ethertype::IPV4, &l3);
    let info = parse(&frame).unwrap();
    assert_eq!(info.vlan, [0x123, 0x456]);
    assert_eq!(info.ethertype, ethertype::IPV4);
    assert_eq!(info.l3_offset, 22);
    let L3Info::Ip(ip) = info.l3 else { panic!() };
    assert_eq!((ip.l4_offset, ip.payload_offset), (42, 62));

    let three = [tags[0], tags[1], (ethertype::VLAN, 7)];
    assert_eq!(
        err(&eth_tagged(&three, ethertype::IPV4, &l3)),
        ParseError::TooManyVlanTags
    );
}

#[test]
fn ethernet_padding_is_excluded_from_ip_end() {
    let mut frame = eth(ethertype::IPV4, &ipv4(17, 1, 0, &[], &udp(1, 2, &[9])));
    assert_eq!(frame.len(), 43);
    frame.resize(60, 0);
    let ip = ip_info(&frame);
    assert_eq!(ip.ip_end, 43);
    assert_eq!(ip.payload_offset, 42);
}

#[test]
fn tcp_data_offset_past_the_ip_payload_is_bad_length() {
    // Data offset 6 (24 bytes) in a 20-byte segment, with padding that would cover it.
    let mut seg = tcp(1, 2, TcpFlags::ACK, &[]);
    seg[12] = 0x60;
    let mut frame = eth(ethertype::IPV4, &ipv4(6, 1, 0, &[], &seg));
    frame.resize(64, 0);
    assert_eq!(err(&frame), ParseError::BadLength { layer: Layer::Tcp });
}

#[test]
fn udp_length_lying_is_bad_length() {
    let mut dgram = udp(1, 2, &[0; 4]);
    dgram[5] = 13; // one more than there is
    let frame = eth(ethertype::IPV4, &ipv4(17, 1, 0, &[], &dgram));
    assert_eq!(err(&frame), ParseError::BadLength { layer: Layer::Udp });
    dgram[5] = 7;
    let frame = eth(ethertype::IPV4, &ipv4(17, 1, 0, &[], &dgram));
    assert_eq!(err(&frame), ParseError::BadLength { layer: Layer::Udp });
}

#[test]
fn ipv4_options_are_skipped() {
    let options = [0x94, 0x04, 0, 0, 0x01, 0x01, 0x01, 0x00]; // router alert, NOPs, EOL
    let frame = eth(
        ethertype::IPV4,
        &ipv4(17, 1, 0, &options, &udp(67, 68, &[])),
    );
    let ip = ip_info(&frame);
    assert_eq!((ip.l4_offset, ip.payload_offset), (42, 50));
    assert_eq!(
        ip.l4,
        L4Info::Udp {
            src_port: 67,
            dst_port: 68
        }
    );
}

#[test]
fn ipv4_first_fragment_parses_the_transport_header() {
    // The UDP length covers the whole datagram, more than this fragment holds.
    let mut dgram = udp(4000, 4001, &[0; 16]);
    dgram[4..6].copy_from_slice(&3000u16.to_be_bytes());
    let frame = eth(ethertype::IPV4, &ipv4(17, 0xbeef, 0x2000, &[], &dgram));
    let ip = ip_info(&frame);
    assert_eq!(ip.frag, Fragment::First { id: 0xbeef });
    assert_eq!(
        ip.l4,
        L4Info::Udp {
            src_port: 4000,
            dst_port: 4001
        }
    );
    // A first fragment too short for the TCP header is refused (tiny fragment attack).
    let frame = eth(ethertype::IPV4, &ipv4(6, 1, 0x2000, &[], &[0; 8]));
    assert_eq!(err(&frame), ParseError::Truncated { layer: Layer::Tcp });
}

#[test]
fn ipv4_later_fragment_has_no_transport() {
    let frame = eth(ethertype::IPV4, &ipv4(6, 0xbeef, 0x00b9, &[], &[0xff; 3]));
    let ip = ip_info(&frame);
    assert_eq!(ip.frag, Fragment::Later { id: 0xbeef });
    assert_eq!(ip.l4, L4Info::Fragment);
    assert_eq!(ip.proto, 6);
    assert_eq!((ip.l4_offset, ip.payload_offset, ip.ip_end), (34, 34, 37));
}

#[test]
fn ipv4_header_errors_surface() {
    let mut l3 = ipv4(17, 1, 0, &[], &udp(1, 2, &[]));
    l3[0] = 0x55;
    assert_eq!(
        err(&eth(ethertype::IPV4, &l3)),
        ParseError::BadVersion { layer: Layer::Ipv4 }
    );
    l3[0] = 0x45;
    l3[3] += 1;
    assert_eq!(
        err(&eth(ethertype::IPV4, &l3)),
        ParseError::BadLength { layer: Layer::Ipv4 }
    );
}

#[test]
fn ipv6_tcp_after_hop_by_hop_and_destination_options() {
    let mut payload = vec![60, 0, 5, 2, 0, 0, 1, 0]; // HBH (router alert) -> dest opts
    payload.extend_from_slice(&[6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // -> TCP
    payload.extend_from_slice(&tcp(443, 50000, TcpFlags::ACK | TcpFlags::PSH, b"data"));
    let ip = ip_info(&eth(ethertype::IPV6, &ipv6(0, &payload)));
    assert_eq!(ip.src, IpAddr::from(V6_SRC));
    assert_eq!(ip.proto, 6);
    assert_eq!(ip.l4_offset, 14 + 40 + 24);
    assert_eq!(ip.payload_offset, ip.l4_offset + 20);
    assert_eq!(ip.ip_end, ip.payload_offset + 4);
    assert_eq!(
        ip.l4,
        L4Info::Tcp {
            src_port: 443,
            dst_port: 50000,
            flags: TcpFlags(0x18)
        }
    );
}

#[test]
fn ipv6_fragment_header_first_and_later() {
    let mut first = vec![17, 0, 0, 1, 0, 0, 0x12, 0x34];
    first.extend_from_slice(&udp(53, 53, &[0; 8]));
    let ip = ip_info(&eth(ethertype::IPV6, &ipv6(44, &first)));
    assert_eq!(ip.frag, Fragment::First { id: 0x1234 });
    assert_eq!(ip.l4_offset, 14 + 40 + 8);
    assert!(matches!(ip.l4, L4Info::Udp { src_port: 53, .. }));

    let later = [17, 0, 0x05, 0x08, 0, 0, 0x12, 0x34, 0xaa, 0xbb];
    let ip = ip_info(&eth(ethertype::IPV6, &ipv6(44, &later)));
    assert_eq!(ip.frag, Fragment::Later { id: 0x1234 });
    assert_eq!((ip.proto, ip.l4), (17, L4Info::Fragment));
    assert_eq!(ip.payload_offset, ip.l4_offset);
}

#[test]
fn ipv6_no_next_header_esp_and_ah_stop_the_walk() {
    for proto in [59, 50, 51] {
        let ip = ip_info(&eth(ethertype::IPV6, &ipv6(proto, &[0; 16])));
        assert_eq!((ip.proto, ip.l4), (proto, L4Info::Other));
        assert_eq!((ip.l4_offset, ip.payload_offset), (54, 54));
    }
}

#[test]
fn ipv6_extension_errors_surface() {
    let ext = [60, 0, 1, 4, 0, 0, 0, 0];
    let mut exts = Vec::new();
    for _ in 0..9 {
        exts.extend_from_slice(&ext);
    }
    assert_eq!(
        err(&eth(ethertype::IPV6, &ipv6(60, &exts))),
        ParseError::TooManyExtensionHeaders
    );
    // The extension header claims 16 bytes, the payload length allows 8 (the frame more).
    let mut l3 = ipv6(60, &[6, 1, 0, 0, 0, 0, 0, 0]);
    l3.resize(l3.len() + 40, 0);
    assert_eq!(
        err(&eth(ethertype::IPV6, &l3)),
        ParseError::Truncated {
            layer: Layer::Ipv6Extension
        }
    );
    let mut jumbo = ipv6(0, &[17, 0, 0xc2, 4, 0, 1, 0, 0]);
    jumbo[4..6].copy_from_slice(&[0, 0]);
    assert_eq!(
        err(&eth(ethertype::IPV6, &jumbo)),
        ParseError::BadLength { layer: Layer::Ipv6 }
    );
}

#[test]
fn icmp_echo_and_other_protocols() {
    let echo = [8, 0, 0, 0, 0x01, 0x02, 0, 1, 0xaa, 0xbb];
    let ip = ip_info(&eth(ethertype::IPV4, &ipv4(1, 1, 0, &[], &echo)));
    assert_eq!(
        ip.l4,
        L4Info::IcmpEcho {
            id: 0x0102,
            request: true
        }
    );
    assert_eq!(ip.payload_offset, ip.l4_offset + 8);

    let gre = ip_info(&eth(ethertype::IPV4, &ipv4(47, 1, 0, &[], &[0; 4])));
    assert_eq!((gre.proto, gre.l4), (47, L4Info::Other));
    assert_eq!(gre.payload_offset, gre.l4_offset);

    // ICMPv6 in IPv4 and ICMPv4 in IPv6 are not ICMP to us.
    let v6_in_v4 = ip_info(&eth(ethertype::IPV4, &ipv4(58, 1, 0, &[], &[128; 8])));
    assert_eq!(v6_in_v4.l4, L4Info::Other);
    let v4_in_v6 = ip_info(&eth(ethertype::IPV6, &ipv6(1, &[8; 8])));
    assert_eq!(v4_in_v6.l4, L4Info::Other);
}

#[test]
fn icmp_port_unreachable_carries_the_udp_flow() {
    // The offending datagram 10.0.0.2:40000 -> 10.0.0.1:53, quoted with 8 bytes of UDP
    // although its total length claims 33 more.
    let mut quoted = ipv4(17, 9, 0, &[], &udp(40000, 53, &[0; 33]));
    quoted[12..16].copy_from_slice(&V4_DST);
    quoted[16..20].copy_from_slice(&V4_SRC);
    quoted.truncate(28);
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quoted);
    let ip = ip_info(&eth(ethertype::IPV4, &ipv4(1, 2, 0, &[], &icmp)));
    assert_eq!(
        ip.l4,
        L4Info::IcmpError {
            kind: 3,
            code: 3,
            inner: InnerFlow {
                src: Ipv4Addr::from(V4_DST).into(),
                dst: Ipv4Addr::from(V4_SRC).into(),
                proto: 17,
                src_port: 40000,
                dst_port: 53,
            }
        }
    );
    icmp.truncate(8 + 22);
    assert_eq!(
        err(&eth(ethertype::IPV4, &ipv4(1, 2, 0, &[], &icmp))),
        ParseError::Truncated {
            layer: Layer::IcmpInner
        }
    );
}

#[test]
fn icmpv6_packet_too_big_carries_the_tcp_flow() {
    let quoted = ipv6(6, &tcp(50000, 443, TcpFlags::ACK, &[0; 1400]));
    let mut icmp = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
    icmp.extend_from_slice(&quoted[..1232 - 8]);
    let ip = ip_info(&eth(ethertype::IPV6, &ipv6(58, &icmp)));
    assert_eq!(
        ip.l4,
        L4Info::IcmpError {
            kind: 2,
            code: 0,
            inner: InnerFlow {
                src: IpAddr::from(V6_SRC),
                dst: IpAddr::from(V6_DST),
                proto: 6,
                src_port: 50000,
                dst_port: 443,
            }
        }
    );
    assert_eq!(ip.payload_offset, ip.l4_offset + 8);
}

#[test]
fn neighbour_solicitation_is_icmp_other() {
    let ns = [135, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0x80];
    let ip = ip_info(&eth(ethertype::IPV6, &ipv6(58, &ns)));
    assert_eq!(ip.l4, L4Info::IcmpOther { kind: 135, code: 0 });
}

#[test]
fn mac_text_round_trips_in_canonical_form() {
    let mac = MacAddr([2, 0, 0, 0, 1, 10]);
    assert_eq!("02:00:00:00:01:0a".parse(), Ok(mac));
    assert_eq!(" 02-00-00-00-01-0A ".parse(), Ok(mac));
    assert_eq!(mac.to_string(), "02:00:00:00:01:0a");
    for bad in [
        "02:00:00:00:01",
        "02:00:00:00:01:0a:00",
        "02:00-00:00:01:0a",
        "2:00:00:00:01:0a",
        "zz:00:00:00:01:0a",
        "",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn mac_serde_is_its_text() {
    use serde::de::value::{Error, StrDeserializer};
    use serde::de::{Deserialize, IntoDeserializer};
    let d: StrDeserializer<'_, Error> = "02-00-00-00-01-0A".into_deserializer();
    assert_eq!(MacAddr::deserialize(d), Ok(MacAddr([2, 0, 0, 0, 1, 10])));
    let d: StrDeserializer<'_, Error> = "02:00".into_deserializer();
    assert!(MacAddr::deserialize(d).is_err());
}
