//! MAC prefixes, observing MACs on the wire, assignment rules, and the policy
//! change that follows.
//!
//! Compiled only with `cfg(test)`: its `unwrap`/`expect` fail a test on a
//! fixture the test wrote itself; none touches a packet, a file or a request
//! of the running appliance.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]

use crate::compile::compile_snapshot;
use crate::mac_prefix::MacPrefix;
use crate::model::{Model, Origin, Strategy, Timestamp};
use crate::tests_compile::{example, flow};
use dataplane::policy::{parse_mac, Action, Reason};
use dataplane::wire::MacAddr;
use std::net::IpAddr;

fn mac(s: &str) -> MacAddr {
    parse_mac(s).expect("mac")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

const T0: Timestamp = Timestamp(1_700_000_000_000_000_000);

#[test]
fn mac_prefixes_parse_in_every_form() {
    let p = |s: &str| s.parse::<MacPrefix>().unwrap_or_else(|e| panic!("{e}"));
    let star = p("02:00:00:00:01:*");
    assert_eq!(star.bits(), 40);
    assert_eq!(star, p("02:00:00:00:01:00/40"));
    assert_eq!(star, p("02-00-00-00-01-*"));
    assert_eq!(p("00:50:56").bits(), 24);
    assert_eq!(p("00:50:56:*:*:*"), p("00:50:56"));
    assert!(star.contains(mac("02:00:00:00:01:ff")));
    assert!(!star.contains(mac("02:00:00:00:02:01")));
    // Host bits past the prefix are ignored.
    assert_eq!(p("02:00:00:00:01:37/40"), star);
    let nibble = p("02:00:00:00:01:10/44");
    assert!(nibble.contains(mac("02:00:00:00:01:1f")));
    assert!(!nibble.contains(mac("02:00:00:00:01:20")));
    assert!(p("00:00:00:00:00:00/0").contains(mac("ff:ff:ff:ff:ff:ff")));
    assert_eq!(star.to_string(), "02:00:00:00:01:00/40");
    for bad in [
        "*",
        "02:*:01",
        "02:00:00:00:01:00/49",
        "zz:00",
        "02:00:00:00:01:02:03",
        "",
    ] {
        assert!(bad.parse::<MacPrefix>().is_err(), "{bad}");
    }
}

/// A new MAC observed under an OUI rule gets its labels, lands in the group that
/// selects them, and the compiled policy now allows its traffic.
#[test]
fn an_observed_mac_assigned_by_prefix_lands_in_its_group_and_gets_its_policy() {
    let mut m = example();
    m.assignment = Model::from_yaml_str(
        "assignment:\n  rules:\n    - { mac_prefix: \"02:00:00:00:01:*\", labels: { app: web } }\n",
    )
    .expect("assignment")
    .assignment;
    let new_web = ("02:00:00:00:01:77", "10.0.1.77");
    let db = ("02:00:00:00:02:01", "10.0.2.21");
    let q = flow(new_web, db, 6, 5432);

    let (before, _) = compile_snapshot(&m, 1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(before.classify(&q).action, Action::Deny);
    assert_eq!(before.classify(&q).reason, Reason::Default);

    let obs = m.observe(mac(new_web.0), Some(ip(new_web.1)), None, T0);
    assert!(obs.new && obs.learned && obs.relabelled && obs.policy_may_change());
    let w = m.workloads.by_mac(mac(new_web.0)).expect("now a workload");
    assert_eq!(w.origin, Origin::Observed);
    assert_eq!(w.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(w.ips, ["10.0.1.77"]);
    assert_eq!(w.first_seen, Some(T0));

    let (after, c) = compile_snapshot(&m, 2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.groups[0].members, 3);
    let v = after.classify(&q);
    assert_eq!(v.action, Action::Allow);
    let Reason::Rule(id) = v.reason else {
        panic!("{v:?}")
    };
    assert_eq!(c.rules.user_rule(id), Some(10));

    // Seen again: nothing changes.
    let again = m.observe(mac(new_web.0), Some(ip(new_web.1)), None, T0);
    assert!(!again.new && !again.learned && !again.policy_may_change());
    // The model (with its new workload) still validates and round-trips.
    m.validate().unwrap_or_else(|e| panic!("{e}"));
    let text = m.to_yaml_string().expect("yaml");
    assert!(text.contains("origin: observed"), "{text}");
    assert_eq!(Model::from_yaml_str(&text).expect("reads back"), m);
}

fn assigned(strategy: Strategy) -> Model {
    let mut m = Model::from_yaml_str(
        r#"
assignment:
  rules:
    - { vlan: 20, labels: { env: prod } }
    - { cidr: 10.0.4.0/24, labels: { app: legacy, env: test } }
    - { mac_prefix: "02:00:00:00:04:*", vlan: 30, labels: { app: never } }
"#,
    )
    .expect("model");
    m.assignment.strategy = strategy;
    m
}

#[test]
fn first_match_gives_one_rules_labels() {
    let mut m = assigned(Strategy::First);
    let a = mac("02:00:00:00:04:09");
    m.observe(a, Some(ip("10.0.4.9")), Some(20), T0);
    let w = m.workloads.by_mac(a).expect("workload");
    assert_eq!(w.labels.len(), 1);
    assert_eq!(w.labels["env"], "prod");
    assert_eq!(w.vlan, Some(20));
}

#[test]
fn merge_combines_matching_rules_and_the_earliest_wins_per_key() {
    let mut m = assigned(Strategy::Merge);
    let a = mac("02:00:00:00:04:09");
    m.observe(a, Some(ip("10.0.4.9")), Some(20), T0);
    let w = m.workloads.by_mac(a).expect("workload");
    assert_eq!(w.labels["env"], "prod");
    assert_eq!(w.labels["app"], "legacy");
    assert_eq!(w.labels.len(), 2);
}

#[test]
fn an_address_learned_later_relabels_an_observed_workload() {
    let mut m = assigned(Strategy::First);
    let a = mac("02:00:00:00:05:01");
    // First seen without an address (e.g. an ARP probe): no rule matches.
    let obs = m.observe(a, None, None, T0);
    assert!(obs.new && !obs.relabelled);
    assert!(m.workloads.by_mac(a).expect("workload").labels.is_empty());
    let obs = m.observe(a, Some(ip("10.0.4.20")), None, Timestamp(T0.0 + 1));
    assert!(!obs.new && obs.learned && obs.relabelled);
    let w = m.workloads.by_mac(a).expect("workload");
    assert_eq!(w.labels["app"], "legacy");
    assert_eq!(w.first_seen, Some(T0));
}

#[test]
fn declared_workloads_learn_addresses_but_keep_their_labels() {
    let mut m = example();
    m.assignment = assigned(Strategy::First).assignment;
    let web1 = mac("02:00:00:00:01:01");
    let obs = m.observe(web1, Some(ip("10.0.4.99")), Some(20), T0);
    assert!(!obs.new && obs.learned && !obs.relabelled);
    let w = m.workloads.by_mac(web1).expect("workload");
    assert_eq!(w.origin, Origin::Declared);
    assert_eq!(w.labels["app"], "web");
    assert_eq!(w.labels.len(), 1);
    assert_eq!(w.ips, ["10.0.4.99"]);
}
