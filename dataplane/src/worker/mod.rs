//! The worker: receive a batch on each port, parse, look up the flow, decide,
//! forward to the peer port or drop.
//!
//! One worker owns one flow table (per core). It loads the policy snapshot once
//! per batch; a flow whose cached verdict comes from an older generation is
//! re-decided on its next packet, so a new policy or a quarantine reaches
//! established flows. Events go out through a lossy [`EventSink`].

mod dns;
mod frag;
mod guard;
mod offload;
mod stats;
mod track;
mod verdict;

pub use frag::{FragTable, FragmentPolicy};
pub use offload::REPEATS_TO_OFFLOAD;
pub use stats::{
    DropReason, IoCounters, PortCounters, SocketDrops, StatsBoard, StatsReport, WorkerStats,
};

use guard::{is_icmpv6_control, nd_target, quarantined_below_ip};
use track::PacketRef;
use verdict::opposite;

use crate::event::{ArpSeen, EndReason, Event, EventSink, SpoofKind};
use crate::flow::{FlowKey, FlowTable, Side, Timeouts};
use crate::io::{steer, Desc, Handed, IoError, PacketIo, Port};
use crate::offload::Offloader;
use crate::policy::{Mode, PolicySnapshot, SnapshotCell};
use crate::wire::{
    self, dhcp, ip_proto, Fragment, IpInfo, L3Info, L4Info, PacketInfo, ParseError, TcpFlags,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// What to do with frames that are neither IP nor ARP (MPLS, PPPoE, LLC/SNAP,
/// any other ethertype), besides the ethertypes allowed by
/// [`WorkerConfig::non_ip_allow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonIpPolicy {
    /// As the two ends' groups' modes say (by MAC; the strictest wins):
    /// dropped in enforce, passed in audit and learn. Such frames can carry
    /// IP that the classifier never sees (IPv4 in LLC/SNAP or PPPoE).
    #[default]
    Policy,
    /// Pass every one.
    Forward,
    /// Drop every one.
    Drop,
}

/// A worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Frames taken from each port per poll.
    pub batch_size: usize,
    /// Live flows the table holds; allocated at start.
    pub flow_capacity: usize,
    pub timeouts: Timeouts,
    pub fragments: FragmentPolicy,
    pub non_ip: NonIpPolicy,
    /// Ethertypes passed whatever [`WorkerConfig::non_ip`] says (e.g. LLDP
    /// 0x88cc), except to or from a quarantined MAC.
    pub non_ip_allow: Vec<u16>,
    /// The most bytes of a DNS message copied into an event.
    pub dns_copy_bytes: usize,
    /// Flow-table slots checked for idle flows per poll.
    pub expire_budget: usize,
    /// A live flow is reported ([`Event::FlowActive`]) every this much of its
    /// life, if it carried packets since the last report; zero: never.
    pub interim_every: Duration,
    /// A live flow is also reported once its packets stopped this long, if it
    /// carried packets since the last report; zero: never.
    pub idle_report: Duration,
    /// With a kernel tier: how often (ns of the worker's clock) offloaded flows'
    /// kernel counters are read into the flow table, and how many per read.
    pub offload_sweep_interval: u64,
    pub offload_sweep_budget: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            batch_size: 64,
            flow_capacity: 1 << 16,
            timeouts: Timeouts::default(),
            fragments: FragmentPolicy::default(),
            non_ip: NonIpPolicy::default(),
            non_ip_allow: Vec::new(),
            dns_copy_bytes: 1500,
            expire_budget: 64,
            interim_every: Duration::from_secs(60),
            idle_report: Duration::ZERO,
            offload_sweep_interval: 100_000_000,
            offload_sweep_budget: 256,
        }
    }
}

/// A received frame between the stages of a batch: parsed, and where its own
/// headers give its flow key, the key, the side that sent it and the key's hash.
struct Pending {
    desc: Desc,
    parsed: Result<PacketInfo, ParseError>,
    flow: Option<(FlowKey, Side, u64)>,
    /// The segment the frame came in on.
    port: Port,
}

/// The ports (TCP/UDP ports, or the ICMP echo id in both) and TCP flags of a packet
/// whose own transport header names its flow; `None` for a later fragment or an
/// ICMP error, whose flow is found elsewhere.
#[inline]
fn direct_ports(l4: &L4Info) -> Option<(u16, u16, Option<TcpFlags>)> {
    match *l4 {
        L4Info::Tcp {
            src_port,
            dst_port,
            flags,
        } => Some((src_port, dst_port, Some(flags))),
        L4Info::Udp { src_port, dst_port } => Some((src_port, dst_port, None)),
        L4Info::IcmpEcho { id, .. } => Some((id, id, None)),
        L4Info::IcmpOther { .. } | L4Info::Other => Some((0, 0, None)),
        L4Info::IcmpError { .. } | L4Info::Fragment => None,
    }
}

