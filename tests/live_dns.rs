//! DNS traceback and blast radius from the live appliance, with a real DNS
//! server (dnsmasq) answering a "malicious" name: a workload resolves it
//! (getent) and connects to the answer through the appliance; then its
//! address changes and another workload takes the old one (declared again
//! by the operator, as an IPAM sync would) and makes benign traffic.
//! `traceback` names the first workload's MAC and never the second's;
//! `blast-radius` lists what it reached, in order, and not what was reached
//! before it got there; `addresses` gives both holders of the old address in
//! turn. Offline on the store after a stop, and through the API after a
//! restart.
//!
//! host-a (ns a, MAC_A, 10.99.0.1 then .4) and host-c (ns c, a macvlan on
//! host-a's link, MAC_C, 10.99.0.3 then .1) <-> [appliance] <-> host-b
//! (ns b, MAC_B, 10.99.0.2 the benign server and the DNS server, 10.99.0.66
//! the "C2").
//!
//! Needs root and dnsmasq; outside CI a run without them says why it skips,
//! with `CI=true` a missing one is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod live_bed;

use live_bed::{connects_to, resolve, serve, sh, Bed, Dnsmasq, EXE, MAC_A, MAC_B};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, SystemTime};

const MAC_C: &str = "02:5e:00:00:00:0c";

fn policy(c_ips: &str) -> String {
    format!(
        r#"
default_mode: enforce
workloads:
  - {{ mac: "{MAC_A}", name: client, labels: {{ app: web }} }}
  - {{ mac: "{MAC_C}", name: newcomer, labels: {{ app: web }}{c_ips} }}
  - {{ mac: "{MAC_B}", name: server, labels: {{ app: db }} }}
groups:
  - {{ name: web, match: {{ app: web }} }}
  - {{ name: db, match: {{ app: db }} }}
rules:
  - {{ id: 10, src: [web], dst: [db], services: [{{ proto: tcp, ports: [9000] }}, {{ proto: udp, ports: [53] }}], action: allow }}
  - {{ id: 20, src: [db], dst: [web], services: [{{ proto: tcp, ports: [9001] }}], action: allow }}
"#
    )
}

/// What the test set up beside the bed: namespace c and dnsmasq; undone
/// on drop.
struct Extras {
    ns_c: String,
    dnsmasq: Option<Dnsmasq>,
}

impl Drop for Extras {
    fn drop(&mut self) {
        self.dnsmasq = None;
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.ns_c])
            .output();
    }
}

/// A TCP connection from `ns` to `to` within 10 s.
fn connect(ns: &str, to: &'static str) {
    assert!(connects_to(ns, to, Duration::from_secs(10)), "{ns} -> {to}");
}

fn rfc3339_now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn pause() {
    // Distinct milliseconds between the steps whose order is checked.
    std::thread::sleep(Duration::from_millis(1100));
}

fn offline(bed: &Bed, args: &[&str]) -> Value {
    let store = bed.dir.join("records.db");
    let mut cmd = vec![EXE, "records"];
    cmd.extend_from_slice(args);
    cmd.extend_from_slice(&["--store", store.to_str().unwrap(), "--json"]);
    serde_json::from_str(&sh(&cmd)).expect("one JSON document")
}

fn check_traceback(t: &Value) {
    let workloads = t["workloads"].as_array().expect("workloads");
    assert_eq!(workloads.len(), 1, "{t:#}");
    let w = &workloads[0];
    assert_eq!(w["mac"], MAC_A, "{t:#}");
    assert!(
        !t.to_string().contains(MAC_C),
        "the workload that took the old address is never named: {t:#}"
    );
    assert_eq!(w["identity_then"]["name"], "client");
    assert_eq!(w["resolved"], true);
    let ips: Vec<&str> = w["resolutions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["client_ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["10.99.0.1", "10.99.0.4"], "{t:#}");
    assert_eq!(
        w["resolutions"][0]["answers"][0]["ip"], "10.99.0.66",
        "{t:#}"
    );
    assert_eq!(t["answers"], serde_json::json!(["10.99.0.66"]));
    let contacts = w["contacts"].as_array().unwrap();
    assert!(
        contacts
            .iter()
            .any(|c| c["ip"] == "10.99.0.66" && c["service"] == "tcp/9000" && c["allowed"] == true),
        "the connection to the answer: {t:#}"
    );
}

