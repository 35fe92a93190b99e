//! DNS over TCP: a response stream's segments put back in order and cut into
//! messages by their 2-byte length prefixes (RFC 1035 4.2.2).
//!
//! A stream is keyed by both ends (the client's MAC, address and port, the
//! server's address, the VLANs) and follows the server's sequence numbers:
//! a retransmission adds only what is new, a gap (a segment the appliance
//! never saw) drops what the stream held, since the messages after it can no
//! longer be told apart. Memory is bounded twice: a stream holds at most one
//! message (65,535 bytes) and the segment that completes it, and all
//! streams together at most [`MAX_STREAMS`] and [`MAX_BYTES`]; past either,
//! the stream quiet longest goes, counted.

use super::DnsDrop;
use dataplane::event::DnsMessage;
use dataplane::wire::MacAddr;
use std::collections::HashMap;
use std::net::IpAddr;

/// TCP streams followed at once, at most.
pub const MAX_STREAMS: usize = 4096;
/// Bytes all streams hold together, at most.
pub const MAX_BYTES: usize = 16 << 20;
/// A stream quiet this long (worker clock, ns) is forgotten.
pub const STREAM_IDLE_NS: u64 = 30_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    client_mac: MacAddr,
    client_ip: IpAddr,
    client_port: u16,
    server_ip: IpAddr,
    vlan: [u16; 2],
}

#[derive(Debug)]
struct Stream {
    /// The server's sequence number the next new byte has.
    next_seq: u32,
    /// Bytes of messages not yet whole, from a length prefix on.
    buf: Vec<u8>,
    /// When the stream last carried a segment.
    last: u64,
}

#[derive(Debug, Default)]
pub(super) struct Streams {
    map: HashMap<Key, Stream, ahash::RandomState>,
    /// Bytes held in all buffers.
    bytes: usize,
}

impl Streams {
    /// The messages (without their length prefixes) that `msg`, a segment
    /// from the server, completes; and what was dropped on the way.
    pub(super) fn feed(&mut self, msg: &DnsMessage) -> (Vec<Vec<u8>>, Vec<DnsDrop>) {
        let mut drops = Vec::new();
        let Some(seq) = msg.tcp_seq else {
            return (Vec::new(), vec![DnsDrop::Malformed]);
        };
        let key = Key {
            client_mac: msg.client_mac,
            client_ip: msg.client_ip,
            client_port: msg.client_port,
            server_ip: msg.server_ip,
            vlan: msg.vlan,
        };
        if msg.truncated {
            // The rest of the segment was not copied: the stream is lost.
            self.remove(&key);
            return (Vec::new(), vec![DnsDrop::Truncated]);
        }
        if !self.map.contains_key(&key) && self.map.len() >= MAX_STREAMS {
            self.evict_oldest();
            drops.push(DnsDrop::Overflow);
        }
        let s = self.map.entry(key).or_insert(Stream {
            next_seq: seq,
            buf: Vec::new(),
            last: msg.time,
        });
        s.last = msg.time;
        // Where the segment starts against what the stream has: ahead is a
        // gap, behind is (partly) a retransmission.
        let distance = seq.wrapping_sub(s.next_seq) as i32;
        let data: &[u8] = if distance > 0 {
            drops.push(DnsDrop::Gap);
            self.bytes -= s.buf.len();
            s.buf.clear();
            s.next_seq = seq;
            &msg.payload
        } else {
            let seen = distance.unsigned_abs() as usize;
            msg.payload.get(seen..).unwrap_or_default()
        };
        s.buf.extend_from_slice(data);
        s.next_seq = s.next_seq.wrapping_add(data.len() as u32);
        self.bytes += data.len();
        let mut out = Vec::new();
        while let [hi, lo, ..] = s.buf[..] {
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            if len == 0 {
                drops.push(DnsDrop::BadLength);
                self.bytes -= s.buf.len();
                s.buf.clear();
                break;
            }
            let Some(body) = s.buf.get(2..2 + len) else {
                break;
            };
            out.push(body.to_vec());
            s.buf.drain(..2 + len);
            self.bytes -= 2 + len;
        }
        while self.bytes > MAX_BYTES {
            self.evict_oldest();
            drops.push(DnsDrop::Overflow);
        }
        (out, drops)
    }

    /// Forget the streams quiet since `now - STREAM_IDLE_NS`; a message one
    /// held half of never came whole.
    pub(super) fn expire(&mut self, now: u64) -> Vec<DnsDrop> {
        let old: Vec<Key> = self
            .map
            .iter()
            .filter(|(_, s)| s.last.saturating_add(STREAM_IDLE_NS) < now)
            .map(|(k, _)| *k)
            .collect();
        old.into_iter()
            .filter_map(|k| (self.remove(&k) > 0).then_some(DnsDrop::BadLength))
            .collect()
    }

    pub(super) fn waiting(&self) -> (usize, usize) {
        (self.map.len(), self.bytes)
    }

    /// Remove a stream; the bytes it held.
    fn remove(&mut self, key: &Key) -> usize {
        let held = self.map.remove(key).map_or(0, |s| s.buf.len());
        self.bytes -= held;
        held
    }

    fn evict_oldest(&mut self) {
        if let Some(k) = self.map.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| *k) {
            self.remove(&k);
        }
    }
}
