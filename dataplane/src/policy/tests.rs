use super::*;
use std::net::IpAddr;
use std::sync::Arc;

pub(super) fn mac(s: &str) -> MacAddr {
    parse_mac(s).unwrap()
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn flow(src: (&str, &str), dst: (&str, &str), proto: u8, port: u16) -> FlowQuery {
    FlowQuery {
        src_mac: mac(src.0),
        dst_mac: mac(dst.0),
        src_ip: ip(src.1),
        dst_ip: ip(dst.1),
        proto,
        dst_port: port,
    }
}

pub(super) fn snap(yaml: &str) -> PolicySnapshot {
    named::snapshot(yaml, 7).unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn v(action: Action, reason: Reason, mode: Mode, would_deny: bool) -> Verdict {
    Verdict {
        action,
        reason,
        mode,
        would_deny,
    }
}

pub(super) const TCP: u8 = 6;
pub(super) const UDP: u8 = 17;
pub(super) const WEB: (&str, &str) = ("02:00:00:00:00:01", "10.0.1.10");
pub(super) const DB: (&str, &str) = ("02:00:00:00:00:02", "10.0.2.20");
pub(super) const MGMT: (&str, &str) = ("02:00:00:00:00:09", "10.0.100.5");
pub(super) const OTHER: (&str, &str) = ("02:00:00:00:00:0f", "10.0.50.5");

pub(super) const BASE: &str = "
groups: [{name: web}, {name: db}]
endpoints:
  - {mac: '02:00:00:00:00:01', groups: [web]}
  - {mac: '02:00:00:00:00:02', groups: [db]}
rules:
  - {id: 1, src: [web], dst: [db], proto: tcp, ports: [5432], action: allow}
";

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
        "{BASE}quarantine: ['02:00:00:00:00:02']\nmanagement: [{{cidr: 10.0.100.0/24, macs: ['02:00:00:00:00:09'], proto: tcp, ports: [22]}}]\n"
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
fn intel_blocks_both_ways_in_every_mode_below_quarantine() {
    use crate::intel::IpSet;
    let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
    let base = snap(&format!(
        "{BASE}blocklist: [10.0.2.0/24]\nquarantine: ['02:00:00:00:00:0f']\n"
    ));
    let feeds = Arc::new(IpSet::new([
        (net("10.0.2.20/32"), 4),
        (net("10.0.1.0/24"), 9),
    ]));
    let resolved = Arc::new(crate::policy::Resolved::from_iter([(ip("10.0.50.6"), 12)]));
    let s = base.with_intel(
        crate::intel::Blocked::one(feeds, Arc::default()),
        resolved,
        8,
    );
    assert_eq!(s.generation(), 8);
    // The listed address, either way; above the blocklist and the rules.
    let c = s.classify(&flow(WEB, DB, TCP, 5432));
    assert_eq!(c, v(Action::Deny, Reason::Intel(9), Mode::Enforce, false));
    let c = s.classify(&flow(DB, (WEB.0, "10.0.3.1"), TCP, 5432));
    assert_eq!(c.reason, Reason::Intel(4));
    // An address DNS answered for a blocked domain.
    let c = s.classify(&flow(
        (DB.0, "10.0.3.1"),
        ("02:00:00:00:00:0e", "10.0.50.6"),
        UDP,
        53,
    ));
    assert_eq!(c.reason, Reason::Intel(12));
    // Quarantine stays first.
    let c = s.classify(&flow(OTHER, DB, TCP, 5432));
    assert_eq!(c.reason, Reason::Quarantine);
    // Audit mode does not soften it.
    let audit = snap("default_mode: audit\n").with_intel(
        crate::intel::Blocked {
            ips: [
                Arc::default(),
                Arc::new(IpSet::new([(net("10.0.2.20/32"), 1)])),
            ],
            domains: Default::default(),
        },
        Arc::default(),
        2,
    );
    let c = audit.classify(&flow(WEB, DB, TCP, 1));
    assert_eq!(c, v(Action::Deny, Reason::Intel(1), Mode::Audit, false));
    // Another overlay change keeps the intel; the rules are shared.
    let q = s.with_quarantine([], 9);
    assert_eq!(
        q.classify(&flow(WEB, DB, TCP, 5432)).reason,
        Reason::Intel(9)
    );
    assert!(Arc::ptr_eq(&q.tables, &base.tables));
    assert_eq!(q.intel_len(), (2, 1));
    // Unlisted: the rules decide (groups by MAC).
    let clear = q.with_intel(Default::default(), Arc::default(), 10);
    assert_eq!(
        clear
            .classify(&flow(WEB, (DB.0, "10.0.9.9"), TCP, 5432))
            .reason,
        Reason::Rule(1)
    );
    assert_eq!(
        clear.classify(&flow(WEB, DB, TCP, 5432)).reason,
        Reason::Blocklist
    );
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
            member: Member::Mac(MacAddr([2, 0, m[0], m[1], m[2], m[3]])),
            groups: vec![g],
        });
    }
    for i in 0..100_000u32 {
        let (a, b) = (i % n_groups, (i * 7 + 1) % n_groups);
        spec.rules.push(RuleSpec {
            id: i,
            order: i64::from(i),
            src: Side::Groups(vec![a]),
            dst: Side::Groups(vec![b]),
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
