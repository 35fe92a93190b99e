//! The worker's offload decisions on the in-memory backend, with
//! `MemOffloadMap` playing the XDP program: a frame whose flow has a fresh entry
//! is taken by the "kernel" before the worker sees it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use crossbeam_channel::Receiver;
use dataplane::event::{self, EndReason, Event, FlowRecord};
use dataplane::flow::FlowKey;
use dataplane::io::mem::MemIo;
use dataplane::io::Port;
use dataplane::offload::{MemOffloadMap, OffloadAction, Offloader};
use dataplane::policy::{named, PolicySnapshot, SnapshotCell};
use dataplane::wire::{self, L3Info, L4Info};
use dataplane::worker::{Worker, WorkerConfig, REPEATS_TO_OFFLOAD};
use etherparse::PacketBuilder;
use std::sync::Arc;

const A: [u8; 6] = [2, 0, 0, 0, 1, 1];
const B: [u8; 6] = [2, 0, 0, 0, 2, 1];
const A_IP: [u8; 4] = [10, 0, 1, 11];
const B_IP: [u8; 4] = [10, 0, 2, 21];
const SEC: u64 = 1_000_000_000;

const POLICY: &str = r#"
default_mode: enforce
rules:
  - { id: 1, src: [any], dst: [any], proto: tcp, ports: [5432], action: allow }
  - { id: 2, src: [any], dst: [any], proto: udp, ports: [53, 9000], action: allow }
"#;

struct Bed {
    io: MemIo,
    worker: Worker,
    kernel: MemOffloadMap,
    cell: Arc<SnapshotCell>,
    events: Receiver<Event>,
    now: u64,
}

impl Bed {
    fn new(cfg: WorkerConfig) -> Bed {
        let snap = compile(POLICY, 1);
        let cell = Arc::new(SnapshotCell::new(snap));
        let (sink, events) = event::channel(1024);
        let mut worker = Worker::new(cfg, cell.clone(), sink);
        let kernel = MemOffloadMap::new(64);
        worker.set_offload(Offloader::new(Box::new(kernel.clone())));
        let mut bed = Bed {
            io: MemIo::new(256, 2048),
            worker,
            kernel,
            cell,
            events,
            now: SEC,
        };
        bed.idle(0);
        bed
    }

    /// Advance both clocks by `ns` and poll with nothing received.
    fn idle(&mut self, ns: u64) {
        self.now += ns;
        self.kernel.set_clock(self.now);
        self.worker.poll(&mut self.io, self.now).unwrap();
    }

    /// A frame arrives on `port`: the "kernel" takes it if a fresh entry says so,
    /// else the worker handles it. Returns who handled it and whether it passed.
    fn send(&mut self, port: Port, frame: &[u8]) -> (Tier, bool) {
        self.now += 1000;
        self.kernel.set_clock(self.now);
        if let Some((key, side, macs)) = kernel_key(frame) {
            match self.kernel.carry(&key, side, macs, frame.len() as u64) {
                Some(OffloadAction::Forward) => return (Tier::Kernel, true),
                Some(OffloadAction::Drop) => return (Tier::Kernel, false),
                None => {}
            }
        }
        self.io.inject(port, frame).unwrap();
        self.worker.poll(&mut self.io, self.now).unwrap();
        let out = self.io.take_tx(port.peer());
        (Tier::User, out.len() == 1)
    }

