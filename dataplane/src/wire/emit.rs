//! The write side of [`wire`](super): the internet checksum (RFC 1071) and a frame
//! builder in smoltcp's `Repr::emit` manner.
//!
//! Where the read side wraps a buffer in a bounds-checked view, the write side
//! describes a header in a small `Copy` struct and appends its bytes to a `Vec<u8>`.
//! [`Frame::emit`] writes a whole Ethernet frame (0, 1 or 2 VLAN tags, IPv4 or IPv6,
//! then TCP, UDP, ICMP / ICMPv6 or raw bytes) with every length and checksum right.
//! It serves the tests, the benchmarks' generators and the fuzz harnesses; the packet
//! path itself writes no frames.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use super::checksum::{checksum, Checksum};
use super::{ethernet, ethertype, icmp, ip_proto, ipv4, ipv6, tcp, udp, Layer, MacAddr, TcpFlags};

/// The shortest Ethernet frame without its FCS (64 bytes on the wire); [`Frame::pad`]
/// pads to it.
pub const MIN_FRAME_LEN: usize = 60;

/// Why a frame could not be written. On an error [`Frame::emit`] leaves its buffer as
/// it found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The bytes `layer`'s 16-bit length field would have to count.
    #[error("{layer} length {len} does not fit in its 16-bit length field")]
    TooLong { layer: Layer, len: usize },
    /// A fragment offset (in 8-byte units) above the 13 bits of the field.
    #[error("fragment offset {0} does not fit in 13 bits")]
    FragmentOffset(u16),
}

/// Which checksums [`Frame::emit`] fills in; a checksum not filled in is left 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Checksums {
    /// The IPv4 header's and the transport's (TCP, UDP, ICMP, ICMPv6): a frame a
    /// host's stack accepts.
    #[default]
    All,
    /// The IPv4 header's only. (UDP over IPv4 with 0: "no checksum", RFC 768.)
    IpOnly,
    /// None: for frames nothing verifies.
    Off,
}

impl Checksums {
    fn ip(self) -> bool {
        self != Checksums::Off
    }

    fn transport(self) -> bool {
        self == Checksums::All
    }
}

/// One VLAN tag: its tag protocol identifier and tag control information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag {
    /// 0x8100 (802.1Q) or 0x88a8 (802.1ad, the outer tag of QinQ).
    pub tpid: u16,
    /// Priority (3 bits), DEI (1 bit), VLAN ID (12 bits).
    pub tci: u16,
}

impl VlanTag {
    /// An 802.1Q tag with VLAN ID `vid` (priority 0).
    pub const fn dot1q(vid: u16) -> VlanTag {
        VlanTag {
            tpid: ethertype::VLAN,
            tci: vid,
        }
    }

    /// An 802.1ad (QinQ service) tag with VLAN ID `vid` (priority 0).
    pub const fn qinq(vid: u16) -> VlanTag {
        VlanTag {
            tpid: ethertype::QINQ,
            tci: vid,
        }
    }
}

/// The VLAN tags of a frame, outermost first: none, one, or two (QinQ), the most
/// [`parse`](super::parse) classifies on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Vlans {
    #[default]
    Untagged,
    One(VlanTag),
    Two(VlanTag, VlanTag),
}

impl Vlans {
    /// The tags, outermost first.
    pub fn tags(self) -> impl Iterator<Item = VlanTag> {
        let pair = match self {
            Vlans::Untagged => [None, None],
            Vlans::One(tag) => [Some(tag), None],
            Vlans::Two(outer, inner) => [Some(outer), Some(inner)],
        };
        pair.into_iter().flatten()
    }

    /// How many bytes the tags take.
    pub fn header_len(self) -> usize {
        self.tags().count() * ethernet::VLAN_TAG_LEN
    }
}

/// An Ethernet II header with its VLAN tags; the ethertype follows from what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub vlans: Vlans,
}

impl EthernetRepr {
    /// An untagged header.
    pub const fn new(dst: MacAddr, src: MacAddr) -> EthernetRepr {
        EthernetRepr {
            dst,
            src,
            vlans: Vlans::Untagged,
        }
    }

    pub fn header_len(&self) -> usize {
        ethernet::HEADER_LEN + self.vlans.header_len()
    }

    /// Append the header, ending in `ethertype`.
    pub fn emit(&self, ethertype: u16, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.dst.0);
        out.extend_from_slice(&self.src.0);
        for tag in self.vlans.tags() {
            out.extend_from_slice(&tag.tpid.to_be_bytes());
            out.extend_from_slice(&tag.tci.to_be_bytes());
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
    }
}

