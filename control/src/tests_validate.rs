//! Parsing the model file and validating it: every problem, with its path.
//!
//! Compiled only with `cfg(test)`: its `unwrap`/`expect` fail a test on a
//! fixture the test wrote itself; none touches a packet, a file or a request
//! of the running appliance.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]

use crate::load::LoadError;
use crate::model::{LabelValues, Model, Scalar, ServiceRef, Timestamp};
use dataplane::policy::{Action, Mode};

fn yaml(text: &str) -> Model {
    Model::from_yaml_str(text).unwrap_or_else(|e| panic!("{e}"))
}

fn problems(text: &str) -> crate::Problems {
    yaml(text).validate().expect_err("the model has problems")
}

#[test]
fn example_policy_file_parses_and_validates() {
    let text = include_str!("../../examples/policy.yaml");
    let m = yaml(text);
    assert_eq!(m.workloads.len(), 7);
    assert_eq!(m.groups.len(), 6);
    assert_eq!(m.rules.len(), 7);
    assert_eq!(
        m.rules[4].services,
        vec![ServiceRef::from("smb"), "rdp".into()]
    );
    assert_eq!(m.groups[4].mode, Mode::Audit);
    assert_eq!(
        m.groups[0].selector.as_ref().map(|s| s["app"].clone()),
        Some(LabelValues::One("web".into()))
    );
    m.validate().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn yaml_round_trips() {
    let m = yaml(include_str!("../../examples/policy.yaml"));
    let text = m.to_yaml_string().expect("renders");
    assert_eq!(yaml(&text), m);
}

#[test]
fn toml_model_parses_like_yaml() {
    let toml = r#"
default_mode = "audit"
[[workloads]]
mac = "02:00:00:00:01:01"
name = "web-1"
labels = { app = "web", env = "prod" }
[[groups]]
name = "web"
match = { app = "web", env = ["prod", "staging"] }
[[services]]
name = "syslog"
entries = [{ proto = "udp", ports = [514] }, { proto = "tcp", ports = ["6514-6515"] }]
[[rules]]
id = 7
src = ["any"]
dst = ["web"]
services = ["syslog", { proto = "tcp", ports = [8080] }]
action = "deny"
enabled = false
[[quarantine]]
mac = "02:00:00:00:01:01"
at = 2025-01-02T03:04:05Z
"#;
    let m = Model::from_toml_str(toml).unwrap_or_else(|e| panic!("{e}"));
    m.validate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.default_mode, Mode::Audit);
    assert!(!m.rules[0].enabled);
    assert_eq!(m.rules[0].action, Action::Deny);
    assert_eq!(
        m.groups[0]
            .selector
            .as_ref()
            .map(|s| s["env"].as_slice().len()),
        Some(2)
    );
    assert_eq!(
        m.quarantine[0].at.map(|t| t.to_string()).as_deref(),
        Some("2025-01-02T03:04:05Z")
    );
    assert_eq!(
        m.services[0].entries[1].ports,
        vec![Scalar::Text("6514-6515".into())]
    );
}

