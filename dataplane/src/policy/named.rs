//! Policies written by name, for tests, fixtures and the fuzz harnesses
//! (feature `test-support`): YAML with groups by name, `"any"` in rules,
//! networks as text, resolved into a [`PolicySpec`]. Not a product format:
//! the appliance reads the control plane's model file, validated there.
//!
//! ```yaml
//! default_mode: audit            # of an endpoint in no group (default enforce)
//! groups:
//!   - { name: web, mode: enforce }
//!   - { name: db }               # mode defaults to enforce
//!   - { name: legacy, mode: learn }
//! endpoints:
//!   - { mac: "02:00:00:00:01:0a", groups: [web] }
//!   - { cidr: 10.0.2.0/24, groups: [db] }
//!   - { cidr: 10.0.9.7, groups: [legacy, db] }   # a bare address is a /32 (or /128)
//! rules:                         # order defaults to the position in the list
//!   - { id: 1, src: [web], dst: [db], proto: tcp, ports: [5432, "6000-6010"], action: allow, comment: web tier reaches postgres }
//!   - { id: 2, order: -10, src: [any], dst: [db], proto: udp, ports: [161], action: deny }
//! quarantine: ["02:00:00:00:0f:01"]
//! management:
//!   - { cidr: 10.0.100.0/24, macs: ["02:00:00:00:64:01"], proto: tcp, ports: [22] }
//! blocklist: [198.51.100.0/24, "2001:db8:bad::/48"]
//! ```

use super::{
    Action, EndpointSpec, GroupSpec, ManagementSpec, Member, Mode, PolicySnapshot, PolicySpec,
    PortRange, Proto, RuleSpec, Side,
};
use crate::wire::MacAddr;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct NamedPolicy {
    default_mode: Mode,
    groups: Vec<Group>,
    endpoints: Vec<Endpoint>,
    rules: Vec<Rule>,
    quarantine: Vec<MacAddr>,
    management: Vec<Management>,
    blocklist: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    name: String,
    #[serde(default)]
    mode: Mode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Endpoint {
    #[serde(default)]
    mac: Option<MacAddr>,
    #[serde(default)]
    cidr: Option<String>,
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    id: u32,
    #[serde(default)]
    order: Option<i64>,
    src: Vec<String>,
    dst: Vec<String>,
    #[serde(default)]
    proto: Proto,
    #[serde(default)]
    ports: Vec<PortRange>,
    action: Action,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Management {
    cidr: String,
    macs: Vec<MacAddr>,
    #[serde(default)]
    proto: Proto,
    #[serde(default)]
    ports: Vec<PortRange>,
}

/// `10.0.1.0/24`, `2001:db8::/32` or a bare address.
pub fn net(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("invalid network {text:?}"))
}

/// Resolves a named policy (see the module documentation) into a spec.
pub fn spec(yaml: &str) -> Result<PolicySpec, String> {
    let named: NamedPolicy = if yaml.trim().is_empty() {
        NamedPolicy::default()
    } else {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())?
    };
    let index: HashMap<&str, u32> = named
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.name.as_str(), i as u32))
        .collect();
    let group = |name: &String| {
        index
            .get(name.as_str())
            .copied()
            .ok_or_else(|| format!("unknown group {name:?}"))
    };
    let groups = |names: &[String]| names.iter().map(group).collect::<Result<Vec<_>, _>>();
    let side = |names: &[String]| match names {
        [any] if any == "any" => Ok(Side::Any),
        _ => groups(names).map(Side::Groups),
    };
    let mut spec = PolicySpec {
        default_mode: named.default_mode,
        groups: named
            .groups
            .iter()
            .map(|g| GroupSpec {
                name: g.name.clone(),
                mode: g.mode,
            })
            .collect(),
        quarantine: named.quarantine,
        ..PolicySpec::default()
    };
    for e in &named.endpoints {
        let member = match (e.mac, &e.cidr) {
            (Some(mac), None) => Member::Mac(mac),
            (None, Some(cidr)) => Member::Net(net(cidr)?),
            _ => return Err(format!("endpoint {e:?}: give one of mac and cidr")),
        };
        spec.endpoints.push(EndpointSpec {
            member,
            groups: groups(&e.groups)?,
        });
    }
    for (pos, r) in named.rules.iter().enumerate() {
        spec.rules.push(RuleSpec {
            id: r.id,
            order: r.order.unwrap_or(pos as i64),
            src: side(&r.src)?,
            dst: side(&r.dst)?,
            proto: r.proto,
            ports: r.ports.clone(),
            action: r.action,
            comment: r.comment.clone(),
        });
    }
    for m in &named.management {
        spec.management.push(ManagementSpec {
            net: net(&m.cidr)?,
            macs: m.macs.clone(),
            proto: m.proto,
            ports: m.ports.clone(),
        });
    }
    spec.blocklist = named
        .blocklist
        .iter()
        .map(|b| net(b))
        .collect::<Result<_, _>>()?;
    Ok(spec)
}

/// Resolves and compiles a named policy.
pub fn snapshot(yaml: &str, generation: u64) -> Result<PolicySnapshot, String> {
    PolicySnapshot::compile(&spec(yaml)?, generation).map_err(|e| e.to_string())
}
