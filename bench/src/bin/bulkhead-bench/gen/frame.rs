//! The generator's frames: Ethernet + IPv4 + UDP (checksum 0, allowed over
//! IPv4) or TCP SYN (checksummed), zero payload, to a given frame size,
//! written by `dataplane::wire::emit`.

use crate::model::Flow;
use dataplane::wire::emit::{
    Checksums, EthernetRepr, Frame, Ipv4Repr, L4Repr, TcpRepr, UdpRepr, MIN_FRAME_LEN,
};
use dataplane::wire::{MacAddr, TcpFlags};

/// Frame sizes are given on the wire (with the 4-byte FCS the NIC would add):
/// 64..=1518. The bytes built are the size less the FCS.
pub const MIN_SIZE: usize = 64;
pub const MAX_SIZE: usize = 1518;
const FCS: usize = 4;

/// The payload's bytes: zeros, as many as the largest frame could want.
static ZEROS: [u8; MAX_SIZE] = [0; MAX_SIZE];

/// The frame of `flow` at wire size `size` (64..=1518; clamped).
pub fn build(flow: &Flow, size: usize) -> Vec<u8> {
    let len = size.clamp(MIN_SIZE, MAX_SIZE) - FCS;
    let ip = Ipv4Repr {
        dont_frag: true,
        ..Ipv4Repr::new(flow.src_ip.into(), flow.dst_ip.into())
    };
    let (l4, checksums) = if flow.tcp {
        let syn = TcpRepr {
            src_port: flow.sport,
            dst_port: flow.dport,
            seq: 1,
            flags: TcpFlags(TcpFlags::SYN),
            window: 64240,
            ..TcpRepr::default()
        };
        (L4Repr::Tcp(syn), Checksums::All)
    } else {
        let udp = UdpRepr {
            src_port: flow.sport,
            dst_port: flow.dport,
        };
        (L4Repr::Udp(udp), Checksums::IpOnly)
    };
    let eth = EthernetRepr::new(MacAddr(flow.dst_mac), MacAddr(flow.src_mac));
    let headers = eth.header_len() + Ipv4Repr::HEADER_LEN + l4.header_len();
    // A SYN carries no payload unless the frame is larger than 64 bytes (the
    // 64-byte one is padded); a UDP datagram fills the frame.
    let payload_len = if flow.tcp && len <= MIN_FRAME_LEN {
        0
    } else {
        len - headers
    };
    let frame = Frame {
        eth,
        ip: ip.into(),
        l4,
        payload: ZEROS.get(..payload_len).unwrap_or_default(),
        checksums,
        pad: true,
    };
    // At most 1514 bytes: every length fits its field, emit cannot fail.
    frame.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::flow;

    #[test]
    fn udp_and_syn_frames_parse_with_valid_checksums() {
        for (tcp, size) in [(false, 64), (false, 1518), (true, 64), (true, 512)] {
            let fl = flow(7, 100, 1000, tcp);
            let f = build(&fl, size);
            assert_eq!(f.len(), size - 4);
            let p = etherparse::SlicedPacket::from_ethernet(&f).expect("parses");
            let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
                panic!("not IPv4")
            };
            let h = ip.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum());
            match p.transport {
                Some(etherparse::TransportSlice::Udp(u)) => {
                    assert!(!tcp);
                    assert_eq!(u.destination_port(), fl.dport);
                    assert_eq!(usize::from(u.length()), size - 4 - 34);
                }
                Some(etherparse::TransportSlice::Tcp(t)) => {
                    assert!(tcp && t.syn() && !t.ack());
                    let want = t
                        .to_header()
                        .calc_checksum_ipv4(&h, t.payload())
                        .expect("checksum");
                    assert_eq!(t.checksum(), want);
                }
                _ => panic!("no transport"),
            }
        }
    }
}
