//! TCP (RFC 9293): ports, flags and the data offset; options are skipped.

use super::{Layer, ParseError, TcpFlags};

/// A read-only view of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of the header without options.
pub const MIN_HEADER_LEN: usize = field::URGENT.end;

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer holding the segment (the IP payload): the 20-byte header must be
    /// present (`Truncated`), the data offset at least 5 and within the buffer (`BadLength`).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Packet { buffer };
        let len = packet.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(ParseError::Truncated { layer: Layer::Tcp });
        }
        let header_len = packet.header_len();
        if header_len < MIN_HEADER_LEN || header_len > len {
            return Err(ParseError::BadLength { layer: Layer::Tcp });
        }
        Ok(packet)
    }

    #[inline]
    fn read_u16(&self, range: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    fn read_u32(&self, range: core::ops::Range<usize>) -> u32 {
        let b = &self.buffer.as_ref()[range];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    #[inline]
    pub fn seq_number(&self) -> u32 {
        self.read_u32(field::SEQ_NUM)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        self.read_u32(field::ACK_NUM)
    }

    /// Header length in bytes (data offset * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flags byte: CWR ECE URG ACK PSH RST SYN FIN (the NS bit is not included).
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    #[inline]
    pub fn window_len(&self) -> u16 {
        self.read_u16(field::WIN_SIZE)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        self.read_u16(field::URGENT)
    }

    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 49152 -> 443, SYN with a 4-byte MSS option, seq 1, window 64240.
    const SYN: [u8; 24] = [
        0xc0, 0x00, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, // ports, seq, ack
        0x60, 0x02, 0xfa, 0xf0, 0x12, 0x34, 0x00, 0x00, // off 6, SYN, window, csum, urg
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
    ];

    #[test]
    fn fields_are_read() {
        let p = Packet::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.src_port(), 49152);
        assert_eq!(p.dst_port(), 443);
        assert_eq!(p.seq_number(), 1);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 24);
        assert!(p.flags().syn());
        assert!(!p.flags().ack());
        assert_eq!(p.flags(), TcpFlags(TcpFlags::SYN));
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.checksum(), 0x1234);
        assert_eq!(p.urgent_at(), 0);
        assert_eq!(p.options(), &[2, 4, 5, 0xb4]);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn short_header_is_truncated() {
        for len in 0..MIN_HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&SYN[..len]),
                Err(ParseError::Truncated { layer: Layer::Tcp })
            );
        }
    }

    #[test]
    fn data_offset_below_five_is_bad_length() {
        let mut p = SYN;
        p[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&p[..]),
            Err(ParseError::BadLength { layer: Layer::Tcp })
        );
    }

    #[test]
    fn data_offset_past_the_segment_is_bad_length() {
        let mut p = SYN;
        p[12] = 0x70; // 28 bytes of header in 24
        assert_eq!(
            Packet::new_checked(&p[..]),
            Err(ParseError::BadLength { layer: Layer::Tcp })
        );
        assert_eq!(
            Packet::new_checked(&SYN[..22]),
            Err(ParseError::BadLength { layer: Layer::Tcp })
        );
    }

    #[test]
    fn all_flag_bits_are_kept() {
        let mut p = SYN;
        p[13] = 0xff;
        let flags = Packet::new_checked(&p[..]).unwrap().flags();
        assert!(flags.fin() && flags.syn() && flags.rst() && flags.ack());
        assert_eq!(flags.0, 0xff);
    }
}
