//! The nftables renderer: what each form contains, first-match resolution, and
//! (where `nft` is installed and we are root) that `nft -c` accepts the output.
//!
//! Compiled only with `cfg(test)`: its `unwrap`/`expect` fail a test on a
//! fixture the test wrote itself; none touches a packet, a file or a request
//! of the running appliance.

use super::best::first_match_for_tests as first_match;
use super::{render, render_at, Form, Hook};
use control::compile::compile;
use control::model::Model;
use std::io::Write as _;
use std::process::{Command, Stdio};

fn example() -> Model {
    Model::from_yaml_str(include_str!("../../../examples/policy.yaml")).expect("example parses")
}

/// `nft -c -f -` on `script`: `None` when nft cannot be run here (not
/// installed, or not root: skipped with the reason outside CI, a failure in
/// CI), else whether it accepted the script (and its output).
fn nft_check(script: &str) -> Option<(bool, String)> {
    if !dataplane::hostenv::root_with("the nft -c check", &["nft"]) {
        return None;
    }
    let mut child = match Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            assert!(!dataplane::hostenv::in_ci(), "nft -c must run in CI: {e}");
            eprintln!("nft check skipped: {e}");
            return None;
        }
    };
    child.stdin.take()?.write_all(script.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    Some((out.status.success(), text))
}

fn assert_nft_accepts(script: &str) {
    if let Some((ok, msg)) = nft_check(script) {
        assert!(
            ok,
            "nft -c refused the ruleset:\n{msg}\n--- ruleset ---\n{script}"
        );
    }
}

#[test]
fn linear_form_has_one_rule_per_compiled_rule_in_order() {
    let c = compile(&example()).expect("compiles");
    let s = render(&c, Form::Linear, "examples/policy.yaml").expect("renders");
    assert!(s.contains("table bridge bulkhead {"));
    assert!(s.contains("hook forward"));
    // web -> db PostgreSQL is rule 10 (compiled 10 << 8), before the SMB/RDP deny.
    let pg = s.find("comment \"rule 2560\"").expect("rule 10 rendered");
    let smb = s
        .find("tcp dport { 139, 445, 3389 }")
        .expect("smb deny rendered");
    assert!(pg < smb, "order kept");
    assert!(s.contains("ether saddr @g0_mac ether daddr @g1_mac tcp dport 5432 accept"));
    // Mixed modes (legacy is audit): deny and default go through the mode chain.
    assert!(s.contains("goto mode_verdict"));
    assert!(s.contains("chain mode_verdict"));
    // IP-set group and blocklist.
    assert!(s.contains("ip daddr @g5_ip4"));
    assert!(s.contains("ip saddr @blocklist_ip4 drop"));
    assert_nft_accepts(&s);
}

#[test]
fn quarantine_drops_both_ways_except_management() {
    let c = compile(&example()).expect("compiles");
    for form in [Form::Linear, Form::Best] {
        let s = render(&c, form, "x").expect("renders");
        assert!(s.contains("02:00:00:00:01:02"), "quarantined MAC listed");
        assert!(s.contains("ether saddr @quarantine jump quarantined_src"));
        assert!(s.contains("ether daddr @quarantine jump quarantined_dst"));
        assert!(s.contains("ip daddr 10.0.3.0/24 tcp dport 22 return"));
        assert!(s.contains("ip saddr 10.0.3.0/24 tcp dport 22 return"));
        // ARP passes before quarantine, as in the dataplane.
        let arp = s.find("ether type arp accept").expect("arp");
        let q = s.find("@quarantine jump").expect("quarantine");
        assert!(arp < q);
    }
}

#[test]
fn best_form_uses_class_maps_and_verdict_maps() {
    let c = compile(&example()).expect("compiles");
    let s = render(&c, Form::Best, "examples/policy.yaml").expect("renders");
    assert!(s.contains("meta mark set ether saddr map @src_mac"));
    assert!(s.contains("meta mark set ip saddr . meta mark map @src_ip"));
    assert!(s.contains("ether daddr vmap @dst_mac"));
    assert!(s.contains("mark . inet_proto . inet_service : verdict"));
    assert!(
        !s.contains("goto mode_verdict"),
        "modes resolved per class pair"
    );
    assert_nft_accepts(&s);
}

#[test]
fn first_match_keeps_the_earlier_rule_on_overlaps() {
    // rule 1: 80 allow; rule 2: 1-1000 deny; rule 3: everything allow.
    let r = [(80, 80, "a"), (1, 1000, "d"), (0, 65535, "a")];
    assert_eq!(
        first_match(&r),
        vec![
            (0, 0, "a"),
            (1, 79, "d"),
            (80, 80, "a"),
            (81, 1000, "d"),
            (1001, 65535, "a")
        ]
    );
    // Adjacent ranges with one verdict merge.
    let r = [(10, 19, "a"), (20, 29, "a"), (15, 25, "d")];
    assert_eq!(first_match(&r), vec![(10, 29, "a")]);
}

