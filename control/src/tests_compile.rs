//! Model -> spec -> snapshot: group resolution, service expansion, the rule id map
//! and the verdicts of a few flows.
//!
//! Compiled only with `cfg(test)`: its `unwrap`/`expect` fail a test on a
//! fixture the test wrote itself; none touches a packet, a file or a request
//! of the running appliance.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]

use crate::compile::{compile, compile_snapshot, compiled_rule_id, user_rule_id, GroupKind};
use crate::model::{Group, LabelValues, Model, Rule, ServiceRef, Workload};
use dataplane::policy::{
    parse_mac, Action, FlowQuery, Member, Mode, PolicySnapshot, PortRange, Proto, Reason, Verdict,
};
use dataplane::wire::MacAddr;
use std::collections::BTreeMap;
use std::net::IpAddr;

pub(crate) fn example() -> Model {
    Model::from_yaml_str(include_str!("../../examples/policy.yaml")).expect("example parses")
}

/// A flow from `src` to `dst` (MAC, IP) over `proto`/`port`.
pub(crate) fn flow(src: (&str, &str), dst: (&str, &str), proto: u8, port: u16) -> FlowQuery {
    let mac = |s: &str| parse_mac(s).expect("mac");
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    FlowQuery {
        src_mac: mac(src.0),
        dst_mac: mac(dst.0),
        src_ip: ip(src.1),
        dst_ip: ip(dst.1),
        proto,
        dst_port: port,
    }
}

const WEB1: (&str, &str) = ("02:00:00:00:01:01", "10.0.1.11");
const DB1: (&str, &str) = ("02:00:00:00:02:01", "10.0.2.21");
const ADMIN: (&str, &str) = ("02:00:00:00:03:01", "10.0.3.31");
const LEGACY: (&str, &str) = ("02:00:00:00:04:01", "10.0.4.41");
const FILES: (&str, &str) = ("02:00:00:00:04:02", "10.0.4.42");
const DNS: (&str, &str) = ("02:00:00:00:09:53", "10.0.9.53");
const OUT: (&str, &str) = ("02:00:00:00:ff:ff", "198.51.100.7");

/// The verdict's action and the user rule behind it (`None` = not a rule).
fn decide(s: &PolicySnapshot, map: &crate::RuleMap, q: FlowQuery) -> (Action, Option<u32>, bool) {
    let v: Verdict = s.classify(&q);
    let user = match v.reason {
        Reason::Rule(id) => Some(map.user_rule(id).expect("compiled id is mapped")),
        _ => None,
    };
    (v.action, user, v.would_deny)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn example_groups_resolve_to_mac_and_cidr_endpoints() {
    let c = compile(&example()).unwrap_or_else(|e| panic!("{e}"));
    // Groups keep their model index: web is 0, internet 5.
    let web = c.spec.endpoints.iter().filter(|e| e.groups == [0]);
    assert!(web.clone().all(|e| matches!(e.member, Member::Mac(_))));
    assert_eq!(web.count(), 2);
    let internet: Vec<String> = c
        .spec
        .endpoints
        .iter()
        .filter(|e| e.groups == [5])
        .filter_map(|e| match e.member {
            Member::Net(n) => Some(n.to_string()),
            Member::Mac(_) => None,
        })
        .collect();
    assert_eq!(internet, ["198.51.100.0/24", "203.0.113.0/24"]);
    let summary: Vec<_> = c
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.kind, g.members))
        .collect();
    assert_eq!(summary[0], ("web", GroupKind::Selector, 2));
    assert_eq!(summary[4], ("legacy", GroupKind::Selector, 2));
    assert_eq!(summary[5], ("internet", GroupKind::Ips, 2));
    assert_eq!(c.spec.quarantine, [MacAddr([2, 0, 0, 0, 1, 2])]);
    assert_eq!(c.spec.management.len(), 1);
    assert_eq!(c.spec.management[0].ports, [PortRange::single(22)]);
}

