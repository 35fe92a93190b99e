//! The typed spec: what compile refuses, the named test form and its example.

use super::tests::{flow, ip, mac, v, BASE, DB, OTHER, TCP, UDP, WEB};
use super::*;

/// The YAML example in `named.rs`'s module documentation, exactly as written there.
fn doc_example() -> String {
    let src = include_str!("named.rs");
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
fn doc_example_resolves_and_behaves() {
    let spec = named::spec(&doc_example()).unwrap();
    assert_eq!(spec.default_mode, Mode::Audit);
    assert_eq!(
        spec.rules[0].ports,
        vec![PortRange::single(5432), PortRange::new(6000, 6010)]
    );
    assert_eq!(spec.rules[1].src, Side::Any);
    assert_eq!(spec.rules[1].dst, Side::Groups(vec![1]));
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
}

/// What the types cannot rule out is refused, each with where it was found:
/// compiling it would silently drop a rule (a deny among them).
#[test]
fn compile_refuses_what_the_types_allow_but_the_policy_cannot_mean() {
    let base = || named::spec(BASE).unwrap();
    let refused = |spec: PolicySpec| PolicySnapshot::compile(&spec, 1).unwrap_err();

    let mut s = base();
    s.rules[0].dst = Side::Groups(vec![1, 7]);
    let e = refused(s);
    assert_eq!(
        e,
        PolicyError::UnknownGroup {
            at: Place::Rule(1),
            index: 7,
            groups: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "rule 1: group index 7 is out of range (the policy has 2 groups)"
    );

    let mut s = base();
    s.endpoints[1].groups.push(2);
    assert!(matches!(
        refused(s),
        PolicyError::UnknownGroup {
            at: Place::Endpoint(1),
            index: 2,
            ..
        }
    ));

    let mut s = base();
    let mut twin = s.rules[0].clone();
    twin.action = Action::Deny;
    s.rules.push(twin);
    assert_eq!(refused(s), PolicyError::DuplicateRuleId(1));

    let mut s = base();
    s.rules[0].ports = vec![PortRange::new(90, 80)];
    assert_eq!(
        refused(s).to_string(),
        "rule 1: port range 90-80 is reversed"
    );

    let mut s = base();
    s.rules[0].proto = Proto::Icmp;
    assert_eq!(
        refused(s).to_string(),
        "rule 1: ports are only allowed with tcp or udp (protocol is icmp)"
    );

    let mut s = base();
    s.management.push(ManagementSpec {
        net: named::net("10.0.100.0/24").unwrap(),
        macs: vec![mac(DB.0)],
        proto: Proto::Any,
        ports: vec![PortRange::single(22)],
    });
    assert!(matches!(
        refused(s),
        PolicyError::PortsWithoutProtocol {
            at: Place::Management(0),
            ..
        }
    ));
}

/// What the types allow and has one meaning compiles: a MAC given twice is in
/// both endpoints' groups, an endpoint with no group is in none, host bits
/// of a network are cleared, an empty rule side matches nothing.
#[test]
fn lenient_where_the_meaning_is_plain() {
    let mut s = named::spec(BASE).unwrap();
    s.endpoints.push(EndpointSpec {
        member: Member::Mac(mac(WEB.0)),
        groups: vec![1],
    });
    s.endpoints.push(EndpointSpec {
        member: Member::Net(named::net("10.0.2.20/16").unwrap()),
        groups: vec![],
    });
    s.blocklist.push(named::net("198.51.100.7/24").unwrap());
    s.rules.push(RuleSpec {
        id: 2,
        order: -1,
        src: Side::Groups(vec![]),
        dst: Side::Any,
        proto: Proto::Any,
        ports: vec![],
        action: Action::Deny,
        comment: None,
    });
    let snap = PolicySnapshot::compile(&s, 1).unwrap();
    assert_eq!(
        snap.endpoint_groups(mac(WEB.0), ip(WEB.1)),
        vec!["web", "db"]
    );
    // In no group: the default mode (enforce), not an empty set's "learn".
    assert_eq!(
        snap.endpoint_mode(mac(OTHER.0), ip("10.0.2.99")),
        Mode::Enforce
    );
    assert!(snap
        .endpoint_groups(mac(OTHER.0), ip("10.0.2.99"))
        .is_empty());
    assert!(snap.is_blocked(ip("198.51.100.200")));
    let c = snap.classify(&flow(WEB, DB, TCP, 5432));
    assert_eq!(c, v(Action::Allow, Reason::Rule(1), Mode::Enforce, false));
}

#[test]
fn named_form_reports_what_it_cannot_resolve() {
    let e = named::spec("rules: [{id: 1, src: [a], dst: [any], action: allow}]").unwrap_err();
    assert_eq!(e, "unknown group \"a\"");
    let e = named::spec("endpoints: [{cidr: 10.0.0/33, groups: []}]").unwrap_err();
    assert_eq!(e, "invalid network \"10.0.0/33\"");
    assert!(named::spec("colour: red").is_err());
    assert_eq!(named::spec("").unwrap(), PolicySpec::default());
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
