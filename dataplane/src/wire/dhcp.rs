//! DHCPv4 (RFC 2131) messages, only as far as address learning needs: the
//! server's ACK names the client's hardware address and the address it leases.

use super::{Layer, MacAddr, ParseError};
use std::net::Ipv4Addr;

/// A read-only view of a DHCP message (the UDP payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    use core::ops::Range;
    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const YIADDR: Range<usize> = 16..20;
    pub const CHADDR: Range<usize> = 28..34;
    pub const MAGIC: Range<usize> = 236..240;
    pub const OPTIONS: usize = 240;
}

/// The magic cookie in front of the options.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// `op` of a server's reply.
pub const OP_REPLY: u8 = 2;
/// Option 53, DHCP message type, and its ACK value.
pub const OPTION_MESSAGE_TYPE: u8 = 53;
pub const MESSAGE_ACK: u8 = 5;
/// UDP ports: the server's and the client's.
pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap a buffer holding a DHCP message: the fixed part and the magic cookie
    /// must be there (`Truncated`; `BadMagic` for a wrong cookie).
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        if b.len() < field::OPTIONS {
            return Err(ParseError::Truncated { layer: Layer::Dhcp });
        }
        if b[field::MAGIC] != MAGIC_COOKIE {
            return Err(ParseError::BadMagic { layer: Layer::Dhcp });
        }
        Ok(Packet { buffer })
    }

    pub fn op(&self) -> u8 {
        self.buffer.as_ref()[field::OP]
    }

    /// The address the server gives the client ("your" address).
    pub fn yiaddr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::YIADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// The client's MAC, when the hardware type is Ethernet with 6-byte addresses.
    pub fn client_mac(&self) -> Option<MacAddr> {
        let b = self.buffer.as_ref();
        if b[field::HTYPE] != 1 || b[field::HLEN] != 6 {
            return None;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&b[field::CHADDR]);
        Some(MacAddr(mac))
    }

    /// The value of option `code`, if present and whole. Stops at the end option,
    /// and at an option that runs past the buffer.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        let mut rest = self.buffer.as_ref().get(field::OPTIONS..)?;
        loop {
            match *rest.first()? {
                0 => rest = rest.get(1..)?,
                255 => return None,
                c => {
                    let len = usize::from(*rest.get(1)?);
                    let value = rest.get(2..2 + len)?;
                    if c == code {
                        return Some(value);
                    }
                    rest = rest.get(2 + len..)?;
                }
            }
        }
    }

    /// The DHCP message type (option 53).
    pub fn message_type(&self) -> Option<u8> {
        self.option(OPTION_MESSAGE_TYPE)?.first().copied()
    }

    /// For a server's ACK that leases an address: the client's MAC and the address.
    pub fn lease(&self) -> Option<(MacAddr, Ipv4Addr)> {
        let ip = self.yiaddr();
        if self.op() != OP_REPLY || self.message_type() != Some(MESSAGE_ACK) || ip.is_unspecified()
        {
            return None;
        }
        Some((self.client_mac()?, ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DHCP ACK giving 10.0.0.42 to 02:00:00:00:00:42, options: type ACK, end.
    fn ack() -> Vec<u8> {
        let mut m = vec![0u8; 240];
        m[0] = OP_REPLY;
        m[1] = 1;
        m[2] = 6;
        m[16..20].copy_from_slice(&[10, 0, 0, 42]);
        m[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 0x42]);
        m[236..240].copy_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[0, 0, 1, 4, 255, 255, 255, 0, 53, 1, MESSAGE_ACK, 255]);
        m
    }

    #[test]
    fn an_ack_gives_the_client_mac_and_leased_address() {
        let m = ack();
        let p = Packet::new_checked(&m[..]).expect("valid");
        assert_eq!(p.message_type(), Some(MESSAGE_ACK));
        assert_eq!(p.option(1), Some(&[255, 255, 255, 0][..]));
        assert_eq!(
            p.lease(),
            Some((MacAddr([2, 0, 0, 0, 0, 0x42]), Ipv4Addr::new(10, 0, 0, 42)))
        );
    }

    #[test]
    fn offers_requests_and_nak_lease_nothing() {
        for (op, kind) in [(OP_REPLY, 2u8), (1, 3), (OP_REPLY, 6)] {
            let mut m = ack();
            m[0] = op;
            let at = m.len() - 2;
            m[at] = kind;
            let p = Packet::new_checked(&m[..]).expect("valid");
            assert_eq!(p.lease(), None, "op {op} type {kind}");
        }
    }

    #[test]
    fn truncated_bad_cookie_and_overrunning_options_are_refused_or_ignored() {
        let m = ack();
        assert!(matches!(
            Packet::new_checked(&m[..239]),
            Err(ParseError::Truncated { .. })
        ));
        let mut bad = m.clone();
        bad[236] = 0;
        assert!(matches!(
            Packet::new_checked(&bad[..]),
            Err(ParseError::BadMagic { .. })
        ));
        // Option 53 claims 9 bytes that are not there; no end option.
        let mut over = m[..240].to_vec();
        over.extend_from_slice(&[53, 9, MESSAGE_ACK]);
        let p = Packet::new_checked(&over[..]).expect("fixed part is fine");
        assert_eq!(p.message_type(), None);
        assert_eq!(p.lease(), None);
        // Only padding, no end.
        let mut pad = m[..240].to_vec();
        pad.extend_from_slice(&[0; 10]);
        assert_eq!(Packet::new_checked(&pad[..]).expect("ok").lease(), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use proptest::prelude::*;
        proptest!(|(tail in proptest::collection::vec(any::<u8>(), 0..64), op in any::<u8>())| {
            let mut m = ack();
            m.truncate(240);
            m[0] = op;
            m.extend_from_slice(&tail);
            if let Ok(p) = Packet::new_checked(&m[..]) {
                let _ = p.lease();
            }
        });
    }
}
