//! DNS and DHCP on the packet path: both go up as events (records,
//! traceback, address learning); a DNS answer for a domain a block feed
//! lists is held back until the addresses it gives are blocked.

use super::Worker;
use crate::event::{DnsMessage, Event, LeaseSeen};
use crate::policy::PolicySnapshot;
use crate::wire::{dhcp, dns, Fragment, IpInfo, L4Info, PacketInfo};

/// Whether a DNS answer must be held back (dropped) for threat intel: it
/// names a domain a block feed lists (as the question, an owner or a CNAME
/// target), and one of the addresses it gives is not blocked yet, or it
/// cannot be read whole (a first fragment, a TCP segment holding part of a
/// message). The event about it went up already: the control plane blocks
/// the addresses and publishes them, and the client's retry, a second
/// later, finds them blocked and gets its answer. The client never holds
/// an address before the appliance blocks it.
pub(super) fn holds_for_intel(frame: &[u8], ip: &IpInfo, snap: &PolicySnapshot) -> bool {
    if !snap.blocks_domains() {
        return false;
    }
    let start = usize::from(ip.payload_offset);
    let end = usize::from(ip.ip_end).min(frame.len());
    let Some(payload) = frame.get(start..end) else {
        return false;
    };
    let msg = match ip.l4 {
        L4Info::Udp { .. } => payload,
        // The 2-byte length prefix; a segment that starts mid-message reads
        // as nothing and passes (the control plane still blocks after it).
        L4Info::Tcp { .. } => payload.get(2..).unwrap_or(&[]),
        _ => return false,
    };
    let (mut listed, mut unblocked) = (false, false);
    let whole = dns::read_response(
        msg,
        |name| listed |= snap.intel_domain(name).is_some(),
        |addr| unblocked |= crate::intel::blockable(addr) && snap.intel_blocks(addr).is_none(),
    )
    .is_some();
    let cut = !whole || matches!(ip.frag, Fragment::First { .. });
    listed && (unblocked || cut)
}

impl Worker {
    /// A DHCP ACK names a client MAC and its leased address: learning, like ARP.
    pub(super) fn dhcp_event(&mut self, frame: &[u8], info: &PacketInfo, ip: &IpInfo, now: u64) {
        if !matches!(ip.l4, L4Info::Udp { .. }) {
            return;
        }
        let start = usize::from(ip.payload_offset);
        let end = usize::from(ip.ip_end).min(frame.len());
        let Some(lease) = frame
            .get(start..end)
            .and_then(|p| dhcp::Packet::new_checked(p).ok())
            .and_then(|p| p.lease())
        else {
            return;
        };
        self.events.emit(Event::DhcpLease(LeaseSeen {
            time: now,
            mac: lease.0,
            ip: lease.1,
            vlan: info.vlan,
        }));
    }

    pub(super) fn dns_event(
        &mut self,
        frame: &[u8],
        info: &PacketInfo,
        ip: &IpInfo,
        now: u64,
        unsolicited: bool,
    ) {
        let start = usize::from(ip.payload_offset);
        let end = usize::from(ip.ip_end).min(frame.len());
        let Some(payload) = frame.get(start..end) else {
            return;
        };
        if payload.is_empty() || self.events.would_drop() {
            return;
        }
        let copied = payload.len().min(self.cfg.dns_copy_bytes);
        let (client_port, tcp_seq) = match ip.l4 {
            L4Info::Tcp { dst_port, .. } => {
                // The sequence number: bytes 4-7 of the TCP header.
                let at = usize::from(ip.l4_offset) + 4;
                let seq = frame
                    .get(at..at + 4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes);
                (dst_port, seq)
            }
            L4Info::Udp { dst_port, .. } => (dst_port, None),
            _ => (0, None),
        };
        self.events.emit(Event::Dns(DnsMessage {
            time: now,
            client_mac: info.dst_mac,
            client_ip: ip.dst,
            client_port,
            server_mac: info.src_mac,
            server_ip: ip.src,
            vlan: info.vlan,
            proto: ip.proto,
            tcp_seq,
            payload: payload[..copied].into(),
            // A first fragment holds only the start of the message.
            truncated: copied < payload.len() || matches!(ip.frag, Fragment::First { .. }),
            unsolicited,
        }));
    }
}