/// The largest fragment offset, in 8-byte units (13 bits).
const MAX_FRAG_OFFSET: u16 = 0x1fff;

/// An IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// In 8-byte units.
    pub frag_offset: u16,
}

impl Ipv4Repr {
    /// The header's length: this builder writes no options.
    pub const HEADER_LEN: usize = ipv4::MIN_HEADER_LEN;

    /// TTL 64, identification 0, no flags, not a fragment.
    pub const fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4Repr {
        Ipv4Repr {
            src,
            dst,
            ttl: 64,
            ident: 0,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
        }
    }

    /// Append the 20-byte header of a packet of `proto` with `payload_len` bytes after
    /// it, its checksum filled in if `with_checksum`.
    pub fn emit(
        &self,
        proto: u8,
        payload_len: usize,
        with_checksum: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), EmitError> {
        let total = length(Layer::Ipv4, Ipv4Repr::HEADER_LEN + payload_len)?;
        if self.frag_offset > MAX_FRAG_OFFSET {
            return Err(EmitError::FragmentOffset(self.frag_offset));
        }
        let flags = (u16::from(self.dont_frag) << 14) | (u16::from(self.more_frags) << 13);
        let mut header = [0u8; Ipv4Repr::HEADER_LEN];
        header[0] = 0x45;
        header[2..4].copy_from_slice(&total.to_be_bytes());
        header[4..6].copy_from_slice(&self.ident.to_be_bytes());
        header[6..8].copy_from_slice(&(flags | self.frag_offset).to_be_bytes());
        header[8] = self.ttl;
        header[9] = proto;
        header[12..16].copy_from_slice(&self.src.octets());
        header[16..20].copy_from_slice(&self.dst.octets());
        if with_checksum {
            let sum = checksum(&header);
            header[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        out.extend_from_slice(&header);
        Ok(())
    }
}

/// An IPv6 fragment extension header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Fragment {
    /// In 8-byte units.
    pub offset: u16,
    pub more_frags: bool,
    pub ident: u32,
}

/// Length of the IPv6 fragment extension header.
const IPV6_FRAGMENT_LEN: usize = 8;

/// An IPv6 header, with a fragment header after it where `fragment` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// The low 20 bits; traffic class 0.
    pub flow_label: u32,
    pub fragment: Option<Ipv6Fragment>,
}

impl Ipv6Repr {
    /// Hop limit 64, flow label 0, not a fragment.
    pub const fn new(src: Ipv6Addr, dst: Ipv6Addr) -> Ipv6Repr {
        Ipv6Repr {
            src,
            dst,
            hop_limit: 64,
            flow_label: 0,
            fragment: None,
        }
    }

    /// The fixed header and the fragment header, if any.
    pub fn header_len(&self) -> usize {
        ipv6::HEADER_LEN + self.fragment.map_or(0, |_| IPV6_FRAGMENT_LEN)
    }

    /// Append the header (and fragment header) of a packet of `proto` with
    /// `payload_len` bytes of upper layer after them.
    pub fn emit(&self, proto: u8, payload_len: usize, out: &mut Vec<u8>) -> Result<(), EmitError> {
        let ext_len = self.header_len() - ipv6::HEADER_LEN;
        let len = length(Layer::Ipv6, ext_len + payload_len)?;
        let next = match self.fragment {
            Some(_) => ipv6::next_header::FRAGMENT,
            None => proto,
        };
        if let Some(frag) = self.fragment.filter(|f| f.offset > MAX_FRAG_OFFSET) {
            return Err(EmitError::FragmentOffset(frag.offset));
        }
        let ver_flow = (6u32 << 28) | (self.flow_label & 0x000f_ffff);
        out.extend_from_slice(&ver_flow.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[next, self.hop_limit]);
        out.extend_from_slice(&self.src.octets());
        out.extend_from_slice(&self.dst.octets());
        if let Some(frag) = self.fragment {
            let word = (frag.offset << 3) | u16::from(frag.more_frags);
            out.extend_from_slice(&[proto, 0]);
            out.extend_from_slice(&word.to_be_bytes());
            out.extend_from_slice(&frag.ident.to_be_bytes());
        }
        Ok(())
    }
}

/// The IP layer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRepr {
    V4(Ipv4Repr),
    V6(Ipv6Repr),
}

impl From<Ipv4Repr> for IpRepr {
    fn from(repr: Ipv4Repr) -> IpRepr {
        IpRepr::V4(repr)
    }
}

impl From<Ipv6Repr> for IpRepr {
    fn from(repr: Ipv6Repr) -> IpRepr {
        IpRepr::V6(repr)
    }
}

