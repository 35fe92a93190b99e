//! Flow states, the TCP state machine, per-state idle timeouts and [`FlowEntry::update`].
//!
//! The TCP tracker is deliberately loose, in the manner of Linux conntrack with
//! `nf_conntrack_tcp_loose=1` but without sequence-number windows: it follows the
//! flags only. Its job is to pick an idle timeout and to tell the caller when a
//! connection ends or restarts, not to validate TCP.

use super::{Dir, FlowEntry};
use crate::wire::{ip_proto, TcpFlags};
use std::time::Duration;

/// The connection-tracking state of a flow.
///
/// TCP flows use `SynSent` .. `Closed`; every other protocol uses `Unreplied` / `Replied`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowState {
    /// TCP: the originator sent a SYN, nothing back yet.
    SynSent,
    /// TCP: the responder answered with a SYN-ACK (or a SYN: simultaneous open).
    SynReceived,
    /// TCP: the handshake completed, or the flow was picked up mid-stream.
    Established,
    /// TCP: one side sent a FIN (half-closed). Linux's FIN_WAIT and CLOSE_WAIT folded in one.
    FinWait,
    /// TCP: both sides sent a FIN; waiting for the ACK of the last one (Linux's LAST_ACK).
    Closing,
    /// TCP: both FINs sent and the last one acknowledged.
    TimeWait,
    /// TCP: a RST was seen.
    Closed,
    /// Non-TCP: packets seen in the originating direction only.
    Unreplied,
    /// Non-TCP: packets seen in both directions.
    Replied,
}

impl FlowState {
    /// The connection is over: a RST was seen, or both FINs were sent and acknowledged.
    /// A new SYN on such an entry restarts it ([`Update::restart`]).
    #[inline]
    pub fn is_closed(self) -> bool {
        matches!(self, FlowState::Closed | FlowState::TimeWait)
    }

    /// Closed, or both sides sent a FIN: what the table evicts first when full.
    #[inline]
    pub fn is_closing(self) -> bool {
        matches!(
            self,
            FlowState::Closing | FlowState::TimeWait | FlowState::Closed
        )
    }

    /// Both directions have been seen to talk (TCP: handshake answered or later).
    #[inline]
    pub fn is_replied(self) -> bool {
        !matches!(self, FlowState::SynSent | FlowState::Unreplied)
    }

    /// A TCP state.
    #[inline]
    pub fn is_tcp(self) -> bool {
        !matches!(self, FlowState::Unreplied | FlowState::Replied)
    }
}

/// What one call of [`FlowEntry::update`] did. Small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    /// The state before the packet (for the first packet of an entry: the
    /// placeholder state [`FlowEntry::new`] set).
    pub prev: FlowState,
    /// The state after the packet.
    pub state: FlowState,
    /// This was the first packet counted on the entry.
    pub first: bool,
    /// A SYN (without ACK) arrived on a [`FlowState::is_closed`] entry: it starts a
    /// new connection on the same 5-tuple. The entry was left **untouched** and the
    /// packet was **not** counted, so the caller can report the old flow's end from
    /// it, classify again and overwrite it: `*entry = FlowEntry::new(..)` (with the
    /// SYN's sender as `orig`), then `update` again with the same packet.
    pub restart: bool,
}

impl Update {
    /// The state changed.
    #[inline]
    pub fn changed(&self) -> bool {
        self.prev != self.state
    }

    /// The entry just became closed (RST, or the last FIN acknowledged): the caller
    /// may report the flow's end now rather than when the entry times out.
    #[inline]
    pub fn closed(&self) -> bool {
        !self.restart && self.state.is_closed() && (self.first || !self.prev.is_closed())
    }

    /// The first packet in the reply direction was just seen (UDP/ICMP `Replied`,
    /// TCP SYN-ACK).
    #[inline]
    pub fn replied(&self) -> bool {
        !self.first && !self.prev.is_replied() && self.state.is_replied()
    }
}

// Private TCP bookkeeping bits in `FlowEntry::tcp`.
pub(super) const FIN_ORIG: u8 = 0x01;
pub(super) const FIN_REPLY: u8 = 0x02;
/// The second FIN came from the reply direction (so the orig direction ACKs it).
pub(super) const LAST_FIN_REPLY: u8 = 0x04;

#[inline]
fn fin_bit(dir: Dir) -> u8 {
    match dir {
        Dir::Orig => FIN_ORIG,
        Dir::Reply => FIN_REPLY,
    }
}

