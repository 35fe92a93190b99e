//! The worker's use of the kernel tier ([`crate::offload`]): which flows are
//! offloaded, when, and how the kernel's counters come back into the flow table.
//!
//! A flow is offloaded once its verdict is final:
//! - allowed TCP once established with both directions seen (after the
//!   handshake, or a mid-stream pickup answered); it goes back to userspace as
//!   soon as it leaves `Established` (a FIN or RST, which the kernel always
//!   punts), so the close is tracked here packet by packet;
//! - allowed UDP, ICMP echo once a packet went each way, or
//!   [`REPEATS_TO_OFFLOAD`] went the same way (one-way streams: syslog,
//!   telemetry, floods);
//! - denied flows of those protocols once [`REPEATS_TO_OFFLOAD`] packets
//!   show the flow repeats (retransmissions, a flood), or at once for a
//!   connection that was answered (cut by a commit or a quarantine): dropped
//!   in the kernel. A scan (a few packets per flow) costs no map write, nor
//!   does a denied TCP handshake (its SYNs reach userspace anyway).
//!
//! Audit would-denies and learn-mode flows are offloaded like any allowed flow:
//! their events (start, would-deny, reclassified, end with counters) are per flow,
//! and the generation bump still sends them through userspace on a policy change.
//! Never offloaded: DNS (port 53: its payloads are copied to the control plane),
//! other protocols, closing TCP.

use super::Worker;
use crate::event::{EndReason, Event, EventSink, FlowRecord};
use crate::flow::{ExpireHook, FlowEntry, FlowState, FlowTable, Side};
use crate::offload::{KernelDelta, OffloadAction, Offloader, Probe};
use crate::policy::Action;
use crate::wire::ip_proto;

/// Packets a one-way datagram flow (allowed) or a denied flow shows before
/// the kernel carries it. An entry costs two system calls (the install, and
/// the removal when the flow ends): a flood of new flows a few packets each
/// (a scan that retries, a DDoS of spoofed sources, short telemetry) paid
/// them for flows that were nearly over, 15-20% of the userspace rate of
/// new flows (bench/RESULTS.md); a long stream gives up 7 packets.
pub const REPEATS_TO_OFFLOAD: u64 = 8;

/// What the kernel should do with this flow's packets from now on, if anything.
pub(crate) fn wanted(e: &FlowEntry) -> Option<OffloadAction> {
    let k = &e.key;
    match (k.proto, k.family) {
        (ip_proto::TCP | ip_proto::UDP, _) => {
            if k.port_lo == 53 || k.port_hi == 53 {
                return None;
            }
        }
        (ip_proto::ICMP, 4) | (ip_proto::ICMPV6, 6) => {}
        _ => return None,
    }
    match e.verdict.action {
        Action::Allow => {
            let final_state = if k.proto == ip_proto::TCP {
                e.state == FlowState::Established && e.packets[0] > 0 && e.packets[1] > 0
            } else {
                // An allowed datagram flow's verdict does not wait for an answer:
                // one that repeats one way (telemetry, syslog, a stream, a flood)
                // is offloaded as well as one that was answered.
                e.state == FlowState::Replied || e.total_packets() >= REPEATS_TO_OFFLOAD
            };
            final_state.then_some(OffloadAction::Forward)
        }
        // A denied TCP connection that never got past its handshake sends only
        // SYNs, which the kernel hands up anyway.
        Action::Deny => {
            // A connection that was answered and is now denied (a commit, a
            // quarantine cut it) keeps sending: dropped in the kernel from
            // its next packet. A flow never answered must repeat first.
            let repeats = match e.state {
                FlowState::Established | FlowState::Replied => 2,
                _ => REPEATS_TO_OFFLOAD,
            };
            (e.total_packets() >= repeats
                && !matches!(e.state, FlowState::SynSent | FlowState::SynReceived))
            .then_some(OffloadAction::Drop)
        }
    }
}

