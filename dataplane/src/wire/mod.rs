//! Zero-copy, bounds-checked views over the protocols the dataplane reads.
//!
//! One file per protocol, in the manner of smoltcp's `wire`: a `Packet<T: AsRef<[u8]>>`
//! over a byte buffer, field offsets in a `mod field`, `new_checked` validates once and
//! the accessors after it are infallible. [`parse`] walks a whole frame and returns a
//! [`PacketInfo`]: a small `Copy` summary (addresses, ports, flags, offsets) that the
//! flow table and the classifier work from.
//!
//! [`emit`] is the write side: the internet checksum and a frame builder (plain `Repr`
//! structs with an `emit`) for the tests, benchmarks and fuzz harnesses.

use std::net::{IpAddr, Ipv4Addr};

pub mod arp;
pub mod checksum;
pub mod dhcp;
pub mod dns;
pub mod emit;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod oracle_tests;
#[cfg(test)]
mod tests;

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A group address (broadcast included): the I/G bit of the first octet.
    #[inline]
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 != 0
    }

    /// A station's own address: neither a group address nor all zeros.
    #[inline]
    pub fn is_station(self) -> bool {
        !self.is_multicast() && self.0 != [0; 6]
    }
}

/// A text that is not a MAC address (`02:00:00:00:01:0a` or `02-00-00-00-01-0A`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (like 02:00:00:00:01:0a)")]
pub struct MacParseError(pub String);

impl std::str::FromStr for MacAddr {
    type Err = MacParseError;

    /// Parses `02:00:00:00:01:0a` or `02-00-00-00-01-0A` (case-insensitive, surrounding
    /// white space ignored): six two-digit hex bytes with one kind of separator.
    fn from_str(s: &str) -> Result<MacAddr, MacParseError> {
        let text = s.trim();
        let sep = if text.contains(':') { ':' } else { '-' };
        let mut out = [0u8; 6];
        let mut parts = text.split(sep);
        for byte in &mut out {
            *byte = parts
                .next()
                .filter(|p| p.len() == 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| MacParseError(s.to_string()))?;
        }
        match parts.next() {
            None => Ok(MacAddr(out)),
            Some(_) => Err(MacParseError(s.to_string())),
        }
    }
}

/// The canonical form, lowercase with colons: `02:00:00:00:01:0a`.
impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Serialized as its canonical text.
impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Deserialized from text in either form [`FromStr`](std::str::FromStr) accepts.
impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a frame could not be parsed. A malformed frame is always one of these, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The frame ends before the header of `layer` is complete.
    #[error("truncated {layer} header")]
    Truncated { layer: Layer },
    /// A length or offset field of `layer` points outside the frame or is too small.
    #[error("bad length field in {layer} header")]
    BadLength { layer: Layer },
    /// A version field of `layer` has the wrong value (e.g. IPv4 version != 4).
    #[error("bad version in {layer} header")]
    BadVersion { layer: Layer },
    /// A fixed marker of `layer` (e.g. DHCP's magic cookie) has the wrong value.
    #[error("bad magic number in {layer} message")]
    BadMagic { layer: Layer },
    /// More VLAN tags than the two (QinQ) we classify on.
    #[error("more than two VLAN tags")]
    TooManyVlanTags,
    /// More IPv6 extension headers than we are willing to walk.
    #[error("too many IPv6 extension headers")]
    TooManyExtensionHeaders,
    /// The frame is longer than [`MAX_FRAME_LEN`]: its offsets would not fit in a `u16`.
    #[error("frame longer than 65535 bytes")]
    FrameTooLong,
}

/// A protocol layer, named in [`ParseError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Ethernet,
    Vlan,
    Arp,
    Ipv4,
    Ipv6,
    Ipv6Extension,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// The IP header or transport ports embedded in an ICMP error message.
    IcmpInner,
    Dhcp,
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Layer::Ethernet => "Ethernet",
            Layer::Vlan => "802.1Q",
            Layer::Arp => "ARP",
            Layer::Ipv4 => "IPv4",
            Layer::Ipv6 => "IPv6",
            Layer::Ipv6Extension => "IPv6 extension",
            Layer::Tcp => "TCP",
            Layer::Udp => "UDP",
            Layer::Icmp => "ICMP",
            Layer::Icmpv6 => "ICMPv6",
            Layer::IcmpInner => "ICMP inner",
            Layer::Dhcp => "DHCP",
        };
        f.write_str(s)
    }
}

