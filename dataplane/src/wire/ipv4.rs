//! IPv4 (RFC 791). Options are skipped, never interpreted; checksums are not verified.

use std::net::Ipv4Addr;

use super::{Fragment, Layer, ParseError};

/// A read-only view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of the header without options.
pub const MIN_HEADER_LEN: usize = field::DST_ADDR.end;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer holding a whole IPv4 packet (possibly followed by link padding):
    /// the header, with options, must be present, and the total length must cover the
    /// header and fit in the buffer.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Self::new_checked_header(buffer)?;
        let total = usize::from(packet.total_len());
        if total < packet.header_len() || total > packet.buffer.as_ref().len() {
            return Err(ParseError::BadLength { layer: Layer::Ipv4 });
        }
        Ok(packet)
    }

    /// Wrap a buffer holding at least a complete IPv4 header (with options), without
    /// checking the total length: for the truncated packet quoted in an ICMP error.
    /// The accessors are safe after either check; [`Packet::payload`] needs `new_checked`.
    #[inline]
    pub fn new_checked_header(buffer: T) -> Result<Self, ParseError> {
        let packet = Packet { buffer };
        let len = packet.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(ParseError::Truncated { layer: Layer::Ipv4 });
        }
        if packet.version() != 4 {
            return Err(ParseError::BadVersion { layer: Layer::Ipv4 });
        }
        if packet.header_len() < MIN_HEADER_LEN {
            return Err(ParseError::BadLength { layer: Layer::Ipv4 });
        }
        if packet.header_len() > len {
            return Err(ParseError::Truncated { layer: Layer::Ipv4 });
        }
        Ok(packet)
    }

    #[inline]
    fn read_u16(&self, range: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    fn read_addr(&self, range: core::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[range];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// The total length field: header plus payload.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.read_u16(field::LENGTH)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        self.read_u16(field::IDENT)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.read_u16(field::FLG_OFF) & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.read_u16(field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        self.read_u16(field::FLG_OFF) & OFFSET_MASK
    }

    /// Where this packet stands in fragmentation.
    #[inline]
    pub fn fragment(&self) -> Fragment {
        let id = u32::from(self.ident());
        if self.frag_offset() > 0 {
            Fragment::Later { id }
        } else if self.more_frags() {
            Fragment::First { id }
        } else {
            Fragment::None
        }
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        self.read_addr(field::SRC_ADDR)
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        self.read_addr(field::DST_ADDR)
    }

    /// The options bytes (empty when IHL = 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload, up to the total length (link padding excluded). Needs `new_checked`.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 192.0.2.1 -> 198.51.100.7, UDP, total length 28 (8 bytes of payload).
    const UDP_PACKET: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 64, 17, 0x00, 0x00, // ..checksum
        192, 0, 2, 1, 198, 51, 100, 7, // addresses
        0x00, 0x35, 0x04, 0xd2, 0x00, 0x08, 0x00, 0x00, // UDP
    ];

    #[test]
    fn fields_are_read() {
        let p = Packet::new_checked(&UDP_PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.fragment(), Fragment::None);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(198, 51, 100, 7));
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn short_header_is_truncated() {
        for len in 0..MIN_HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&UDP_PACKET[..len]),
                Err(ParseError::Truncated { layer: Layer::Ipv4 })
            );
        }
    }

    #[test]
    fn wrong_version_is_bad_version() {
        let mut p = UDP_PACKET;
        p[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&p[..]),
            Err(ParseError::BadVersion { layer: Layer::Ipv4 })
        );
    }

    #[test]
    fn ihl_below_five_is_bad_length() {
        let mut p = UDP_PACKET;
        p[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&p[..]),
            Err(ParseError::BadLength { layer: Layer::Ipv4 })
        );
    }

    #[test]
    fn options_past_the_buffer_are_truncated() {
        let mut p = UDP_PACKET;
        p[0] = 0x48; // 32-byte header in a 28-byte buffer
        assert_eq!(
            Packet::new_checked(&p[..]),
            Err(ParseError::Truncated { layer: Layer::Ipv4 })
        );
    }

    #[test]
    fn options_are_skipped() {
        let mut p = UDP_PACKET.to_vec();
        p[0] = 0x46;
        p[3] = 32;
        p.splice(20..20, [0x94, 0x04, 0x00, 0x00]); // router alert
        let p = Packet::new_checked(&p[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0, 0]);
        assert_eq!(&p.payload()[..2], &[0x00, 0x35]);
    }

    #[test]
    fn total_length_outside_header_and_buffer_is_bad_length() {
        for total in [0u16, 19, 29, 0xffff] {
            let mut p = UDP_PACKET;
            p[2..4].copy_from_slice(&total.to_be_bytes());
            assert_eq!(
                Packet::new_checked(&p[..]),
                Err(ParseError::BadLength { layer: Layer::Ipv4 }),
                "total {total}"
            );
        }
    }

    #[test]
    fn header_only_check_accepts_a_truncated_packet() {
        let p = Packet::new_checked_header(&UDP_PACKET[..24]).unwrap();
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.protocol(), 17);
    }

    #[test]
    fn padding_is_excluded_from_the_payload() {
        let mut p = UDP_PACKET.to_vec();
        p.extend_from_slice(&[0xee; 18]);
        let p = Packet::new_checked(&p[..]).unwrap();
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn fragment_states() {
        let frag = |flg_off: u16| {
            let mut p = UDP_PACKET;
            p[6..8].copy_from_slice(&flg_off.to_be_bytes());
            Packet::new_checked(p).unwrap().fragment()
        };
        assert_eq!(frag(0x2000), Fragment::First { id: 0x1234 });
        assert_eq!(frag(0x2001), Fragment::Later { id: 0x1234 });
        assert_eq!(frag(0x0001), Fragment::Later { id: 0x1234 });
        assert_eq!(frag(0x4000), Fragment::None);
    }
}
