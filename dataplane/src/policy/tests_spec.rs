//! Loading (YAML, TOML, files), validation errors and the documented example.

use super::tests::{flow, ip, mac, problems, v, BASE, DB, TCP, UDP, WEB};
use super::*;

/// The YAML example in `spec.rs`'s module documentation, exactly as written there.
fn doc_example() -> String {
    let src = include_str!("spec.rs");
    let mut out = String::new();
    let mut inside = false;
    for line in src.lines().take_while(|l| l.starts_with("//!")) {
        let text = line
            .strip_prefix("//!")
            .unwrap()
            .strip_prefix(' ')
            .unwrap_or("");
        if text.starts_with("```") {
            if inside {
                break;
            }
            inside = text == "```yaml";
            continue;
        }
        if inside {
            out.push_str(text);
            out.push('\n');
        }
    }
    assert!(out.contains("rules:"), "no yaml example found");
    out
}

#[test]
fn doc_example_parses_and_behaves() {
    let spec = PolicySpec::from_yaml_str(&doc_example()).unwrap();
    assert_eq!(spec.default_mode, Mode::Audit);
    assert_eq!(
        spec.rules[0].ports,
        vec![PortRange::single(5432), PortRange::new(6000, 6010)]
    );
    let s = PolicySnapshot::compile(&spec, 3).unwrap();
    assert_eq!(s.generation(), 3);
    assert_eq!(s.rule_count(), 2);
    assert_eq!(s.rule_comment(1), Some("web tier reaches postgres"));
    let web = ("02:00:00:00:01:0a", "10.0.1.10");
    let db = ("02:00:00:00:02:01", "10.0.2.7");
    let c = s.classify(&flow(web, db, TCP, 6005));
    assert_eq!(c, v(Action::Allow, Reason::Rule(1), Mode::Enforce, false));
    // Rule 2 (order -10) comes first for udp/161 to db.
    let c = s.classify(&flow(web, db, UDP, 161));
    assert_eq!(c, v(Action::Deny, Reason::Rule(2), Mode::Enforce, false));
    // 10.0.9.7 is in legacy (learn) and db (enforce): strictest is enforce.
    assert_eq!(
        s.endpoint_groups(mac(db.0), ip("10.0.9.7")),
        vec!["db", "legacy"]
    );
    assert_eq!(s.endpoint_mode(mac(db.0), ip("10.0.9.7")), Mode::Enforce);
    assert!(s.is_quarantined(mac("02:00:00:00:0f:01")));
    assert!(s.is_blocked(ip("2001:db8:bad::1")));
    // Round trip through YAML.
    let again = PolicySpec::from_yaml_str(&spec.to_yaml_string().unwrap()).unwrap();
    assert_eq!(again, spec);
}

#[test]
fn validation_collects_every_problem() {
    let got = problems(
        "
groups: [{name: web}, {name: db}, {name: web}, {name: any}]
endpoints:
  - {mac: '02:00:00:00:00:01', groups: [web]}
  - {mac: '02:00:00:00:00:01', groups: [db]}
  - {cidr: 10.0.0/33, groups: [db]}
  - {mac: 'zz:00:00:00:00:01', groups: [nope]}
  - {groups: [db]}
  - {mac: '02:00:00:00:00:03', cidr: 10.0.0.0/8, groups: []}
rules:
  - {id: 1, src: [web], dst: [db], action: allow}
  - {id: 1, src: [], dst: [db], action: allow}
  - {id: 2, src: [web], dst: [db], proto: icmp, ports: [1], action: allow}
  - {id: 3, src: [web], dst: [db, dbb], proto: tcp, ports: ['90-80'], action: deny}
  - {id: 4, src: [any, web], dst: [any], action: deny}
quarantine: [nope]
management: [{cidr: 300.0.0.0/8, macs: ['02:00:00:00:00:09'], ports: [22]}]
blocklist: [fe80::/200]
",
    );
    let want = [
        "groups[2].name: duplicate group name \"web\" (also groups[0])",
        "groups[3].name: \"any\" is reserved (it means every endpoint in rules)",
        "endpoints[1].mac: duplicate endpoint for MAC \"02:00:00:00:00:01\" (also endpoints[0])",
        "endpoints[2].cidr: invalid CIDR \"10.0.0/33\"",
        "endpoints[3].groups[0]: unknown group \"nope\"",
        "endpoints[3].mac: invalid MAC \"zz:00:00:00:00:01\"",
        "endpoints[4]: needs a mac or a cidr",
        "endpoints[5].groups: empty group list: name at least one group",
        "endpoints[5]: give either mac or cidr, not both",
        "quarantine[0]: invalid MAC \"nope\"",
        "management[0].cidr: invalid CIDR \"300.0.0.0/8\"",
        "management[0].ports: ports are only allowed with proto tcp or udp (proto is any)",
        "blocklist[0]: invalid CIDR \"fe80::/200\"",
        "rules[1].id: duplicate rule id 1 (also rules[0])",
        "rules[1].src: empty group list: name groups or \"any\"",
        "rules[2].ports: ports are only allowed with proto tcp or udp (proto is icmp)",
        "rules[3].dst[1]: unknown group \"dbb\"",
        "rules[3].ports[0]: port range reversed: 90-80",
        "rules[4].src[0]: \"any\" cannot be combined with group names",
    ];
    for w in want {
        assert!(
            got.iter().any(|g| g == w),
            "missing {w:?} in:\n{}",
            got.join("\n")
        );
    }
    assert_eq!(got.len(), want.len(), "{}", got.join("\n"));
    // Display: one per line.
    let spec =
        PolicySpec::from_yaml_str("rules: [{id: 1, src: [a], dst: [b], action: allow}]").unwrap();
    let err = PolicySnapshot::compile(&spec, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "rules[0].src[0]: unknown group \"a\"\nrules[0].dst[0]: unknown group \"b\""
    );
}