impl IpRepr {
    pub fn ethertype(&self) -> u16 {
        match self {
            IpRepr::V4(_) => ethertype::IPV4,
            IpRepr::V6(_) => ethertype::IPV6,
        }
    }

    pub fn header_len(&self) -> usize {
        match self {
            IpRepr::V4(_) => Ipv4Repr::HEADER_LEN,
            IpRepr::V6(ip) => ip.header_len(),
        }
    }

    pub fn src(&self) -> IpAddr {
        match self {
            IpRepr::V4(ip) => ip.src.into(),
            IpRepr::V6(ip) => ip.src.into(),
        }
    }

    pub fn dst(&self) -> IpAddr {
        match self {
            IpRepr::V4(ip) => ip.dst.into(),
            IpRepr::V6(ip) => ip.dst.into(),
        }
    }

    /// Append the IP header(s) of a packet of `proto` with `payload_len` bytes of
    /// upper layer.
    pub fn emit(
        &self,
        proto: u8,
        payload_len: usize,
        checksums: Checksums,
        out: &mut Vec<u8>,
    ) -> Result<(), EmitError> {
        match self {
            IpRepr::V4(ip) => ip.emit(proto, payload_len, checksums.ip(), out),
            IpRepr::V6(ip) => ip.emit(proto, payload_len, out),
        }
    }
}

/// A TCP header without options (urgent pointer 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
}

impl TcpRepr {
    /// Append the header with its checksum 0 (see [`Frame::emit`]).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ack.to_be_bytes());
        let data_offset = (tcp::MIN_HEADER_LEN / 4) as u8;
        out.extend_from_slice(&[data_offset << 4, self.flags.0]);
        out.extend_from_slice(&self.window.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    }
}

/// A UDP header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    /// Append the header of a datagram with `payload_len` bytes of payload, its
    /// checksum 0 (see [`Frame::emit`]).
    pub fn emit(&self, payload_len: usize, out: &mut Vec<u8>) -> Result<(), EmitError> {
        let len = length(Layer::Udp, udp::HEADER_LEN + payload_len)?;
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        Ok(())
    }
}

/// An ICMP or ICMPv6 header (the IP version of the frame decides which): type,
/// code and the four type-specific bytes; the payload follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IcmpRepr {
    pub kind: u8,
    pub code: u8,
    /// The rest of the header: an echo's identifier and sequence number, a
    /// packet-too-big's MTU, zero for most errors.
    pub rest: [u8; 4],
}

impl IcmpRepr {
    /// An echo message of type `kind` ([`icmp::v4`] or [`icmp::v6`]'s request or reply).
    pub fn echo(kind: u8, ident: u16, seq: u16) -> IcmpRepr {
        let [i0, i1] = ident.to_be_bytes();
        let [s0, s1] = seq.to_be_bytes();
        IcmpRepr {
            kind,
            code: 0,
            rest: [i0, i1, s0, s1],
        }
    }

    /// Append the header with its checksum 0 (see [`Frame::emit`]).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.kind, self.code, 0, 0]);
        out.extend_from_slice(&self.rest);
    }
}

/// What sits on IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Repr {
    Tcp(TcpRepr),
    Udp(UdpRepr),
    /// ICMP over IPv4, ICMPv6 over IPv6.
    Icmp(IcmpRepr),
    /// Any protocol number, its bytes all in the payload (no checksum written).
    Raw(u8),
}

impl L4Repr {
    /// The IP protocol number, over IPv6 if `v6`.
    pub fn proto(&self, v6: bool) -> u8 {
        match self {
            L4Repr::Tcp(_) => ip_proto::TCP,
            L4Repr::Udp(_) => ip_proto::UDP,
            L4Repr::Icmp(_) if v6 => ip_proto::ICMPV6,
            L4Repr::Icmp(_) => ip_proto::ICMP,
            L4Repr::Raw(proto) => *proto,
        }
    }

    pub fn header_len(&self) -> usize {
        match self {
            L4Repr::Tcp(_) => tcp::MIN_HEADER_LEN,
            L4Repr::Udp(_) => udp::HEADER_LEN,
            L4Repr::Icmp(_) => icmp::HEADER_LEN,
            L4Repr::Raw(_) => 0,
        }
    }

    /// Append the header with its checksum 0; `payload_len` bytes follow it.
    pub fn emit(&self, payload_len: usize, out: &mut Vec<u8>) -> Result<(), EmitError> {
        match self {
            L4Repr::Tcp(repr) => repr.emit(out),
            L4Repr::Udp(repr) => repr.emit(payload_len, out)?,
            L4Repr::Icmp(repr) => repr.emit(out),
            L4Repr::Raw(_) => {}
        }
        Ok(())
    }