/// The flow key of a parsed frame whose own headers name its flow, and the
/// side of the key that sent it: what the worker looks the frame up by first.
/// `None` for non-IP frames, later fragments and ICMP errors (found through
/// their first fragment or the flow they quote). The XDP program's kernel tier
/// computes the same key for the frames it carries (`dataplane/bpf/flow_key.h`;
/// `tests/xdp_flow_key.rs` runs the two side by side).
#[inline]
pub fn flow_key(info: &PacketInfo) -> Option<(FlowKey, Side)> {
    let L3Info::Ip(ip) = &info.l3 else {
        return None;
    };
    let (sport, dport, _) = direct_ports(&ip.l4)?;
    Some(FlowKey::new(
        ip.src, ip.dst, ip.proto, sport, dport, info.vlan,
    ))
}

/// The per-core packet loop.
pub struct Worker {
    cfg: WorkerConfig,
    policy: Arc<SnapshotCell>,
    flows: FlowTable,
    frags: FragTable,
    events: EventSink,
    stats: WorkerStats,
    rx_buf: Vec<Desc>,
    /// Frames other workers parsed and handed to this one.
    handed: Vec<Handed>,
    pending: Vec<Pending>,
    tx_buf: Vec<Desc>,
    drop_buf: Vec<Desc>,
    /// The kernel tier, when the I/O backend has one ([`Worker::set_offload`]).
    offload: Option<Offloader>,
    next_sweep: u64,
    /// The `now` of the latest poll.
    last_now: u64,
}

/// Where a frame goes.
type Decision = Result<(), DropReason>;

impl Worker {
    pub fn new(cfg: WorkerConfig, policy: Arc<SnapshotCell>, events: EventSink) -> Self {
        let batch = cfg.batch_size.max(1);
        let mut flows = FlowTable::new(cfg.flow_capacity, cfg.timeouts);
        flows.set_interim(cfg.interim_every);
        flows.set_idle_report(cfg.idle_report);
        Worker {
            flows,
            frags: FragTable::new(1024, 30_000_000_000),
            rx_buf: vec![Desc::default(); batch],
            handed: Vec::with_capacity(batch),
            pending: Vec::with_capacity(batch),
            tx_buf: Vec::with_capacity(batch),
            drop_buf: Vec::with_capacity(batch),
            cfg,
            policy,
            events,
            stats: WorkerStats::default(),
            offload: None,
            next_sweep: 0,
            last_now: 0,
        }
    }

    pub fn stats(&self) -> WorkerStats {
        let mut s = self.stats.clone();
        s.events_lost = self.events.lost();
        if let Some(off) = &self.offload {
            s.offload = off.stats();
        }
        s
    }

