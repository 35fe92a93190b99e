//! UDP (RFC 768). Checksums are not verified.

use super::{Layer, ParseError};

/// A read-only view of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer holding the whole datagram (the IP payload): the 8-byte header must
    /// be present (`Truncated`), and the length field at least 8 and within the buffer
    /// (`BadLength`).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Self::new_checked_header(buffer)?;
        if usize::from(packet.len()) > packet.buffer.as_ref().len() {
            return Err(ParseError::BadLength { layer: Layer::Udp });
        }
        Ok(packet)
    }

    /// Like [`Packet::new_checked`], but the length field may exceed the buffer: for the
    /// first fragment of a fragmented datagram, whose length covers all fragments.
    #[inline]
    pub fn new_checked_header(buffer: T) -> Result<Self, ParseError> {
        let packet = Packet { buffer };
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Truncated { layer: Layer::Udp });
        }
        if usize::from(packet.len()) < HEADER_LEN {
            return Err(ParseError::BadLength { layer: Layer::Udp });
        }
        Ok(packet)
    }

    #[inline]
    fn read_u16(&self, range: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    /// The length field: header plus payload.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        self.read_u16(field::LENGTH)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload, up to the length field. Needs `new_checked`.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 53 -> 1234, 4 bytes of payload.
    const DATAGRAM: [u8; 12] = [0x00, 0x35, 0x04, 0xd2, 0x00, 0x0c, 0xab, 0xcd, 1, 2, 3, 4];

    #[test]
    fn fields_are_read() {
        let p = Packet::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(p.src_port(), 53);
        assert_eq!(p.dst_port(), 1234);
        assert_eq!(p.len(), 12);
        assert_eq!(p.checksum(), 0xabcd);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn short_header_is_truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&DATAGRAM[..len]),
                Err(ParseError::Truncated { layer: Layer::Udp })
            );
        }
    }

    #[test]
    fn length_field_below_header_is_bad_length() {
        let mut p = DATAGRAM;
        p[5] = 7;
        assert_eq!(
            Packet::new_checked(&p[..]),
            Err(ParseError::BadLength { layer: Layer::Udp })
        );
    }

    #[test]
    fn length_field_past_the_payload_is_bad_length() {
        let mut p = DATAGRAM;
        p[5] = 13;
        assert_eq!(
            Packet::new_checked(&p[..]),
            Err(ParseError::BadLength { layer: Layer::Udp })
        );
        // A first fragment carries only part of the datagram: accepted.
        assert!(Packet::new_checked_header(&p[..]).is_ok());
    }

    #[test]
    fn length_field_shorter_than_the_payload_is_accepted() {
        let mut p = DATAGRAM;
        p[5] = 8;
        let p = Packet::new_checked(&p[..]).unwrap();
        assert!(p.payload().is_empty());
    }
}