/// Add what the kernel counted to the entry; `now` is the worker's clock.
pub(crate) fn merge(e: &mut FlowEntry, d: &KernelDelta, now: u64) {
    if d.packets.iter().any(|&n| n > 0) {
        e.mark_unreported();
    }
    for side in [Side::Lo, Side::Hi] {
        let i = e.dir(side) as usize;
        e.packets[i] = e.packets[i].wrapping_add(d.packets_of(side));
        e.bytes[i] = e.bytes[i].wrapping_add(d.bytes_of(side));
    }
    if let Some(idle) = d.idle_ns {
        let last = now.saturating_sub(idle);
        if last > e.last_seen {
            e.last_seen = last;
        }
    }
}

/// After a packet of `e` was handled in userspace: install, re-install or remove
/// its kernel entry as [`wanted`] says.
pub(crate) fn after_packet(off: &mut Offloader, e: &mut FlowEntry, now: u64) {
    match (e.offloaded(), wanted(e)) {
        (false, None) => {}
        (true, None) => {
            if let Ok(Some(d)) = off.remove(&e.key) {
                merge(e, &d, now);
            }
            e.set_offloaded(false);
        }
        (_, Some(action)) => {
            if e.offloaded() && off.is_fresh(&e.key, action) {
                // The kernel should have carried this packet: it may have lost the
                // entry (LRU), or the packet was one it always hands up.
                match off.recheck(&e.key, now) {
                    Ok(Some(Probe::Gone)) => {}
                    Ok(Some(Probe::Present(d))) => {
                        merge(e, &d, now);
                        return;
                    }
                    Ok(None) | Err(_) => return,
                }
            }
            match off.install(&e.key, action, e.side_macs(), now) {
                Ok(delta) => {
                    if let Some(d) = delta {
                        merge(e, &d, now);
                    }
                    e.set_offloaded(off.is_installed(&e.key));
                }
                Err(_) => e.set_offloaded(false),
            }
        }
    }
}

/// Report a flow that left the table, with what the kernel counted for it.
pub(crate) fn end_flow(
    off: Option<&mut Offloader>,
    events: &mut EventSink,
    mut old: FlowEntry,
    reason: EndReason,
    now: u64,
) {
    if old.offloaded() {
        if let Some(off) = off {
            if let Ok(Some(d)) = off.remove(&old.key) {
                merge(&mut old, &d, now);
            }
        }
        old.set_offloaded(false);
    }
    events.emit(Event::FlowEnd(FlowRecord::from_entry(&old), reason));
}

/// The idle sweep of the flow table: an offloaded flow that looks idle is read
/// from the kernel first, so the table never expires a flow the kernel carries.
pub(crate) struct Expiry<'a> {
    pub off: Option<&'a mut Offloader>,
    pub events: &'a mut EventSink,
    pub now: u64,
}

impl ExpireHook for Expiry<'_> {
    fn refresh(&mut self, e: &mut FlowEntry) {
        if !e.offloaded() {
            return;
        }
        let Some(off) = self.off.as_deref_mut() else {
            return;
        };
        match off.read(&e.key) {
            Ok(Probe::Present(d)) => merge(e, &d, self.now),
            Ok(Probe::Gone) => e.set_offloaded(false),
            Err(_) => {}
        }
    }

    fn interim(&mut self, e: &mut FlowEntry) {
        self.events
            .emit(Event::FlowActive(FlowRecord::from_entry(e)));
    }

    fn ended(&mut self, e: &FlowEntry) {
        end_flow(
            self.off.as_deref_mut(),
            self.events,
            *e,
            EndReason::Idle,
            self.now,
        );
    }
}

/// Read up to `budget` offloaded flows' kernel counters into the flow table.
pub(crate) fn sweep(off: &mut Offloader, flows: &mut FlowTable, budget: usize, now: u64) {
    off.sweep(budget, |key, probe| match flows.get_mut(key) {
        Some(e) => {
            match probe {
                Probe::Present(d) => merge(e, &d, now),
                Probe::Gone => e.set_offloaded(false),
            }
            true
        }
        // Not in the table (it cannot happen: every way out of the table removes
        // the entry): drop the kernel entry too.
        None => false,
    });
}

impl Worker {
    /// Carry decided flows in the kernel tier through `offloader` from now on.
    pub fn set_offload(&mut self, offloader: Offloader) {
        self.offload = Some(offloader);
    }

    /// The kernel tier, if any.
    pub fn offload(&self) -> Option<&Offloader> {
        self.offload.as_ref()
    }
}
