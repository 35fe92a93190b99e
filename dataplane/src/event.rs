//! Events from the packet path to the control plane.
//!
//! The worker never blocks on the control plane: events go out on a bounded
//! crossbeam channel with `try_send`, and an event that finds the channel full is
//! dropped and counted ([`EventSink::lost`]). Events carry the workload identity
//! (MACs) as well as addresses, so the records built from them survive
//! address changes and SNAT.

use crate::flow::{FlowEntry, FlowState, Side};
use crate::io::Port;
use crate::policy::Verdict;
use crate::wire::MacAddr;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One flow, in the direction of its first packet (the initiator is `src`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRecord {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// `[outer, inner]` VLAN IDs, 0 where untagged.
    pub vlan: [u16; 2],
    pub verdict: Verdict,
    /// The policy generation the verdict came from.
    pub generation: u64,
    pub state: FlowState,
    /// Nanoseconds on the worker's clock (capture time in a replay).
    pub first_seen: u64,
    pub last_seen: u64,
    /// `[initiator -> responder, responder -> initiator]`.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// TCP flags seen in either direction, OR'd (0 for other protocols).
    pub tcp_flags: u8,
    /// The segment the initiator is on.
    pub orig_port: Port,
}

impl FlowRecord {
    /// The record of a flow-table entry.
    pub fn from_entry(e: &FlowEntry) -> FlowRecord {
        let k = &e.key;
        let (lo, hi) = (addr(k.addr_lo, k.family), addr(k.addr_hi, k.family));
        let (src_ip, src_port, dst_ip, dst_port) = match e.orig {
            Side::Lo => (lo, k.port_lo, hi, k.port_hi),
            Side::Hi => (hi, k.port_hi, lo, k.port_lo),
        };
        FlowRecord {
            src_mac: e.orig_src_mac,
            dst_mac: e.orig_dst_mac,
            src_ip,
            dst_ip,
            proto: k.proto,
            src_port,
            dst_port,
            vlan: k.vlan,
            verdict: e.verdict,
            generation: e.generation,
            state: e.state,
            first_seen: e.first_seen,
            last_seen: e.last_seen,
            packets: e.packets,
            bytes: e.bytes,
            tcp_flags: e.flags_seen(),
            orig_port: e.orig_port(),
        }
    }
}

fn addr(octets: [u8; 16], family: u8) -> IpAddr {
    let v6 = Ipv6Addr::from(octets);
    match (family, v6.to_ipv4_mapped()) {
        (4, Some(v4)) => IpAddr::V4(v4),
        _ => IpAddr::V6(v6),
    }
}

/// Why a flow left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Idle past its state's timeout.
    Idle,
    /// Pushed out to make room for a new flow while the table was full.
    Evicted,
    /// A new SYN reused the 5-tuple of a closed connection.
    Reused,
    /// The worker was flushed (end of a replay, shutdown).
    Flushed,
}

/// A DNS message seen on port 53 (UDP, or one TCP segment's payload), copied up to
/// the worker's configured bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsMessage {
    pub time: u64,
    /// The DNS client: the end of the flow that is not port 53.
    pub client_mac: MacAddr,
    pub client_ip: IpAddr,
    /// The client's port (the server's is 53).
    pub client_port: u16,
    pub server_mac: MacAddr,
    pub server_ip: IpAddr,
    pub vlan: [u16; 2],
    pub proto: u8,
    /// TCP: the segment's sequence number, for putting a stream back in
    /// order. `None` for UDP.
    pub tcp_seq: Option<u32>,
    /// The transport payload (for TCP, including the 2-byte length prefix).
    pub payload: Box<[u8]>,
    /// The payload was longer than the bound and was cut.
    pub truncated: bool,
    /// The port-53 end started the flow (or the flow is not tracked): a
    /// "response" nobody asked for, against the flow's direction. The
    /// decoder counts it and keeps it out of the records, so that a host
    /// cannot make another look as if it resolved a name.
    pub unsolicited: bool,
}

/// An ARP packet's sender binding, for IP-to-MAC learning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpSeen {
    pub time: u64,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub vlan: [u16; 2],
}

/// A DHCP server's ACK: the address it leased to a client MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSeen {
    pub time: u64,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub vlan: [u16; 2],
}

/// What a frame claimed that belongs to another MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoofKind {
    /// A live flow's addresses from other MACs than the flow's.
    FlowMac,
    /// An ICMP error about a tracked flow, not from that flow's hosts.
    IcmpError,
    /// A new flow from an address another MAC holds.
    Address,
    /// An ARP packet whose sender address another MAC holds.
    Arp,
    /// IPv6 neighbour discovery claiming an address another MAC holds.
    Neighbour,
}

impl SpoofKind {
    pub fn name(self) -> &'static str {
        match self {
            SpoofKind::FlowMac => "flow-mac",
            SpoofKind::IcmpError => "icmp-error",
            SpoofKind::Address => "address",
            SpoofKind::Arp => "arp",
            SpoofKind::Neighbour => "neighbour",
        }
    }
}

/// A frame that used addresses another MAC holds: `mac` sent as `ip`, which
/// `owner` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoofSeen {
    pub time: u64,
    pub kind: SpoofKind,
    pub mac: MacAddr,
    pub ip: IpAddr,
    pub owner: MacAddr,
    pub vlan: [u16; 2],
}

/// What a worker tells the control plane.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new flow and the verdict it got.
    FlowStart(FlowRecord),
    /// A flow left the table, with its final counters.
    FlowEnd(FlowRecord, EndReason),
    /// A flow still in the table, with its counters so far: sent once per
    /// `WorkerConfig::interim_every` of its life while it carries packets, so
    /// that a connection lasting days is visible while it runs.
    FlowActive(FlowRecord),
    /// A flow that audit (or learn) mode let through although policy would deny it.
    /// Sent when the flow starts and again if a new policy generation still would deny it.
    WouldDeny(FlowRecord),
    /// A flow whose verdict changed under a new policy generation (e.g. a quarantine
    /// cut it); the record carries the new verdict.
    Reclassified(FlowRecord),
    /// A DNS response (source port 53).
    Dns(DnsMessage),
    /// An ARP packet's sender MAC and IP.
    Arp(ArpSeen),
    /// A DHCP ACK that passed the appliance (UDP 67 -> 68).
    DhcpLease(LeaseSeen),
    /// A frame that claimed another MAC's addresses.
    Spoof(SpoofSeen),
}

/// The worker's end of the event channel: never blocks, counts what it loses.
#[derive(Debug)]
pub struct EventSink {
    tx: Sender<Event>,
    lost: u64,
}

impl EventSink {
    pub fn new(tx: Sender<Event>) -> Self {
        EventSink { tx, lost: 0 }
    }

    /// Send without blocking; a full or closed channel drops the event and counts it.
    #[inline]
    pub fn emit(&mut self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.lost += 1,
        }
    }

    /// Whether an event would be dropped now: lets a caller skip building an event
    /// that needs an allocation (a DNS payload copy). Counts the loss.
    #[inline]
    pub fn would_drop(&mut self) -> bool {
        if self.tx.is_full() {
            self.lost += 1;
            true
        } else {
            false
        }
    }

    /// Another sink on the same channel (for another worker), with its own count.
    pub fn sibling(&self) -> EventSink {
        EventSink::new(self.tx.clone())
    }

    /// Events dropped because the channel was full or closed.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

/// A bounded event channel: the worker's sink and the control plane's receiver.
pub fn channel(capacity: usize) -> (EventSink, Receiver<Event>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    (EventSink::new(tx), rx)
}