    /// Where the checksum sits in the header, if this layer has one, and whether an
    /// IP pseudo-header is part of it.
    fn checksum_at(&self, v6: bool) -> Option<(usize, bool)> {
        match self {
            L4Repr::Tcp(_) => Some((16, true)),
            L4Repr::Udp(_) => Some((6, true)),
            L4Repr::Icmp(_) => Some((2, v6)),
            L4Repr::Raw(_) => None,
        }
    }
}

/// A whole Ethernet frame: headers, payload, and how to finish it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub eth: EthernetRepr,
    pub ip: IpRepr,
    pub l4: L4Repr,
    /// The transport payload (for [`L4Repr::Raw`], everything after the IP header).
    pub payload: &'a [u8],
    pub checksums: Checksums,
    /// Pad with zeros to [`MIN_FRAME_LEN`], as a NIC pads a short frame.
    pub pad: bool,
}

impl<'a> Frame<'a> {
    /// An untagged frame from `src` to `dst`, every checksum filled in, not padded.
    pub fn new(
        dst: MacAddr,
        src: MacAddr,
        ip: impl Into<IpRepr>,
        l4: L4Repr,
        payload: &'a [u8],
    ) -> Frame<'a> {
        Frame {
            eth: EthernetRepr::new(dst, src),
            ip: ip.into(),
            l4,
            payload,
            checksums: Checksums::All,
            pad: false,
        }
    }

    /// The frame's length as [`Frame::emit`] writes it.
    #[allow(clippy::len_without_is_empty, reason = "a frame is never empty")]
    pub fn len(&self) -> usize {
        let len = self.eth.header_len()
            + self.ip.header_len()
            + self.l4.header_len()
            + self.payload.len();
        if self.pad {
            len.max(MIN_FRAME_LEN)
        } else {
            len
        }
    }

    /// Append the frame to `out` and return its length. Every length field counts
    /// what follows it; the checksums [`Frame::checksums`] names are filled in (a UDP
    /// checksum that comes out 0 is sent as 0xffff). On an error `out` is unchanged.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<usize, EmitError> {
        let start = out.len();
        out.reserve(self.len());
        match self.emit_at(start, out) {
            Ok(()) => Ok(out.len() - start),
            Err(err) => {
                out.truncate(start);
                Err(err)
            }
        }
    }

    /// The frame in a `Vec` of its own.
    pub fn to_vec(&self) -> Result<Vec<u8>, EmitError> {
        let mut out = Vec::with_capacity(self.len());
        self.emit(&mut out)?;
        Ok(out)
    }

    fn emit_at(&self, start: usize, out: &mut Vec<u8>) -> Result<(), EmitError> {
        let v6 = matches!(self.ip, IpRepr::V6(_));
        let proto = self.l4.proto(v6);
        let l4_len = self.l4.header_len() + self.payload.len();
        self.eth.emit(self.ip.ethertype(), out);
        self.ip.emit(proto, l4_len, self.checksums, out)?;
        let l4_start = out.len();
        self.l4.emit(self.payload.len(), out)?;
        out.extend_from_slice(self.payload);
        if let (true, Some((at, pseudo))) = (self.checksums.transport(), self.l4.checksum_at(v6)) {
            let sum = if pseudo {
                // At most 65535: the IP header's length field holds it.
                let len = u32::try_from(l4_len).map_err(|_| EmitError::TooLong {
                    layer: if v6 { Layer::Ipv6 } else { Layer::Ipv4 },
                    len: l4_len,
                })?;
                Checksum::pseudo_header(self.ip.src(), self.ip.dst(), proto, len)
            } else {
                Checksum::new()
            };
            let mut sum = sum
                .add_bytes(out.get(l4_start..).unwrap_or_default())
                .finish();
            if sum == 0 && matches!(self.l4, L4Repr::Udp(_)) {
                sum = 0xffff;
            }
            if let Some(field) = out.get_mut(l4_start + at..l4_start + at + 2) {
                field.copy_from_slice(&sum.to_be_bytes());
            }
        }
        if self.pad && out.len() - start < MIN_FRAME_LEN {
            out.resize(start + MIN_FRAME_LEN, 0);
        }
        Ok(())
    }
}

/// `len` as the 16-bit length field of `layer`.
fn length(layer: Layer, len: usize) -> Result<u16, EmitError> {
    u16::try_from(len).map_err(|_| EmitError::TooLong { layer, len })
}

#[cfg(test)]
mod tests;
