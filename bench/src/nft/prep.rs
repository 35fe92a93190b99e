//! The compiled spec regrouped into the pieces both nftables forms render.

use super::NftError;
use dataplane::policy::{Action, GroupIndex, Member, Mode, PolicySpec, PortRange, Proto};
use dataplane::wire::MacAddr;
use ipnet::IpNet;
use std::collections::BTreeMap;

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
        let group_ids = |ids: &[GroupIndex]| -> Result<Vec<usize>, NftError> {
            let mut out = ids
                .iter()
                .map(|&g| {
                    let g = g as usize;
                    if g < spec.groups.len() {
                        Ok(g)
                    } else {
                        Err(NftError::Group(g))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.sort_unstable();
            out.dedup();
            Ok(out)
        };
        let mut mac_groups: BTreeMap<MacAddr, Vec<usize>> = BTreeMap::new();
        for ep in &spec.endpoints {
            let ids = group_ids(&ep.groups)?;
            match ep.member {
                Member::Mac(m) => {
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
                Member::Net(n) => {
                    let n = n.trunc();
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
        }
        // Evaluation order: `order`, ties by position.
        let mut order: Vec<(i64, usize)> = spec
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.order, i))
            .collect();
        order.sort_unstable();
        let side = |side: &dataplane::policy::Side| -> Result<Side, NftError> {
            Ok(match side {
                dataplane::policy::Side::Any => Side::Any,
                dataplane::policy::Side::Groups(ids) => Side::Groups(group_ids(ids)?),
            })
        };
        let mut rules = Vec::with_capacity(order.len());
        for (_, i) in order {
            let Some(r) = spec.rules.get(i) else { continue };
            rules.push(Rule {
                id: r.id,
                src: side(&r.src)?,
                dst: side(&r.dst)?,
                proto: r.proto,
                ports: if r.proto.has_ports() {
                    r.ports.clone()
                } else {
                    Vec::new()
                },
                action: r.action,
            });
        }
        let management = spec
            .management
            .iter()
            .map(|m| Management {
                net: m.net.trunc(),
                macs: m.macs.clone(),
                proto: m.proto,
                ports: m.ports.clone(),
            })
            .collect();
        let (mut block4, mut block6) = (Vec::new(), Vec::new());
        for b in &spec.blocklist {
            match b.trunc() {
                n @ IpNet::V4(_) => block4.push(n.to_string()),
                n @ IpNet::V6(_) => block6.push(n.to_string()),
            }
        }
        Ok(Prepared {
            default_mode: spec.default_mode,
            groups,
            mac_groups,
            rules,
            quarantine: spec.quarantine.clone(),
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
