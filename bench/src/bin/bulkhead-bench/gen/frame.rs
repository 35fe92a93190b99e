//! The generator's frames: Ethernet + IPv4 + UDP (checksum 0, allowed over
//! IPv4) or TCP SYN (checksummed), zero payload, to a given frame size.

use crate::model::Flow;

/// Frame sizes are given on the wire (with the 4-byte FCS the NIC would add):
/// 64..=1518. The bytes built are the size less the FCS.
pub const MIN_SIZE: usize = 64;
pub const MAX_SIZE: usize = 1518;
const FCS: usize = 4;

fn csum(data: &[u8], mut sum: u32) -> u16 {
    for pair in data.chunks(2) {
        let w = match pair {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The frame of `flow` at wire size `size` (64..=1518; clamped).
pub fn build(flow: &Flow, size: usize) -> Vec<u8> {
    let len = size.clamp(MIN_SIZE, MAX_SIZE) - FCS;
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&flow.dst_mac);
    f[6..12].copy_from_slice(&flow.src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    // IPv4: a SYN carries no payload unless the frame is larger than 64 bytes.
    let ip_len = if flow.tcp && len <= 60 { 40 } else { len - 14 };
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = if flow.tcp { 6 } else { 17 };
    ip[12..16].copy_from_slice(&flow.src_ip);
    ip[16..20].copy_from_slice(&flow.dst_ip);
    let c = csum(ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let l4_len = ip_len - 20;
    let l4 = &mut f[34..14 + ip_len];
    l4[0..2].copy_from_slice(&flow.sport.to_be_bytes());
    l4[2..4].copy_from_slice(&flow.dport.to_be_bytes());
    if flow.tcp {
        l4[4..8].copy_from_slice(&1u32.to_be_bytes()); // sequence number
        l4[12] = 5 << 4; // data offset: 20 bytes
        l4[13] = 0x02; // SYN
        l4[14..16].copy_from_slice(&64240u16.to_be_bytes());
        // Pseudo-header: addresses, protocol, TCP length.
        let mut sum = 0u32;
        for w in [&flow.src_ip, &flow.dst_ip] {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
            sum += u32::from(u16::from_be_bytes([w[2], w[3]]));
        }
        sum += 6 + l4_len as u32;
        let c = csum(l4, sum);
        l4[16..18].copy_from_slice(&c.to_be_bytes());
    } else {
        l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    }
    f
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
