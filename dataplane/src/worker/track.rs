//! Deciding a packet of IP: the flow it belongs to (found, re-decided,
//! replaced by a new connection, or created), and ICMP errors about flows.

use super::verdict::{decide, opposite, reclassify};
use super::{offload, Decision, Worker};
use crate::event::{EndReason, Event, FlowRecord, SpoofKind};
use crate::flow::{FlowEntry, FlowKey, Lookup, Side};
use crate::io::Port;
use crate::policy::{Action, FlowQuery, PolicySnapshot};
use crate::wire::{IpInfo, PacketInfo, TcpFlags};

impl Worker {
    /// Find or create the flow of a packet, update it, and decide the packet.
    pub(super) fn track(
        &mut self,
        key: &FlowKey,
        side: Side,
        hash: u64,
        p: &PacketRef<'_>,
        snap: &PolicySnapshot,
        now: u64,
    ) -> Decision {
        match self.flows.lookup_hashed(key, hash, now) {
            Lookup::Hit(entry) => {
                if !entry.macs_match(side, p.info.src_mac, p.info.dst_mac) {
                    // The flow's addresses from other MACs: never carried by
                    // the flow, decided on its own (a quarantined MAC is
                    // refused there) and reported.
                    let owner = entry.mac_of(side);
                    self.spoof(
                        SpoofKind::FlowMac,
                        p.info.src_mac,
                        p.ip.src,
                        owner,
                        p.info,
                        now,
                    );
                    if let Some(owner) = snap.claims_other(p.info.src_mac, p.ip.src) {
                        let (mac, ip) = (p.info.src_mac, p.ip.src);
                        return Err(self.spoof(SpoofKind::Address, mac, ip, owner, p.info, now));
                    }
                    return decide(snap.classify(&p.query()));
                }
                if entry.generation != snap.generation() {
                    self.stats.reclassified += 1;
                    reclassify(entry, snap, &mut self.events);
                }
                let dir = entry.dir(side);
                if p.flags.is_some_and(TcpFlags::opens) && !entry.syn_continues(dir) {
                    // A SYN opens a new connection: decided as one, it never
                    // rides an entry it did not open (one picked up
                    // mid-stream, an established or a closed connection).
                    // Denied, it is dropped and the entry stays; allowed, it
                    // replaces the entry.
                    let verdict = snap.classify(&p.query());
                    if verdict.action == Action::Deny {
                        self.stats.syn_refused += 1;
                        return decide(verdict);
                    }
                    let old = *entry;
                    self.flows.remove(key);
                    offload::end_flow(
                        self.offload.as_mut(),
                        &mut self.events,
                        old,
                        EndReason::Reused,
                        now,
                    );
                    return self.new_flow(key, side, hash, p, snap, now);
                }
                // (A SYN on a closed entry, `Update::restart`, was handled above.)
                entry.update(dir, p.flags, p.bytes, now);
                if let Some(off) = self.offload.as_mut() {
                    offload::after_packet(off, entry, now);
                }
                return decide(entry.verdict);
            }
            Lookup::Expired(old) => {
                offload::end_flow(
                    self.offload.as_mut(),
                    &mut self.events,
                    old,
                    EndReason::Idle,
                    now,
                );
            }
            Lookup::Miss => {}
        }
        self.new_flow(key, side, hash, p, snap, now)
    }