#[test]
fn services_expand_to_one_compiled_rule_per_protocol_with_mapped_ids() {
    let c = compile(&example()).unwrap_or_else(|e| panic!("{e}"));
    // smb + rdp = tcp {139, 445, 3389} and udp {3389}.
    assert_eq!(
        c.rules.compiled_ids(50),
        [compiled_rule_id(50, 0), compiled_rule_id(50, 1)]
    );
    let r50: Vec<_> = c
        .spec
        .rules
        .iter()
        .filter(|r| user_rule_id(r.id) == 50)
        .collect();
    assert_eq!(r50[0].proto, Proto::Tcp);
    assert_eq!(
        r50[0].ports,
        [
            PortRange::single(139),
            PortRange::single(445),
            PortRange::single(3389)
        ]
    );
    assert_eq!(r50[1].proto, Proto::Udp);
    assert_eq!(r50[0].order, r50[1].order);
    assert_eq!(r50[0].order, 4);
    // dns = udp/53 and tcp/53: tcp sorts first by protocol number.
    assert_eq!(c.rules.compiled_ids(30).len(), 2);
    // icmp = icmp and icmpv6 (ping6 is ping).
    assert_eq!(c.rules.compiled_ids(40).len(), 2);
    assert_eq!(c.rules.compiled_len(), 10);
    assert_eq!(c.rules.user_rule(compiled_rule_id(10, 0)), Some(10));
    assert_eq!(c.rules.user_rule(compiled_rule_id(10, 1)), None);
    let users: Vec<u32> = c.rules.iter().map(|(u, _)| u).collect();
    assert_eq!(users, [10, 20, 30, 40, 50, 60, 70]);
}

#[test]
fn example_snapshot_classifies_flows_by_user_rule() {
    let (s, c) = compile_snapshot(&example(), 7).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.generation(), 7);
    let m = &c.rules;
    assert_eq!(
        decide(&s, m, flow(WEB1, DB1, 6, 5432)),
        (Action::Allow, Some(10), false)
    );
    assert_eq!(
        decide(&s, m, flow(WEB1, DB1, 6, 445)),
        (Action::Deny, Some(50), false)
    );
    assert_eq!(
        decide(&s, m, flow(WEB1, DB1, 6, 139)),
        (Action::Deny, Some(50), false)
    );
    assert_eq!(
        decide(&s, m, flow(ADMIN, WEB1, 17, 3389)),
        (Action::Deny, Some(50), false)
    );
    assert_eq!(
        decide(&s, m, flow(ADMIN, DB1, 6, 22)),
        (Action::Allow, Some(20), false)
    );
    assert_eq!(
        decide(&s, m, flow(WEB1, DNS, 6, 53)),
        (Action::Allow, Some(30), false)
    );
    assert_eq!(
        decide(&s, m, flow(WEB1, DB1, 1, 0)),
        (Action::Allow, Some(40), false)
    );
    assert_eq!(
        decide(&s, m, flow(WEB1, OUT, 6, 443)),
        (Action::Allow, Some(70), false)
    );
    assert_eq!(
        decide(&s, m, flow(WEB1, DB1, 6, 80)),
        (Action::Deny, None, false)
    );
    // legacy is in audit: a deny becomes a would-deny; legacy -> db is enforced.
    assert_eq!(
        decide(&s, m, flow(LEGACY, FILES, 6, 445)),
        (Action::Allow, Some(50), true)
    );
    assert_eq!(
        decide(&s, m, flow(LEGACY, DB1, 6, 445)),
        (Action::Deny, Some(50), false)
    );
    assert_eq!(
        s.endpoint_mode(
            parse_mac(LEGACY.0).expect("mac"),
            LEGACY.1.parse().expect("ip")
        ),
        Mode::Audit
    );
}

