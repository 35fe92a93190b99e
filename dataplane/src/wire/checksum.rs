//! The internet checksum (RFC 1071), with the TCP/UDP/ICMPv6 pseudo-header:
//! the one sum the write side ([`super::emit`]) and every test use.

use std::net::IpAddr;

/// The internet checksum of RFC 1071 over any number of parts: the ones' complement
/// of the ones' complement sum of the 16-bit big-endian words. A part may end on an
/// odd byte; the next part's first byte completes its word.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    sum: u64,
    /// The high byte of a word whose low byte is still to come.
    pending: Option<u8>,
}

impl Checksum {
    pub const fn new() -> Checksum {
        Checksum {
            sum: 0,
            pending: None,
        }
    }

    /// The sum of a TCP, UDP or ICMPv6 pseudo-header: the two addresses, the
    /// protocol and the upper-layer length (RFC 9293, RFC 768, RFC 8200 8.1).
    /// For IPv4 the length must fit in 16 bits; the same words serve both versions.
    pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> Checksum {
        let sum = Checksum::new();
        let sum = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => sum.add_bytes(&s.octets()).add_bytes(&d.octets()),
            (s, d) => sum.add_bytes(&v6_octets(s)).add_bytes(&v6_octets(d)),
        };
        sum.add_bytes(&len.to_be_bytes()).add_bytes(&[0, proto])
    }

    /// Add `data` to the sum.
    #[must_use]
    pub fn add_bytes(mut self, data: &[u8]) -> Checksum {
        let mut data = data;
        if let Some(hi) = self.pending.take() {
            match data.split_first() {
                Some((lo, rest)) => {
                    self.sum += u64::from(u16::from_be_bytes([hi, *lo]));
                    data = rest;
                }
                None => {
                    self.pending = Some(hi);
                    return self;
                }
            }
        }
        let mut words = data.chunks_exact(2);
        for word in &mut words {
            if let [hi, lo] = word {
                self.sum += u64::from(u16::from_be_bytes([*hi, *lo]));
            }
        }
        if let [last] = words.remainder() {
            self.pending = Some(*last);
        }
        self
    }

    /// The checksum: the folded sum (an odd last byte padded with a zero), complemented.
    pub fn finish(self) -> u16 {
        let mut sum = self.sum + self.pending.map_or(0, |hi| u64::from(hi) << 8);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }
}

/// The checksum of `data` alone (an IPv4 header, an ICMPv4 message). Over data that
/// carries its own correct checksum, the result is 0.
pub fn checksum(data: &[u8]) -> u16 {
    Checksum::new().add_bytes(data).finish()
}

/// An address as the 16 bytes of the IPv6 pseudo-header (IPv4 mapped, should an
/// IPv4 address meet an IPv6 one).
fn v6_octets(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}
