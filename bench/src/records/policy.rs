//! The fleet's policy, for the dry-run and proposal benchmarks (issue 23):
//! its workloads with their labels, 200 groups (the 30 role-team groups,
//! the 90 role-team-environment groups, 80 groups of internet ranges) and
//! `rules` rules from those groups to the groups serving each service, one
//! in twenty a deny, as YAML a policy file holds.

use super::fleet::{Fleet, ROLES, SERVICES, TEAMS};
use std::fmt::Write as _;

/// The environments the fleet's `env` label takes.
const ENVS: [&str; 3] = ["prod", "staging", "dev"];
/// Internet ranges' first octets (as `fleet::external_ip` draws them).
const EXTERNAL_FIRST: [u8; 8] = [23, 34, 52, 104, 142, 151, 185, 199];

/// The built-in service of each of [`SERVICES`], in order.
const SERVICE_NAMES: [&str; 7] = ["https", "postgresql", "dns", "ssh", "smb", "rdp", "icmp"];

/// The policy as YAML, every group in `mode` (and the default too).
pub fn fleet_policy(fleet: &Fleet, rules: u32, mode: &str) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "default_mode: {mode}\nworkloads:");
    for w in &fleet.workloads {
        let labels: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(
            y,
            "  - {{ mac: \"{}\", name: {}, labels: {{ {} }} }}",
            w.mac,
            w.name,
            labels.join(", ")
        );
    }
    let mut groups = Vec::new();
    y.push_str("groups:\n");
    for team in TEAMS {
        for role in ROLES {
            let name = format!("{role}-{team}");
            let _ = writeln!(
                y,
                "  - {{ name: {name}, mode: {mode}, match: {{ role: {role}, app: {team} }} }}"
            );
            groups.push(name);
            for env in ENVS {
                let name = format!("{role}-{team}-{env}");
                let _ = writeln!(
                    y,
                    "  - {{ name: {name}, mode: {mode}, match: {{ role: {role}, app: {team}, env: {env} }} }}"
                );
                groups.push(name);
            }
        }
    }
    for first in EXTERNAL_FIRST {
        for k in 0..10u8 {
            let name = format!("net-{first}-{k}");
            let _ = writeln!(
                y,
                "  - {{ name: {name}, mode: {mode}, ips: [{first}.{}.0.0/12] }}",
                k * 16
            );
            groups.push(name);
        }
    }
    y.push_str("rules:\n");
    for r in 0..rules {
        let s = r as usize % SERVICES.len();
        let role = SERVICES[s].4;
        let team = TEAMS[(r as usize / SERVICES.len()) % TEAMS.len()];
        let dst = if role == "any" {
            "any".to_string()
        } else {
            format!("{role}-{team}")
        };
        let src = &groups[(r as usize * 37) % groups.len()];
        let action = if r % 20 == 19 { "deny" } else { "allow" };
        let _ = writeln!(
            y,
            "  - {{ id: {}, src: [{src}], dst: [{dst}], services: [{}], action: {action} }}",
            r + 1,
            SERVICE_NAMES[s]
        );
    }
    y
}

#[cfg(test)]
#[allow(clippy::expect_used, reason = "a test of a fixture this module writes")]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_policy_loads_with_200_groups_and_its_rules() {
        let fleet = Fleet::new(300, 5);
        let yaml = fleet_policy(&fleet, 1000, "enforce");
        let m = control::Model::from_yaml_str(&yaml).expect("loads");
        assert_eq!(m.groups.len(), 200);
        assert_eq!(m.rules.len(), 1000);
        assert_eq!(m.workloads.as_slice().len(), 300);
        control::compile(&m).expect("compiles");
    }
}
