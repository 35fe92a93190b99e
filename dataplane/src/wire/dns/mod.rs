//! What the packet path reads of a DNS response, and nothing more: the
//! names on it (the question, and each answer's owner, CNAME target and
//! SVCB/HTTPS target) and the addresses it answers (A, AAAA, and the
//! `ipv4hint`/`ipv6hint` of SVCB and HTTPS records, which a client may
//! connect to without asking for A), without allocating.
//!
//! The control plane decodes DNS fully with `hickory-proto` (records,
//! traceback); the packet path only needs to know, before it forwards an
//! answer, whether it names a blocked domain and which addresses it gives,
//! so that threat intel can hold it back until those addresses are blocked
//! (docs/decisions.md, "DNS-aware blocking before the answer"). A
//! hand-written reader because the packet path must not allocate and must
//! bound its work: names are followed through at most [`MAX_POINTERS`]
//! compression pointers, at most [`MAX_ANSWERS`] records are read, and a
//! message that does not parse is "not a response" (the worker forwards it,
//! unless its question already named a blocked domain: see
//! `worker::dns::holds_for_intel`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Compression pointers followed in one name at most (a loop ends here).
pub const MAX_POINTERS: usize = 16;
/// Answer records read at most.
pub const MAX_ANSWERS: usize = 32;
/// A name's presentation length at most (DNS's limit).
pub const MAX_NAME: usize = 253;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const TYPE_SVCB: u16 = 64;
const TYPE_HTTPS: u16 = 65;
/// SVCB parameter keys (RFC 9460): address hints.
const KEY_IPV4HINT: u16 = 4;
const KEY_IPV6HINT: u16 = 6;
const CLASS_IN: u16 = 1;

/// A name in presentation form (lower case, dots, no trailing dot), in a
/// stack buffer.
pub struct Name {
    buf: [u8; MAX_NAME],
    len: usize,
}

impl Name {
    pub fn as_str(&self) -> &str {
        // Only ASCII letters, digits and the bytes of labels that are
        // printable ASCII are written (see `read_name`).
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

fn u16_at(m: &[u8], at: usize) -> Option<u16> {
    let b = m.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Reads the name at `at`; returns it and the offset after it (after the
/// first pointer, if it has one). A label byte outside printable ASCII, a
/// dot inside a label, a name too long or a pointer loop is `None`.
fn read_name(m: &[u8], mut at: usize) -> Option<(Name, usize)> {
    let mut name = Name {
        buf: [0; MAX_NAME],
        len: 0,
    };
    let mut after = None;
    let mut jumps = 0;
    loop {
        let len = *m.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                return Some((name, after.unwrap_or(at + 1)));
            }
            0x00 => {
                let label = m.get(at + 1..at + 1 + usize::from(len))?;
                let dot = usize::from(name.len > 0);
                if name.len + dot + label.len() > MAX_NAME {
                    return None;
                }
                if dot == 1 {
                    name.buf[name.len] = b'.';
                    name.len += 1;
                }
                for &b in label {
                    if !(0x21..0x7f).contains(&b) || b == b'.' {
                        return None;
                    }
                    name.buf[name.len] = b.to_ascii_lowercase();
                    name.len += 1;
                }
                at += 1 + usize::from(len);
            }
            0xc0 => {
                let low = *m.get(at + 1)?;
                jumps += 1;
                if jumps > MAX_POINTERS {
                    return None;
                }
                after.get_or_insert(at + 2);
                at = (usize::from(len & 0x3f) << 8) | usize::from(low);
            }
            // 0x40 and 0x80: extended label types, never in a response today.
            _ => return None,
        }
    }
}

/// An SVCB or HTTPS record's data in `m[at..end]` (RFC 9460): its target
/// (unless `.`, "the owner itself") to `on_name`, its address hints to
/// `on_addr`. `None` if a parameter runs past the data.
fn read_svcb(
    m: &[u8],
    at: usize,
    end: usize,
    on_name: &mut impl FnMut(&str),
    on_addr: &mut impl FnMut(IpAddr),
) -> Option<()> {
    let (target, mut p) = read_name(m, at.checked_add(2)?)?;
    if target.len > 0 {
        on_name(target.as_str());
    }
    while p < end {
        let key = u16_at(m, p)?;
        let len = usize::from(u16_at(m, p + 2)?);
        let value = m.get(p + 4..p + 4 + len).filter(|_| p + 4 + len <= end)?;
        match key {
            KEY_IPV4HINT => {
                for a in value.chunks_exact(4) {
                    on_addr(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])));
                }
            }
            KEY_IPV6HINT => {
                for a in value.chunks_exact(16) {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(a);
                    on_addr(IpAddr::V6(Ipv6Addr::from(o)));
                }
            }
            _ => {}
        }
        p += 4 + len;
    }
    (p == end).then_some(())
}

/// One response's names and addresses, as the packet path reads them.
/// `on_name` is called with each name (the question first, then each
/// answer's owner and CNAME or SVCB/HTTPS target) and `on_addr` with each
/// A or AAAA address and SVCB/HTTPS address hint, in order. Returns `None` if the message is not a response
/// with one question that parses (nothing was called for what follows
/// the first problem).
pub fn read_response(
    m: &[u8],
    mut on_name: impl FnMut(&str),
    mut on_addr: impl FnMut(IpAddr),
) -> Option<()> {
    let flags = u16_at(m, 2)?;
    let qd = u16_at(m, 4)?;
    let an = u16_at(m, 6)?;
    if flags & 0x8000 == 0 || qd != 1 {
        return None;
    }
    let (q, mut at) = read_name(m, 12)?;
    on_name(q.as_str());
    at = at.checked_add(4)?;
    m.get(..at)?;
    for _ in 0..usize::from(an).min(MAX_ANSWERS) {
        let (owner, next) = read_name(m, at)?;
        let rtype = u16_at(m, next)?;
        let class = u16_at(m, next + 2)?;
        let rdlen = usize::from(u16_at(m, next + 8)?);
        let rdata_at = next + 10;
        let rdata = m.get(rdata_at..rdata_at + rdlen)?;
        if class == CLASS_IN {
            match (rtype, rdata.len()) {
                (TYPE_A, 4) => {
                    on_name(owner.as_str());
                    on_addr(IpAddr::V4(Ipv4Addr::new(
                        rdata[0], rdata[1], rdata[2], rdata[3],
                    )));
                }
                (TYPE_AAAA, 16) => {
                    on_name(owner.as_str());
                    let mut o = [0u8; 16];
                    o.copy_from_slice(rdata);
                    on_addr(IpAddr::V6(Ipv6Addr::from(o)));
                }
                (TYPE_CNAME, _) => {
                    on_name(owner.as_str());
                    let (target, _) = read_name(m, rdata_at)?;
                    on_name(target.as_str());
                }
                (TYPE_SVCB | TYPE_HTTPS, _) => {
                    on_name(owner.as_str());
                    read_svcb(m, rdata_at, rdata_at + rdlen, &mut on_name, &mut on_addr)?;
                }
                _ => {}
            }
        }
        at = rdata_at + rdlen;
    }
    Some(())
}

#[cfg(test)]
mod tests;
