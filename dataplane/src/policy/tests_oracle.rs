//! `classify` against a plain reference: a linear scan over rules sorted by order.

use super::*;
use ipnet::IpNet;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The reference classifier, written from the specification, sharing nothing with
/// the compiled lookup but MAC parsing.
fn reference(spec: &PolicySpec, q: &FlowQuery) -> Verdict {
    let net = |s: &str| -> IpNet {
        s.parse::<IpNet>()
            .unwrap_or_else(|_| IpNet::from(s.parse::<IpAddr>().unwrap()))
    };
    let groups_of = |mac: MacAddr, ip: IpAddr| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for e in &spec.endpoints {
            let hit = match (&e.mac, &e.cidr) {
                (Some(m), _) => parse_mac(m) == Some(mac),
                (_, Some(c)) => net(c).contains(&ip),
                _ => false,
            };
            if hit {
                out.extend(e.groups.iter().cloned());
            }
        }
        out
    };
    let mode_of = |groups: &BTreeSet<String>| -> Mode {
        if groups.is_empty() {
            return spec.default_mode;
        }
        let mut m = Mode::Learn;
        for g in &spec.groups {
            if groups.contains(&g.name) {
                m = m.max(g.mode);
            }
        }
        m
    };
    let src = groups_of(q.src_mac, q.src_ip);
    let dst = groups_of(q.dst_mac, q.dst_ip);
    let mode = mode_of(&src).max(mode_of(&dst));
    let verdict = |action, reason, would_deny| Verdict {
        action,
        reason,
        mode,
        would_deny,
    };

    let quarantined = |m: MacAddr| spec.quarantine.iter().any(|s| parse_mac(s) == Some(m));
    let mgmt = |other_mac: MacAddr, other: IpAddr| {
        spec.management.iter().any(|m| {
            m.macs.iter().any(|t| parse_mac(t) == Some(other_mac))
                && net(&m.cidr).contains(&other)
                && m.proto.matches(q.proto)
                && (m.ports.is_empty() || m.ports.iter().any(|r| r.contains(q.dst_port)))
        })
    };
    let (sq, dq) = (quarantined(q.src_mac), quarantined(q.dst_mac));
    if sq || dq {
        if (!sq || mgmt(q.dst_mac, q.dst_ip)) && (!dq || mgmt(q.src_mac, q.src_ip)) {
            return verdict(Action::Allow, Reason::Management, false);
        }
        return verdict(Action::Deny, Reason::Quarantine, false);
    }
    if spec
        .blocklist
        .iter()
        .any(|b| net(b).contains(&q.src_ip) || net(b).contains(&q.dst_ip))
    {
        return verdict(Action::Deny, Reason::Blocklist, false);
    }

    let mut rules: Vec<(i64, usize, &RuleSpec)> = spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.order.unwrap_or(i as i64), i, r))
        .collect();
    rules.sort_by_key(|&(o, i, _)| (o, i));
    let side = |names: &[String], groups: &BTreeSet<String>| {
        names.iter().any(|n| n == "any" || groups.contains(n))
    };
    for (_, _, r) in rules {
        if side(&r.src, &src)
            && side(&r.dst, &dst)
            && r.proto.matches(q.proto)
            && (r.ports.is_empty() || r.ports.iter().any(|p| p.contains(q.dst_port)))
        {
            let reason = Reason::Rule(r.id);
            return match (r.action, mode) {
                (Action::Allow, _) => verdict(Action::Allow, reason, false),
                (Action::Deny, Mode::Enforce) => verdict(Action::Deny, reason, false),
                (Action::Deny, _) => verdict(Action::Allow, reason, true),
            };
        }
    }
    match mode {
        Mode::Learn => verdict(Action::Allow, Reason::Default, false),
        Mode::Audit => verdict(Action::Allow, Reason::Default, true),
        Mode::Enforce => verdict(Action::Deny, Reason::Default, false),
    }
}

/// A small deterministic generator; proptest supplies the seeds.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const MACS: [&str; 7] = [
    "02:00:00:00:00:01",
    "02:00:00:00:00:02",
    "02:00:00:00:00:03",
    "02:00:00:00:00:04",
    "02:00:00:00:00:05",
    "02:00:00:00:00:06",
    "02:00:00:00:00:07",
];
const CIDRS: [&str; 10] = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.3",
    "10.1.2.0/25",
    "10.2.0.0/16",
    "0.0.0.0/0",
    "fd00::/8",
    "fd00:1::/32",
    "fd00:1::5/128",
];
const IPS: [&str; 10] = [
    "10.1.2.3",
    "10.1.2.4",
    "10.1.2.200",
    "10.1.3.1",
    "10.2.0.1",
    "10.3.0.1",
    "192.168.0.1",
    "fd00:1::5",
    "fd00:2::1",
    "2001:db8::1",
];
const PROTOS: [Proto; 7] = [
    Proto::Any,
    Proto::Any,
    Proto::Tcp,
    Proto::Udp,
    Proto::Icmp,
    Proto::Number(6),
    Proto::Number(132),
];
const MODES: [Mode; 3] = [Mode::Learn, Mode::Audit, Mode::Enforce];

