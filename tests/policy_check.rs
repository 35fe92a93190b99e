//! `bulkhead policy check FILE` as a user runs it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod cli;

use cli::bulkhead;
use std::path::PathBuf;

fn tmp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bulkhead-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write temp file");
    p
}

fn check(path: &str) -> (Option<i32>, String, String) {
    let o = bulkhead(&["policy", "check", path]);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_example_policy_is_valid_and_summarised() {
    let (code, out, err) = check("examples/policy.yaml");
    assert_eq!(code, Some(0), "{err}");
    for expect in [
        "examples/policy.yaml: valid. 7 workloads; 6 groups: web (enforce, 2 members)",
        "legacy (audit, 2 members)",
        "internet (enforce, 2 CIDRs)",
        "7 rules (7 enabled), compiled to 10 dataplane rules",
        "1 quarantined",
    ] {
        assert!(out.contains(expect), "{expect} missing: {out}");
    }
    assert_eq!(out.lines().count(), 1, "one paragraph: {out}");
}

#[test]
fn every_problem_is_printed_with_its_path_and_the_exit_code_is_1() {
    let p = tmp(
        "bad.yaml",
        r#"
workloads:
  - { mac: "02:00:00:00:01:01", labels: { app: web } }
  - { mac: "02:00:00:00:01:01", labels: { app: web } }
groups:
  - { name: web, match: { app: web } }
  - { name: db, match: {} }
rules:
  - { id: 1, src: [web], dst: [db], services: [postgresql], action: allow }
  - { id: 2, src: [web], dst: [dbb], services: [smbb, { proto: tcp, ports: [70000] }], action: deny }
blocklist: [not-a-cidr]
"#,
    );
    let (code, out, err) = check(p.to_str().expect("utf-8"));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.is_empty());
    for expect in [
        "6 problems",
        "bad.yaml: workloads[1].mac: duplicate MAC",
        "bad.yaml: groups[1].match: empty selector",
        "bad.yaml: rules[1].dst[0]: unknown group \"dbb\"",
        "bad.yaml: rules[1].services[0]: unknown service \"smbb\"",
        "bad.yaml: rules[1].services[1].ports[0]: port 70000 out of range",
        "bad.yaml: blocklist[0]: invalid CIDR",
    ] {
        assert!(err.contains(expect), "{expect} missing: {err}");
    }
}

#[test]
fn syntax_errors_give_line_and_column() {
    let p = tmp("syntax.yaml", "groups:\n  - name: web\n   mode: enforce\n");
    let (code, _, err) = check(p.to_str().expect("utf-8"));
    assert_eq!(code, Some(1));
    assert!(err.contains("syntax.yaml:3:"), "{err}");
    let p = tmp("syntax.toml", "[[rules]]\nid = 1\nsrc = [\"a\"\n");
    let (code, _, err) = check(p.to_str().expect("utf-8"));
    assert_eq!(code, Some(1));
    assert!(err.contains("syntax.toml:"), "{err}");
    let (code, _, err) = check("examples/sample.pcap");
    assert_eq!(code, Some(1));
    assert!(err.contains("unsupported policy file type"), "{err}");
}

#[test]
fn toml_models_are_checked_too() {
    let p = tmp(
        "ok.toml",
        r#"
[[workloads]]
mac = "02:00:00:00:01:01"
labels = { app = "web" }
[[groups]]
name = "web"
mode = "audit"
match = { app = "web" }
[[rules]]
id = 5
src = ["web"]
dst = ["any"]
services = ["dns", "rdp"]  # tcp and udp: two compiled rules
action = "allow"
"#,
    );
    let (code, out, err) = check(p.to_str().expect("utf-8"));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("web (audit, 1 member)"), "{out}");
    assert!(out.contains("compiled to 2 dataplane rules"), "{out}");
}
