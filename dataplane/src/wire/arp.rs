//! ARP (RFC 826). Only Ethernet/IPv4 ARP is summarised; the view reads any variant.

use std::net::Ipv4Addr;

use super::{ethertype, ArpInfo, L3Info, Layer, MacAddr, ParseError};

/// A read-only view of an ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    /// Sender hardware address; then sender protocol, target hardware, target protocol.
    pub const ADDRESSES: usize = 8;
}

/// Length of the fixed part of the header, before the addresses.
pub const FIXED_LEN: usize = field::ADDRESSES;

/// Hardware type Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

pub const OPERATION_REQUEST: u16 = 1;
pub const OPERATION_REPLY: u16 = 2;

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer, checking that it holds the fixed header and all four addresses
    /// of the lengths the header declares.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Packet { buffer };
        let len = packet.buffer.as_ref().len();
        if len < FIXED_LEN || len < packet.total_len() {
            return Err(ParseError::Truncated { layer: Layer::Arp });
        }
        Ok(packet)
    }

    #[inline]
    fn read_u16(&self, range: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn hardware_type(&self) -> u16 {
        self.read_u16(field::HTYPE)
    }

    #[inline]
    pub fn protocol_type(&self) -> u16 {
        self.read_u16(field::PTYPE)
    }

    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    #[inline]
    pub fn operation(&self) -> u16 {
        self.read_u16(field::OPER)
    }

    /// Length of the whole ARP packet: fixed part plus two hardware and two protocol addresses.
    #[inline]
    pub fn total_len(&self) -> usize {
        FIXED_LEN + 2 * usize::from(self.hardware_len()) + 2 * usize::from(self.protocol_len())
    }

    #[inline]
    fn hlen(&self) -> usize {
        usize::from(self.hardware_len())
    }

    #[inline]
    fn plen(&self) -> usize {
        usize::from(self.protocol_len())
    }

    #[inline]
    pub fn sender_hardware_addr(&self) -> &[u8] {
        let start = field::ADDRESSES;
        &self.buffer.as_ref()[start..start + self.hlen()]
    }

    #[inline]
    pub fn sender_protocol_addr(&self) -> &[u8] {
        let start = field::ADDRESSES + self.hlen();
        &self.buffer.as_ref()[start..start + self.plen()]
    }

    #[inline]
    pub fn target_hardware_addr(&self) -> &[u8] {
        let start = field::ADDRESSES + self.hlen() + self.plen();
        &self.buffer.as_ref()[start..start + self.hlen()]
    }

    #[inline]
    pub fn target_protocol_addr(&self) -> &[u8] {
        let start = field::ADDRESSES + 2 * self.hlen() + self.plen();
        &self.buffer.as_ref()[start..start + self.plen()]
    }

    /// Whether this is ARP for IPv4 over Ethernet (htype 1, ptype 0x0800, hlen 6, plen 4).
    #[inline]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.hardware_type() == HTYPE_ETHERNET
            && self.protocol_type() == ethertype::IPV4
            && self.hardware_len() == 6
            && self.protocol_len() == 4
    }
}

/// Summarise the ARP packet at the start of `l3`: [`L3Info::Arp`] for Ethernet/IPv4,
/// [`L3Info::Other`] for any other hardware/protocol combination.
pub fn summarize(l3: &[u8]) -> Result<L3Info, ParseError> {
    let arp = Packet::new_checked(l3)?;
    if !arp.is_ethernet_ipv4() {
        return Ok(L3Info::Other);
    }
    // `is_ethernet_ipv4` fixed the address lengths, so these conversions always succeed.
    let mac = |b: &[u8]| <[u8; 6]>::try_from(b).map(MacAddr);
    let ip = |b: &[u8]| <[u8; 4]>::try_from(b).map(Ipv4Addr::from);
    let truncated = |_| ParseError::Truncated { layer: Layer::Arp };
    Ok(L3Info::Arp(ArpInfo {
        operation: arp.operation(),
        sender_mac: mac(arp.sender_hardware_addr()).map_err(truncated)?,
        sender_ip: ip(arp.sender_protocol_addr()).map_err(truncated)?,
        target_mac: mac(arp.target_hardware_addr()).map_err(truncated)?,
        target_ip: ip(arp.target_protocol_addr()).map_err(truncated)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // eth/ipv4, request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 192, 168, 1, 1, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 192, 168, 1, 2, // target
    ];

    #[test]
    fn request_is_summarised() {
        let info = summarize(&REQUEST).unwrap();
        assert_eq!(
            info,
            L3Info::Arp(ArpInfo {
                operation: OPERATION_REQUEST,
                sender_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                sender_ip: Ipv4Addr::new(192, 168, 1, 1),
                target_mac: MacAddr([0; 6]),
                target_ip: Ipv4Addr::new(192, 168, 1, 2),
            })
        );
    }

    #[test]
    fn reply_is_summarised() {
        let mut reply = REQUEST;
        reply[7] = 2;
        reply[18..24].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        match summarize(&reply).unwrap() {
            L3Info::Arp(a) => {
                assert_eq!(a.operation, OPERATION_REPLY);
                assert_eq!(a.target_mac, MacAddr([2, 0, 0, 0, 0, 2]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_arp_is_an_error() {
        for len in 0..REQUEST.len() {
            assert_eq!(
                summarize(&REQUEST[..len]),
                Err(ParseError::Truncated { layer: Layer::Arp }),
                "len {len}"
            );
        }
    }

    #[test]
    fn trailing_padding_is_ignored() {
        let mut padded = REQUEST.to_vec();
        padded.extend_from_slice(&[0; 18]);
        assert!(matches!(summarize(&padded), Ok(L3Info::Arp(_))));
    }

    #[test]
    fn non_ethernet_ipv4_arp_is_other() {
        // IPv6 protocol type (hlen 6, plen 16): a well-formed but foreign variant.
        let mut v = vec![0x00, 0x01, 0x86, 0xdd, 6, 16, 0x00, 0x01];
        v.extend_from_slice(&[0; 2 * 6 + 2 * 16]);
        assert_eq!(summarize(&v), Ok(L3Info::Other));
        let arp = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(arp.target_protocol_addr().len(), 16);
        // Hardware type 6 (IEEE 802) with Ethernet-sized addresses.
        let mut ieee = REQUEST;
        ieee[1] = 6;
        assert_eq!(summarize(&ieee), Ok(L3Info::Other));
        // Right types, wrong lengths.
        let mut odd = REQUEST.to_vec();
        odd[4] = 8;
        odd.extend_from_slice(&[0; 4]);
        assert_eq!(summarize(&odd), Ok(L3Info::Other));
    }

    #[test]
    fn declared_lengths_past_the_buffer_are_truncated() {
        let mut v = REQUEST;
        v[4] = 255;
        assert_eq!(
            summarize(&v),
            Err(ParseError::Truncated { layer: Layer::Arp })
        );
    }
}