    fn ends(&self) -> Vec<(FlowRecord, EndReason)> {
        self.events
            .try_iter()
            .filter_map(|e| match e {
                Event::FlowEnd(r, why) => Some((r, why)),
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Tier {
    Kernel,
    User,
}

fn compile(yaml: &str, generation: u64) -> PolicySnapshot {
    named::snapshot(yaml, generation).unwrap()
}

/// The key the XDP program builds, or `None` for what it always hands up
/// (TCP SYN/FIN/RST, DNS, non-IP ...), as in `bulkhead.c`.
type Macs = (dataplane::wire::MacAddr, dataplane::wire::MacAddr);

fn kernel_key(frame: &[u8]) -> Option<(FlowKey, dataplane::flow::Side, Macs)> {
    let info = wire::parse(frame).ok()?;
    let L3Info::Ip(ip) = info.l3 else { return None };
    let (s, d) = match ip.l4 {
        L4Info::Tcp {
            src_port,
            dst_port,
            flags,
        } if !(flags.syn() || flags.fin() || flags.rst()) => (src_port, dst_port),
        L4Info::Udp { src_port, dst_port } => (src_port, dst_port),
        L4Info::IcmpEcho { id, .. } => (id, id),
        _ => return None,
    };
    if s == 53 || d == 53 {
        return None;
    }
    let (key, side) = FlowKey::new(ip.src, ip.dst, ip.proto, s, d, info.vlan);
    Some((key, side, (info.src_mac, info.dst_mac)))
}

fn tcp(fwd: bool, flags: &str, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = if fwd {
        ((A, A_IP, 40000), (B, B_IP, 5432))
    } else {
        ((B, B_IP, 5432), (A, A_IP, 40000))
    };
    let mut b = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(src.1, dst.1, 64)
        .tcp(src.2, dst.2, 1000, 65535);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'F' => b.fin(),
            'P' => b.psh(),
            _ => b,
        };
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn udp(fwd: bool, sport: u16, dport: u16) -> Vec<u8> {
    let (src, dst) = if fwd {
        ((A, A_IP, sport), (B, B_IP, dport))
    } else {
        ((B, B_IP, dport), (A, A_IP, sport))
    };
    let b = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(src.1, dst.1, 64)
        .udp(src.2, dst.2);
    let mut out = Vec::new();
    b.write(&mut out, b"payload").unwrap();
    out
}

#[test]
fn tcp_is_offloaded_after_the_handshake_and_its_end_carries_the_kernel_counts() {
    let mut bed = Bed::new(WorkerConfig::default());
    assert_eq!(bed.send(Port::A, &tcp(true, "S", b"")), (Tier::User, true));
    assert_eq!(
        bed.send(Port::B, &tcp(false, "SA", b"")),
        (Tier::User, true)
    );
    assert!(bed.kernel.is_empty(), "not established yet");
    assert_eq!(bed.send(Port::A, &tcp(true, "A", b"")), (Tier::User, true));
    assert_eq!(bed.kernel.len(), 1, "established: offloaded");
    for _ in 0..10 {
        assert_eq!(
            bed.send(Port::A, &tcp(true, "PA", b"query")),
            (Tier::Kernel, true)
        );
        assert_eq!(
            bed.send(Port::B, &tcp(false, "PA", b"row")),
            (Tier::Kernel, true)
        );
    }
    // A FIN always goes to userspace: the flow leaves the kernel.
    assert_eq!(bed.send(Port::A, &tcp(true, "FA", b"")), (Tier::User, true));
    assert!(bed.kernel.is_empty(), "closing: back in userspace");
    assert_eq!(bed.send(Port::B, &tcp(false, "A", b"")), (Tier::User, true));

    bed.worker.flush();
    let ends = bed.ends();
    assert_eq!(ends.len(), 1);
    let (r, why) = &ends[0];
    assert_eq!(*why, EndReason::Flushed);
    // 2 handshake + 10 kernel + FIN from A; SYN-ACK + 10 kernel + ACK from B.
    assert_eq!(
        r.packets,
        [13, 12],
        "the record includes the kernel's counts"
    );
    let s = bed.worker.stats().offload;
    assert_eq!((s.installed, s.removed, s.live), (1, 1, 0));
    assert_eq!(s.tier.forwarded_packets, 20);
}

#[test]
fn udp_is_offloaded_once_answered_and_dns_never() {
    let mut bed = Bed::new(WorkerConfig::default());
    assert_eq!(
        bed.send(Port::A, &udp(true, 3333, 9000)),
        (Tier::User, true)
    );
    assert!(bed.kernel.is_empty(), "one way only: not final");
    assert_eq!(
        bed.send(Port::B, &udp(false, 3333, 9000)),
        (Tier::User, true)
    );
    assert_eq!(
        bed.send(Port::A, &udp(true, 3333, 9000)),
        (Tier::Kernel, true)
    );

    for _ in 0..3 {
        assert_eq!(bed.send(Port::A, &udp(true, 4444, 53)), (Tier::User, true));
        assert_eq!(bed.send(Port::B, &udp(false, 4444, 53)), (Tier::User, true));
    }
    assert_eq!(bed.kernel.len(), 1, "DNS stays in userspace");
}

#[test]
fn a_one_way_udp_stream_is_offloaded_once_it_repeats_and_a_short_one_never() {
    let mut bed = Bed::new(WorkerConfig::default());
    for _ in 1..REPEATS_TO_OFFLOAD {
        assert_eq!(
            bed.send(Port::A, &udp(true, 5140, 9000)),
            (Tier::User, true)
        );
    }
    assert!(
        bed.kernel.is_empty(),
        "a short flow (a scan's retries, a flood's) costs no map write"
    );
    assert_eq!(
        bed.send(Port::A, &udp(true, 5140, 9000)),
        (Tier::User, true)
    );
    assert_eq!(
        bed.kernel.len(),
        1,
        "repeated the same way: final, offloaded"
    );
    assert_eq!(
        bed.send(Port::A, &udp(true, 5140, 9000)),
        (Tier::Kernel, true)
    );
}

#[test]
fn a_repeating_denied_flow_is_dropped_in_the_kernel() {
    let mut bed = Bed::new(WorkerConfig::default());
    for _ in 1..REPEATS_TO_OFFLOAD {
        assert_eq!(
            bed.send(Port::A, &udp(true, 5555, 161)),
            (Tier::User, false)
        );
    }
    assert!(
        bed.kernel.is_empty(),
        "a denied flow of a few packets costs no map write"
    );
    assert_eq!(
        bed.send(Port::A, &udp(true, 5555, 161)),
        (Tier::User, false)
    );
    assert_eq!(
        bed.send(Port::A, &udp(true, 5555, 161)),
        (Tier::Kernel, false)
    );
    assert_eq!(bed.worker.stats().offload.tier.dropped_packets, 1);
}

#[test]
fn a_new_generation_sends_offloaded_flows_back_to_be_decided_again() {
    let mut bed = Bed::new(WorkerConfig::default());
    bed.send(Port::A, &udp(true, 3333, 9000));
    bed.send(Port::B, &udp(false, 3333, 9000));
    assert_eq!(
        bed.send(Port::A, &udp(true, 3333, 9000)),
        (Tier::Kernel, true)
    );

    // A commit that no longer allows 9000: seen by an idle poll.
    bed.cell.publish(compile(
        "default_mode: enforce\nrules:\n  - { id: 1, src: [any], dst: [any], proto: udp, ports: [53], action: allow }\n",
        2,
    ));
    bed.idle(1000);
    assert_eq!(bed.kernel.generation(), 3, "policy generation 2, plus one");
    assert_eq!(bed.worker.stats().offload.invalidated, 1);
    // The stale entry punts; userspace denies it and the kernel drops the rest.
    assert_eq!(
        bed.send(Port::A, &udp(true, 3333, 9000)),
        (Tier::User, false)
    );
    assert_eq!(
        bed.send(Port::A, &udp(true, 3333, 9000)),
        (Tier::Kernel, false)
    );
}

#[test]
fn the_idle_sweep_does_not_expire_a_flow_the_kernel_carries() {
    // No periodic sweep: only the idle sweep's read of the kernel entry keeps
    // the flow alive.
    let cfg = WorkerConfig {
        expire_budget: 1024,
        offload_sweep_interval: u64::MAX,
        ..WorkerConfig::default()
    };
    let mut bed = Bed::new(cfg);
    bed.send(Port::A, &udp(true, 3333, 9000));
    bed.send(Port::B, &udp(false, 3333, 9000));
    // Replied UDP times out after 120 s idle; the kernel keeps it busy for 300 s.
    for _ in 0..30 {
        bed.now += 10 * SEC;
        assert_eq!(
            bed.send(Port::A, &udp(true, 3333, 9000)),
            (Tier::Kernel, true)
        );
        bed.idle(0);
    }
    assert!(
        bed.ends().is_empty(),
        "not expired while the kernel carries it"
    );
    assert_eq!(bed.worker.flows().len(), 1);
    // Idle for real: it expires, with the kernel's 30 packets in its record.
    bed.idle(200 * SEC);
    let ends = bed.ends();
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].1, EndReason::Idle);
    assert_eq!(ends[0].0.packets, [31, 1]);
    assert!(bed.kernel.is_empty(), "its kernel entry went with it");
}

#[test]
fn an_entry_the_kernel_lost_is_installed_again_on_the_next_packet() {
    let mut bed = Bed::new(WorkerConfig::default());
    bed.send(Port::A, &udp(true, 3333, 9000));
    bed.send(Port::B, &udp(false, 3333, 9000));
    let (key, _, _) = kernel_key(&udp(true, 3333, 9000)).unwrap();
    bed.kernel.evict(&key);
    bed.now += SEC; // past the per-entry recheck interval
    assert_eq!(
        bed.send(Port::A, &udp(true, 3333, 9000)),
        (Tier::User, true)
    );
    assert_eq!(
        bed.send(Port::A, &udp(true, 3333, 9000)),
        (Tier::Kernel, true)
    );
    let s = bed.worker.stats().offload;
    assert_eq!((s.evicted, s.installed, s.live), (1, 2, 1));
}

#[test]
fn a_denied_handshake_is_not_offloaded_but_a_cut_connection_is() {
    let mut bed = Bed::new(WorkerConfig::default());
    let syn = |port: u16| {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4(A_IP, B_IP, 64)
            .tcp(40001, port, 1000, 65535)
            .syn()
            .write(&mut out, b"")
            .unwrap();
        out
    };
    for _ in 0..3 {
        assert_eq!(bed.send(Port::A, &syn(445)), (Tier::User, false));
    }
    assert!(
        bed.kernel.is_empty(),
        "retransmitted SYNs: nothing to offload"
    );

    // An established connection whose service a commit denies.
    bed.send(Port::A, &tcp(true, "S", b""));
    bed.send(Port::B, &tcp(false, "SA", b""));
    bed.send(Port::A, &tcp(true, "A", b""));
    assert_eq!(
        bed.send(Port::A, &tcp(true, "PA", b"x")),
        (Tier::Kernel, true)
    );
    bed.cell.publish(compile("default_mode: enforce\n", 2));
    bed.idle(1000);
    assert_eq!(
        bed.send(Port::A, &tcp(true, "PA", b"x")),
        (Tier::User, false)
    );
    assert_eq!(
        bed.send(Port::A, &tcp(true, "PA", b"x")),
        (Tier::Kernel, false)
    );
}

#[test]
fn a_flow_the_kernel_carries_is_reported_while_it_runs_with_the_kernels_counts() {
    // No periodic read of the kernel's counters: only the interim report's
    // own read can know the flow is busy.
    let cfg = WorkerConfig {
        expire_budget: 1024,
        offload_sweep_interval: u64::MAX,
        ..WorkerConfig::default()
    };
    let mut bed = Bed::new(cfg);
    bed.send(Port::A, &udp(true, 4444, 9000));
    bed.send(Port::B, &udp(false, 4444, 9000));
    let mut reports = Vec::new();
    for _ in 0..15 {
        bed.now += 10 * SEC;
        assert_eq!(
            bed.send(Port::A, &udp(true, 4444, 9000)),
            (Tier::Kernel, true)
        );
        bed.idle(0);
        reports.extend(bed.events.try_iter().filter_map(|e| match e {
            Event::FlowActive(r) => Some(r),
            _ => None,
        }));
    }
    // At 60 s and 120 s of its life, each with the packets the kernel carried.
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(reports[0].packets[0] >= 6, "{:?}", reports[0].packets);
    assert!(reports[1].packets[0] >= 12, "{:?}", reports[1].packets);
    assert!(reports[1].packets[0] > reports[0].packets[0]);
}