    /// The worker's counters and its flow table's, for a [`StatsBoard`].
    pub fn report(&self) -> StatsReport {
        StatsReport {
            worker: self.stats(),
            flows: self.flows.stats(),
            live_flows: self.flows.len(),
            flow_capacity: self.flows.capacity(),
            io: IoCounters::default(),
        }
    }

    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// Take one batch from each port and handle it; `now` is in nanoseconds.
    /// Returns the number of frames handled.
    ///
    /// A batch goes through three passes: parse every frame and start loading its
    /// flow's hash slot; start loading the entries those slots point at; then decide
    /// each frame. The flow table's cache misses of a batch overlap instead of
    /// adding up (see `bench/RESULTS.md`, `fast_path`).
    ///
    /// With a kernel tier, call it even while no frames arrive (e.g. after each
    /// `poll_wait` timeout): it is where a new policy generation reaches the
    /// kernel's offloaded flows, and where their counters are read.
    pub fn poll(&mut self, io: &mut impl PacketIo, now: u64) -> Result<usize, IoError> {
        let snap = self.policy.load_full();
        self.last_now = now;
        if let Some(off) = self.offload.as_mut() {
            if off.sync_generation(snap.generation()).is_err() {
                // The kernel's offloaded flows cannot be sent back to userspace
                // by a generation change: take them out one by one, and stop
                // offloading.
                off.clear();
                for e in self.flows.iter_mut() {
                    e.set_offloaded(false);
                }
                self.offload = None;
            }
        }
        let mut handled = 0;
        let mut pending = std::mem::take(&mut self.pending);
        let lane = io.lane();
        for port in Port::BOTH {
            pending.clear();
            // Frames another worker received, parsed and found to be ours.
            let mut handed = std::mem::take(&mut self.handed);
            io.take_handed(port, &mut handed, self.rx_buf.len());
            handled += handed.len();
            for h in handed.drain(..) {
                let flow = self.flow_of(&h.info);
                pending.push(Pending {
                    desc: h.desc,
                    parsed: Ok(h.info),
                    flow,
                    port,
                });
            }
            self.handed = handed;
            let n = io.rx(port, &mut self.rx_buf)?;
            handled += n;
            for &d in &self.rx_buf[..n] {
                let parsed = wire::parse(io.frame(d));
                if let (Ok(info), true) = (&parsed, lane.count > 1) {
                    let owner = steer::owner(info, lane.count).unwrap_or(lane.index);
                    if owner != lane.index {
                        let frame = Handed {
                            desc: d,
                            info: *info,
                        };
                        if !io.hand_off(port, frame, owner) {
                            // The owner is a ring behind (the backend counts it).
                            self.drop_buf.push(d);
                        }
                        continue;
                    }
                }
                let flow = parsed.as_ref().ok().and_then(|info| self.flow_of(info));
                pending.push(Pending {
                    desc: d,
                    parsed,
                    flow,
                    port,
                });
            }
            for p in &pending {
                if let Some((_, _, hash)) = p.flow {
                    self.flows.prefetch_entry(hash);
                }
            }
            for p in &pending {
                let d = p.desc;
                let frame = io.frame(d);
                let counters = &mut self.stats.ports[port.index()];
                counters.rx_packets += 1;
                counters.rx_bytes += frame.len() as u64;
                match self.handle(frame, p, &snap, now) {
                    Ok(()) => self.tx_buf.push(d),
                    Err(reason) => {
                        self.stats.count_drop(reason, 1);
                        self.drop_buf.push(d);
                    }
                }
            }
            self.transmit(io, port.peer())?;
        }
        self.pending = pending;
        let mut expiry = offload::Expiry {
            off: self.offload.as_mut(),
            events: &mut self.events,
            now,
        };
        self.flows
            .expire_with(now, self.cfg.expire_budget, &mut expiry);
        if let Some(off) = self.offload.as_mut() {
            if now >= self.next_sweep {
                self.next_sweep = now.saturating_add(self.cfg.offload_sweep_interval);
                offload::sweep(off, &mut self.flows, self.cfg.offload_sweep_budget, now);
            }
        }
        Ok(handled)
    }

    /// The flow key a frame's own headers give, the side that sent it and the
    /// key's hash, with the hash's table slot prefetched.
    #[inline]
    fn flow_of(&self, info: &PacketInfo) -> Option<(FlowKey, Side, u64)> {
        let (key, side) = flow_key(info)?;
        let hash = self.flows.hash(&key);
        self.flows.prefetch_slot(hash);
        Some((key, side, hash))
    }

    fn transmit(&mut self, io: &mut impl PacketIo, port: Port) -> Result<(), IoError> {
        let sent = io.tx(port, &self.tx_buf)?;
        let counters = &mut self.stats.ports[port.index()];
        counters.tx_packets += sent as u64;
        for d in &self.tx_buf[..sent] {
            counters.tx_bytes += u64::from(d.len);
        }
        if sent < self.tx_buf.len() {
            let unsent = &self.tx_buf[sent..];
            self.stats
                .count_drop(DropReason::TxFull, unsent.len() as u64);
            io.free(unsent);
        }
        io.free(&self.drop_buf);
        self.tx_buf.clear();
        self.drop_buf.clear();
        Ok(())
    }

    /// End every flow (end of a replay, shutdown), reporting each.
    pub fn flush(&mut self) {
        let now = self.last_now;
        let (events, mut off) = (&mut self.events, self.offload.as_mut());
        self.flows
            .drain(|e| offload::end_flow(off.as_deref_mut(), events, *e, EndReason::Flushed, now));
    }

