//! `classify` against a plain reference: a linear scan over rules sorted by order.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The reference classifier, written from the specification, sharing nothing with
/// the compiled lookup.
fn reference(spec: &PolicySpec, q: &FlowQuery) -> Verdict {
    let groups_of = |mac: MacAddr, ip: IpAddr| -> BTreeSet<GroupIndex> {
        let mut out = BTreeSet::new();
        for e in &spec.endpoints {
            let hit = match e.member {
                Member::Mac(m) => m == mac,
                Member::Net(n) => n.contains(&ip),
            };
            if hit {
                out.extend(e.groups.iter().copied());
            }
        }
        out
    };
    let mode_of = |groups: &BTreeSet<GroupIndex>| -> Mode {
        if groups.is_empty() {
            return spec.default_mode;
        }
        let mut m = Mode::Learn;
        for (i, g) in spec.groups.iter().enumerate() {
            if groups.contains(&(i as GroupIndex)) {
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

    let quarantined = |m: MacAddr| spec.quarantine.contains(&m);
    let mgmt = |other_mac: MacAddr, other: IpAddr| {
        spec.management.iter().any(|m| {
            m.macs.contains(&other_mac)
                && m.net.contains(&other)
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
        .any(|b| b.contains(&q.src_ip) || b.contains(&q.dst_ip))
    {
        return verdict(Action::Deny, Reason::Blocklist, false);
    }

    let mut rules: Vec<(i64, usize, &RuleSpec)> = spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.order, i, r))
        .collect();
    rules.sort_by_key(|&(o, i, _)| (o, i));
    let side = |side: &Side, groups: &BTreeSet<GroupIndex>| match side {
        Side::Any => true,
        Side::Groups(ids) => ids.iter().any(|g| groups.contains(g)),
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

fn group_list(rng: &mut Rng, groups: usize) -> Vec<GroupIndex> {
    (0..1 + rng.below(3))
        .map(|_| rng.below(groups) as GroupIndex)
        .collect()
}

fn side(rng: &mut Rng, groups: usize) -> Side {
    if rng.chance(25) {
        Side::Any
    } else {
        Side::Groups(group_list(rng, groups))
    }
}

fn mac_of(text: &str) -> MacAddr {
    text.parse().unwrap()
}

fn net_of(text: &str) -> ipnet::IpNet {
    named::net(text).unwrap()
}

fn random_spec(rng: &mut Rng) -> PolicySpec {
    let groups = 1 + rng.below(5);
    let mut spec = PolicySpec {
        default_mode: *rng.pick(&MODES),
        ..PolicySpec::default()
    };
    for g in 0..groups {
        let mode = *rng.pick(&MODES);
        spec.add_group(format!("g{g}"), mode);
    }
    for m in &MACS[..6] {
        if rng.chance(60) {
            spec.endpoints.push(EndpointSpec {
                member: Member::Mac(mac_of(m)),
                groups: group_list(rng, groups),
            });
        }
    }
    for _ in 0..rng.below(6) {
        spec.endpoints.push(EndpointSpec {
            member: Member::Net(net_of(rng.pick::<&str>(&CIDRS))),
            groups: group_list(rng, groups),
        });
    }
    for i in 0..rng.below(30) {
        let proto = *rng.pick(&PROTOS);
        spec.rules.push(RuleSpec {
            id: 1000 - i as u32,
            order: if rng.chance(50) {
                rng.below(8) as i64 - 3
            } else {
                i as i64
            },
            src: side(rng, groups),
            dst: side(rng, groups),
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
        spec.quarantine.push(mac_of(rng.pick::<&str>(&MACS)));
        for _ in 0..rng.below(3) {
            let proto = *rng.pick(&PROTOS);
            spec.management.push(ManagementSpec {
                net: net_of(rng.pick::<&str>(&CIDRS)),
                macs: vec![mac_of(rng.pick::<&str>(&MACS))],
                proto,
                ports: ports(rng, proto),
            });
        }
    }
    if rng.chance(20) {
        spec.blocklist.push(net_of(rng.pick::<&str>(&CIDRS[1..])));
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
        src_mac: mac_of(rng.pick::<&str>(&MACS)),
        dst_mac: mac_of(rng.pick::<&str>(&MACS)),
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
                "query {:?}\nspec:\n{:#?}", q, spec
            );
        }
    }
}