/// IP protocol numbers the dataplane names.
pub mod ip_proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// Ethertypes the dataplane names.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const IPV6: u16 = 0x86dd;
}

/// TCP flag bits as they sit in the header's flags byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    #[inline]
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    #[inline]
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    #[inline]
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    #[inline]
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
    /// A SYN without ACK or RST: the first segment of a new connection.
    #[inline]
    pub fn opens(self) -> bool {
        self.syn() && !self.ack() && !self.rst()
    }
}

/// The summary of one parsed frame. Holds no borrow of the frame: offsets point into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    pub dst_mac: MacAddr,
    pub src_mac: MacAddr,
    /// VLAN IDs: `[outer, inner]`; 0 where there is no tag (one tag: `[vid, 0]`).
    pub vlan: [u16; 2],
    /// The ethertype after any VLAN tags.
    pub ethertype: u16,
    /// Offset of the layer-3 header (after Ethernet and VLAN tags).
    pub l3_offset: u16,
    pub l3: L3Info,
}

/// What sits above Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3Info {
    /// ARP for IPv4 over Ethernet (htype 1, ptype 0x0800, hlen 6, plen 4).
    Arp(ArpInfo),
    Ip(IpInfo),
    /// Any other ethertype (including ARP for other hardware/protocol types).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpInfo {
    pub operation: u16,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

/// An IPv4 or IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The upper-layer protocol: for IPv6, the one after the extension headers.
    pub proto: u8,
    /// IPv4 TTL, IPv6 hop limit.
    pub ttl: u8,
    pub frag: Fragment,
    /// Offset of the transport header (after IPv4 options / IPv6 extension headers).
    pub l4_offset: u16,
    /// Offset of the transport payload (e.g. the DNS message of a UDP/53 datagram);
    /// equal to `l4_offset` where there is no transport header we parse.
    pub payload_offset: u16,
    /// Where the IP packet ends in the frame (excludes Ethernet padding).
    pub ip_end: u16,
    pub l4: L4Info,
}

/// IP fragmentation, IPv4 or IPv6 (fragment extension header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not a fragment.
    None,
    /// Offset 0 with more fragments to come: carries the transport header.
    First { id: u32 },
    /// Offset > 0: no transport header; match it to its first fragment by `id`.
    Later { id: u32 },
}

/// The transport layer, as far as the dataplane needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Info {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: TcpFlags,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP / ICMPv6 echo request or reply: the identifier plays the port.
    IcmpEcho {
        id: u16,
        request: bool,
    },
    /// ICMP / ICMPv6 error (unreachable, time exceeded, parameter problem, packet
    /// too big): the flow it is about, as the offending packet's header says.
    IcmpError {
        kind: u8,
        code: u8,
        inner: InnerFlow,
    },
    /// Any other ICMP / ICMPv6 message (including IPv6 neighbour discovery, types 133-137).
    IcmpOther {
        kind: u8,
        code: u8,
    },
    /// A later fragment: the transport header is in the first fragment.
    Fragment,
    /// A protocol whose header we do not parse (GRE, ESP, SCTP ...): no ports.
    Other,
}

/// The flow an ICMP error refers to, in the direction of the packet that caused it
/// (so `src` is the host that receives the error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerFlow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// Ports for TCP/UDP, the echo id in both for ICMP echo, 0 otherwise.
    pub src_port: u16,
    pub dst_port: u16,
}

/// The longest frame [`parse`] accepts: every offset in [`PacketInfo`] is a `u16`.
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;

/// Parse a whole Ethernet frame (without FCS) into a [`PacketInfo`].
///
/// Never panics and never allocates; checksums are not verified. A frame whose
/// ethertype is not ARP / IPv4 / IPv6 (including 802.3 length frames) yields
/// [`L3Info::Other`]; an IP protocol without a parsed header yields [`L4Info::Other`].
#[inline(always)]
pub fn parse(frame: &[u8]) -> Result<PacketInfo, ParseError> {
    if frame.len() > MAX_FRAME_LEN {
        return Err(ParseError::FrameTooLong);
    }
    let link = ethernet::parse_link(frame)?;
    let l3 = frame.get(link.l3_offset..).ok_or(ParseError::Truncated {
        layer: Layer::Ethernet,
    })?;
    let l3_info = match link.ethertype {
        ethertype::ARP => arp::summarize(l3)?,
        ethertype::IPV4 => L3Info::Ip(parse_ipv4(l3, link.l3_offset)?),
        ethertype::IPV6 => L3Info::Ip(parse_ipv6(l3, link.l3_offset)?),
        _ => L3Info::Other,
    };
    Ok(PacketInfo {
        dst_mac: link.dst,
        src_mac: link.src,
        vlan: link.vlan,
        ethertype: link.ethertype,
        l3_offset: offset(link.l3_offset)?,
        l3: l3_info,
    })
}

