//! The worker: receive a batch on each port, parse, look up the flow, decide,
//! forward to the peer port or drop.
//!
//! One worker owns one flow table (per core). It loads the policy snapshot once
//! per batch; a flow whose cached verdict comes from an older generation is
//! re-decided on its next packet, so a new policy or a quarantine reaches
//! established flows. Events go out through a lossy [`EventSink`].

mod frag;
mod offload;
mod stats;
mod verdict;

pub use frag::{FragTable, FragmentPolicy};
pub use stats::{
    DropReason, IoCounters, PortCounters, SocketDrops, StatsBoard, StatsReport, WorkerStats,
};

use verdict::{decide, opposite, reclassify};

use crate::event::{
    ArpSeen, DnsMessage, EndReason, Event, EventSink, FlowRecord, LeaseSeen, SpoofKind, SpoofSeen,
};
use crate::flow::{FlowEntry, FlowKey, FlowTable, Lookup, Side, Timeouts};
use crate::io::{Desc, IoError, PacketIo, Port};
use crate::offload::Offloader;
use crate::policy::{Action, FlowQuery, PolicySnapshot, SnapshotCell, Verdict};
use crate::wire::{
    self, dhcp, ip_proto, Fragment, IpInfo, L3Info, L4Info, PacketInfo, ParseError, TcpFlags,
};
use std::net::IpAddr;
use std::sync::Arc;

/// What to do with frames that are neither IP nor ARP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonIpPolicy {
    #[default]
    Forward,
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
    /// The most bytes of a DNS message copied into an event.
    pub dns_copy_bytes: usize,
    /// Flow-table slots checked for idle flows per poll.
    pub expire_budget: usize,
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
            dns_copy_bytes: 1500,
            expire_budget: 64,
            offload_sweep_interval: 100_000_000,
            offload_sweep_budget: 256,
        }
    }
}

/// ICMPv6 messages that IPv6 itself needs (MLD 130-132 and 143, router and
/// neighbour discovery 133-137): passed like ARP, without a flow.
fn is_icmpv6_control(kind: u8) -> bool {
    matches!(kind, 130..=137 | 143)
}

