use super::*;
use std::net::IpAddr;

fn mac(s: &str) -> MacAddr {
    parse_mac(s).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn flow(src: (&str, &str), dst: (&str, &str), proto: u8, port: u16) -> FlowQuery {
    FlowQuery {
        src_mac: mac(src.0),
        dst_mac: mac(dst.0),
        src_ip: ip(src.1),
        dst_ip: ip(dst.1),
        proto,
        dst_port: port,
    }
}

fn snap(yaml: &str) -> PolicySnapshot {
    let spec = PolicySpec::from_yaml_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    PolicySnapshot::compile(&spec, 7).unwrap_or_else(|e| panic!("{e}"))
}

fn problems(yaml: &str) -> Vec<String> {
    let spec = PolicySpec::from_yaml_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    let err = PolicySnapshot::compile(&spec, 1).unwrap_err();
    err.problems.iter().map(|p| p.to_string()).collect()
}

fn v(action: Action, reason: Reason, mode: Mode, would_deny: bool) -> Verdict {
    Verdict {
        action,
        reason,
        mode,
        would_deny,
    }
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const WEB: (&str, &str) = ("02:00:00:00:00:01", "10.0.1.10");
const DB: (&str, &str) = ("02:00:00:00:00:02", "10.0.2.20");
const MGMT: (&str, &str) = ("02:00:00:00:00:09", "10.0.100.5");
const OTHER: (&str, &str) = ("02:00:00:00:00:0f", "10.0.50.5");

const BASE: &str = "
groups: [{name: web}, {name: db}]
endpoints:
  - {mac: '02:00:00:00:00:01', groups: [web]}
  - {mac: '02:00:00:00:00:02', groups: [db]}
rules:
  - {id: 1, src: [web], dst: [db], proto: tcp, ports: [5432], action: allow}
";

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
fn quarantine_beats_allow_rule() {
    let s = snap(&format!("{BASE}quarantine: ['02:00:00:00:00:02']\n"));
    let c = s.classify(&flow(WEB, DB, TCP, 5432));
    assert_eq!(c, v(Action::Deny, Reason::Quarantine, Mode::Enforce, false));
    // Either direction.
    let c = s.classify(&flow(DB, WEB, TCP, 5432));
    assert_eq!(c.reason, Reason::Quarantine);
    assert!(s.is_quarantined(mac("02:00:00:00:00:02")));
    assert!(!s.is_quarantined(mac("02:00:00:00:00:01")));
}

#[test]
fn quarantine_applies_in_learn_mode_too() {
    let s = snap("default_mode: learn\nquarantine: ['02-00-00-00-00-0F']\n");
    let c = s.classify(&flow(WEB, OTHER, TCP, 80));
    assert_eq!(c, v(Action::Deny, Reason::Quarantine, Mode::Learn, false));
    let c = s.classify(&flow(WEB, DB, TCP, 80));
    assert_eq!(c, v(Action::Allow, Reason::Default, Mode::Learn, false));
}

#[test]
fn management_exception_only_from_its_cidr_and_port() {
    let s = snap(&format!(
        "{BASE}quarantine: ['02:00:00:00:00:02']\nmanagement: [{{cidr: 10.0.100.0/24, proto: tcp, ports: [22]}}]\n"
    ));
    let mgmt = v(Action::Allow, Reason::Management, Mode::Enforce, false);
    let quar = v(Action::Deny, Reason::Quarantine, Mode::Enforce, false);
    assert_eq!(s.classify(&flow(MGMT, DB, TCP, 22)), mgmt);
    // The quarantined MAC talking to the management station's port 22.
    assert_eq!(s.classify(&flow(DB, MGMT, TCP, 22)), mgmt);
    assert_eq!(s.classify(&flow(MGMT, DB, TCP, 23)), quar);
    assert_eq!(s.classify(&flow(MGMT, DB, UDP, 22)), quar);
    assert_eq!(s.classify(&flow(WEB, DB, TCP, 22)), quar);
    // A management exception does not open anything for non-quarantined MACs.
    assert_eq!(
        s.classify(&flow(MGMT, WEB, TCP, 22)).reason,
        Reason::Default
    );
}

#[test]
fn blocklist_beats_allow_rule() {
    let s = snap(&format!("{BASE}blocklist: [10.0.2.0/24]\n"));
    let c = s.classify(&flow(WEB, DB, TCP, 5432));
    assert_eq!(c, v(Action::Deny, Reason::Blocklist, Mode::Enforce, false));
    let c = s.classify(&flow(DB, WEB, TCP, 5432));
    assert_eq!(c.reason, Reason::Blocklist);
    // Blocklist is enforced in audit mode.
    let s = snap("default_mode: audit\nblocklist: ['10.0.1.10', '2001:db8::/32']\n");
    let c = s.classify(&flow(WEB, DB, TCP, 1));
    assert_eq!(c, v(Action::Deny, Reason::Blocklist, Mode::Audit, false));
    let c = s.classify(&flow(WEB, (DB.0, "2001:db8::5"), TCP, 1));
    assert_eq!(c.reason, Reason::Blocklist);
}

#[test]
fn order_beats_list_position() {
    let s = snap(&format!(
        "{BASE}  - {{id: 2, order: 1, src: [web], dst: [db], action: deny}}\n"
    ));
    // Rule 1 has the default order 0 (its position), so it comes first; add one with order 2.
    let c = s.classify(&flow(WEB, DB, TCP, 5432));
    assert_eq!(c.reason, Reason::Rule(1));
    let s = snap(
        "
groups: [{name: web}, {name: db}]
endpoints:
  - {mac: '02:00:00:00:00:01', groups: [web]}
  - {mac: '02:00:00:00:00:02', groups: [db]}
rules:
  - {id: 10, order: 2, src: [web], dst: [db], action: allow}
  - {id: 20, order: 1, src: [any], dst: [db], proto: tcp, ports: [5432], action: deny}
  - {id: 30, order: 1, src: [web], dst: [any], action: allow}
",
    );
    let c = s.classify(&flow(WEB, DB, TCP, 5432));
    assert_eq!(c, v(Action::Deny, Reason::Rule(20), Mode::Enforce, false));
    // Other ports: rule 30 (order 1, later in the list than 20) beats 10 (order 2).
    assert_eq!(s.classify(&flow(WEB, DB, TCP, 80)).reason, Reason::Rule(30));
    assert_eq!(s.rule_action(20), Some(Action::Deny));
    assert!(s.has_rule(10) && !s.has_rule(11));
}

#[test]
fn first_match_across_several_groups() {
    let s = snap(
        "
groups: [{name: a}, {name: b}, {name: x}, {name: y}]
endpoints:
  - {mac: '02:00:00:00:00:01', groups: [a, b]}
  - {mac: '02:00:00:00:00:02', groups: [x]}
  - {cidr: 10.0.2.0/24, groups: [y]}
rules:
  - {id: 1, src: [b], dst: [y], proto: udp, action: deny}
  - {id: 2, src: [a], dst: [x], action: allow}
  - {id: 3, src: [b], dst: [y], action: deny}
",
    );
    assert_eq!(s.classify(&flow(WEB, DB, UDP, 53)).reason, Reason::Rule(1));
    assert_eq!(s.classify(&flow(WEB, DB, TCP, 53)).reason, Reason::Rule(2));
    // Without the MAC group x, only y applies.
    let c = s.classify(&flow(WEB, (OTHER.0, "10.0.2.9"), TCP, 53));
    assert_eq!(c, v(Action::Deny, Reason::Rule(3), Mode::Enforce, false));
}

#[test]
fn modes() {
    let yaml = "
default_mode: learn
groups: [{name: web, mode: audit}, {name: db, mode: enforce}, {name: lab, mode: learn}]
endpoints:
  - {mac: '02:00:00:00:00:01', groups: [web]}
  - {mac: '02:00:00:00:00:02', groups: [db]}
  - {mac: '02:00:00:00:00:03', groups: [lab]}
  - {mac: '02:00:00:00:00:04', groups: [lab]}
rules:
  - {id: 1, src: [web], dst: [lab], proto: udp, action: deny}
  - {id: 2, src: [lab], dst: [lab], proto: udp, action: deny}
  - {id: 3, src: [lab], dst: [lab], proto: tcp, action: allow}
";
    let s = snap(yaml);
    let lab = ("02:00:00:00:00:03", "10.0.3.3");
    let lab2 = ("02:00:00:00:00:04", "10.0.3.4");
    // Audit (web) x learn (lab): audit. Default deny -> allow + would_deny.
    assert_eq!(
        s.classify(&flow(WEB, lab, TCP, 80)),
        v(Action::Allow, Reason::Default, Mode::Audit, true)
    );
    // Deny rule in audit -> allow + would_deny.
    assert_eq!(
        s.classify(&flow(WEB, lab, UDP, 53)),
        v(Action::Allow, Reason::Rule(1), Mode::Audit, true)
    );
    // Learn: default allow without would_deny; a deny rule is flagged.
    assert_eq!(
        s.classify(&flow(lab, lab2, 1, 0)),
        v(Action::Allow, Reason::Default, Mode::Learn, false)
    );
    assert_eq!(
        s.classify(&flow(lab, lab2, UDP, 53)),
        v(Action::Allow, Reason::Rule(2), Mode::Learn, true)
    );
    assert_eq!(
        s.classify(&flow(lab, lab2, TCP, 53)),
        v(Action::Allow, Reason::Rule(3), Mode::Learn, false)
    );
    // Strictest of the two: audit x enforce = enforce.
    assert_eq!(
        s.classify(&flow(WEB, DB, TCP, 80)),
        v(Action::Deny, Reason::Default, Mode::Enforce, false)
    );
    // No group: default_mode (learn) on both sides.
    assert_eq!(
        s.classify(&flow(OTHER, MGMT, TCP, 80)),
        v(Action::Allow, Reason::Default, Mode::Learn, false)
    );
    // No group (learn) x audit = audit.
    assert_eq!(s.classify(&flow(OTHER, WEB, TCP, 80)).mode, Mode::Audit);
    // default_mode audit.
    let s = snap(&yaml.replace("default_mode: learn", "default_mode: audit"));
    assert_eq!(
        s.classify(&flow(OTHER, MGMT, TCP, 80)),
        v(Action::Allow, Reason::Default, Mode::Audit, true)
    );
    assert_eq!(s.classify(&flow(OTHER, lab, TCP, 80)).mode, Mode::Audit);
    // Default default_mode: enforce.
    let s = snap(&yaml.replace("default_mode: learn", ""));
    assert_eq!(s.default_mode(), Mode::Enforce);
    assert_eq!(s.classify(&flow(OTHER, lab, TCP, 80)).action, Action::Deny);
}

#[test]
fn nested_cidr_groups_and_ipv6() {
    let s = snap(
        "
groups: [{name: campus}, {name: lab}, {name: host}, {name: v6}, {name: srv}]
endpoints:
  - {cidr: 10.1.0.0/16, groups: [campus]}
  - {cidr: 10.1.5.0/24, groups: [lab]}
  - {cidr: 10.1.5.7, groups: [host]}
  - {cidr: '2001:db8:1::/48', groups: [v6]}
  - {cidr: '2001:db8:1:2::/64', groups: [lab]}
  - {mac: '02:00:00:00:00:02', groups: [srv]}
rules:
  - {id: 1, src: [campus], dst: [srv], proto: tcp, ports: [80], action: allow}
  - {id: 2, src: [lab], dst: [srv], proto: tcp, ports: ['443-444'], action: allow}
  - {id: 3, src: [host], dst: [srv], proto: tcp, ports: [22], action: allow}
  - {id: 4, src: [v6], dst: [srv], proto: tcp, ports: [8080], action: allow}
",
    );
    let lab = ("02:00:00:00:00:01", "10.1.5.9");
    let host = ("02:00:00:00:00:01", "10.1.5.7");
    let campus = ("02:00:00:00:00:01", "10.1.9.9");
    let six = ("02:00:00:00:00:01", "2001:db8:1:2::9");
    let rule = |f: FlowQuery| s.classify(&f).reason;
    assert_eq!(rule(flow(lab, DB, TCP, 80)), Reason::Rule(1));
    assert_eq!(rule(flow(lab, DB, TCP, 444)), Reason::Rule(2));
    assert_eq!(rule(flow(campus, DB, TCP, 443)), Reason::Default);
    assert_eq!(rule(flow(host, DB, TCP, 80)), Reason::Rule(1));
    assert_eq!(rule(flow(host, DB, TCP, 443)), Reason::Rule(2));
    assert_eq!(rule(flow(host, DB, TCP, 22)), Reason::Rule(3));
    assert_eq!(rule(flow(lab, DB, TCP, 22)), Reason::Default);
    assert_eq!(rule(flow(six, DB, TCP, 8080)), Reason::Rule(4));
    assert_eq!(rule(flow(six, DB, TCP, 443)), Reason::Rule(2));
    assert_eq!(
        rule(flow(("02:00:00:00:00:01", "2001:db8:2::1"), DB, TCP, 8080)),
        Reason::Default
    );
    assert_eq!(
        s.endpoint_groups(mac(host.0), ip(host.1)),
        vec!["campus", "lab", "host"]
    );
}

#[test]
fn ports_and_protocols() {
    let s = snap(
        "
groups: [{name: web}, {name: db}]
endpoints:
  - {mac: '02:00:00:00:00:01', groups: [web]}
  - {mac: '02:00:00:00:00:02', groups: [db]}
rules:
  - {id: 1, src: [web], dst: [db], proto: tcp, ports: ['8000-8080', 9000], action: allow}
  - {id: 2, src: [web], dst: [db], proto: tcp, ports: ['8050-8100'], action: deny}
  - {id: 3, src: [web], dst: [db], proto: 132, action: allow}
  - {id: 4, src: [web], dst: [db], proto: icmp, action: allow}
  - {id: 5, src: [web], dst: [db], proto: any, action: deny}
  - {id: 6, src: [any], dst: [any], action: allow}
",
    );
    let r = |proto, port| s.classify(&flow(WEB, DB, proto, port)).reason;
    assert_eq!(r(TCP, 7999), Reason::Rule(5));
    assert_eq!(r(TCP, 8000), Reason::Rule(1));
    assert_eq!(r(TCP, 8080), Reason::Rule(1));
    assert_eq!(r(TCP, 8081), Reason::Rule(2));
    assert_eq!(r(TCP, 8100), Reason::Rule(2));
    assert_eq!(r(TCP, 8101), Reason::Rule(5));
    assert_eq!(r(TCP, 9000), Reason::Rule(1));
    assert_eq!(r(TCP, 65535), Reason::Rule(5));
    assert_eq!(r(UDP, 8000), Reason::Rule(5));
    assert_eq!(r(132, 0), Reason::Rule(3));
    assert_eq!(r(1, 0), Reason::Rule(4));
    assert_eq!(r(58, 0), Reason::Rule(5));
    assert_eq!(s.classify(&flow(DB, WEB, TCP, 1)).reason, Reason::Rule(6));
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
management: [{cidr: 300.0.0.0/8, ports: [22]}]
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
        format_mac(MacAddr([2, 0, 0, 0, 1, 10])),
        "02:00:00:00:01:0a"
    );
}

#[test]
fn empty_snapshot_denies_and_cell_publishes() {
    let e = PolicySnapshot::empty(0);
    assert_eq!(e.rule_count(), 0);
    assert_eq!(
        e.classify(&flow(WEB, DB, TCP, 1)),
        v(Action::Deny, Reason::Default, Mode::Enforce, false)
    );
    let cell = SnapshotCell::new(e);
    assert_eq!(cell.generation(), 0);
    let held = cell.load_full();
    cell.publish(snap(BASE));
    assert_eq!(cell.load().generation(), 7);
    assert_eq!(held.generation(), 0);
    assert_eq!(
        cell.load().classify(&flow(WEB, DB, TCP, 5432)).action,
        Action::Allow
    );
    fn send_sync<T: Send + Sync>() {}
    send_sync::<PolicySnapshot>();
    send_sync::<SnapshotCell>();
}

#[test]
fn large_policy_compiles_fast_and_looks_up() {
    // 20k groups, 100k rules: correctness spot checks; timing is printed for release runs.
    let n_groups = 20_000u32;
    let mut spec = PolicySpec {
        groups: (0..n_groups)
            .map(|g| GroupSpec {
                name: format!("g{g}"),
                mode: Mode::Enforce,
            })
            .collect(),
        ..PolicySpec::default()
    };
    for g in 0..n_groups {
        let m = g.to_be_bytes();
        spec.endpoints.push(EndpointSpec {
            mac: Some(format_mac(MacAddr([2, 0, m[0], m[1], m[2], m[3]]))),
            cidr: None,
            groups: vec![format!("g{g}")],
        });
    }
    for i in 0..100_000u32 {
        let (a, b) = (i % n_groups, (i * 7 + 1) % n_groups);
        spec.rules.push(RuleSpec {
            id: i,
            order: None,
            src: vec![format!("g{a}")],
            dst: vec![format!("g{b}")],
            proto: Proto::Tcp,
            ports: vec![PortRange::single((i % 1000) as u16 + 1)],
            action: if i % 2 == 0 {
                Action::Allow
            } else {
                Action::Deny
            },
            comment: None,
        });
    }
    let t = std::time::Instant::now();
    let s = PolicySnapshot::compile(&spec, 1).unwrap();
    eprintln!("compiled 100k rules in {:?}", t.elapsed());
    assert_eq!(s.rule_count(), 100_000);
    let m = |g: u32| {
        let b = g.to_be_bytes();
        MacAddr([2, 0, b[0], b[1], b[2], b[3]])
    };
    for i in [0u32, 1, 99_999, 54_321] {
        let (a, b) = (i % n_groups, (i * 7 + 1) % n_groups);
        let q = FlowQuery {
            src_mac: m(a),
            dst_mac: m(b),
            src_ip: ip("10.0.0.1"),
            dst_ip: ip("10.0.0.2"),
            proto: TCP,
            dst_port: (i % 1000) as u16 + 1,
        };
        let c = s.classify(&q);
        // The first rule of this (src, dst, port): i itself unless an earlier one collides.
        let first = (0..=i)
            .find(|&j| j % n_groups == a && (j * 7 + 1) % n_groups == b && j % 1000 == i % 1000)
            .unwrap();
        assert_eq!(c.reason, Reason::Rule(first));
    }
}

/// Timing only (run in release with `--ignored --nocapture`): lookup cost vs rule count.
#[test]
#[ignore]
fn classify_cost_vs_rule_count() {
    for n_rules in [10u32, 1_000, 100_000] {
        let n_groups = 1_000u32.min(n_rules);
        let mut spec = PolicySpec {
            groups: (0..n_groups)
                .map(|g| GroupSpec {
                    name: format!("g{g}"),
                    mode: Mode::Enforce,
                })
                .collect(),
            ..PolicySpec::default()
        };
        for g in 0..n_groups {
            spec.endpoints.push(EndpointSpec {
                mac: None,
                cidr: Some(format!("10.{}.{}.0/24", g / 256, g % 256)),
                groups: vec![format!("g{g}"), format!("g{}", (g + 1) % n_groups)],
            });
        }
        for i in 0..n_rules {
            spec.rules.push(RuleSpec {
                id: i,
                order: Some(i64::from(i % 97)),
                src: vec![format!("g{}", i % n_groups)],
                dst: vec![format!("g{}", (i / n_groups + i) % n_groups)],
                proto: Proto::Tcp,
                ports: vec![PortRange::new(
                    (i % 50) as u16 * 100,
                    (i % 50) as u16 * 100 + 150,
                )],
                action: Action::Allow,
                comment: None,
            });
        }
        let t = std::time::Instant::now();
        let s = PolicySnapshot::compile(&spec, 1).unwrap();
        let compile = t.elapsed();
        let queries: Vec<FlowQuery> = (0..1000u32)
            .map(|i| FlowQuery {
                src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
                src_ip: IpAddr::from([10, (i % 3) as u8, (i % 256) as u8, 1]),
                dst_ip: IpAddr::from([10, (i % 4) as u8, (i * 13 % 256) as u8, 1]),
                proto: TCP,
                dst_port: (i * 31 % 6000) as u16,
            })
            .collect();
        let t = std::time::Instant::now();
        let mut allowed = 0;
        for _ in 0..200 {
            for q in &queries {
                allowed += usize::from(s.classify(q).action == Action::Allow);
            }
        }
        let per = t.elapsed() / 200_000;
        eprintln!(
            "{n_rules:>7} rules: compile {compile:?}, classify {per:?}/flow ({allowed} allowed)"
        );
    }
}
