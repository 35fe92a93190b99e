//! IPv6 (RFC 8200) and the walk over its extension headers.

use std::net::Ipv6Addr;

use super::{Fragment, Layer, ParseError};

/// A read-only view of an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// Extension header (and upper-layer) protocol numbers the walk knows.
pub mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const NO_NEXT_HEADER: u8 = 59;
    pub const DESTINATION_OPTIONS: u8 = 60;
}

/// The most extension headers [`walk_extensions`] skips before giving up.
pub const MAX_EXTENSION_HEADERS: usize = 8;

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer holding a whole IPv6 packet (possibly followed by link padding):
    /// the payload length must fit in the buffer. A zero payload length in front of a
    /// hop-by-hop header announces a jumbogram, which we do not support: `BadLength`.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Self::new_checked_header(buffer)?;
        let payload_len = usize::from(packet.payload_len());
        if HEADER_LEN + payload_len > packet.buffer.as_ref().len()
            || (payload_len == 0 && packet.next_header() == next_header::HOP_BY_HOP)
        {
            return Err(ParseError::BadLength { layer: Layer::Ipv6 });
        }
        Ok(packet)
    }

    /// Wrap a buffer holding at least the 40-byte header, without checking the payload
    /// length: for the truncated packet quoted in an ICMPv6 error.
    /// The accessors are safe after either check; [`Packet::payload`] needs `new_checked`.
    #[inline]
    pub fn new_checked_header(buffer: T) -> Result<Self, ParseError> {
        let packet = Packet { buffer };
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Truncated { layer: Layer::Ipv6 });
        }
        if packet.version() != 6 {
            return Err(ParseError::BadVersion { layer: Layer::Ipv6 });
        }
        Ok(packet)
    }

    #[inline]
    fn ver_tc_flow(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    #[inline]
    fn read_addr(&self, range: core::ops::Range<usize>) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[range]);
        Ipv6Addr::from(a)
    }

    #[inline]
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// The payload length field: everything after the fixed header, extensions included.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The next header of the fixed header (the first extension header, if any).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        self.read_addr(field::SRC_ADDR)
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        self.read_addr(field::DST_ADDR)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload (extension headers and upper layer), link padding excluded.
    /// Needs `new_checked`.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

/// A read-only view of a hop-by-hop, routing or destination options header: all
/// share the next-header byte and a length in 8-byte units not counting the first 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
}

mod ext_field {
    pub const NXT_HDR: usize = 0;
    pub const LENGTH: usize = 1;
    pub const MIN_LEN: usize = 8;
}

impl<T: AsRef<[u8]>> ExtHeader<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ExtHeader { buffer }
    }

    /// Wrap a buffer, checking that it holds the whole extension header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let header = ExtHeader { buffer };
        let len = header.buffer.as_ref().len();
        if len < ext_field::MIN_LEN || len < header.header_len() {
            return Err(ParseError::Truncated {
                layer: Layer::Ipv6Extension,
            });
        }
        Ok(header)
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[ext_field::NXT_HDR]
    }

    /// Length of this header in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[ext_field::LENGTH]) + 1) * 8
    }
}

/// A read-only view of the 8-byte fragment extension header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader<T: AsRef<[u8]>> {
    buffer: T,
}

mod frag_field {
    use core::ops::Range;
    pub const NXT_HDR: usize = 0;
    pub const OFF_M: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..8;
}

/// Length of the fragment header.
pub const FRAGMENT_HEADER_LEN: usize = frag_field::IDENT.end;

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        FragmentHeader { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if buffer.as_ref().len() < FRAGMENT_HEADER_LEN {
            return Err(ParseError::Truncated {
                layer: Layer::Ipv6Extension,
            });
        }
        Ok(FragmentHeader { buffer })
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[frag_field::NXT_HDR]
    }

    #[inline]
    fn off_m(&self) -> u16 {
        let b = &self.buffer.as_ref()[frag_field::OFF_M];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Fragment offset in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        self.off_m() >> 3
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.off_m() & 1 != 0
    }

    #[inline]
    pub fn ident(&self) -> u32 {
        let b = &self.buffer.as_ref()[frag_field::IDENT];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// Where an extension header walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtWalk {
    /// The upper-layer protocol (for a later fragment: the fragment header's next header).
    pub proto: u8,
    /// Bytes of extension headers walked: the upper-layer header starts here.
    pub len: usize,
    pub frag: Fragment,
}

