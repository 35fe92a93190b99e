//! The benchmark's policy and traffic, both computed from a rule count so that
//! the generator and the policy file agree without sharing a file.
//!
//! - Groups: 100 source groups `s0..s99` and 100 destination groups `d0..d99`,
//!   one workload (MAC) each; the policy's default mode is enforce.
//! - Rule `k` (id `k + 1`): from `s(k % 100)` to `d(k / 100 % 100)` on port
//!   `10000 + k / 10000`, UDP for even `k`, TCP for odd `k`; every tenth rule
//!   (`k % 10 == 9`, always TCP) denies, the others allow. The group count is
//!   the same at every rule count, so rule counts compare like with like.
//! - Flow `i` of `n` aims at rule `k = i * rules / n` (moved to the next rule of
//!   its protocol that allows), so the traffic hits rules spread across the whole
//!   set; a linear ruleset walks `k` rules before it matches. Flows differ in
//!   their source address and source port. The source address holds the
//!   source group (`10.(128 + group).x.y`, `x.y` the low 16 bits of `i`), so
//!   an address is always sent from the same MAC, whatever the flow count or
//!   protocol: the spoofing guard binds an address to the first MAC seen with
//!   it, and traffic that moved an address between MACs would be dropped.

use std::fmt::Write as _;

pub const SRC_GROUPS: u32 = 100;
pub const DST_GROUPS: u32 = 100;
pub const BASE_PORT: u32 = 10000;

/// One generated flow's addresses and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub tcp: bool,
}

pub fn src_mac(g: u32) -> [u8; 6] {
    [0x02, 0, 0, 0x0a, (g >> 8) as u8, g as u8]
}

pub fn dst_mac(g: u32) -> [u8; 6] {
    [0x02, 0, 0, 0x0b, (g >> 8) as u8, g as u8]
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The shape of rule `k`: (source group, destination group, port, tcp, deny).
pub fn rule(k: u32) -> (u32, u32, u16, bool, bool) {
    let port = BASE_PORT + k / (SRC_GROUPS * DST_GROUPS);
    (
        k % SRC_GROUPS,
        k / SRC_GROUPS % DST_GROUPS,
        port.min(u32::from(u16::MAX)) as u16,
        k % 2 == 1,
        k % 10 == 9,
    )
}

/// Flow `i` of `n` against a policy of `rules` rules (`rules == 0`: group 0 to
/// group 0, port 10000).
pub fn flow(i: u32, n: u32, rules: u32, tcp: bool) -> Flow {
    let mut k = if rules == 0 {
        0
    } else {
        (u64::from(i) * u64::from(rules) / u64::from(n.max(1))) as u32
    };
    if rules > 0 {
        // The next rule of the flow's protocol that allows (wrapping).
        for _ in 0..20 {
            let (_, _, _, t, deny) = rule(k);
            if t == tcp && !deny && k < rules {
                break;
            }
            k = if k + 1 >= rules { 0 } else { k + 1 };
        }
    }
    let (s, d, port, _, _) = rule(k);
    Flow {
        src_mac: src_mac(s),
        dst_mac: dst_mac(d),
        src_ip: [10, 128 + s as u8, (i >> 8) as u8, i as u8],
        dst_ip: [10, 64, (d >> 8) as u8, d as u8],
        sport: 1024 + (i % 60000) as u16,
        dport: port,
        tcp,
    }
}

/// The policy model (YAML) with `rules` rules.
pub fn policy_yaml(rules: u32) -> String {
    let mut y = String::with_capacity(200 + rules as usize * 110);
    y.push_str("# bulkhead end-to-end benchmark policy (bulkhead-bench policy)\n");
    let _ = writeln!(
        y,
        "# {rules} rules; see bench/src/bin/bulkhead-bench/model.rs"
    );
    y.push_str("default_mode: enforce\nworkloads:\n");
    for g in 0..SRC_GROUPS {
        let _ = writeln!(
            y,
            "  - {{ mac: \"{}\", name: s{g}, labels: {{ app: s{g} }} }}",
            mac_text(src_mac(g))
        );
    }
    for g in 0..DST_GROUPS {
        let _ = writeln!(
            y,
            "  - {{ mac: \"{}\", name: d{g}, labels: {{ app: d{g} }} }}",
            mac_text(dst_mac(g))
        );
    }
    y.push_str("groups:\n");
    for g in 0..SRC_GROUPS {
        let _ = writeln!(y, "  - {{ name: s{g}, match: {{ app: s{g} }} }}");
    }
    for g in 0..DST_GROUPS {
        let _ = writeln!(y, "  - {{ name: d{g}, match: {{ app: d{g} }} }}");
    }
    y.push_str(if rules == 0 {
        "rules: []\n"
    } else {
        "rules:\n"
    });
    for k in 0..rules {
        let (s, d, port, tcp, deny) = rule(k);
        let _ = writeln!(
            y,
            "  - {{ id: {}, src: [s{s}], dst: [d{d}], services: [{{ proto: {}, ports: [{port}] }}], action: {} }}",
            k + 1,
            if tcp { "tcp" } else { "udp" },
            if deny { "deny" } else { "allow" }
        );
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::policy::{Action, FlowQuery};
    use dataplane::wire::MacAddr;
    use std::net::IpAddr;

    #[test]
    fn every_flow_is_allowed_by_the_rule_it_aims_at() {
        for rules in [1_000u32, 100_000] {
            let model = control::Model::from_yaml_str(&policy_yaml(rules)).expect("parses");
            let (snap, compiled) = control::compile_snapshot(&model, 1).expect("compiles");
            assert_eq!(compiled.rules.compiled_len(), rules as usize);
            let n = 10_000;
            let mut hit = std::collections::HashSet::new();
            for i in (0..n).step_by(37) {
                for tcp in [false, true] {
                    let f = flow(i, n, rules, tcp);
                    let v = snap.classify(&FlowQuery {
                        src_mac: MacAddr(f.src_mac),
                        dst_mac: MacAddr(f.dst_mac),
                        src_ip: IpAddr::from(f.src_ip),
                        dst_ip: IpAddr::from(f.dst_ip),
                        proto: if tcp { 6 } else { 17 },
                        dst_port: f.dport,
                    });
                    assert_eq!(v.action, Action::Allow, "flow {i} tcp={tcp} rules={rules}");
                    hit.insert(v.reason);
                }
            }
            // Spread: many distinct rules decide the sample.
            assert!(hit.len() > 400, "{} distinct rules", hit.len());
        }
    }

    #[test]
    fn a_flow_off_the_rules_is_denied() {
        let model = control::Model::from_yaml_str(&policy_yaml(1000)).expect("parses");
        let (snap, _) = control::compile_snapshot(&model, 1).expect("compiles");
        let f = flow(0, 10, 1000, false);
        let v = snap.classify(&FlowQuery {
            src_mac: MacAddr(f.src_mac),
            dst_mac: MacAddr(f.dst_mac),
            src_ip: IpAddr::from(f.src_ip),
            dst_ip: IpAddr::from(f.dst_ip),
            proto: 17,
            dst_port: f.dport + 1,
        });
        assert_eq!(v.action, Action::Deny);
    }
}