#[test]
fn disabled_rules_are_dropped() {
    let mut m = example();
    m.rules[4].enabled = false;
    let (s, c) = compile_snapshot(&m, 1).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.rules.compiled_ids(50).is_empty());
    assert_eq!(c.rules.compiled_len(), 8);
    assert!(c.spec.rules.iter().all(|r| user_rule_id(r.id) != 50));
    assert_eq!(
        decide(&s, &c.rules, flow(WEB1, DB1, 6, 445)),
        (Action::Deny, None, false)
    );
    assert_eq!(
        decide(&s, &c.rules, flow(LEGACY, FILES, 6, 445)),
        (Action::Allow, None, true)
    );
}

#[test]
fn selectors_need_every_key_and_accept_any_listed_value() {
    let mut m = Model::default();
    for (i, (app, env)) in [
        ("web", "prod"),
        ("web", "staging"),
        ("web", "dev"),
        ("db", "prod"),
    ]
    .iter()
    .enumerate()
    {
        m.workloads.push(Workload {
            mac: format!("02:00:00:00:00:0{i}"),
            labels: labels(&[("app", app), ("env", env)]),
            ..Workload::default()
        });
    }
    let sel = |pairs: Vec<(&str, LabelValues)>| Group {
        selector: Some(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
        ..Group::default()
    };
    m.groups = vec![
        Group {
            name: "web-live".into(),
            ..sel(vec![
                ("app", LabelValues::One("web".into())),
                (
                    "env",
                    LabelValues::AnyOf(vec!["prod".into(), "staging".into()]),
                ),
            ])
        },
        Group {
            name: "prod".into(),
            ..sel(vec![("env", LabelValues::One("prod".into()))])
        },
        Group {
            name: "pinned".into(),
            macs: Some(vec!["02:00:00:00:00:03".into(), "02:00:00:00:0f:0f".into()]),
            ..Group::default()
        },
        Group {
            name: "nobody".into(),
            ..sel(vec![("app", LabelValues::One("cache".into()))])
        },
    ];
    let c = compile(&m).unwrap_or_else(|e| panic!("{e}"));
    let members: Vec<usize> = c.groups.iter().map(|g| g.members).collect();
    assert_eq!(members, [2, 2, 2, 0]);
    let groups_of = |mac: &str| -> Vec<&str> {
        let mac = Member::Mac(parse_mac(mac).expect("mac"));
        c.spec
            .endpoints
            .iter()
            .find(|e| e.member == mac)
            .map(|e| {
                e.groups
                    .iter()
                    .map(|&g| c.spec.groups[g as usize].name.as_str())
                    .collect()
            })
            .unwrap_or_default()
    };
    // One endpoint per MAC, with every group it is in.
    assert_eq!(groups_of("02:00:00:00:00:00"), ["web-live", "prod"]);
    assert!(groups_of("02:00:00:00:00:02").is_empty());
    assert_eq!(groups_of("02:00:00:00:00:03"), ["prod", "pinned"]);
    // A MAC group may name MACs that are not (yet) workloads.
    assert_eq!(groups_of("02:00:00:00:0f:0f"), ["pinned"]);
    compile_snapshot(&m, 1).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn user_services_override_builtins_and_inline_services_compile() {
    let mut m = example();
    m.services = Model::from_yaml_str(
        "services:\n  - { name: ssh, proto: tcp, ports: [2222] }\n  - { name: syslog, entries: [{ proto: udp, ports: [514] }, { proto: tcp, ports: [6514] }] }\n",
    )
    .expect("services")
    .services;
    m.rules.push(Rule {
        id: 80,
        src: vec!["any".into()],
        dst: vec!["db".into()],
        services: vec!["syslog".into(), "icmpv6".into()],
        action: Action::Allow,
        enabled: true,
        comment: None,
    });
    m.rules.push(Rule {
        id: 90,
        src: vec!["web".into()],
        dst: vec!["db".into()],
        services: vec![ServiceRef::Inline(crate::model::PortSpec {
            proto: 132.into(),
            ports: vec![],
        })],
        action: Action::Allow,
        enabled: true,
        comment: None,
    });
    let (s, c) = compile_snapshot(&m, 1).unwrap_or_else(|e| panic!("{e}"));
    let map = &c.rules;
    assert_eq!(
        decide(&s, map, flow(ADMIN, DB1, 6, 2222)),
        (Action::Allow, Some(20), false)
    );
    assert_eq!(
        decide(&s, map, flow(ADMIN, DB1, 6, 22)),
        (Action::Deny, None, false)
    );
    assert_eq!(
        decide(&s, map, flow(WEB1, DB1, 17, 514)),
        (Action::Allow, Some(80), false)
    );
    assert_eq!(
        decide(&s, map, flow(WEB1, DB1, 6, 6514)),
        (Action::Allow, Some(80), false)
    );
    assert_eq!(
        decide(&s, map, flow(WEB1, DB1, 132, 0)),
        (Action::Allow, Some(90), false)
    );
    assert_eq!(map.compiled_ids(80).len(), 3);
}

#[test]
fn an_invalid_model_does_not_compile() {
    let mut m = example();
    m.rules[0].dst = vec!["nope".into()];
    let e = compile_snapshot(&m, 1).expect_err("unknown group");
    assert!(
        e.to_string()
            .contains("rules[0].dst[0]: unknown group \"nope\""),
        "{e}"
    );
}

/// A large model: 1,000 workloads in 500 selector groups, 100,000 rules over
/// built-in and inline services. Correctness only (the benchmark times it).
#[test]
fn a_100k_rule_model_compiles_to_a_snapshot() {
    let mut m = Model::default();
    for i in 0..1000u32 {
        m.workloads.push(Workload {
            mac: format!("02:00:00:00:{:02x}:{:02x}", i >> 8, i & 0xff),
            labels: labels(&[("tier", &format!("t{}", i % 500))]),
            ..Workload::default()
        });
    }
    for g in 0..500 {
        m.groups.push(Group {
            name: format!("g{g}"),
            selector: Some([("tier".to_string(), LabelValues::One(format!("t{g}")))].into()),
            ..Group::default()
        });
    }
    for r in 0..100_000u32 {
        let services = match r % 3 {
            0 => vec![ServiceRef::Name("postgresql".into())],
            1 => vec!["dns".into()],
            _ => vec![ServiceRef::Inline(crate::model::PortSpec {
                proto: "tcp".into(),
                ports: vec![i64::from(1024 + r % 60000).into()],
            })],
        };
        m.rules.push(Rule {
            id: r + 1,
            src: vec![format!("g{}", r % 500)],
            dst: vec![format!("g{}", (r / 500) % 500)],
            services,
            action: if r % 7 == 0 {
                Action::Deny
            } else {
                Action::Allow
            },
            enabled: r % 11 != 0,
            comment: None,
        });
    }
    let (s, c) = compile_snapshot(&m, 1).unwrap_or_else(|e| panic!("{e}"));
    let enabled = m.rules.iter().filter(|r| r.enabled).count();
    assert!(c.rules.compiled_len() > enabled);
    assert_eq!(s.rule_count(), c.rules.compiled_len());
    // Rule id 2 (r = 1): g1 -> g0 over dns, allowed; workload 1 is in g1, workload 0 in g0.
    let w = |i: u32| {
        (
            format!("02:00:00:00:{:02x}:{:02x}", i >> 8, i & 0xff),
            format!("10.1.{}.{}", i >> 8, i & 0xff),
        )
    };
    let (a, b) = (w(1), w(0));
    let q = flow((&a.0, &a.1), (&b.0, &b.1), 17, 53);
    assert_eq!(decide(&s, &c.rules, q), (Action::Allow, Some(2), false));
    // Rule id 1 (r = 0) is disabled: g0 -> g0 postgresql falls to the default.
    let (x, y) = (w(0), w(500));
    let q = flow((&x.0, &x.1), (&y.0, &y.1), 6, 5432);
    assert_eq!(decide(&s, &c.rules, q), (Action::Deny, None, false));
}
