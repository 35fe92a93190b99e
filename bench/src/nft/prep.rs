//! The compiled spec parsed back into the typed pieces both forms render.

use super::NftError;
use dataplane::policy::{parse_mac, Action, Mode, PolicySpec, PortRange, Proto};
use dataplane::wire::MacAddr;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};

/// A group with its members by kind (CIDRs as nftables text).
pub(super) struct Group {
    pub name: String,
    pub mode: Mode,
    pub macs: Vec<MacAddr>,
    pub v4: Vec<String>,
    pub v6: Vec<String>,
    pub nets: Vec<IpNet>,
}

/// One side of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Side {
    Any,
    Groups(Vec<usize>),
}

/// A compiled rule, in evaluation order.
pub(super) struct Rule {
    pub id: u32,
    pub src: Side,
    pub dst: Side,
    pub proto: Proto,
    pub ports: Vec<PortRange>,
    pub action: Action,
}

/// A management exception.
pub(super) struct Management {
    pub net: IpNet,
    pub macs: Vec<MacAddr>,
    pub proto: Proto,
    pub ports: Vec<PortRange>,
}

pub(super) struct Prepared {
    pub default_mode: Mode,
    pub groups: Vec<Group>,
    /// MAC endpoints -> their groups (sorted), in MAC order.
    pub mac_groups: BTreeMap<MacAddr, Vec<usize>>,
    pub rules: Vec<Rule>,
    pub quarantine: Vec<MacAddr>,
    pub management: Vec<Management>,
    pub block4: Vec<String>,
    pub block6: Vec<String>,
}

fn net(s: &str) -> Result<IpNet, NftError> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| NftError::Cidr(s.to_string()))
}

fn mac(s: &str) -> Result<MacAddr, NftError> {
    parse_mac(s).ok_or_else(|| NftError::Mac(s.to_string()))
}

impl Prepared {
    pub fn new(spec: &PolicySpec) -> Result<Self, NftError> {
        let mut groups: Vec<Group> = spec
            .groups
            .iter()
            .map(|g| Group {
                name: g.name.clone(),
                mode: g.mode,
                macs: Vec::new(),
                v4: Vec::new(),
                v6: Vec::new(),
                nets: Vec::new(),
            })
            .collect();
        let index: HashMap<&str, usize> = spec
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.name.as_str(), i))
            .collect();
        let mut mac_groups: BTreeMap<MacAddr, Vec<usize>> = BTreeMap::new();
        for ep in &spec.endpoints {
            let ids: Vec<usize> = ep
                .groups
                .iter()
                .filter_map(|g| index.get(g.as_str()).copied())
                .collect();
            if let Some(m) = &ep.mac {
                let m = mac(m)?;
                for &g in &ids {
                    if let Some(grp) = groups.get_mut(g) {
                        grp.macs.push(m);
                    }
                }
                let e = mac_groups.entry(m).or_default();
                e.extend(&ids);
                e.sort_unstable();
                e.dedup();
            }
            if let Some(c) = &ep.cidr {
                let n = net(c)?;
                for &g in &ids {
                    if let Some(grp) = groups.get_mut(g) {
                        grp.nets.push(n);
                        match n {
                            IpNet::V4(_) => grp.v4.push(n.to_string()),
                            IpNet::V6(_) => grp.v6.push(n.to_string()),
                        }
                    }
                }
            }
        }
        // Evaluation order: `order` (absent = list position), ties by position.
        let mut order: Vec<(i64, usize)> = spec
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.order.unwrap_or(i as i64), i))
            .collect();
        order.sort_unstable();
        let side = |names: &[String], rule: u32| -> Result<Side, NftError> {
            if names.iter().any(|n| n == "any") {
                return Ok(Side::Any);
            }
            let mut ids = names
                .iter()
                .map(|n| {
                    index.get(n.as_str()).copied().ok_or(NftError::Group {
                        rule,
                        group: n.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            ids.sort_unstable();
            ids.dedup();
            Ok(Side::Groups(ids))
        };
        let mut rules = Vec::with_capacity(order.len());
        for (_, i) in order {
            let Some(r) = spec.rules.get(i) else { continue };
            rules.push(Rule {
                id: r.id,
                src: side(&r.src, r.id)?,
                dst: side(&r.dst, r.id)?,
                proto: r.proto,
                ports: if r.proto.has_ports() {
                    r.ports.clone()
                } else {
                    Vec::new()
                },
                action: r.action,
            });
        }
        let quarantine = spec
            .quarantine
            .iter()
            .map(|m| mac(m))
            .collect::<Result<Vec<_>, _>>()?;
        let management = spec
            .management
            .iter()
            .map(|m| {
                Ok(Management {
                    net: net(&m.cidr)?,
                    macs: m.macs.iter().map(|t| mac(t)).collect::<Result<_, _>>()?,
                    proto: m.proto,
                    ports: m.ports.clone(),
                })
            })
            .collect::<Result<Vec<_>, NftError>>()?;
        let (mut block4, mut block6) = (Vec::new(), Vec::new());
        for b in &spec.blocklist {
            match net(b)? {
                n @ IpNet::V4(_) => block4.push(n.to_string()),
                n @ IpNet::V6(_) => block6.push(n.to_string()),
            }
        }
        Ok(Prepared {
            default_mode: spec.default_mode,
            groups,
            mac_groups,
            rules,
            quarantine,
            management,
            block4,
            block6,
        })
    }

    /// The mode of an endpoint in `groups`: the strictest, or the default.
    pub fn class_mode(&self, groups: &[usize]) -> Mode {
        groups
            .iter()
            .filter_map(|&g| self.groups.get(g).map(|g| g.mode))
            .max()
            .unwrap_or(self.default_mode)
    }
}