#[test]
fn yaml_syntax_and_type_errors_have_lines() {
    let err = PolicySpec::from_yaml_str("groups:\n  - name: web\n  - name: [\n").unwrap_err();
    assert!(err.line().is_some(), "{err}");
    let err = PolicySpec::from_yaml_str("groups:\n  - name: web\nrules:\n  - id: 1\n    src: [web]\n    dst: [web]\n    proto: tcpp\n    action: allow\n").unwrap_err();
    assert_eq!(err.line(), Some(7), "{err}");
    assert!(err.to_string().starts_with("<yaml>:7:"), "{err}");
    assert!(err.to_string().contains("\"tcpp\""), "{err}");
    let err = PolicySpec::from_yaml_str("colour: red\n").unwrap_err();
    assert!(err.to_string().starts_with("<yaml>:1:"), "{err}");
    let err = PolicySpec::from_yaml_str("rules:\n  - {id: 1, src: [a], dst: [b], action: maybe}\n")
        .unwrap_err();
    assert_eq!(err.line(), Some(2), "{err}");
    // Empty file is an empty policy.
    assert_eq!(
        PolicySpec::from_yaml_str("# nothing\n").unwrap(),
        PolicySpec::default()
    );
}

#[test]
fn toml_loading_and_errors() {
    let text = r#"
default_mode = "audit"

[[groups]]
name = "web"
mode = "audit"

[[groups]]
name = "db"
mode = "learn"

[[endpoints]]
mac = "02:00:00:00:00:01"
groups = ["web"]

[[endpoints]]
cidr = "10.0.2.0/24"
groups = ["db"]

[[rules]]
id = 1
src = ["web"]
dst = ["db"]
proto = "tcp"
ports = [5432, "6000-6001"]
action = "deny"
"#;
    let spec = PolicySpec::from_toml_str(text).unwrap();
    let s = PolicySnapshot::compile(&spec, 1).unwrap();
    assert_eq!(
        s.classify(&flow(WEB, DB, TCP, 6001)),
        v(Action::Allow, Reason::Rule(1), Mode::Audit, true)
    );
    let bad = text.replace("proto = \"tcp\"", "proto = 300");
    let err = PolicySpec::from_toml_str(&bad).unwrap_err();
    assert_eq!(err.line(), Some(24), "{err}");
    let err = PolicySpec::from_toml_str("[[groups]\nname = 1\n").unwrap_err();
    assert_eq!(err.line(), Some(1), "{err}");
}

#[test]
fn load_spec_from_files() {
    let dir = std::env::temp_dir().join(format!("bulkhead-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = dir.join("p.yml");
    std::fs::write(&yaml, BASE).unwrap();
    assert_eq!(load_spec(&yaml).unwrap().rules.len(), 1);
    let toml_path = dir.join("p.toml");
    std::fs::write(&toml_path, "default_mode = \"learn\"\n").unwrap();
    assert_eq!(load_spec(&toml_path).unwrap().default_mode, Mode::Learn);
    let broken = dir.join("broken.yaml");
    std::fs::write(&broken, "groups:\n  - name: web\n  - nmae: db\n").unwrap();
    let err = load_spec(&broken).unwrap_err();
    assert_eq!(err.line(), Some(3), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}:3:", broken.display())),
        "{err}"
    );
    let json = dir.join("p.json");
    std::fs::write(&json, "{}").unwrap();
    assert!(matches!(
        load_spec(&json),
        Err(SpecError::UnknownFormat { .. })
    ));
    assert!(matches!(
        load_spec(&dir.join("missing.yaml")),
        Err(SpecError::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mac_parsing() {
    assert_eq!(
        parse_mac("02:00:00:00:01:0a"),
        Some(MacAddr([2, 0, 0, 0, 1, 10]))
    );
    assert_eq!(
        parse_mac("02-00-00-00-01-0A"),
        Some(MacAddr([2, 0, 0, 0, 1, 10]))
    );
    assert_eq!(parse_mac("02:00:00:00:01"), None);
    assert_eq!(parse_mac("02:00:00:00:01:0a:00"), None);
    assert_eq!(parse_mac("02:00-00:00:01:0a"), None);
    assert_eq!(parse_mac("2:00:00:00:01:0a"), None);
    assert_eq!(
        MacAddr([2, 0, 0, 0, 1, 10]).to_string(),
        "02:00:00:00:01:0a"
    );
}