/// An offset into a frame of at most [`MAX_FRAME_LEN`] bytes, as a `u16`.
#[inline]
fn offset(at: usize) -> Result<u16, ParseError> {
    u16::try_from(at).map_err(|_| ParseError::FrameTooLong)
}

/// What an IP header tells about its payload, before the transport layer is read.
struct IpHeader<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    ttl: u8,
    frag: Fragment,
    /// The transport header and payload, up to the end of the IP packet.
    l4: &'a [u8],
    /// Offsets of `l4` and of the end of the IP packet, relative to the IP header.
    l4_start: usize,
    ip_len: usize,
}

#[inline(always)]
fn parse_ipv4(l3: &[u8], l3_offset: usize) -> Result<IpInfo, ParseError> {
    let ip = ipv4::Packet::new_checked(l3)?;
    let header = IpHeader {
        src: ip.src_addr().into(),
        dst: ip.dst_addr().into(),
        proto: ip.protocol(),
        ttl: ip.ttl(),
        frag: ip.fragment(),
        l4: ip.payload(),
        l4_start: ip.header_len(),
        ip_len: usize::from(ip.total_len()),
    };
    finish_ip(header, l3_offset, false)
}

#[inline(always)]
fn parse_ipv6(l3: &[u8], l3_offset: usize) -> Result<IpInfo, ParseError> {
    let ip = ipv6::Packet::new_checked(l3)?;
    let payload = ip.payload();
    let walk = ipv6::walk_extensions(ip.next_header(), payload)?;
    let header = IpHeader {
        src: ip.src_addr().into(),
        dst: ip.dst_addr().into(),
        proto: walk.proto,
        ttl: ip.hop_limit(),
        frag: walk.frag,
        l4: payload.get(walk.len..).ok_or(ParseError::Truncated {
            layer: Layer::Ipv6Extension,
        })?,
        l4_start: ipv6::HEADER_LEN + walk.len,
        ip_len: ipv6::HEADER_LEN + payload.len(),
    };
    finish_ip(header, l3_offset, true)
}

/// Read the transport header of an IP packet and assemble its [`IpInfo`].
#[inline(always)]
fn finish_ip(ip: IpHeader<'_>, l3_offset: usize, is_v6: bool) -> Result<IpInfo, ParseError> {
    let (l4, l4_header_len) = match (ip.frag, ip.proto, is_v6) {
        (Fragment::Later { .. }, _, _) => (L4Info::Fragment, 0),
        (_, ip_proto::TCP, _) => {
            let tcp = tcp::Packet::new_checked(ip.l4)?;
            let info = L4Info::Tcp {
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                flags: tcp.flags(),
            };
            (info, tcp.header_len())
        }
        (frag, ip_proto::UDP, _) => {
            // The length field of a first fragment covers the whole datagram.
            let udp = match frag {
                Fragment::First { .. } => udp::Packet::new_checked_header(ip.l4)?,
                _ => udp::Packet::new_checked(ip.l4)?,
            };
            let info = L4Info::Udp {
                src_port: udp.src_port(),
                dst_port: udp.dst_port(),
            };
            (info, udp::HEADER_LEN)
        }
        (_, ip_proto::ICMP, false) => (icmp::summarize_v4(ip.l4)?, icmp::HEADER_LEN),
        (_, ip_proto::ICMPV6, true) => (icmp::summarize_v6(ip.l4)?, icmp::HEADER_LEN),
        _ => (L4Info::Other, 0),
    };
    let l4_offset = l3_offset + ip.l4_start;
    Ok(IpInfo {
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        ttl: ip.ttl,
        frag: ip.frag,
        l4_offset: offset(l4_offset)?,
        payload_offset: offset(l4_offset + l4_header_len)?,
        ip_end: offset(l3_offset + ip.ip_len)?,
        l4,
    })
}
