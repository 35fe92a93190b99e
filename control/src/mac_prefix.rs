//! MAC prefixes, as assignment rules and MAC groups write them.

use dataplane::policy::parse_mac;
use dataplane::wire::MacAddr;
use std::fmt;

/// A MAC prefix: `02:00:00:00:01:*`, `00:50:56` (an OUI, /24) or `02:00:00:00:01:00/40`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacPrefix {
    mac: MacAddr,
    bits: u8,
}

impl MacPrefix {
    /// A prefix of `bits` (0..=48) bits; bits past the prefix are cleared.
    pub fn new(mac: MacAddr, bits: u8) -> Option<Self> {
        (bits <= 48).then(|| MacPrefix {
            mac: MacAddr(mask(mac.0, bits)),
            bits,
        })
    }

    pub fn bits(&self) -> u8 {
        self.bits
    }

    pub fn contains(&self, mac: MacAddr) -> bool {
        mask(mac.0, self.bits) == self.mac.0
    }
}

fn mask(m: [u8; 6], bits: u8) -> [u8; 6] {
    let v = u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]);
    let keep = if bits == 0 {
        0
    } else {
        (!0u64 << (48 - u32::from(bits))) & 0xffff_ffff_ffff
    };
    let b = (v & keep).to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

impl fmt::Display for MacPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.mac, self.bits)
    }
}

impl std::str::FromStr for MacPrefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "invalid MAC prefix {s:?}: expected e.g. \"02:00:00:00:01:*\", \"00:50:56\" or \"02:00:00:00:01:00/40\""
            )
        };
        if let Some((addr, bits)) = t.split_once('/') {
            let mac = parse_mac(addr).ok_or_else(bad)?;
            let bits = bits.trim().parse::<u8>().map_err(|_| bad())?;
            return MacPrefix::new(mac, bits).ok_or_else(bad);
        }
        // Bytes, possibly followed by `*`s: pad to six bytes and reuse `parse_mac`.
        let sep = if t.contains(':') { ':' } else { '-' };
        let parts: Vec<&str> = t.split(sep).map(str::trim).collect();
        let known = parts.iter().take_while(|p| **p != "*").count();
        if known == 0 || parts.len() > 6 || parts[known..].iter().any(|p| *p != "*") {
            return Err(bad());
        }
        let mut full: Vec<&str> = parts[..known].to_vec();
        full.resize(6, "00");
        let mac = parse_mac(&full.join(":")).ok_or_else(bad)?;
        MacPrefix::new(mac, (known * 8) as u8).ok_or_else(bad)
    }
}
