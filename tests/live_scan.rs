//! Scan detection on the live appliance (`bulkhead run` in namespaces, real
//! packets): nmap's default scan from the client through the appliance
//! raises one `scan` alert naming the client's MAC, not one a port; the
//! client's allowed connections before it raise none.
//!
//! Needs root and nmap; outside CI a run without them says why it skips,
//! with `CI=true` a missing one is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod live_bed;

use live_bed::{connects, listen, sh, web_db_policy, Bed, MAC_A};
use std::time::{Duration, Instant};

fn scan_alerts(bed: &Bed) -> Vec<serde_json::Value> {
    bed.ctl(&["alerts", "list", "--kind", "scan"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn nmap_through_the_appliance_raises_one_scan_alert_naming_the_scanner() {
    if !dataplane::hostenv::root_with(
        "the live scan test",
        &["ip", "ethtool", "nsenter", "nmap", "timeout"],
    ) {
        return;
    }
    let mut bed = Bed::new("scan", &web_db_policy(), "");
    let [a, b, _] = bed.ns.clone();
    listen(&b);
    bed.start();
    // Allowed, answered traffic first: no alert.
    for _ in 0..5 {
        assert!(connects(&a, Duration::from_secs(10)), "rule 10 allows it");
    }

    // nmap's default scan (the top 1,000 TCP ports, SYN), bounded in time:
    // every port but 9000 is denied by the policy.
    let started = Instant::now();
    let out = sh(&[
        "timeout",
        "180",
        "ip",
        "netns",
        "exec",
        &a,
        "nmap",
        "-Pn",
        "-n",
        "-T4",
        "--max-retries",
        "1",
        "10.99.0.2",
    ]);
    eprintln!("nmap took {:?}:\n{out}", started.elapsed());
    assert!(out.contains("9000/tcp"), "nmap saw the open port: {out}");
    let until = Instant::now() + Duration::from_secs(20);
    let alerts = loop {
        let found = scan_alerts(&bed);
        if !found.is_empty() || Instant::now() > until {
            break found;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(alerts.len(), 1, "one alert, not one a port: {alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["mac"], MAC_A);
    assert_eq!(alert["workload"], "client");
    assert_eq!(alert["indicator"], "port-scan");
    assert_eq!(alert["severity"], "medium");
    let summary = alert["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("client (10.99.0.1) probed 15 ports of 10.99.0.2"),
        "{summary}"
    );
    // Still one a while later (the rest of the scan is the same window).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(scan_alerts(&bed).len(), 1);
}