    fn handle(&mut self, frame: &[u8], p: &Pending, snap: &PolicySnapshot, now: u64) -> Decision {
        let Ok(info) = &p.parsed else {
            return Err(DropReason::Malformed);
        };
        if snap.quarantines(info.src_mac, info.dst_mac) {
            if let Some(decision) = quarantined_below_ip(frame, info, snap) {
                return decision;
            }
        }
        match info.l3 {
            L3Info::Arp(arp) => {
                let sender = IpAddr::V4(arp.sender_ip);
                if let Some(owner) = snap.claims_other(arp.sender_mac, sender) {
                    return Err(self.spoof(
                        SpoofKind::Arp,
                        arp.sender_mac,
                        sender,
                        owner,
                        info,
                        now,
                    ));
                }
                self.stats.passed_stateless += 1;
                self.events.emit(Event::Arp(ArpSeen {
                    time: now,
                    mac: arp.sender_mac,
                    ip: arp.sender_ip,
                    vlan: info.vlan,
                }));
                Ok(())
            }
            L3Info::Other => {
                // (A quarantined end was refused above.)
                let pass = self.cfg.non_ip_allow.contains(&info.ethertype)
                    || match self.cfg.non_ip {
                        NonIpPolicy::Forward => true,
                        NonIpPolicy::Drop => false,
                        NonIpPolicy::Policy => {
                            let mode = snap.mac_mode(info.src_mac).max(snap.mac_mode(info.dst_mac));
                            mode != Mode::Enforce
                        }
                    };
                if !pass {
                    return Err(DropReason::NonIp);
                }
                self.stats.passed_stateless += 1;
                Ok(())
            }
            L3Info::Ip(ref ip) if ip.ttl == 0 => Err(DropReason::ZeroTtl),
            L3Info::Ip(ref ip) => self.handle_ip(frame, info, ip, p, snap, now),
        }
    }

    fn handle_ip(
        &mut self,
        frame: &[u8],
        info: &PacketInfo,
        ip: &IpInfo,
        p: &Pending,
        snap: &PolicySnapshot,
        now: u64,
    ) -> Decision {
        let (sport, dport, flags) = match ip.l4 {
            L4Info::IcmpOther { kind, .. }
                if ip.proto == ip_proto::ICMPV6 && is_icmpv6_control(kind) =>
            {
                // Neighbour discovery may not claim another MAC's address:
                // neither as its source nor as an advertised target.
                let target = if kind == 136 {
                    nd_target(frame, ip)
                } else {
                    None
                };
                for claimed in [Some(ip.src), target].into_iter().flatten() {
                    if let Some(owner) = snap.claims_other(info.src_mac, claimed) {
                        let kind = SpoofKind::Neighbour;
                        return Err(self.spoof(kind, info.src_mac, claimed, owner, info, now));
                    }
                }
                self.stats.passed_stateless += 1;
                return Ok(());
            }
            L4Info::IcmpError { inner, .. } => {
                // An error about a flow we track follows that flow's verdict, if
                // it comes from that flow's hosts; one about nothing we know is
                // classified as plain ICMP below.
                let (key, quoted_sender) = FlowKey::new(
                    inner.src,
                    inner.dst,
                    inner.proto,
                    inner.src_port,
                    inner.dst_port,
                    info.vlan,
                );
                if let Some(verdict) =
                    self.related_verdict(&key, opposite(quoted_sender), info, ip, snap, now)
                {
                    return verdict;
                }
                (0, 0, None)
            }
            L4Info::Fragment => {
                let Fragment::Later { id } = ip.frag else {
                    return Err(DropReason::Malformed);
                };
                match self.frags.lookup(ip.src, ip.dst, ip.proto, id, now) {
                    Some((s, d)) => (s, d, None),
                    None => {
                        return match self.cfg.fragments {
                            FragmentPolicy::Drop => Err(DropReason::Fragment),
                            FragmentPolicy::Forward => Ok(()),
                        }
                    }
                }
            }
            _ => direct_ports(&ip.l4).unwrap_or((0, 0, None)),
        };
        if let Fragment::First { id } = ip.frag {
            self.frags
                .insert(ip.src, ip.dst, ip.proto, id, (sport, dport), now);
        }

        let (key, side, hash) = match p.flow {
            Some(f) => f,
            None => {
                let (key, side) = FlowKey::new(ip.src, ip.dst, ip.proto, sport, dport, info.vlan);
                (key, side, self.flows.hash(&key))
            }
        };
        let bytes = frame.len() as u32;
        let packet = PacketRef {
            info,
            ip,
            port: p.port,
            sport,
            dport,
            flags,
            bytes,
        };
        self.track(&key, side, hash, &packet, snap, now)?;

        if sport == 53 && matches!(ip.l4, L4Info::Tcp { .. } | L4Info::Udp { .. }) {
            // A response travels against its flow: the client asked first.
            let unsolicited = self
                .flows
                .get(&key)
                .is_none_or(|e| e.dir(side) == crate::flow::Dir::Orig);
            self.dns_event(frame, info, ip, now, unsolicited);
            if !unsolicited && dns::holds_for_intel(frame, ip, snap) {
                self.stats.dns_held += 1;
                return Err(DropReason::Intel);
            }
        }
        if sport == dhcp::SERVER_PORT && dport == dhcp::CLIENT_PORT {
            self.dhcp_event(frame, info, ip, now);
        }
        Ok(())
    }
}
