//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443): echo identifiers, and for error messages
//! the flow of the quoted packet.

use std::net::IpAddr;

use super::{ip_proto, ipv4, ipv6, InnerFlow, L4Info, Layer, ParseError};

/// A read-only view of an ICMPv4 or ICMPv6 message (the two share the first 8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    use core::ops::{Range, RangeFrom};
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    /// Echo data, or the quoted packet of an error message.
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// Length of the ICMP header: type, code, checksum and the 4 type-specific bytes.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// ICMPv4 message types the parser distinguishes.
pub mod v4 {
    pub const ECHO_REPLY: u8 = 0;
    pub const DST_UNREACHABLE: u8 = 3;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
}

/// ICMPv6 message types the parser distinguishes.
pub mod v6 {
    pub const DST_UNREACHABLE: u8 = 1;
    pub const PKT_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
}

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer holding at least the 8-byte header (`Truncated { Icmp }` otherwise;
    /// [`summarize_v6`] reports it as `Icmpv6`).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Truncated { layer: Layer::Icmp });
        }
        Ok(Packet { buffer })
    }

    #[inline]
    fn read_u16(&self, range: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// The identifier of an echo request / reply.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.read_u16(field::ECHO_IDENT)
    }

    /// The sequence number of an echo request / reply.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.read_u16(field::ECHO_SEQNO)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Everything after the 8-byte header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

/// An ICMP family: which types are echoes and errors, and which IP version is quoted.
#[derive(Clone, Copy)]
struct Family {
    proto: u8,
    layer: Layer,
    echo_request: u8,
    echo_reply: u8,
    errors: &'static [u8],
}

const ICMPV4: Family = Family {
    proto: ip_proto::ICMP,
    layer: Layer::Icmp,
    echo_request: v4::ECHO_REQUEST,
    echo_reply: v4::ECHO_REPLY,
    errors: &[v4::DST_UNREACHABLE, v4::TIME_EXCEEDED, v4::PARAM_PROBLEM],
};

const ICMPV6: Family = Family {
    proto: ip_proto::ICMPV6,
    layer: Layer::Icmpv6,
    echo_request: v6::ECHO_REQUEST,
    echo_reply: v6::ECHO_REPLY,
    errors: &[
        v6::DST_UNREACHABLE,
        v6::PKT_TOO_BIG,
        v6::TIME_EXCEEDED,
        v6::PARAM_PROBLEM,
    ],
};

/// Summarise the ICMPv4 message `msg` (the IP payload).
pub fn summarize_v4(msg: &[u8]) -> Result<L4Info, ParseError> {
    summarize(msg, ICMPV4)
}

/// Summarise the ICMPv6 message `msg` (the payload after the extension headers).
pub fn summarize_v6(msg: &[u8]) -> Result<L4Info, ParseError> {
    summarize(msg, ICMPV6)
}

fn summarize(msg: &[u8], family: Family) -> Result<L4Info, ParseError> {
    let icmp = Packet::new_checked(msg).map_err(|_| ParseError::Truncated {
        layer: family.layer,
    })?;
    let (kind, code) = (icmp.msg_type(), icmp.msg_code());
    if kind == family.echo_request || kind == family.echo_reply {
        return Ok(L4Info::IcmpEcho {
            id: icmp.echo_ident(),
            request: kind == family.echo_request,
        });
    }
    if family.errors.contains(&kind) {
        let inner = inner_flow(icmp.payload(), family).map_err(as_inner)?;
        return Ok(L4Info::IcmpError { kind, code, inner });
    }
    Ok(L4Info::IcmpOther { kind, code })
}

/// Errors in the quoted packet are reported against [`Layer::IcmpInner`].
fn as_inner(err: ParseError) -> ParseError {
    let layer = Layer::IcmpInner;
    match err {
        ParseError::Truncated { .. } => ParseError::Truncated { layer },
        ParseError::BadLength { .. } => ParseError::BadLength { layer },
        ParseError::BadVersion { .. } => ParseError::BadVersion { layer },
        other => other,
    }
}

/// The flow of the packet quoted in an error message. The quote is usually cut short,
/// so only its IP header (and IPv6 extension headers) and the first transport bytes
/// that carry ports are required.
fn inner_flow(quote: &[u8], family: Family) -> Result<InnerFlow, ParseError> {
    let (src, dst, proto, transport, later_fragment): (IpAddr, IpAddr, _, _, _) =
        if family.proto == ip_proto::ICMP {
            let ip = ipv4::Packet::new_checked_header(quote)?;
            let transport = quote.get(ip.header_len()..).unwrap_or_default();
            let later = ip.frag_offset() > 0;
            let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
            (src, dst, ip.protocol(), transport, later)
        } else {
            let ip = ipv6::Packet::new_checked_header(quote)?;
            let exts = quote.get(ipv6::HEADER_LEN..).unwrap_or_default();
            let walk = ipv6::walk_extensions(ip.next_header(), exts)?;
            let transport = exts.get(walk.len..).unwrap_or_default();
            let later = matches!(walk.frag, super::Fragment::Later { .. });
            let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
            (src, dst, walk.proto, transport, later)
        };
    let (src_port, dst_port) = if later_fragment {
        (0, 0)
    } else {
        quoted_ports(proto, transport, family)?
    };
    Ok(InnerFlow {
        src,
        dst,
        proto,
        src_port,
        dst_port,
    })
}

