//! The guards below flows: quarantine at layer 2 (ARP, neighbour discovery,
//! non-IP) and the report of a frame that claims another MAC's address.

use super::{Decision, DropReason, Worker};
use crate::event::{Event, SpoofKind, SpoofSeen};
use crate::policy::PolicySnapshot;
use crate::wire::{ip_proto, IpInfo, L3Info, L4Info, MacAddr, PacketInfo};
use std::net::IpAddr;

/// ICMPv6 messages that IPv6 itself needs (MLD 130-132 and 143, router and
/// neighbour discovery 133-137): passed like ARP, without a flow.
pub(super) fn is_icmpv6_control(kind: u8) -> bool {
    matches!(kind, 130..=137 | 143)
}

/// The fate of a frame with a quarantined end that IP policy does not decide:
/// ARP, IPv6 neighbour discovery and router messages, MLD, non-IP. They pass
/// only between the quarantined host and a management host (by MAC), for the
/// management channel's address resolution. `None` for the rest of IP, which
/// the classifier decides (quarantine, management exceptions).
pub(super) fn quarantined_below_ip(
    frame: &[u8],
    info: &PacketInfo,
    snap: &PolicySnapshot,
) -> Option<Decision> {
    let target = match info.l3 {
        L3Info::Arp(arp) => Some(IpAddr::V4(arp.target_ip)),
        L3Info::Ip(ref ip) => match ip.l4 {
            L4Info::IcmpOther { kind, .. }
                if ip.proto == ip_proto::ICMPV6 && is_icmpv6_control(kind) =>
            {
                // Only neighbour solicitations and advertisements.
                if !matches!(kind, 135 | 136) {
                    return Some(Err(DropReason::Quarantine));
                }
                match nd_target(frame, ip) {
                    Some(target) => Some(target),
                    None => return Some(Err(DropReason::Quarantine)),
                }
            }
            _ => return None,
        },
        L3Info::Other => return Some(Err(DropReason::Quarantine)),
    };
    if snap.quarantine_l2_allows(info.src_mac, info.dst_mac, target) {
        None
    } else {
        Some(Err(DropReason::Quarantine))
    }
}

/// The target address of an IPv6 neighbour solicitation or advertisement:
/// the 16 bytes after the 8-byte ICMPv6 header.
pub(super) fn nd_target(frame: &[u8], ip: &IpInfo) -> Option<IpAddr> {
    let at = usize::from(ip.l4_offset) + 8;
    let bytes = <[u8; 16]>::try_from(frame.get(at..at + 16)?).ok()?;
    Some(IpAddr::V6(bytes.into()))
}

impl Worker {
    /// Count and report a frame that used `ip`, which `owner` holds, from
    /// `mac`; the drop reason for it, if it is dropped.
    pub(super) fn spoof(
        &mut self,
        kind: SpoofKind,
        mac: MacAddr,
        ip: IpAddr,
        owner: MacAddr,
        info: &PacketInfo,
        now: u64,
    ) -> DropReason {
        self.stats.spoofed += 1;
        self.events.emit(Event::Spoof(SpoofSeen {
            time: now,
            kind,
            mac,
            ip,
            owner,
            vlan: info.vlan,
        }));
        DropReason::Spoofed
    }
}