impl FlowEntry {
    /// Whether a pure SYN (no ACK, no RST) sent in `dir` belongs to this
    /// entry's connection: a retransmitted SYN of its handshake, or a
    /// simultaneous open. Any other SYN opens a new connection and must be
    /// decided as one: it never rides an entry it did not open (an entry
    /// picked up mid-stream, an established or a closed connection).
    #[inline]
    pub fn syn_continues(&self, dir: Dir) -> bool {
        match self.state {
            FlowState::SynSent => true,
            FlowState::SynReceived => dir == Dir::Orig,
            _ => false,
        }
    }

    /// Advance the state and the counters of `dir` for one packet of `bytes` bytes
    /// seen at `now` (nanoseconds, the caller's clock).
    ///
    /// `tcp_flags` is the TCP header's flags when the packet has one (it is ignored on
    /// a non-TCP entry; a TCP packet without flags, e.g. a non-first fragment, is only
    /// counted).
    ///
    /// The first packet (an entry fresh from [`FlowEntry::new`]) sets the initial state:
    /// - TCP pure SYN: `SynSent`;
    /// - TCP RST: `Closed`;
    /// - any other TCP packet (ACK, data, SYN-ACK, FIN): `Established`, or `FinWait` if
    ///   it carries a FIN. This is conntrack's *loose pickup*: a connection that was
    ///   open before the appliance (re)started keeps flowing once the policy allows it;
    /// - non-TCP: `Unreplied`.
    ///
    /// See [`Update::restart`] for a SYN on a closed entry: nothing is changed then.
    #[inline]
    pub fn update(
        &mut self,
        dir: Dir,
        tcp_flags: Option<TcpFlags>,
        bytes: u32,
        now: u64,
    ) -> Update {
        let prev = self.state;
        let first = self.packets[0] == 0 && self.packets[1] == 0;
        let tcp = self.key.proto == ip_proto::TCP;
        let mut state = prev;
        match (tcp, tcp_flags) {
            (true, Some(f)) if first => {
                self.tcp &= super::OFFLOADED | super::INTERIM | super::ORIG_ON_B;
                state = if f.rst() {
                    FlowState::Closed
                } else if f.syn() && !f.ack() {
                    FlowState::SynSent
                } else if f.fin() {
                    self.tcp |= fin_bit(dir);
                    FlowState::FinWait
                } else {
                    FlowState::Established
                };
            }
            (true, Some(f)) => {
                if f.syn() && !f.ack() && !f.rst() && prev.is_closed() {
                    return Update {
                        prev,
                        state: prev,
                        first,
                        restart: true,
                    };
                }
                state = self.tcp_step(prev, dir, f);
            }
            (true, None) => {
                if first {
                    // Picked up without a TCP header: assume an open connection.
                    state = FlowState::Established;
                }
            }
            (false, _) => {
                state = if first {
                    FlowState::Unreplied
                } else if dir == Dir::Reply {
                    FlowState::Replied
                } else {
                    prev
                };
            }
        }
        self.state = state;
        let i = dir as usize;
        self.packets[i] = self.packets[i].wrapping_add(1);
        self.bytes[i] = self.bytes[i].wrapping_add(u64::from(bytes));
        if let (true, Some(f)) = (tcp, tcp_flags) {
            self.flags_seen |= f.0;
        }
        // The first packet is the flow's start (reported at its end, or
        // with the packets that follow it in an interim report).
        if !first {
            self.mark_unreported();
        }
        if now > self.last_seen {
            self.last_seen = now;
        }
        Update {
            prev,
            state,
            first,
            restart: false,
        }
    }