/// Ports of a quoted TCP/UDP header (4 bytes needed), or the echo identifier in both of a
/// quoted echo (the 8-byte ICMP header needed); 0 for anything else.
fn quoted_ports(proto: u8, transport: &[u8], family: Family) -> Result<(u16, u16), ParseError> {
    let truncated = ParseError::Truncated {
        layer: Layer::IcmpInner,
    };
    let be16 = |at: usize| match transport.get(at..at + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(truncated),
    };
    if proto == ip_proto::TCP || proto == ip_proto::UDP {
        Ok((be16(0)?, be16(2)?))
    } else if proto == family.proto {
        let echo = Packet::new_checked(transport).map_err(|_| truncated)?;
        let kind = echo.msg_type();
        if kind == family.echo_request || kind == family.echo_reply {
            Ok((echo.echo_ident(), echo.echo_ident()))
        } else {
            Ok((0, 0))
        }
    } else {
        Ok((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_and_reply_v4() {
        let req = [8, 0, 0xf7, 0xfe, 0x12, 0x34, 0, 1, 0xaa];
        assert_eq!(
            summarize_v4(&req),
            Ok(L4Info::IcmpEcho {
                id: 0x1234,
                request: true
            })
        );
        let p = Packet::new_checked(&req[..]).unwrap();
        assert_eq!(
            (p.checksum(), p.echo_seq_no(), p.payload()),
            (0xf7fe, 1, &[0xaa][..])
        );
        let rep = [0, 0, 0, 0, 0x12, 0x34, 0, 1];
        assert_eq!(
            summarize_v4(&rep),
            Ok(L4Info::IcmpEcho {
                id: 0x1234,
                request: false
            })
        );
    }

    #[test]
    fn echo_request_and_reply_v6() {
        let req = [128, 0, 0, 0, 0xbe, 0xef, 0, 1];
        assert_eq!(
            summarize_v6(&req),
            Ok(L4Info::IcmpEcho {
                id: 0xbeef,
                request: true
            })
        );
        let rep = [129, 0, 0, 0, 0xbe, 0xef, 0, 1];
        assert!(matches!(
            summarize_v6(&rep),
            Ok(L4Info::IcmpEcho { request: false, .. })
        ));
        // The v4 echo types mean something else in v6, and vice versa.
        assert_eq!(
            summarize_v6(&[8, 0, 0, 0, 0, 0, 0, 0]),
            Ok(L4Info::IcmpOther { kind: 8, code: 0 })
        );
        assert_eq!(
            summarize_v4(&[128, 0, 0, 0, 0, 0, 0, 0]),
            Ok(L4Info::IcmpOther { kind: 128, code: 0 })
        );
    }

    #[test]
    fn short_header_is_truncated_per_family() {
        assert_eq!(
            summarize_v4(&[8, 0, 0, 0, 0, 1, 0]),
            Err(ParseError::Truncated { layer: Layer::Icmp })
        );
        assert_eq!(
            summarize_v6(&[128, 0, 0, 0, 0, 1, 0]),
            Err(ParseError::Truncated {
                layer: Layer::Icmpv6
            })
        );
    }

    #[test]
    fn redirect_and_neighbour_discovery_are_other() {
        assert_eq!(
            summarize_v4(&[5, 1, 0, 0, 10, 0, 0, 1]),
            Ok(L4Info::IcmpOther { kind: 5, code: 1 })
        );
        for kind in 133..=137 {
            assert_eq!(
                summarize_v6(&[kind, 0, 0, 0, 0, 0, 0, 0]),
                Ok(L4Info::IcmpOther { kind, code: 0 })
            );
        }
    }

    /// An IPv4 header, 10.0.0.1 -> 10.0.0.2, claiming a 100-byte packet of `proto`.
    fn quoted_v4(proto: u8, transport: &[u8]) -> Vec<u8> {
        let mut q = vec![0x45, 0, 0, 100, 0, 1, 0, 0, 64, proto, 0, 0];
        q.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        q.extend_from_slice(transport);
        q
    }

    fn error_v4(kind: u8, code: u8, quote: &[u8]) -> Vec<u8> {
        let mut m = vec![kind, code, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(quote);
        m
    }

    #[test]
    fn port_unreachable_quotes_a_truncated_udp_packet() {
        let quote = quoted_v4(17, &[0x30, 0x39, 0x00, 0x35, 0x00, 0x50, 0, 0]);
        assert_eq!(
            summarize_v4(&error_v4(3, 3, &quote)),
            Ok(L4Info::IcmpError {
                kind: 3,
                code: 3,
                inner: InnerFlow {
                    src: "10.0.0.1".parse().unwrap(),
                    dst: "10.0.0.2".parse().unwrap(),
                    proto: 17,
                    src_port: 12345,
                    dst_port: 53,
                }
            })
        );
        // Four transport bytes are enough for the ports.
        let short = quoted_v4(6, &[0, 80, 0xc0, 0]);
        assert!(matches!(
            summarize_v4(&error_v4(11, 0, &short)),
            Ok(L4Info::IcmpError {
                inner: InnerFlow {
                    src_port: 80,
                    dst_port: 49152,
                    ..
                },
                ..
            })
        ));
    }

    #[test]
    fn quoted_echo_uses_its_id_as_both_ports() {
        let quote = quoted_v4(1, &[8, 0, 0, 0, 0x04, 0xd2, 0, 7]);
        match summarize_v4(&error_v4(11, 0, &quote)) {
            Ok(L4Info::IcmpError { inner, .. }) => {
                assert_eq!(
                    (inner.proto, inner.src_port, inner.dst_port),
                    (1, 1234, 1234)
                );
            }
            other => panic!("{other:?}"),
        }
        // A quoted protocol without ports needs no transport bytes at all.
        let gre = quoted_v4(47, &[]);
        match summarize_v4(&error_v4(3, 1, &gre)) {
            Ok(L4Info::IcmpError { inner, .. }) => {
                assert_eq!((inner.proto, inner.src_port, inner.dst_port), (47, 0, 0));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quote_too_short_is_truncated_inner() {
        let inner = Err(ParseError::Truncated {
            layer: Layer::IcmpInner,
        });
        let quote = quoted_v4(17, &[0x30, 0x39, 0x00]);
        assert_eq!(summarize_v4(&error_v4(3, 3, &quote)), inner);
        assert_eq!(summarize_v4(&error_v4(3, 3, &quote[..19])), inner);
        assert_eq!(summarize_v4(&error_v4(12, 0, &[])), inner);
        let echo = quoted_v4(1, &[8, 0, 0, 0, 0, 1]);
        assert_eq!(summarize_v4(&error_v4(11, 0, &echo)), inner);
        let mut v6_in_v4 = quoted_v4(17, &[0, 1, 0, 2]);
        v6_in_v4[0] = 0x60;
        assert_eq!(
            summarize_v4(&error_v4(3, 3, &v6_in_v4)),
            Err(ParseError::BadVersion {
                layer: Layer::IcmpInner
            })
        );
    }

    #[test]
    fn quoted_later_fragment_has_no_ports() {
        let mut quote = quoted_v4(17, &[]);
        quote[7] = 0x10; // offset 16
        match summarize_v4(&error_v4(11, 1, &quote)) {
            Ok(L4Info::IcmpError { inner, .. }) => {
                assert_eq!((inner.src_port, inner.dst_port), (0, 0));
            }
            other => panic!("{other:?}"),
        }
    }

    fn quoted_v6(next: u8, rest: &[u8]) -> Vec<u8> {
        let mut q = vec![0x60, 0, 0, 0, 0x05, 0xdc, next, 64];
        q.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        q.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        q.extend_from_slice(rest);
        q
    }

    #[test]
    fn packet_too_big_quotes_tcp() {
        let quote = quoted_v6(6, &[0x01, 0xbb, 0xd4, 0x31, 0, 0, 0, 1]);
        let mut msg = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00]; // MTU 1280
        msg.extend_from_slice(&quote);
        assert_eq!(
            summarize_v6(&msg),
            Ok(L4Info::IcmpError {
                kind: 2,
                code: 0,
                inner: InnerFlow {
                    src: "2001:db8::1".parse().unwrap(),
                    dst: "2001:db8::2".parse().unwrap(),
                    proto: 6,
                    src_port: 443,
                    dst_port: 54321,
                }
            })
        );
    }

    #[test]
    fn v6_quote_extension_headers_are_walked() {
        let quote = quoted_v6(60, &[17, 0, 1, 4, 0, 0, 0, 0, 0x00, 0x35, 0x00, 0x36]);
        let mut msg = vec![1, 4, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&quote);
        match summarize_v6(&msg) {
            Ok(L4Info::IcmpError { inner, .. }) => {
                assert_eq!((inner.proto, inner.src_port, inner.dst_port), (17, 53, 54));
            }
            other => panic!("{other:?}"),
        }
        let cut = quoted_v6(60, &[17, 0, 1, 4]);
        let mut msg = vec![3, 0, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&cut);
        assert_eq!(
            summarize_v6(&msg),
            Err(ParseError::Truncated {
                layer: Layer::IcmpInner
            })
        );
    }
}
