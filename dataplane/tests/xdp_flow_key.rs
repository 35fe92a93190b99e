//! The kernel tier's flow key against the worker's: the XDP program's C code
//! (`dataplane/bpf/flow_key.h`, run by `flow_key_probe.o` under
//! `BPF_PROG_RUN`) and the Rust path (`wire::parse`, then
//! `worker::flow_key`) over generated frames: IPv4 (with options) and IPv6,
//! TCP with every flag, UDP, ICMP and ICMPv6 echo and other types, up to two
//! VLAN tags of either TPID, IPv4 fragments, IPv6 extension headers, port 53,
//! both directions of each flow; then the same frames cut short and with
//! bytes overwritten.
//!
//! What must hold: the program carries (computes a key for) exactly the
//! frames it is meant to (from what the frame was built as, not from either
//! parser); a frame it carries is one the worker puts on its flow path with
//! the same key and the same sending side (else a kernel entry would carry a
//! frame that userspace would decide otherwise, or a flow's two directions
//! would split); and the two directions of a flow meet in one key.
//!
//! Needs root (BPF); without it the tests print why and pass, except in CI
//! (`CI=true`), where they must run.
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod flow_key_frames;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};
use dataplane::flow::{FlowKey, Side};
use dataplane::io::afxdp::abi;
use dataplane::wire::{self, L3Info};
use flow_key_frames::{Spec, Tag};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

static PROBE_OBJECT: &[u8] = aya::include_bytes_aligned!("../bpf/flow_key_probe.o");
const PROBE: &str = "bulkhead_flow_key_probe";
/// `struct bulkhead_flow_key_probe`: rc, side, then the key.
const PROBE_OUT: usize = 8 + std::mem::size_of::<FlowKey>();
const XDP_PASS: u32 = 2;

/// Skip (print why) without root outside CI; fail in CI.
fn skip() -> bool {
    !dataplane::hostenv::root_with("the XDP flow key test", &[])
}

/// The probe program, loaded.
struct Probe {
    ebpf: Ebpf,
}

impl Probe {
    fn load() -> Probe {
        // The probe includes bulkhead.h and so defines its maps; it uses
        // none, so the flow map gets the smallest size.
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(abi::maps::BULKHEAD_FLOWS.name, 1)
            .load(PROBE_OBJECT)
            .expect("load flow_key_probe.o");
        let prog: &mut Xdp = ebpf.program_mut(PROBE).unwrap().try_into().unwrap();
        prog.load().expect("the verifier takes the probe");
        Probe { ebpf }
    }

    /// The C flow key of `frame` and the side that sent it; `None` where the
    /// program hands the frame to userspace.
    fn key(&self, frame: &[u8]) -> Option<(FlowKey, Side)> {
        let prog: &Xdp = self.ebpf.program(PROBE).unwrap().try_into().unwrap();
        let mut out = vec![0u8; frame.len() + PROBE_OUT + 64];
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .expect("BPF_PROG_RUN");
        assert_eq!(res.return_value, XDP_PASS, "the probe ran to the end");
        assert_eq!(res.data_size_out as usize, frame.len() + PROBE_OUT);
        assert_eq!(&out[PROBE_OUT..PROBE_OUT + frame.len()], frame);
        let word = |at: usize| u32::from_ne_bytes(out[at..at + 4].try_into().unwrap());
        let half = |at: usize| u16::from_ne_bytes([out[at], out[at + 1]]);
        let (rc, side) = (word(0) as i32, word(4));
        if rc != 0 {
            assert_eq!(rc, -1, "flow_key answers 0 or -1");
            return None;
        }
        let k = 8;
        let key = FlowKey {
            addr_lo: out[k..k + 16].try_into().unwrap(),
            addr_hi: out[k + 16..k + 32].try_into().unwrap(),
            port_lo: half(k + 32),
            port_hi: half(k + 34),
            vlan: [half(k + 36), half(k + 38)],
            proto: out[k + 40],
            family: out[k + 41],
            _pad: [out[k + 42], out[k + 43]],
        };
        let side = match side {
            0 => Side::Lo,
            1 => Side::Hi,
            other => panic!("side {other}"),
        };
        Some((key, side))
    }
}

/// What the worker does with `frame` before any flow lookup: `Some` with the
/// key and side when the frame goes on its flow path; `None` when it is
/// malformed, dropped before the flow table (TTL or hop limit 0), or has no
/// key of its own.
fn rust_key(frame: &[u8]) -> Option<(FlowKey, Side)> {
    let info = wire::parse(frame).ok()?;
    if let L3Info::Ip(ip) = &info.l3 {
        if ip.ttl == 0 {
            return None;
        }
    }
    dataplane::worker::flow_key(&info)
}

