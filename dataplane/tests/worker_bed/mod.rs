//! The worker test bed shared by the in-memory worker tests: a worker on
//! `MemIo` with a small policy, and real frames built with etherparse.
#![allow(dead_code, unused_imports)]

pub use crossbeam_channel::Receiver;
pub use dataplane::event::{self, EndReason, Event};
pub use dataplane::io::mem::MemIo;
pub use dataplane::io::Port;
pub use dataplane::policy::{named, Action, PolicySnapshot, PolicySpec, Reason, SnapshotCell};
pub use dataplane::worker::{DropReason, FragmentPolicy, Worker, WorkerConfig};
pub use etherparse::PacketBuilder;
pub use std::sync::Arc;

pub const WEB: [u8; 6] = [2, 0, 0, 0, 1, 1];
pub const WEB2: [u8; 6] = [2, 0, 0, 0, 1, 2];
pub const DB: [u8; 6] = [2, 0, 0, 0, 2, 1];
pub const ADMIN: [u8; 6] = [2, 0, 0, 0, 3, 1];
pub const LEGACY: [u8; 6] = [2, 0, 0, 0, 4, 1];
pub const LEGACY2: [u8; 6] = [2, 0, 0, 0, 4, 2];
pub const WEB_IP: [u8; 4] = [10, 0, 1, 11];
pub const WEB2_IP: [u8; 4] = [10, 0, 1, 12];
pub const DB_IP: [u8; 4] = [10, 0, 2, 21];
pub const ADMIN_IP: [u8; 4] = [10, 0, 3, 31];
pub const LEGACY_IP: [u8; 4] = [10, 0, 4, 41];
pub const LEGACY2_IP: [u8; 4] = [10, 0, 4, 42];
pub const SEC: u64 = 1_000_000_000;

pub const POLICY: &str = r#"
groups:
  - { name: web, mode: enforce }
  - { name: db, mode: enforce }
  - { name: admin, mode: enforce }
  - { name: legacy, mode: audit }
endpoints:
  - { mac: "02:00:00:00:01:01", groups: [web] }
  - { mac: "02:00:00:00:01:02", groups: [web] }
  - { mac: "02:00:00:00:02:01", groups: [db] }
  - { mac: "02:00:00:00:03:01", groups: [admin] }
  - { mac: "02:00:00:00:04:01", groups: [legacy] }
  - { mac: "02:00:00:00:04:02", groups: [legacy] }
rules:
  - { id: 10, src: [web], dst: [db], proto: tcp, ports: [5432], action: allow }
  - { id: 20, src: [admin], dst: [any], proto: tcp, ports: [22], action: allow }
  - { id: 30, src: [web], dst: [db], proto: udp, ports: [53], action: allow }
  - { id: 50, src: [any], dst: [any], proto: tcp, ports: [445, 3389], action: deny }
management:
  - { cidr: "10.0.3.0/24", macs: ["02:00:00:00:03:01"], proto: tcp, ports: [22] }
"#;

pub fn spec(extra: &str) -> PolicySpec {
    named::spec(&format!("{POLICY}{extra}")).expect("test policy resolves")
}

pub struct Bed {
    pub io: MemIo,
    pub worker: Worker,
    pub cell: Arc<SnapshotCell>,
    pub events: Receiver<Event>,
    pub now: u64,
}

impl Bed {
    pub fn new(extra: &str) -> Bed {
        Bed::with(extra, WorkerConfig::default(), 1024)
    }

    pub fn with(extra: &str, cfg: WorkerConfig, events: usize) -> Bed {
        let snap = PolicySnapshot::compile(&spec(extra), 1).expect("test policy compiles");
        let cell = Arc::new(SnapshotCell::new(snap));
        let (sink, rx) = event::channel(events);
        Bed {
            io: MemIo::new(256, 2048),
            worker: Worker::new(cfg, cell.clone(), sink),
            cell,
            events: rx,
            now: SEC,
        }
    }

    /// Send one frame in on `port`; return what came out of the peer port.
    pub fn send(&mut self, port: Port, frame: &[u8]) -> Vec<Vec<u8>> {
        self.io.inject(port, frame).expect("frame fits");
        self.now += 1000;
        self.worker
            .poll(&mut self.io, self.now)
            .expect("mem io cannot fail");
        assert_eq!(
            self.io.tx_pending(port),
            0,
            "nothing goes back out of the port it came in on"
        );
        self.io.take_tx(port.peer())
    }

    pub fn passes(&mut self, port: Port, frame: &[u8]) -> bool {
        let out = self.send(port, frame);
        assert!(out.len() <= 1);
        out.first().is_some_and(|f| f == frame)
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }

    pub fn publish(&mut self, extra: &str, generation: u64) {
        let snap = PolicySnapshot::compile(&spec(extra), generation).expect("policy compiles");
        self.cell.publish(snap);
    }
}

pub fn tcp(
    src: ([u8; 6], [u8; 4], u16),
    dst: ([u8; 6], [u8; 4], u16),
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(src.1, dst.1, 64)
        .tcp(src.2, dst.2, 1000, 65535);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'F' => b.fin(),
            'R' => b.rst(),
            'P' => b.psh(),
            _ => b,
        };
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("builder writes to a Vec");
    out
}

pub fn udp(src: ([u8; 6], [u8; 4], u16), dst: ([u8; 6], [u8; 4], u16), payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(src.1, dst.1, 64)
        .udp(src.2, dst.2);
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("builder writes to a Vec");
    out
}