#[test]
fn a_json_model_file_loads_as_its_yaml_and_locates_errors() {
    let dir = crate::testutil::TempDir::new("json-model");
    let yaml = Model::from_yaml_str(include_str!("../../examples/policy.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let path = dir.0.join("policy.json");
    let json = serde_json::to_string_pretty(&yaml).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&path, json).unwrap_or_else(|e| panic!("{e}"));
    let loaded = crate::load_model(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded, yaml);
    std::fs::write(&path, "{\n  \"rules\": [1]\n}").unwrap_or_else(|e| panic!("{e}"));
    let e = crate::load_model(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.starts_with(&format!("{}:2:13: invalid type", path.display())),
        "{e}"
    );
}

#[test]
fn validation_reports_every_problem_with_its_path() {
    let p = problems(
        r#"
workloads:
  - { mac: "02:00:00:00:01:01", labels: { app: web } }
  - { mac: "02:00:00:00:01:01" }
  - { mac: "02:00:00:00:01:0g", ips: [10.0.0.300] }
  - { mac: "02:00:00:00:01:03", labels: { "bad key": x }, vlan: 5000 }
groups:
  - { name: web, match: { app: web } }
  - { name: web, macs: ["02:00:00:00:01:01"] }
  - { name: empty, match: {} }
  - { name: none }
  - { name: two, macs: [], ips: [] }
  - { name: out, ips: ["10.0.0.0/33", 198.51.100.0/24] }
  - { name: any, macs: [] }
  - { name: sel, match: { app: [] } }
services:
  - { name: app, proto: tcp, ports: [70000, "90-80"] }
  - { name: app, proto: udp }
  - { name: weird, proto: icmp, ports: [1] }
  - { name: nothing }
rules:
  - { id: 1, src: [web], dst: [dbb], services: [ssh], action: allow }
  - { id: 1, src: [any, web], dst: [], services: [smbb], action: deny }
  - { id: 3, src: [web], dst: [web], services: [], action: allow }
  - { id: 4, src: [web], dst: [any], services: [{ proto: tcpp }, { proto: udp, ports: [99999] }], action: allow }
  - { id: 16777216, src: [web], dst: [web], services: [any], action: allow }
management:
  - { cidr: "10.0.3.0/24x", services: [ssh] }
quarantine:
  - { mac: "zz" }
blocklist: ["203.0.113.0/24", "nope"]
assignment:
  rules:
    - { labels: { app: x } }
    - { mac_prefix: "02:00:*:00", labels: { app: x } }
    - { cidr: "10.0.0.0/8", vlan: 4096, labels: { app: x } }
"#,
    );
    let expect = [
        ("workloads[1].mac", "duplicate MAC"),
        ("workloads[2].mac", "invalid MAC \"02:00:00:00:01:0g\""),
        ("workloads[2].ips[0]", "invalid IP address"),
        ("workloads[3].labels.bad key", "may not contain whitespace"),
        ("workloads[3].vlan", "out of range"),
        (
            "groups[1].name",
            "duplicate group name \"web\" (also groups[0])",
        ),
        ("groups[2].match", "empty selector"),
        ("groups[3]", "needs one of match"),
        ("groups[4]", "only one of"),
        ("groups[5].ips[0]", "invalid CIDR \"10.0.0.0/33\""),
        ("groups[6].name", "reserved"),
        ("groups[7].match.app", "empty list of values"),
        ("services[0].ports[0]", "port 70000 out of range"),
        ("services[0].ports[1]", "reversed"),
        ("services[1].name", "duplicate service name"),
        ("services[2].ports", "only allowed with proto tcp or udp"),
        ("services[3]", "needs proto"),
        ("rules[0].dst[0]", "unknown group \"dbb\""),
        ("rules[1].id", "duplicate rule id 1 (also rules[0])"),
        ("rules[1].src[0]", "cannot be combined"),
        ("rules[1].dst", "empty group list"),
        ("rules[1].services[0]", "unknown service \"smbb\""),
        ("rules[2].services", "no services"),
        ("rules[3].services[0].proto", "invalid protocol"),
        ("rules[3].services[1].ports[0]", "out of range"),
        ("rules[4].id", "above the largest"),
        ("management[0].cidr", "invalid CIDR"),
        ("management[0]", "name the management hosts"),
        ("quarantine[0].mac", "invalid MAC"),
        ("blocklist[1]", "invalid CIDR \"nope\""),
        ("assignment.rules[0]", "at least one of"),
        ("assignment.rules[1].mac_prefix", "invalid MAC prefix"),
        ("assignment.rules[2].vlan", "out of range"),
    ];
    for (path, text) in expect {
        assert!(p.has(path, text), "{path}: {text} missing in:\n{p}");
    }
    assert_eq!(p.0.len(), expect.len(), "unexpected extra problems:\n{p}");
    // The display is one problem per line, each with its path.
    let shown = p.to_string();
    assert!(shown
        .lines()
        .any(|l| l == "rules[1].services[0]: unknown service \"smbb\""));
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let e = Model::from_yaml_str("groups:\n  - name: web\n   mode: enforce\n").expect_err("bad");
    assert!(matches!(e, LoadError::Parse { line: Some(3), .. }), "{e}");
    let e = Model::from_yaml_str(
        "rules:\n  - { id: 1, src: [a], dst: [b], services: [ssh], action: maybe }\n",
    )
    .expect_err("bad action");
    assert_eq!(e.line(), Some(2), "{e}");
    let e =
        Model::from_toml_str("[[groups]]\nname = \"web\"\nmodee = \"audit\"\n").expect_err("bad");
    assert!(e.to_string().contains("<toml>:3:1"), "{e}");
    let e = Model::from_yaml_str("quarantine: [{ mac: \"02:00:00:00:01:01\", at: yesterday }]\n")
        .expect_err("bad time");
    assert!(e.to_string().contains("RFC 3339"), "{e}");
}

#[test]
fn model_files_load_by_extension_with_located_errors() {
    let dir = crate::testutil::TempDir::new("load-model");
    let yaml_path = dir.0.join("p.yml");
    std::fs::write(
        &yaml_path,
        "groups: [{ name: web, macs: [\"02:00:00:00:00:01\"] }]\n",
    )
    .expect("write");
    assert_eq!(crate::load_model(&yaml_path).expect("yaml").groups.len(), 1);
    let toml_path = dir.0.join("p.toml");
    std::fs::write(&toml_path, "default_mode = \"learn\"\n").expect("write");
    assert_eq!(
        crate::load_model(&toml_path).expect("toml").default_mode,
        Mode::Learn
    );
    let broken = dir.0.join("broken.yaml");
    std::fs::write(&broken, "groups:\n  - name: web\n  - nmae: db\n").expect("write");
    let err = crate::load_model(&broken).expect_err("broken");
    assert_eq!(err.line(), Some(3), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}:3:", broken.display())),
        "{err}"
    );
    let ini = dir.0.join("p.ini");
    std::fs::write(&ini, "{}").expect("write");
    assert!(matches!(
        crate::load_model(&ini),
        Err(LoadError::UnknownFormat { .. })
    ));
    assert!(matches!(
        crate::load_model(&dir.0.join("missing.yaml")),
        Err(LoadError::Io { .. })
    ));
}