    /// One TCP packet on an entry that has seen packets before (not a restart).
    #[inline]
    fn tcp_step(&mut self, prev: FlowState, dir: Dir, f: TcpFlags) -> FlowState {
        use FlowState::*;
        if f.rst() {
            return Closed;
        }
        match prev {
            SynSent => {
                // SYN-ACK from the responder, or a bare SYN (simultaneous open).
                if dir == Dir::Reply && f.syn() {
                    SynReceived
                } else {
                    SynSent
                }
            }
            SynReceived => {
                if dir == Dir::Orig && f.fin() {
                    self.tcp |= FIN_ORIG;
                    FinWait
                } else if dir == Dir::Orig && f.ack() && !f.syn() {
                    Established
                } else {
                    SynReceived
                }
            }
            Established | FinWait => {
                if !f.fin() {
                    return prev;
                }
                self.tcp |= fin_bit(dir);
                if self.tcp & (FIN_ORIG | FIN_REPLY) == FIN_ORIG | FIN_REPLY {
                    if dir == Dir::Reply {
                        self.tcp |= LAST_FIN_REPLY;
                    } else {
                        self.tcp &= !LAST_FIN_REPLY;
                    }
                    Closing
                } else {
                    FinWait
                }
            }
            Closing => {
                // The ACK of the second FIN comes from the side that did not send it.
                let last_fin = if self.tcp & LAST_FIN_REPLY != 0 {
                    Dir::Reply
                } else {
                    Dir::Orig
                };
                if f.ack() && dir != last_fin {
                    TimeWait
                } else {
                    Closing
                }
            }
            TimeWait | Closed => prev,
            // A TCP entry never holds these; treat it as picked up mid-stream.
            Unreplied | Replied => Established,
        }
    }
}

/// Idle timeouts per protocol and state, near Linux conntrack's defaults.
///
/// An entry whose `last_seen` is more than its state's timeout before `now` is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: Duration,
    pub tcp_syn_recv: Duration,
    pub tcp_established: Duration,
    /// One side sent a FIN (Linux's FIN_WAIT 120 s and CLOSE_WAIT 60 s folded in one).
    pub tcp_fin_wait: Duration,
    /// Both sides sent a FIN, the last not yet acknowledged (Linux's LAST_ACK).
    pub tcp_last_ack: Duration,
    pub tcp_time_wait: Duration,
    /// After a RST.
    pub tcp_close: Duration,
    pub udp_unreplied: Duration,
    /// UDP seen in both directions (Linux's "stream" timeout).
    pub udp_replied: Duration,
    /// ICMP and ICMPv6, either state.
    pub icmp: Duration,
    /// Any other protocol, either state.
    pub other: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        Timeouts {
            tcp_syn_sent: s(120),
            tcp_syn_recv: s(60),
            tcp_established: s(432_000),
            tcp_fin_wait: s(120),
            tcp_last_ack: s(30),
            tcp_time_wait: s(120),
            tcp_close: s(10),
            udp_unreplied: s(30),
            udp_replied: s(120),
            icmp: s(30),
            other: s(600),
        }
    }
}

const CLASSES: usize = 11;

/// The index of the timeout that applies to `proto` in `state` (order of [`Timeouts::classes`]).
#[inline]
fn class(proto: u8, state: FlowState) -> usize {
    use FlowState::*;
    match proto {
        ip_proto::TCP => match state {
            SynSent | Unreplied => 0,
            SynReceived => 1,
            Established | Replied => 2,
            FinWait => 3,
            Closing => 4,
            TimeWait => 5,
            Closed => 6,
        },
        ip_proto::UDP => {
            if state.is_replied() {
                8
            } else {
                7
            }
        }
        ip_proto::ICMP | ip_proto::ICMPV6 => 9,
        _ => 10,
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Timeouts {
    fn classes(&self) -> [Duration; CLASSES] {
        [
            self.tcp_syn_sent,
            self.tcp_syn_recv,
            self.tcp_established,
            self.tcp_fin_wait,
            self.tcp_last_ack,
            self.tcp_time_wait,
            self.tcp_close,
            self.udp_unreplied,
            self.udp_replied,
            self.icmp,
            self.other,
        ]
    }

    /// The idle timeout, in nanoseconds, of a flow of IP protocol `proto` in `state`.
    pub fn timeout(&self, proto: u8, state: FlowState) -> u64 {
        nanos(self.classes()[class(proto, state)])
    }
}

/// [`Timeouts`] precomputed as nanoseconds, for the packet path.
#[derive(Debug, Clone, Copy)]
pub(super) struct TimeoutsNs([u64; CLASSES]);

impl TimeoutsNs {
    pub(super) fn new(t: &Timeouts) -> Self {
        TimeoutsNs(t.classes().map(nanos))
    }

    #[inline]
    pub(super) fn get(&self, proto: u8, state: FlowState) -> u64 {
        self.0[class(proto, state)]
    }

    /// `e` has been idle longer than its state's timeout at `now`.
    #[inline]
    pub(super) fn expired(&self, e: &FlowEntry, now: u64) -> bool {
        now.saturating_sub(e.last_seen) > self.get(e.key.proto, e.state)
    }
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
