//! AF_XDP with busy polling: the same namespace bed as `afxdp.rs`, the worker
//! never sleeping in `poll` and the sockets set to preferred busy polling.
//! Root and `ip netns` needed; skipped (with the reason) outside CI without them.
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod afxdp_bed;

use afxdp_bed::*;

#[test]
fn busy_polling_forwards_ping_tcp_and_a_flood() {
    if skip_reason().is_some() {
        return;
    }
    let t = Topology::new().expect("topology");
    let mut cfg = dut_config(FailMode::Closed);
    cfg.busy_poll_us = 50;
    cfg.busy_poll_budget = 64;
    let mut dut = Dut::start(&t, cfg, ALLOW_ALL).expect("DUT starts with busy polling");
    assert!(t.ping_eventually(), "ping through a busy-polling DUT");
    let _listeners = listen(&t, &[8080]);
    assert!(connects(&t, 8080), "TCP through a busy-polling DUT");
    let got = t.flood(2000);
    eprintln!("flood ping with busy polling: {:.1}% answered", got * 100.0);
    assert!(got > 0.95, "flood ping: {:.1}% answered", got * 100.0);
    assert!(dut.stop(Stop::Detach) > 0);
}

#[test]
fn busy_polling_without_a_budget_is_refused() {
    let mut cfg = AfXdpConfig::new("bh-no-such-a", "bh-no-such-b");
    cfg.busy_poll_us = 50;
    cfg.busy_poll_budget = 0;
    let err = AfXdpIo::open(&cfg).expect_err("refused");
    assert!(err.to_string().contains("busy_poll_budget"), "{err}");
}