/// The fate of a frame with a quarantined end that IP policy does not decide:
/// ARP, IPv6 neighbour discovery and router messages, MLD, non-IP. They pass
/// only between the quarantined host and a management host (by MAC), for the
/// management channel's address resolution. `None` for the rest of IP, which
/// the classifier decides (quarantine, management exceptions).
fn quarantined_below_ip(
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
                // Only neighbour solicitations and advertisements; their
                // target address follows the 8-byte ICMPv6 header.
                if !matches!(kind, 135 | 136) {
                    return Some(Err(DropReason::Quarantine));
                }
                let at = usize::from(ip.l4_offset) + 8;
                let target = frame
                    .get(at..at + 16)
                    .and_then(|b| <[u8; 16]>::try_from(b).ok());
                match target {
                    Some(bytes) => Some(IpAddr::V6(bytes.into())),
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

/// A received frame between the stages of a batch: parsed, and where its own
/// headers give its flow key, the key, the side that sent it and the key's hash.
struct Pending {
    parsed: Result<PacketInfo, ParseError>,
    flow: Option<(FlowKey, Side, u64)>,
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

/// The per-core packet loop.
pub struct Worker {
    cfg: WorkerConfig,
    policy: Arc<SnapshotCell>,
    flows: FlowTable,
    frags: FragTable,
    events: EventSink,
    stats: WorkerStats,
    rx_buf: Vec<Desc>,
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
        Worker {
            flows: FlowTable::new(cfg.flow_capacity, cfg.timeouts),
            frags: FragTable::new(1024, 30_000_000_000),
            rx_buf: vec![Desc::default(); batch],
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
        for port in Port::BOTH {
            let n = io.rx(port, &mut self.rx_buf)?;
            handled += n;
            pending.clear();
            for &d in &self.rx_buf[..n] {
                let parsed = wire::parse(io.frame(d));
                let flow = parsed.as_ref().ok().and_then(|info| {
                    let L3Info::Ip(ip) = &info.l3 else {
                        return None;
                    };
                    let (sport, dport, _) = direct_ports(&ip.l4)?;
                    let (key, side) =
                        FlowKey::new(ip.src, ip.dst, ip.proto, sport, dport, info.vlan);
                    let hash = self.flows.hash(&key);
                    self.flows.prefetch_slot(hash);
                    Some((key, side, hash))
                });
                pending.push(Pending { parsed, flow });
            }
            for p in &pending {
                if let Some((_, _, hash)) = p.flow {
                    self.flows.prefetch_entry(hash);
                }
            }
            for (i, p) in pending.iter().enumerate() {
                let d = self.rx_buf[i];
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
                if snap.is_quarantined(info.src_mac) || snap.is_quarantined(info.dst_mac) {
                    return Err(DropReason::Quarantine);
                }
                match self.cfg.non_ip {
                    NonIpPolicy::Forward => {
                        self.stats.passed_stateless += 1;
                        Ok(())
                    }
                    NonIpPolicy::Drop => Err(DropReason::NonIp),
                }
            }
            L3Info::Ip(ref ip) => self.handle_ip(frame, info, ip, p.flow, snap, now),
        }
    }

    fn handle_ip(
        &mut self,
        frame: &[u8],
        info: &PacketInfo,
        ip: &IpInfo,
        flow: Option<(FlowKey, Side, u64)>,
        snap: &PolicySnapshot,
        now: u64,
    ) -> Decision {
        let (sport, dport, flags) = match ip.l4 {
            L4Info::IcmpOther { kind, .. }
                if ip.proto == ip_proto::ICMPV6 && is_icmpv6_control(kind) =>
            {
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

        let (key, side, hash) = match flow {
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
            sport,
            dport,
            flags,
            bytes,
        };
        let verdict = self.track(&key, side, hash, &packet, snap, now);
        decide(verdict)?;

        if sport == 53 && matches!(ip.l4, L4Info::Tcp { .. } | L4Info::Udp { .. }) {
            self.dns_event(frame, info, ip, now);
        }
        if sport == dhcp::SERVER_PORT && dport == dhcp::CLIENT_PORT {
            self.dhcp_event(frame, info, ip, now);
        }
        Ok(())
    }

    /// Find or create the flow of a packet, update it, and return its verdict.
    fn track(
        &mut self,
        key: &FlowKey,
        side: Side,
        hash: u64,
        p: &PacketRef<'_>,
        snap: &PolicySnapshot,
        now: u64,
    ) -> Verdict {
        match self.flows.lookup_hashed(key, hash, now) {
            Lookup::Hit(entry) => {
                if !entry.macs_match(side, p.info.src_mac, p.info.dst_mac) {
                    // The flow's addresses from other MACs: never carried by
                    // the flow, decided on its own (a quarantined MAC is
                    // refused there) and reported.
                    let owner = entry.mac_of(side);
                    self.stats.spoofed += 1;
                    self.events.emit(Event::Spoof(SpoofSeen {
                        time: now,
                        kind: SpoofKind::FlowMac,
                        mac: p.info.src_mac,
                        ip: p.ip.src,
                        owner,
                        vlan: p.info.vlan,
                    }));
                    return snap.classify(&p.query());
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
                        return verdict;
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
                return entry.verdict;
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

    fn new_flow(
        &mut self,
        key: &FlowKey,
        side: Side,
        hash: u64,
        p: &PacketRef<'_>,
        snap: &PolicySnapshot,
        now: u64,
    ) -> Verdict {
        let (info, flags) = (p.info, p.flags);
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
        verdict
    }

    /// The fate of an ICMP error about a tracked flow, sent by `sender` (the
    /// side of the flow that received the quoted packet); `None` if the flow
    /// is not tracked. The error must travel between the MACs the flow is
    /// bound to (a router on the path sends from the flow's next-hop MAC):
    /// from anywhere else it is a spoof, dropped, whatever the flow's verdict.
    fn related_verdict(
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
                    self.stats.spoofed += 1;
                    self.events.emit(Event::Spoof(SpoofSeen {
                        time: now,
                        kind: SpoofKind::IcmpError,
                        mac: info.src_mac,
                        ip: ip.src,
                        owner,
                        vlan: info.vlan,
                    }));
                    return Some(Err(DropReason::Spoofed));
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

    /// A DHCP ACK names a client MAC and its leased address: learning, like ARP.
    fn dhcp_event(&mut self, frame: &[u8], info: &PacketInfo, ip: &IpInfo, now: u64) {
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

    fn dns_event(&mut self, frame: &[u8], info: &PacketInfo, ip: &IpInfo, now: u64) {
        let start = usize::from(ip.payload_offset);
        let end = usize::from(ip.ip_end).min(frame.len());
        let Some(payload) = frame.get(start..end) else {
            return;
        };
        if payload.is_empty() || self.events.would_drop() {
            return;
        }
        let copied = payload.len().min(self.cfg.dns_copy_bytes);
        self.events.emit(Event::Dns(DnsMessage {
            time: now,
            client_mac: info.dst_mac,
            client_ip: ip.dst,
            server_mac: info.src_mac,
            server_ip: ip.src,
            vlan: info.vlan,
            proto: ip.proto,
            payload: payload[..copied].into(),
            // A first fragment holds only the start of the message.
            truncated: copied < payload.len() || matches!(ip.frag, Fragment::First { .. }),
        }));
    }
}

/// What [`Worker::track`] needs of the packet at hand.
struct PacketRef<'a> {
    info: &'a PacketInfo,
    ip: &'a IpInfo,
    /// The source port (the responder's, if this packet is a reply).
    sport: u16,
    /// The destination port (the responder's, if this packet starts the flow).
    dport: u16,
    flags: Option<TcpFlags>,
    bytes: u32,
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
