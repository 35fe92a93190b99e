//! The protocol and port types a rule matches on, with their text and serde
//! forms (`tcp`, `17`; `445`, `"8000-8080"`), shared by the control plane's
//! model file and the compiled [`super::PolicySpec`].

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An IP protocol: a name, or a number `0..=255`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Proto {
    #[default]
    Any,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Any other protocol number (a number of a named protocol is the same as its name).
    Number(u8),
}

impl Proto {
    /// The protocol number, or `None` for [`Proto::Any`].
    pub fn number(self) -> Option<u8> {
        match self {
            Proto::Any => None,
            Proto::Tcp => Some(6),
            Proto::Udp => Some(17),
            Proto::Icmp => Some(1),
            Proto::Icmpv6 => Some(58),
            Proto::Number(n) => Some(n),
        }
    }

    /// Whether ports may be given: TCP or UDP (by name or number).
    pub fn has_ports(self) -> bool {
        matches!(self.number(), Some(6 | 17))
    }

    /// Whether a packet of protocol `p` matches.
    pub fn matches(self, p: u8) -> bool {
        self.number().is_none_or(|n| n == p)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Any => f.write_str("any"),
            Proto::Tcp => f.write_str("tcp"),
            Proto::Udp => f.write_str("udp"),
            Proto::Icmp => f.write_str("icmp"),
            Proto::Icmpv6 => f.write_str("icmpv6"),
            Proto::Number(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "any" => Ok(Proto::Any),
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "icmp" => Ok(Proto::Icmp),
            "icmpv6" => Ok(Proto::Icmpv6),
            _ => t.parse::<u8>().map(Proto::Number).map_err(|_| {
                format!("invalid protocol {s:?}: expected tcp, udp, icmp, icmpv6, any or 0..=255")
            }),
        }
    }
}

impl Serialize for Proto {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Proto::Number(n) => s.serialize_u8(*n),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Proto {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Proto;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protocol: tcp, udp, icmp, icmpv6, any or a number 0..=255")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Proto, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Proto, E> {
                u8::try_from(v)
                    .map(Proto::Number)
                    .map_err(|_| E::custom(format!("protocol number {v} is not in 0..=255")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Proto, E> {
                u8::try_from(v)
                    .map(Proto::Number)
                    .map_err(|_| E::custom(format!("protocol number {v} is not in 0..=255")))
            }
        }
        d.deserialize_any(V)
    }
}

/// An inclusive port range, written `445` or `"8000-8080"`. A reversed range
/// deserializes (so that the control plane's validation reports it with its
/// path) and is refused by [`super::PolicySnapshot::compile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        PortRange { lo: port, hi: port }
    }
    pub fn new(lo: u16, hi: u16) -> Self {
        PortRange { lo, hi }
    }
    pub fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid port range {s:?}: expected a port or \"lo-hi\" in 0..=65535");
        let port = |t: &str| t.trim().parse::<u16>().map_err(|_| bad());
        match s.split_once('-') {
            Some((a, b)) => Ok(PortRange::new(port(a)?, port(b)?)),
            None => port(s).map(PortRange::single),
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.lo == self.hi {
            s.serialize_u16(self.lo)
        } else {
            s.serialize_str(&self.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port 0..=65535 or a range \"lo-hi\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRange, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRange, E> {
                u16::try_from(v)
                    .map(PortRange::single)
                    .map_err(|_| E::custom(format!("port {v} is not in 0..=65535")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRange, E> {
                u16::try_from(v)
                    .map(PortRange::single)
                    .map_err(|_| E::custom(format!("port {v} is not in 0..=65535")))
            }
        }
        d.deserialize_any(V)
    }
}
