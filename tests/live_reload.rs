//! The live appliance (`bulkhead run` in namespaces, real packets, the API
//! through `bulkhead ctl`) on the smaller items of the security issue: a SIGHUP
//! neither replaces a policy committed through the API nor writes an identical
//! version, and the built-in `icmp` service lets ping6 through as it does ping.
//!
//! Needs root; outside CI a non-root run says why it skips, with `CI=true` a
//! missing privilege is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod live_bed;

use live_bed::{connects, listen, sh, Bed, MAC_A, MAC_B};
use std::time::{Duration, Instant};

fn policy(rules: &str) -> String {
    format!(
        r#"
default_mode: enforce
workloads:
  - {{ mac: "{MAC_A}", name: client, labels: {{ app: web }}, ips: [10.99.0.1, "fd00:99::1"] }}
  - {{ mac: "{MAC_B}", name: server, labels: {{ app: web }}, ips: [10.99.0.2, "fd00:99::2"] }}
groups:
  - {{ name: web, match: {{ app: web }} }}
rules:
{rules}"#
    )
}

const ALLOW_9000: &str =
    "  - { id: 10, src: [web], dst: [web], services: [{ proto: tcp, ports: [9000] }], action: allow }\n";
const ALLOW_ICMP: &str =
    "  - { id: 20, src: [web], dst: [web], services: [icmp], action: allow }\n";

fn versions(bed: &Bed) -> usize {
    bed.ctl(&["policy", "versions"])
        .as_array()
        .expect("a list")
        .len()
}

/// Wait until the appliance's log has a line containing `what`.
fn logged(bed: &Bed, what: &str) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if bed.log().contains(what) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn sighup_keeps_an_api_commit_and_commits_only_a_changed_file() {
    if !dataplane::hostenv::root_with("the SIGHUP test", &["ip", "ethtool", "nsenter"]) {
        return;
    }
    let mut bed = Bed::new("hup", &policy(ALLOW_9000), "");
    let [a, b, _] = bed.ns.clone();
    listen(&b);
    bed.start();
    assert!(
        connects(&a, Duration::from_secs(10)),
        "rule 10 lets host-a in"
    );
    assert_eq!(versions(&bed), 1, "the bootstrap version");

    // An operator removes rule 10 through the API.
    let no_rules = bed.dir.join("api-policy.yaml");
    std::fs::write(
        &no_rules,
        policy("  []\n").replace("rules:\n  []", "rules: []"),
    )
    .unwrap();
    bed.ctl(&["policy", "put", no_rules.to_str().unwrap()]);
    bed.ctl(&["policy", "commit", "--message", "close 9000"]);
    assert_eq!(versions(&bed), 2);
    assert!(
        !connects(&a, Duration::from_secs(2)),
        "denied after the API commit"
    );

    // SIGHUP with the file unchanged: the API's policy stays, no version.
    bed.signal("HUP");
    assert!(
        logged(&bed, "is kept"),
        "the appliance says why:\n{}",
        bed.log()
    );
    assert_eq!(versions(&bed), 2, "no identical version written");
    assert!(
        !connects(&a, Duration::from_secs(2)),
        "the API's policy is still live"
    );

    // The file changes: SIGHUP commits it.
    std::fs::write(
        bed.dir.join("policy.yaml"),
        policy(&format!("{ALLOW_9000}{ALLOW_ICMP}")),
    )
    .unwrap();
    bed.signal("HUP");
    assert!(logged(&bed, "policy reloaded: version 3"), "{}", bed.log());
    assert_eq!(versions(&bed), 3);
    assert!(connects(&a, Duration::from_secs(10)), "rule 10 is back");
}

#[test]
fn the_builtin_icmp_service_lets_ping6_through_like_ping() {
    if !dataplane::hostenv::root_with("the ping6 test", &["ip", "ethtool", "nsenter", "ping"]) {
        return;
    }
    let mut bed = Bed::new("p6", &policy(ALLOW_ICMP), "");
    let [a, b, _] = bed.ns.clone();
    for (ns, dev, ip) in [
        (&a, "host-a", "fd00:99::1/64"),
        (&b, "host-b", "fd00:99::2/64"),
    ] {
        sh(&["ip", "-n", ns, "addr", "add", ip, "dev", dev, "nodad"]);
    }
    bed.start();
    let ping = |args: &[&str]| {
        let mut cmd = vec![
            "ip",
            "netns",
            "exec",
            a.as_str(),
            "ping",
            "-c",
            "3",
            "-i",
            "0.3",
            "-W",
            "1",
        ];
        cmd.extend_from_slice(args);
        std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let until = Instant::now() + Duration::from_secs(15);
    while !ping(&["10.99.0.2"]) && Instant::now() < until {}
    assert!(
        ping(&["10.99.0.2"]),
        "ping crosses under `icmp`:\n{}",
        bed.log()
    );
    assert!(
        ping(&["-6", "fd00:99::2"]),
        "ping6 crosses under `icmp`:\n{}",
        bed.log()
    );
}