/// Skip the hop-by-hop, routing, destination options and fragment headers at the
/// start of `data` (the IPv6 payload), `first` being the fixed header's next header.
/// Stops at any other protocol, and after the fragment header of a later fragment.
pub fn walk_extensions(first: u8, data: &[u8]) -> Result<ExtWalk, ParseError> {
    let mut walk = ExtWalk {
        proto: first,
        len: 0,
        frag: Fragment::None,
    };
    let truncated = ParseError::Truncated {
        layer: Layer::Ipv6Extension,
    };
    for _ in 0..=MAX_EXTENSION_HEADERS {
        let rest = data.get(walk.len..).ok_or(truncated)?;
        match walk.proto {
            next_header::HOP_BY_HOP | next_header::ROUTING | next_header::DESTINATION_OPTIONS => {
                let ext = ExtHeader::new_checked(rest)?;
                walk.proto = ext.next_header();
                walk.len += ext.header_len();
            }
            next_header::FRAGMENT => {
                let frag = FragmentHeader::new_checked(rest)?;
                walk.proto = frag.next_header();
                walk.len += FRAGMENT_HEADER_LEN;
                let id = frag.ident();
                if frag.frag_offset() > 0 {
                    walk.frag = Fragment::Later { id };
                    return Ok(walk);
                }
                // Offset 0 without M is an atomic fragment (RFC 6946): not fragmented.
                if frag.more_frags() {
                    walk.frag = Fragment::First { id };
                }
            }
            _ => return Ok(walk),
        }
    }
    Err(ParseError::TooManyExtensionHeaders)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0x00, 0x00, 0x00];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn fields_are_read() {
        let mut bytes = packet(17, &[0; 8]);
        bytes[1] = 0xa5; // traffic class 0x0a, flow label 0x5xxxx
        bytes[2] = 0x43;
        bytes[3] = 0x21;
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0x0a);
        assert_eq!(p.flow_label(), 0x54321);
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn short_header_is_truncated_and_version_checked() {
        let bytes = packet(17, &[]);
        assert_eq!(
            Packet::new_checked(&bytes[..39]),
            Err(ParseError::Truncated { layer: Layer::Ipv6 })
        );
        let mut v4 = bytes.clone();
        v4[0] = 0x45;
        assert_eq!(
            Packet::new_checked(&v4[..]),
            Err(ParseError::BadVersion { layer: Layer::Ipv6 })
        );
    }

    #[test]
    fn payload_length_past_the_buffer_is_bad_length() {
        let mut bytes = packet(17, &[0; 8]);
        bytes[5] = 9;
        assert_eq!(
            Packet::new_checked(&bytes[..]),
            Err(ParseError::BadLength { layer: Layer::Ipv6 })
        );
        // The header-only check (ICMPv6 quotes) accepts it.
        assert!(Packet::new_checked_header(&bytes[..]).is_ok());
    }

    #[test]
    fn jumbogram_is_bad_length() {
        // Hop-by-hop with a jumbo payload option (type 0xc2), payload length 0.
        let mut bytes = packet(0, &[17, 0, 0xc2, 4, 0, 1, 0, 0]);
        bytes[4] = 0;
        bytes[5] = 0;
        assert_eq!(
            Packet::new_checked(&bytes[..]),
            Err(ParseError::BadLength { layer: Layer::Ipv6 })
        );
    }

    #[test]
    fn walk_skips_options_and_routing() {
        let mut exts = vec![43, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop -> routing
        exts.extend_from_slice(&[60, 1]); // routing, 16 bytes -> dest opts
        exts.extend_from_slice(&[0; 14]);
        exts.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // dest opts -> TCP
        let walk = walk_extensions(0, &exts).unwrap();
        assert_eq!(
            walk,
            ExtWalk {
                proto: 6,
                len: 32,
                frag: Fragment::None
            }
        );
    }

    #[test]
    fn walk_reads_fragment_headers() {
        let first = [17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
        let walk = walk_extensions(44, &first).unwrap();
        assert_eq!(walk.frag, Fragment::First { id: 0xdeadbeef });
        assert_eq!((walk.proto, walk.len), (17, 8));

        // A later fragment stops the walk even when another header seems to follow.
        let later = [60, 0, 0x00, 0xb9, 0, 0, 0, 7];
        let walk = walk_extensions(44, &later).unwrap();
        assert_eq!(walk.frag, Fragment::Later { id: 7 });
        assert_eq!((walk.proto, walk.len), (60, 8));

        let atomic = [6, 0, 0, 0, 0, 0, 0, 7];
        let walk = walk_extensions(44, &atomic).unwrap();
        assert_eq!(walk.frag, Fragment::None);
    }

    #[test]
    fn walk_stops_at_esp_ah_and_no_next_header() {
        for proto in [
            next_header::ESP,
            next_header::AH,
            next_header::NO_NEXT_HEADER,
            6,
        ] {
            let walk = walk_extensions(proto, &[]).unwrap();
            assert_eq!((walk.proto, walk.len), (proto, 0));
        }
    }

    #[test]
    fn truncated_extension_is_an_error() {
        let truncated = Err(ParseError::Truncated {
            layer: Layer::Ipv6Extension,
        });
        assert_eq!(walk_extensions(0, &[6, 0, 0, 0]), truncated);
        assert_eq!(walk_extensions(60, &[6, 1, 0, 0, 0, 0, 0, 0]), truncated);
        assert_eq!(walk_extensions(44, &[6, 0, 0, 0, 0, 0, 0]), truncated);
    }

    #[test]
    fn too_many_extension_headers() {
        let one = [60, 0, 1, 4, 0, 0, 0, 0];
        let mut exts = Vec::new();
        for _ in 0..MAX_EXTENSION_HEADERS {
            exts.extend_from_slice(&one);
        }
        let last = exts.len() - 8;
        exts[last] = 17;
        assert_eq!(walk_extensions(60, &exts).unwrap().proto, 17);
        exts[last] = 60;
        exts.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        assert_eq!(
            walk_extensions(60, &exts),
            Err(ParseError::TooManyExtensionHeaders)
        );
    }
}
