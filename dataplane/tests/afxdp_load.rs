//! AF_XDP under a steady load: a UDP stream through the worker with the kernel
//! tier off, so every frame crosses userspace. Root rules as in `afxdp.rs`.
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod afxdp_bed;

use afxdp_bed::*;
use dataplane::worker::DropReason;

/// Send `count` 64-byte UDP datagrams from host-a to host-b:9999 at `rate` a
/// second.
fn udp_stream(t: &Topology, rate: u64, count: u64) {
    in_netns(&t.a, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        let start = Instant::now();
        for n in 0..count {
            let due = start + Duration::from_nanos(n * 1_000_000_000 / rate);
            while Instant::now() < due {
                std::thread::sleep(Duration::from_micros(100));
            }
            s.send_to(&[0x5a; 64], (HOST_B, 9999)).expect("send");
        }
    })
    .join()
    .unwrap()
    .unwrap();
}

#[test]
fn a_steady_stream_never_finds_the_tx_ring_full() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::new().expect("topology");
    let mut cfg = dut_config(FailMode::Closed);
    cfg.offload = false;
    let dut = Dut::start(&t, cfg, ALLOW_ALL).expect("DUT starts");
    assert!(t.ping_eventually(), "ping through the DUT");
    // 10 kpps for 2 s. Before the fix the worker counted about 120 tx-full
    // drops in 5 s at this rate (bursts of 32-50): xdpilone reserved tx slots
    // from a stale view of the ring and the rest of a batch was dropped
    // although the ring had room.
    udp_stream(&t, 10_000, 20_000);
    std::thread::sleep(Duration::from_millis(300));
    let s = dut.stats();
    assert!(
        s.ports[1].tx_packets >= 15_000,
        "the stream crossed the worker: {} frames out of port B",
        s.ports[1].tx_packets
    );
    assert_eq!(s.drops(DropReason::TxFull), 0, "no tx-full drops: {s:?}");
}