fn ports(rng: &mut Rng, proto: Proto) -> Vec<PortRange> {
    if !proto.has_ports() || rng.chance(30) {
        return Vec::new();
    }
    (0..1 + rng.below(3))
        .map(|_| {
            if rng.chance(10) {
                PortRange::new(65530, 65535)
            } else {
                let lo = rng.below(16) as u16;
                PortRange::new(lo, lo + rng.below(6) as u16)
            }
        })
        .collect()
}

fn group_list(rng: &mut Rng, groups: &[String], allow_any: bool) -> Vec<String> {
    if allow_any && rng.chance(25) {
        return vec!["any".to_string()];
    }
    (0..1 + rng.below(3))
        .map(|_| rng.pick(groups).clone())
        .collect()
}

fn random_spec(rng: &mut Rng) -> PolicySpec {
    let groups: Vec<String> = (0..1 + rng.below(5)).map(|g| format!("g{g}")).collect();
    let mut spec = PolicySpec {
        default_mode: *rng.pick(&MODES),
        groups: groups
            .iter()
            .map(|name| GroupSpec {
                name: name.clone(),
                mode: *rng.pick(&MODES),
            })
            .collect(),
        ..PolicySpec::default()
    };
    for m in &MACS[..6] {
        if rng.chance(60) {
            spec.endpoints.push(EndpointSpec {
                mac: Some(m.to_string()),
                cidr: None,
                groups: group_list(rng, &groups, false),
            });
        }
    }
    for _ in 0..rng.below(6) {
        spec.endpoints.push(EndpointSpec {
            mac: None,
            cidr: Some(rng.pick(&CIDRS).to_string()),
            groups: group_list(rng, &groups, false),
        });
    }
    for i in 0..rng.below(30) {
        let proto = *rng.pick(&PROTOS);
        spec.rules.push(RuleSpec {
            id: 1000 - i as u32,
            order: if rng.chance(50) {
                Some(rng.below(8) as i64 - 3)
            } else {
                None
            },
            src: group_list(rng, &groups, true),
            dst: group_list(rng, &groups, true),
            proto,
            ports: ports(rng, proto),
            action: if rng.chance(50) {
                Action::Allow
            } else {
                Action::Deny
            },
            comment: None,
        });
    }
    if rng.chance(30) {
        spec.quarantine.push(rng.pick(&MACS).to_string());
        for _ in 0..rng.below(3) {
            let proto = *rng.pick(&PROTOS);
            spec.management.push(ManagementSpec {
                cidr: rng.pick(&CIDRS).to_string(),
                macs: vec![rng.pick(&MACS).to_string()],
                proto,
                ports: ports(rng, proto),
            });
        }
    }
    if rng.chance(20) {
        spec.blocklist.push(rng.pick(&CIDRS[1..]).to_string());
    }
    spec
}

fn random_query(rng: &mut Rng) -> FlowQuery {
    let proto = *rng.pick(&[6u8, 6, 17, 1, 58, 132]);
    let port = if proto == 6 || proto == 17 {
        *rng.pick(&[0u16, 1, 2, 3, 5, 8, 10, 13, 15, 18, 20, 65529, 65530, 65535])
    } else {
        0
    };
    FlowQuery {
        src_mac: parse_mac(rng.pick::<&str>(&MACS)).unwrap(),
        dst_mac: parse_mac(rng.pick::<&str>(&MACS)).unwrap(),
        src_ip: rng.pick(&IPS).parse().unwrap(),
        dst_ip: rng.pick(&IPS).parse().unwrap(),
        proto,
        dst_port: port,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn classify_matches_reference(seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let spec = random_spec(&mut rng);
        let snap = PolicySnapshot::compile(&spec, 1)
            .unwrap_or_else(|e| panic!("generated spec invalid: {e}"));
        for _ in 0..64 {
            let q = random_query(&mut rng);
            let want = reference(&spec, &q);
            let got = snap.classify(&q);
            prop_assert_eq!(
                got, want,
                "query {:?}\nspec:\n{}", q, spec.to_yaml_string().unwrap()
            );
        }
    }

    #[test]
    fn toml_and_yaml_round_trip(seed in any::<u64>()) {
        let spec = random_spec(&mut Rng(seed));
        let yaml = spec.to_yaml_string().unwrap();
        prop_assert_eq!(&PolicySpec::from_yaml_str(&yaml).unwrap(), &spec);
        let toml_text = toml::to_string(&spec).unwrap();
        prop_assert_eq!(&PolicySpec::from_toml_str(&toml_text).unwrap(), &spec);
    }
}