/// The C key of a frame that the program carries must be the worker's.
fn same_as_the_worker(probe: &Probe, frame: &[u8]) -> Result<(), TestCaseError> {
    if let Some(c) = probe.key(frame) {
        prop_assert_eq!(
            Some(c),
            rust_key(frame),
            "the XDP program carries a frame the worker keys otherwise: {:02x?}",
            frame
        );
    }
    Ok(())
}

/// Random cases (a failure prints the shrunk frame; nothing is persisted).
fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 5000,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn the_programs_flow_key_is_the_workers_for_every_kind_of_frame() {
    if skip() {
        return;
    }
    let probe = Probe::load();
    let mut runner = runner();
    runner
        .run(&flow_key_frames::spec(), |spec| {
            let frame = spec.build();
            let c = probe.key(&frame);
            prop_assert_eq!(
                c.is_some(),
                spec.offloadable(),
                "carried by the kernel tier? {:?} {:02x?}",
                spec,
                frame
            );
            if let Some(c) = c {
                prop_assert_eq!(Some(c), spec.key(), "key of {:?}", spec);
            }
            same_as_the_worker(&probe, &frame)?;

            // The other direction meets it in the same key, from the other side.
            let back = spec.reversed().build();
            same_as_the_worker(&probe, &back)?;
            match (c, probe.key(&back)) {
                (Some((k, side)), Some((k_back, side_back))) => {
                    prop_assert_eq!(k, k_back);
                    if k.addr_lo != k.addr_hi || k.port_lo != k.port_hi {
                        prop_assert_ne!(side, side_back);
                    }
                }
                (None, None) => {}
                (c, c_back) => prop_assert!(false, "one direction only: {:?} {:?}", c, c_back),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_damaged_frame_is_carried_only_as_the_worker_would_key_it() {
    if skip() {
        return;
    }
    let probe = Probe::load();
    let mut runner = runner();
    let damage = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4);
    runner
        .run(
            &(
                flow_key_frames::spec(),
                damage,
                any::<prop::sample::Index>(),
            ),
            |(spec, writes, cut)| {
                let mut frame = spec.build();
                // Overwrite a few bytes in the headers (the first 80 bytes),
                // then cut the frame somewhere (never below Ethernet's 14:
                // BPF_PROG_RUN refuses shorter frames).
                let head = frame.len().min(80);
                for (at, byte) in writes {
                    frame[at.index(head)] = byte;
                }
                same_as_the_worker(&probe, &frame)?;
                let keep = 14 + cut.index(frame.len() - 13);
                same_as_the_worker(&probe, &frame[..keep])
            },
        )
        .unwrap();
}

/// A few frames by hand, so that each rule is exercised whatever the random
/// cases draw.
#[test]
fn known_frames_are_carried_or_punted_as_documented() {
    if skip() {
        return;
    }
    let probe = Probe::load();
    let base = Spec::udp_v4();
    let cases: Vec<(&str, Spec, bool)> = vec![
        ("plain UDP", base.clone(), true),
        ("DNS", base.clone().ports(40000, 53), false),
        ("TTL 0", base.clone().ttl(0), false),
        ("TCP ACK", base.clone().tcp(0x10), true),
        ("TCP SYN", base.clone().tcp(0x02), false),
        ("TCP FIN", base.clone().tcp(0x11), false),
        ("TCP RST", base.clone().tcp(0x14), false),
        ("ping", base.clone().icmp(8), true),
        ("unreachable", base.clone().icmp(3), false),
        ("first fragment", base.clone().fragment(true, 0), false),
        ("later fragment", base.clone().fragment(false, 64), false),
        (
            "two VLAN tags",
            base.clone().tags(vec![Tag::qinq(100), Tag::dot1q(200)]),
            true,
        ),
        (
            "three VLAN tags",
            base.clone()
                .tags(vec![Tag::qinq(1), Tag::dot1q(2), Tag::dot1q(3)]),
            false,
        ),
        ("IPv4 options", base.clone().ipv4_options(12), true),
        ("IPv6 UDP", Spec::udp_v6(), true),
        ("IPv6 ping", Spec::udp_v6().icmp(128), true),
        ("IPv6 hop limit 0", Spec::udp_v6().ttl(0), false),
        ("IPv6 hop-by-hop", Spec::udp_v6().ipv6_extension(0), false),
        ("IPv6 fragment", Spec::udp_v6().ipv6_extension(44), false),
    ];
    for (what, spec, carried) in cases {
        let frame = spec.build();
        let c = probe.key(&frame);
        assert_eq!(c.is_some(), carried, "{what}: carried by the kernel tier?");
        assert_eq!(c.is_some(), spec.offloadable(), "{what}: the spec agrees");
        if let Some(c) = c {
            assert_eq!(Some(c), rust_key(&frame), "{what}: the worker's key");
        }
    }
}