#[test]
fn traceback_names_the_workload_that_resolved_not_the_one_that_took_its_address() {
    if !dataplane::hostenv::root_with(
        "the live DNS traceback test",
        &["ip", "ethtool", "nsenter", "dnsmasq", "getent"],
    ) {
        return;
    }
    let mut bed = Bed::new("dns", &policy(""), "");
    let [a, b, dut] = bed.ns.clone();
    let tag = std::process::id();
    let mut extras = Extras {
        ns_c: format!("bh-dns-c-{tag}"),
        dnsmasq: None,
    };
    let c = extras.ns_c.clone();
    // host-c: a macvlan on host-a's link, in a namespace of its own.
    sh(&["ip", "netns", "add", &c]);
    sh(&["ip", "-n", &c, "link", "set", "lo", "up"]);
    sh(&[
        "ip", "-n", &a, "link", "add", "host-c", "link", "host-a", "type", "macvlan", "mode",
        "bridge",
    ]);
    sh(&["ip", "-n", &a, "link", "set", "host-c", "netns", &c]);
    sh(&["ip", "-n", &c, "link", "set", "host-c", "address", MAC_C]);
    sh(&[
        "ip",
        "-n",
        &c,
        "addr",
        "add",
        "10.99.0.3/24",
        "dev",
        "host-c",
    ]);
    sh(&["ip", "-n", &c, "link", "set", "host-c", "up"]);
    sh(&[
        "ip", "netns", "exec", &c, "ethtool", "-K", "host-c", "tx", "off",
    ]);
    // host-b: the C2's address beside its own; dnsmasq answers evil.test.
    sh(&[
        "ip",
        "-n",
        &b,
        "addr",
        "add",
        "10.99.0.66/24",
        "dev",
        "host-b",
    ]);
    extras.dnsmasq = Some(Dnsmasq::start(
        &b,
        "10.99.0.2",
        "evil.test",
        "10.99.0.66",
        &a,
    ));
    serve(&b, "0.0.0.0:9000");
    serve(&c, "0.0.0.0:9001");
    bed.start();

    // Before the compromise: the server reaches host-c (db -> web 9001).
    connect(&b, "10.99.0.3:9001");
    pause();
    let since = rfc3339_now();
    // host-a resolves the C2 and connects to its answer.
    let answer = resolve(&a, "c2.evil.test");
    assert!(
        answer.contains("10.99.0.66"),
        "dnsmasq's answer: {answer:?}"
    );
    connect(&a, "10.99.0.66:9000");
    pause();
    // Lateral: the server, now reached, reaches host-c again.
    connect(&b, "10.99.0.3:9001");
    pause();
    // host-a moves to .4 and resolves again from there.
    sh(&[
        "ip",
        "-n",
        &a,
        "addr",
        "del",
        "10.99.0.1/24",
        "dev",
        "host-a",
    ]);
    sh(&[
        "ip",
        "-n",
        &a,
        "addr",
        "add",
        "10.99.0.4/24",
        "dev",
        "host-a",
    ]);
    let again = resolve(&a, "c2.evil.test");
    assert!(again.contains("10.99.0.66"), "{again:?}");
    // host-c takes .1 (declared again by the operator) and talks to the
    // benign server.
    let file = bed.dir.join("policy-c.yaml");
    std::fs::write(&file, policy(", ips: [10.99.0.1]")).unwrap();
    bed.ctl(&["policy", "put", file.to_str().unwrap()]);
    bed.ctl(&["policy", "commit", "--message", "host-c has 10.99.0.1 now"]);
    sh(&[
        "ip",
        "-n",
        &c,
        "addr",
        "del",
        "10.99.0.3/24",
        "dev",
        "host-c",
    ]);
    sh(&[
        "ip",
        "-n",
        &c,
        "addr",
        "add",
        "10.99.0.1/24",
        "dev",
        "host-c",
    ]);
    connect(&c, "10.99.0.2:9000");
    // SIGTERM: flows end, the records and their derived rows are written.
    bed.stop();
    let log = bed.log();
    assert!(log.contains("DNS: "), "{log}");

    let t = offline(&bed, &["traceback", "evil.test", "--since", "1h"]);
    check_traceback(&t);
    // The blast radius from the resolution on: the server at depth 1 (DNS,
    // then the C2 port), host-c at depth 2 by the later connection only.
    let br = offline(&bed, &["blast-radius", MAC_A, "--since", &since]);
    let reached = br["reached"].as_array().expect("reached");
    let order: Vec<(&str, u64)> = reached
        .iter()
        .map(|r| {
            (
                r["mac"].as_str().or(r["ip"].as_str()).unwrap(),
                r["depth"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(order, [(MAC_B, 1), (MAC_C, 2)], "{br:#}");
    assert!(
        reached[1]["first_contact"].as_str().unwrap() > since.as_str(),
        "host-c by the connection after the server was reached: {br:#}"
    );
    assert_eq!(reached[1]["path"], serde_json::json!([MAC_A, MAC_B, MAC_C]));
    assert!(br["attempted"].is_array());
    // The responses themselves, newest first; none for a name nobody asked.
    let dns = offline(&bed, &["dns", "--domain", "evil.test", "--since", "1h"]);
    let dns = dns.as_array().expect("a list");
    assert_eq!(dns.len(), 2, "{dns:#?}");
    assert_eq!(dns[0]["client_ip"], "10.99.0.4");
    assert_eq!(dns[0]["identity"]["mac"], MAC_A);
    let none = offline(&bed, &["dns", "--domain", "=evil.test", "--since", "1h"]);
    assert_eq!(none, serde_json::json!([]), "only c2.evil.test was asked");
    // The old address's holders in turn.
    let h = offline(&bed, &["addresses", "10.99.0.1", "--since", "1h"]);
    let holders: Vec<&str> = h["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["mac"].as_str().unwrap())
        .collect();
    assert_eq!(holders, [MAC_A, MAC_C], "{h:#}");

    // After a restart, the same through the API.
    bed.start();
    check_traceback(&bed.ctl(&["traceback", "evil.test", "--since", "1h"]));
    let text = sh(&[
        "nsenter",
        &format!("--net=/run/netns/{dut}"),
        EXE,
        "ctl",
        "--ctl-config",
        bed.dir.join("ctl.toml").to_str().unwrap(),
        "blast-radius",
        MAC_A,
        "--since",
        &since,
    ]);
    assert!(text.contains("server (02:5e:00:00:00:0b)"), "{text}");
    let traceback = sh(&[
        EXE,
        "records",
        "traceback",
        "evil.test",
        "--since",
        "1h",
        "--store",
        bed.dir.join("records.db").to_str().unwrap(),
    ]);
    eprintln!("{traceback}\n{text}");
    let metrics = bed.metrics();
    for line in [
        "bulkhead_dns_records_written_total",
        "bulkhead_dns_messages_dropped_total{reason=\"malformed\"}",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    drop(extras);
}
