//! Ethernet II frames and 802.1Q / 802.1ad (QinQ) VLAN tags.

use super::{ethertype, Layer, MacAddr, ParseError};

/// A read-only view of an Ethernet II frame (no FCS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    use core::ops::{Range, RangeFrom};
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

/// Length of the Ethernet II header: two MACs and the ethertype.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// Ethertypes below this value are IEEE 802.3 length fields (LLC follows), not ethertypes.
pub const MIN_ETHERTYPE: u16 = 0x0600;

/// The most VLAN tags [`parse_link`] accepts (QinQ).
pub const MAX_VLAN_TAGS: usize = 2;

#[inline]
fn mac(bytes: &[u8]) -> MacAddr {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(bytes);
    MacAddr(mac)
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap a buffer without checking its length; accessors may panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer, checking that it holds at least the 14-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Truncated {
                layer: Layer::Ethernet,
            });
        }
        Ok(Packet { buffer })
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        mac(&self.buffer.as_ref()[field::DESTINATION])
    }

    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        mac(&self.buffer.as_ref()[field::SOURCE])
    }

    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

/// A read-only view of one 4-byte VLAN tag (the TCI and the next ethertype); the
/// tag's own TPID (0x8100 / 0x88a8) is the ethertype in front of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

mod vlan_field {
    use core::ops::{Range, RangeFrom};
    pub const TCI: Range<usize> = 0..2;
    pub const ETHERTYPE: Range<usize> = 2..4;
    pub const PAYLOAD: RangeFrom<usize> = 4..;
}

/// Length of one VLAN tag after the TPID.
pub const VLAN_TAG_LEN: usize = vlan_field::PAYLOAD.start;

impl<T: AsRef<[u8]>> VlanPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanPacket { buffer }
    }

    /// Wrap a buffer, checking that it holds the 4-byte tag.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if buffer.as_ref().len() < VLAN_TAG_LEN {
            return Err(ParseError::Truncated { layer: Layer::Vlan });
        }
        Ok(VlanPacket { buffer })
    }

    /// The tag control information: PCP (3 bits), DEI (1 bit), VID (12 bits).
    #[inline]
    pub fn tci(&self) -> u16 {
        let b = &self.buffer.as_ref()[vlan_field::TCI];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The VLAN identifier: the low 12 bits of the TCI.
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// The ethertype of what follows this tag.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[vlan_field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> VlanPacket<&'a T> {
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[vlan_field::PAYLOAD]
    }
}

/// Whether `ethertype` is a VLAN tag protocol identifier we walk (802.1Q or 802.1ad).
#[inline]
pub fn is_vlan_tpid(ethertype: u16) -> bool {
    ethertype == ethertype::VLAN || ethertype == ethertype::QINQ
}

/// The link layer of a frame: addresses, VLAN tags and where layer 3 starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    pub dst: MacAddr,
    pub src: MacAddr,
    /// `[outer, inner]`, 0 where there is no tag.
    pub vlan: [u16; 2],
    /// The ethertype after the tags (an 802.3 length if below [`MIN_ETHERTYPE`]).
    pub ethertype: u16,
    /// Offset of the layer-3 header in the frame.
    pub l3_offset: usize,
}

/// Parse the Ethernet header and up to [`MAX_VLAN_TAGS`] VLAN tags of `frame`.
#[inline]
pub fn parse_link(frame: &[u8]) -> Result<LinkInfo, ParseError> {
    let eth = Packet::new_checked(frame)?;
    let mut info = LinkInfo {
        dst: eth.dst_addr(),
        src: eth.src_addr(),
        vlan: [0, 0],
        ethertype: eth.ethertype(),
        l3_offset: HEADER_LEN,
    };
    let mut rest = eth.payload();
    for slot in 0..=MAX_VLAN_TAGS {
        if !is_vlan_tpid(info.ethertype) {
            break;
        }
        let tag_slot = info.vlan.get_mut(slot).ok_or(ParseError::TooManyVlanTags)?;
        let tag = VlanPacket::new_checked(rest)?;
        *tag_slot = tag.vid();
        info.ethertype = tag.ethertype();
        info.l3_offset += VLAN_TAG_LEN;
        rest = tag.payload();
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTAGGED: [u8; 16] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, // dst
        0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, // src
        0x08, 0x00, // IPv4
        0x45, 0x00,
    ];

    #[test]
    fn untagged_frame_fields() {
        let p = Packet::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(p.dst_addr(), MacAddr([1, 2, 3, 4, 5, 6]));
        assert_eq!(p.src_addr(), MacAddr([0xa, 0xb, 0xc, 0xd, 0xe, 0xf]));
        assert_eq!(p.ethertype(), ethertype::IPV4);
        assert_eq!(p.payload(), &[0x45, 0x00]);
        let link = parse_link(&UNTAGGED).unwrap();
        assert_eq!(link.vlan, [0, 0]);
        assert_eq!(link.l3_offset, 14);
    }

    #[test]
    fn short_frame_is_truncated_ethernet() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&UNTAGGED[..len]),
                Err(ParseError::Truncated {
                    layer: Layer::Ethernet
                })
            );
        }
        assert!(Packet::new_checked(&UNTAGGED[..HEADER_LEN]).is_ok());
    }

    fn tagged(tpids: &[u16], inner_ethertype: u16) -> Vec<u8> {
        let mut f = UNTAGGED[..12].to_vec();
        for (i, tpid) in tpids.iter().enumerate() {
            f.extend_from_slice(&tpid.to_be_bytes());
            // PCP 5 and DEI set, so that the VID has to be masked out.
            let tci = 0xb000 | (100 + i as u16);
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&inner_ethertype.to_be_bytes());
        f.extend_from_slice(&[0x45, 0]);
        f
    }

    #[test]
    fn single_tag_gives_vid_and_zero_inner() {
        let link = parse_link(&tagged(&[ethertype::VLAN], ethertype::IPV6)).unwrap();
        assert_eq!(link.vlan, [100, 0]);
        assert_eq!(link.ethertype, ethertype::IPV6);
        assert_eq!(link.l3_offset, 18);
    }

    #[test]
    fn qinq_gives_outer_and_inner_vids() {
        for outer in [ethertype::QINQ, ethertype::VLAN] {
            let link = parse_link(&tagged(&[outer, ethertype::VLAN], ethertype::ARP)).unwrap();
            assert_eq!(link.vlan, [100, 101]);
            assert_eq!(link.ethertype, ethertype::ARP);
            assert_eq!(link.l3_offset, 22);
        }
    }

    #[test]
    fn three_tags_are_too_many() {
        let f = tagged(
            &[ethertype::QINQ, ethertype::VLAN, ethertype::VLAN],
            ethertype::IPV4,
        );
        assert_eq!(parse_link(&f), Err(ParseError::TooManyVlanTags));
    }

    #[test]
    fn truncated_tag_is_truncated_vlan() {
        let f = tagged(&[ethertype::VLAN], ethertype::IPV4);
        for len in 14..18 {
            assert_eq!(
                parse_link(&f[..len]),
                Err(ParseError::Truncated { layer: Layer::Vlan })
            );
        }
        let tag = VlanPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(tag.pcp(), 5);
        assert_eq!(tag.vid(), 100);
    }
}
