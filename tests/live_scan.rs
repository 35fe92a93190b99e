//! Anomaly detection on the live appliance (`bulkhead run` in namespaces, real
//! packets): nmap's default scan from the client through the appliance
//! raises one `scan` alert naming the client's MAC, not one a port; the
//! client's allowed connections before it raise none. The first RDP
//! between two groups after their baseline raises one `first-seen-service`
//! alert.
//!
//! Needs root and nmap; outside CI a run without them says why it skips,
//! with `CI=true` a missing one is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod live_bed;

use live_bed::{connects, connects_to, listen, serve, sh, web_db_policy, Bed, Dnsmasq, MAC_A};
use std::time::{Duration, Instant};

fn alerts_of(bed: &Bed, kind: &str) -> Vec<serde_json::Value> {
    bed.ctl(&["alerts", "list", "--kind", kind])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn scan_alerts(bed: &Bed) -> Vec<serde_json::Value> {
    alerts_of(bed, "scan")
}

/// The alerts of `kind` once there is one, or none after 20 s.
fn first_alerts(bed: &Bed, kind: &str) -> Vec<serde_json::Value> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let found = alerts_of(bed, kind);
        if !found.is_empty() || Instant::now() > until {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
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
    let alerts = first_alerts(&bed, "scan");
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
    // The other detectors add at most one alert of their own (a burst of
    // denied flows), not one a port; the groups' baselines are learning,
    // so no port is a first-seen service.
    let all = bed.ctl(&["alerts", "list"]);
    let kinds: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["kind"].as_str())
        .collect();
    assert!(
        kinds.iter().all(|k| ["scan", "deny-burst"].contains(k)) && kinds.len() <= 2,
        "{all}"
    );
}

/// The first RDP from `web` to `db` after the groups' baseline (3 s here)
/// raises one high `first-seen-service` alert naming the client; the
/// service the baseline saw raises none, before or after.
#[test]
fn the_first_rdp_between_two_groups_after_the_baseline_raises_a_first_seen_alert() {
    if !dataplane::hostenv::root_with(
        "the live first-seen test",
        &["ip", "ethtool", "nsenter", "timeout"],
    ) {
        return;
    }
    let policy = web_db_policy().replace("ports: [9000]", "ports: [9000, 3389]");
    let mut bed = Bed::new("first-seen", &policy, "\n[detect]\nbaseline = \"3s\"\n");
    let [a, b, _] = bed.ns.clone();
    listen(&b);
    serve(&b, "10.99.0.2:3389");
    bed.start();
    let learned = Instant::now();
    for _ in 0..3 {
        assert!(connects(&a, Duration::from_secs(10)), "rule 10 allows it");
    }
    std::thread::sleep(Duration::from_secs(4).saturating_sub(learned.elapsed()));
    // The baseline's service again: nothing new.
    assert!(connects(&a, Duration::from_secs(10)));
    assert!(connects_to(&a, "10.99.0.2:3389", Duration::from_secs(10)));
    let found = first_alerts(&bed, "first-seen-service");
    assert_eq!(found.len(), 1, "{found:?}");
    let alert = &found[0];
    assert_eq!(alert["mac"], MAC_A);
    assert_eq!(alert["indicator"], "web -> db tcp/3389");
    assert_eq!(alert["severity"], "high");
    let summary = alert["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("client (10.99.0.1) used tcp/3389 to server (10.99.0.2)"),
        "{summary}"
    );
    // A second RDP connection is the same service: still one alert, once.
    assert!(connects_to(&a, "10.99.0.2:3389", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_secs(1));
    let found = alerts_of(&bed, "first-seen-service");
    assert_eq!(found.len(), 1, "{found:?}");
    // On /metrics: the baseline holds web -> db tcp/9000 and has stopped learning.
    let metrics = bed.metrics();
    let tracked = live_bed::metric(&metrics, "bulkhead_detect_tracked{detector=\"first-seen\"}");
    assert!(tracked >= 1.0, "{metrics}");
    let learning = live_bed::metric(
        &metrics,
        "bulkhead_detect_learning{detector=\"first-seen\"}",
    );
    assert_eq!(learning, 0.0, "{metrics}");
}

/// Asks 10.99.0.2 for `name`'s A record over UDP; whether the answer was
/// NXDOMAIN.
fn nxdomain(name: &str, id: u16) -> bool {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let s = std::net::UdpSocket::bind("10.99.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.send_to(&q, "10.99.0.2:53").unwrap();
    let mut buf = [0u8; 512];
    match s.recv(&mut buf) {
        Ok(n) if n >= 4 => buf[..2] == id.to_be_bytes() && buf[3] & 0x0f == 3,
        _ => false,
    }
}

/// A client asking a real DNS server (dnsmasq, across the appliance) for
/// many names that do not exist, as a DGA does, raises one `dns-nxdomain`
/// alert naming it, and, its baseline over, one `dns-new-names`.
#[test]
fn a_burst_of_nxdomain_answers_raises_one_dns_alert_naming_the_client() {
    if !dataplane::hostenv::root_with(
        "the live DNS detection test",
        &["ip", "ethtool", "nsenter", "dnsmasq"],
    ) {
        return;
    }
    let policy = web_db_policy().replace(
        "action: allow }\n",
        "action: allow }\n  - { id: 20, src: [web], dst: [db], services: [dns], action: allow }\n",
    );
    assert!(policy.contains("id: 20"), "{policy}");
    let control = "\n[detect]\nbaseline = \"1s\"\n\n[detect.dns]\nnxdomain = 10\nnew_names = 12\n";
    let mut bed = Bed::new("dns-detect", &policy, control);
    let [a, b, _] = bed.ns.clone();
    // Every name is NXDOMAIN.
    let _dns = Dnsmasq::start(&b, "10.99.0.2", "#", "", &a);
    bed.start();
    // The names' baseline starts with the first answer and learns 1 s.
    assert!(live_bed::in_ns(&a, || nxdomain("first.example.com", 99)));
    std::thread::sleep(Duration::from_millis(1500));
    let answered = live_bed::in_ns(&a, || {
        (0..20u16)
            .filter(|i| nxdomain(&format!("q{i}x7kd{i}.com"), *i))
            .count()
    });
    assert!(answered >= 10, "dnsmasq answered {answered} of 20");
    let found = first_alerts(&bed, "dns-nxdomain");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["mac"], MAC_A);
    let summary = found[0]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("client (10.99.0.1): 10 NXDOMAIN answers within 300 s"),
        "{summary}"
    );
    let new = first_alerts(&bed, "dns-new-names");
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0]["mac"], MAC_A);
}