    pub(super) fn new_flow(
        &mut self,
        key: &FlowKey,
        side: Side,
        hash: u64,
        p: &PacketRef<'_>,
        snap: &PolicySnapshot,
        now: u64,
    ) -> Decision {
        let (info, flags) = (p.info, p.flags);
        // A new flow from an address another MAC holds: a spoof, dropped
        // before it takes a slot in the table.
        if let Some(owner) = snap.claims_other(info.src_mac, p.ip.src) {
            let (mac, ip) = (info.src_mac, p.ip.src);
            return Err(self.spoof(SpoofKind::Address, mac, ip, owner, info, now));
        }
        let mut verdict = snap.classify(&p.query());
        let (mut orig, mut src_mac, mut dst_mac) = (side, info.src_mac, info.dst_mac);
        // A TCP flow picked up mid-stream (no SYN: the appliance restarted, or the
        // flow was evicted) may be seen first in its reply direction: from the
        // server's port to the client's. If policy denies this direction but
        // allows the client to open a connection to this packet's source port,
        // the flow is the client's. A SYN is never such a reply, and no later
        // SYN rides the entry (see `track`).
        if verdict.action == Action::Deny && flags.is_some_and(|f| !f.syn()) {
            let rv = snap.classify(&p.reverse_query());
            if rv.action == Action::Allow {
                verdict = rv;
                orig = opposite(side);
                (src_mac, dst_mac) = (info.dst_mac, info.src_mac);
            }
        }
        let entry = FlowEntry::new(
            *key,
            orig,
            src_mac,
            dst_mac,
            verdict,
            snap.generation(),
            now,
        );
        let (e, evicted) = self.flows.insert_hashed(entry, hash, now);
        e.set_orig_port(if orig == side { p.port } else { p.port.peer() });
        let dir = e.dir(side);
        e.update(dir, flags, p.bytes, now);
        let record = FlowRecord::from_entry(e);
        self.stats.flows_created += 1;
        if let Some(old) = evicted {
            offload::end_flow(
                self.offload.as_mut(),
                &mut self.events,
                old,
                EndReason::Evicted,
                now,
            );
        }
        self.events.emit(Event::FlowStart(record));
        if verdict.would_deny {
            self.events.emit(Event::WouldDeny(record));
        }
        decide(verdict)
    }

    /// The fate of an ICMP error about a tracked flow, sent by `sender` (the
    /// side of the flow that received the quoted packet); `None` if the flow
    /// is not tracked. The error must travel between the MACs the flow is
    /// bound to (a router on the path sends from the flow's next-hop MAC):
    /// from anywhere else it is a spoof, dropped, whatever the flow's verdict.
    pub(super) fn related_verdict(
        &mut self,
        key: &FlowKey,
        sender: Side,
        info: &PacketInfo,
        ip: &IpInfo,
        snap: &PolicySnapshot,
        now: u64,
    ) -> Option<Decision> {
        match self.flows.lookup(key, now) {
            Lookup::Hit(entry) => {
                if !entry.macs_match(sender, info.src_mac, info.dst_mac) {
                    let owner = entry.mac_of(sender);
                    let (mac, ip) = (info.src_mac, ip.src);
                    return Some(Err(self.spoof(
                        SpoofKind::IcmpError,
                        mac,
                        ip,
                        owner,
                        info,
                        now,
                    )));
                }
                if entry.generation != snap.generation() {
                    self.stats.reclassified += 1;
                    reclassify(entry, snap, &mut self.events);
                }
                Some(decide(entry.verdict))
            }
            Lookup::Expired(old) => {
                offload::end_flow(
                    self.offload.as_mut(),
                    &mut self.events,
                    old,
                    EndReason::Idle,
                    now,
                );
                None
            }
            Lookup::Miss => None,
        }
    }
}

/// What [`Worker::track`] needs of the packet at hand.
pub(super) struct PacketRef<'a> {
    pub(super) info: &'a PacketInfo,
    pub(super) ip: &'a IpInfo,
    /// The segment the packet came in on.
    pub(super) port: Port,
    /// The source port (the responder's, if this packet is a reply).
    pub(super) sport: u16,
    /// The destination port (the responder's, if this packet starts the flow).
    pub(super) dport: u16,
    pub(super) flags: Option<TcpFlags>,
    pub(super) bytes: u32,
}

impl PacketRef<'_> {
    /// The packet as the first of a flow, in its own direction.
    fn query(&self) -> FlowQuery {
        FlowQuery {
            src_mac: self.info.src_mac,
            dst_mac: self.info.dst_mac,
            src_ip: self.ip.src,
            dst_ip: self.ip.dst,
            proto: self.ip.proto,
            dst_port: self.dport,
        }
    }

    /// The packet as a reply: the flow its receiver would have opened to its
    /// sender's port.
    fn reverse_query(&self) -> FlowQuery {
        FlowQuery {
            src_mac: self.info.dst_mac,
            dst_mac: self.info.src_mac,
            src_ip: self.ip.dst,
            dst_ip: self.ip.src,
            proto: self.ip.proto,
            dst_port: self.sport,
        }
    }
}
