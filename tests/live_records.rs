//! Flow records from the live appliance (`bulkhead run` in namespaces, real
//! packets): an allowed TCP connection and a denied ping become records with
//! both ends' identities, the rule or default that decided them; the records
//! survive a restart and are read offline with `bulkhead records flows`.
//!
//! Needs root; outside CI a non-root run says why it skips, with `CI=true` a
//! missing privilege is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod live_bed;

use live_bed::{connects, listen, pings, sh, web_db_policy, Bed, EXE, MAC_A};
use serde_json::Value;
use std::time::Duration;

fn records(bed: &Bed, args: &[&str]) -> Vec<Value> {
    let store = bed.dir.join("records.db");
    let mut cmd = vec![
        EXE,
        "records",
        "flows",
        "--store",
        store.to_str().unwrap(),
        "--json",
    ];
    cmd.extend_from_slice(args);
    serde_json::from_str(&sh(&cmd)).expect("a JSON array")
}

#[test]
fn live_flows_become_records_that_survive_a_restart() {
    if !dataplane::hostenv::root_with(
        "the live records test",
        &["ip", "ethtool", "nsenter", "ping"],
    ) {
        return;
    }
    let mut bed = Bed::new("rec", &web_db_policy(), "");
    let [a, b, _] = bed.ns.clone();
    listen(&b);
    bed.start();
    assert!(bed.log().contains("records: "), "{}", bed.log());
    // The data ports take every MAC's frames (a NIC filtering by its own
    // MAC would drop the workloads' unicast before XDP).
    for port in ["dut-a", "dut-b"] {
        let link = sh(&["ip", "-n", &bed.ns[2], "link", "show", port]);
        assert!(link.contains("PROMISC"), "{port} not promiscuous: {link}");
    }
    assert!(
        connects(&a, Duration::from_secs(10)),
        "rule 10 lets the client in"
    );
    assert!(!pings(&a), "no rule allows ping: denied by default");
    // SIGTERM: the workers end their flows, the control thread records them.
    bed.stop();
    let log = bed.log();
    assert!(log.contains("records: "), "{log}");

    let all = records(&bed, &[]);
    let tcp = all
        .iter()
        .find(|r| r["proto"] == 6 && r["dst"]["port"] == 9000)
        .unwrap_or_else(|| panic!("the TCP connection is recorded: {all:?}\n{log}"));
    assert_eq!(tcp["verdict"], "allow");
    assert_eq!(tcp["reason"], "rule");
    assert_eq!(tcp["rule"], 10, "the user rule, not its compiled id");
    assert_eq!(tcp["src"]["name"], "client");
    assert_eq!(tcp["src"]["mac"], MAC_A);
    assert_eq!(tcp["src"]["groups"], serde_json::json!(["web"]));
    assert_eq!(tcp["dst"]["name"], "server");
    assert_eq!(tcp["dst"]["labels"]["app"], "db");
    assert!(tcp["packets"][0].as_u64().unwrap() >= 2, "{tcp}");
    assert!(tcp["packets"][1].as_u64().unwrap() >= 1, "{tcp}");
    let denied = records(&bed, &["--verdict", "deny", "--proto", "icmp"]);
    assert_eq!(denied.len(), 1, "one ping flow, denied: {denied:?}");
    assert_eq!(denied[0]["reason"], "default");
    assert_eq!(denied[0]["src"]["name"], "client");
    // Wall-clock times of today, not of the workers' clock.
    let last = tcp["last_seen"].as_str().unwrap();
    let now = sh(&["date", "-u", "+%Y-%m-%d"]);
    assert!(last.starts_with(now.trim()), "{last}");

    // A restart keeps them and adds the new ones; the API serves them.
    let before = all.len();
    bed.start();
    let served = bed.ctl(&["flows", "--reason", "rule:10"]);
    let served = served.as_array().expect("ctl flows --json: an array");
    assert!(
        served.iter().any(|r| r["src"]["name"] == "client"),
        "the first run's records through the API: {served:?}"
    );
    let graph = bed.ctl(&["graph", "--level", "group", "--since", "1h"]);
    let edges = graph["edges"].as_array().expect("edges");
    assert!(
        edges
            .iter()
            .any(|e| e["verdict"] == "allow" && e["port"] == 9000 && e["proto"] == 6),
        "web -> db tcp/9000 allowed in the graph: {graph}"
    );
    let usage = bed.ctl(&["rules-usage", "--since", "1h"]);
    let rule10 = usage["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["id"] == 10)
        .expect("rule 10");
    assert!(rule10["flows"].as_u64().unwrap() >= 1, "{usage}");
    assert_eq!(rule10["never_hit"], false);
    let stats = bed.ctl(&["stats"]);
    assert!(
        stats["control"]["records"]["written"].is_u64(),
        "the records writer in /api/v1/stats: {stats}"
    );
    let metrics = bed.metrics();
    for line in [
        "bulkhead_records_written_total",
        "bulkhead_records_paused 0",
        "bulkhead_flows_ended_total{verdict=\"allow\",reason=\"rule\"}",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    assert!(connects(&a, Duration::from_secs(10)));
    bed.stop();
    let after = records(&bed, &[]);
    assert!(after.len() > before, "{} then {}", before, after.len());
    let tcp_flows = records(&bed, &["--reason", "rule:10"]);
    assert!(
        tcp_flows.len() >= 2,
        "both runs' connections: {tcp_flows:?}"
    );
}

/// A tmpfs of `size` on `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: std::path::PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            dir.to_str().unwrap(),
        ]);
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn logged(bed: &Bed, what: &str) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < until {
        if bed.log().contains(what) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_full_records_filesystem_pauses_records_says_so_and_forwarding_goes_on() {
    if !dataplane::hostenv::root_with(
        "the full records filesystem test",
        &["ip", "ethtool", "nsenter", "mount", "umount"],
    ) {
        return;
    }
    let tag = std::process::id();
    let fs = Tmpfs::mount(
        std::env::temp_dir().join(format!("bulkhead-tiny-{tag}")),
        "4m",
    );
    let store = fs.0.join("records.db");
    let records = format!(
        "\n[records]\nstore = \"{}\"\nreserve_mb = 1\n",
        store.display()
    );
    let mut bed = Bed::new("full", &web_db_policy(), &records);
    let [a, b, _] = bed.ns.clone();
    listen(&b);
    bed.start();
    assert!(connects(&a, Duration::from_secs(10)));
    assert_eq!(bed.ctl(&["health"])["records"], "ok");

    // The filesystem fills (another tenant of it, say): below the reserve.
    let filler = fs.0.join("filler");
    let free = sh(&["stat", "-f", "-c", "%a %S", fs.0.to_str().unwrap()]);
    let mut it = free.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    let (blocks, size) = (it.next().unwrap(), it.next().unwrap());
    std::fs::write(
        &filler,
        vec![0u8; (blocks * size).saturating_sub(256 << 10) as usize],
    )
    .unwrap();
    assert!(
        logged(&bed, "records: PAUSED"),
        "the log says so:\n{}",
        bed.log()
    );
    assert_eq!(bed.ctl(&["health"])["records"], "paused");
    assert_eq!(bed.ctl(&["stats"])["control"]["records"]["paused"], true);
    assert!(connects(&a, Duration::from_secs(10)), "forwarding goes on");
    assert!(!pings(&a), "and so does the policy");

    std::fs::remove_file(&filler).unwrap();
    assert!(logged(&bed, "records: resumed"), "{}", bed.log());
    bed.stop();
    drop(bed);
}