#[test]
fn empty_file_is_an_empty_valid_model() {
    let m = yaml("# nothing yet\n");
    assert_eq!(m, Model::default());
    m.validate().expect("valid");
}

#[test]
fn timestamps_print_as_rfc3339() {
    let t: Timestamp = "2025-01-02T03:04:05Z".parse().expect("time");
    assert_eq!(t.0, 1_735_787_045_000_000_000);
    assert_eq!(t.to_string(), "2025-01-02T03:04:05Z");
    assert_eq!(
        Timestamp(t.0 + 5).to_string(),
        "2025-01-02T03:04:05.000000005Z"
    );
}

/// The example in the `model` module documentation is a valid model.
#[test]
fn the_documented_example_is_valid() {
    let src = include_str!("model.rs");
    let text: String = src
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .skip_while(|l| !l.trim_start().starts_with("```yaml"))
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with("```"))
        .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
        .collect();
    assert!(text.contains("assignment:"), "{text}");
    let m = yaml(&text);
    m.validate().unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (_, c) = crate::compile_snapshot(&m, 1).unwrap_or_else(|e| panic!("{e}"));
    // Rule 20 is disabled; rule 10 is postgresql (one protocol).
    assert_eq!(c.rules.compiled_len(), 1);
}

#[test]
fn numeric_and_boolean_label_values_are_kept_as_text() {
    let m = yaml(
        r#"
workloads:
  - { mac: "02:00:00:00:01:01", labels: { zone: 1, pci: true } }
groups:
  - { name: z1, match: { zone: 1 } }
  - { name: z12, match: { zone: [1, 2], pci: true } }
assignment:
  rules: [{ vlan: 20, labels: { zone: 20 } }]
"#,
    );
    assert_eq!(m.workloads[0].labels["zone"], "1");
    assert_eq!(m.assignment.rules[0].labels["zone"], "20");
    let c = crate::compile(&m).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.groups[0].members, 1);
    assert_eq!(c.groups[1].members, 1);
}