/// A policy with every shape: modes mixed, MAC and IP groups on both sides,
/// any, port ranges that overlap, protocols without ports, IPv6, disabled rules.
fn mixed(rules: usize) -> Model {
    let mut y = String::from("default_mode: audit\nworkloads:\n");
    for i in 0..40 {
        y += &format!(
            "  - {{ mac: \"02:00:00:00:{:02x}:{:02x}\", labels: {{ app: a{}, env: e{} }} }}\n",
            i / 256,
            i % 256,
            i % 10,
            i % 3
        );
    }
    y += "groups:\n";
    for g in 0..10 {
        let mode = ["enforce", "audit", "learn"][g % 3];
        y += &format!("  - {{ name: a{g}, mode: {mode}, match: {{ app: a{g} }} }}\n");
    }
    y += "  - { name: prod, match: { env: e0 } }\n";
    y += "  - { name: ext, ips: [198.51.100.0/24, 198.51.100.128/25, 10.9.0.0/16] }\n";
    y += "  - { name: ext6, mode: learn, ips: [\"2001:db8::/32\"] }\n";
    y += "rules:\n";
    for r in 0..rules {
        let src = ["a1", "any", "ext", "prod", "a3"][r % 5];
        let dst = ["a2", "ext6", "any", "a5", "ext"][(r / 5) % 5];
        let svc = match r % 4 {
            0 => format!(
                "{{ proto: tcp, ports: [{}, \"{}-{}\"] }}",
                1000 + r,
                2000 + r,
                2100 + r
            ),
            1 => format!("{{ proto: udp, ports: [{}] }}", 5000 + r),
            2 => "icmp".to_string(),
            _ => "{ proto: 47 }".to_string(),
        };
        let action = if r % 3 == 0 { "deny" } else { "allow" };
        y += &format!(
            "  - {{ id: {}, src: [{src}], dst: [{dst}], services: [{svc}], action: {action}{} }}\n",
            r + 1,
            if r % 17 == 16 { ", enabled: false" } else { "" }
        );
    }
    y += "  - { id: 99999, src: [any], dst: [any], services: [any], action: deny }\n";
    Model::from_yaml_str(&y).expect("generated model parses")
}

#[test]
fn both_forms_of_a_mixed_policy_are_valid_nftables() {
    let c = compile(&mixed(300)).expect("compiles");
    for form in [Form::Linear, Form::Best] {
        let s = render(&c, form, "mixed").expect("renders");
        assert_nft_accepts(&s);
    }
}

#[test]
fn an_all_mac_enforce_policy_gets_the_flat_map_with_first_match_resolved() {
    let y = r#"
default_mode: enforce
groups:
  - { name: a, macs: ["02:00:00:00:00:01", "02:00:00:00:00:02"] }
  - { name: b, macs: ["02:00:00:00:00:03"] }
rules:
  - { id: 1, src: [a], dst: [b], services: [{ proto: tcp, ports: ["22-23"] }], action: deny }
  - { id: 2, src: [a], dst: [b], services: [{ proto: tcp, ports: ["20-30"] }], action: allow }
  - { id: 3, src: [a], dst: [b], services: [icmp], action: allow }
"#;
    let c = compile(&Model::from_yaml_str(y).expect("parses")).expect("compiles");
    let s = render(&c, Form::Best, "flat").expect("renders");
    assert!(s.contains("ether saddr . ether daddr . meta l4proto . th dport vmap @flat_ports"));
    let pair = "02:00:00:00:00:02 . 02:00:00:00:00:03";
    for port in [20, 21, 24, 30] {
        assert!(
            s.contains(&format!("{pair} . tcp . {port} : accept")),
            "{port}\n{s}"
        );
    }
    for port in [22, 23, 31] {
        assert!(!s.contains(&format!("{pair} . tcp . {port} ")), "{port}");
    }
    assert!(s.contains(&format!("{pair} . 1 : accept")));
    assert!(!s.contains("mark"), "no class maps");
    assert_nft_accepts(&s);

    // An `any` side (or an audit group) needs the class form.
    let y2 = y.replace(
        "src: [a], dst: [b], services: [icmp]",
        "src: [any], dst: [b], services: [icmp]",
    );
    let c = compile(&Model::from_yaml_str(&y2).expect("parses")).expect("compiles");
    let s = render(&c, Form::Best, "classes").expect("renders");
    assert!(s.contains("meta mark set ether saddr map @src_mac"));
    assert_nft_accepts(&s);
}

#[test]
fn the_conntrack_form_accepts_known_connections_first_in_an_inet_table() {
    let c = compile(&example()).expect("compiles");
    for form in [Form::Best, Form::Linear] {
        let s = render_at(&c, form, Hook::InetConntrack, "ct").expect("renders");
        assert!(s.contains("table inet bulkhead {"));
        assert!(s.contains("stateful (br_netfilter + conntrack)"));
        let ct = s.find("ct state established,related accept").expect("ct");
        let quarantine = s.find("ether saddr @quarantine").expect("quarantine");
        assert!(quarantine < ct, "the quarantine cuts known connections too");
        let rules = s.rfind("\n\t\tdrop\n\t}").expect("the default");
        assert!(ct < rules);
        assert!(!s.contains("ether type"), "only IP reaches an inet hook");
        assert_nft_accepts(&s);
    }
}
