//! Validation of a [`Model`]: one pass that reports every problem with its path
//! (`rules[3].services[0]: unknown service "smbb"`), and on success the parsed
//! forms that [`mod@crate::compile`] and [`crate::membership`] work from.

use crate::mac_prefix::MacPrefix;
use crate::model::{LabelValues, Model, ServiceDef, ServiceRef};
pub(crate) use crate::path::Sub;
use crate::services::{self, ServiceEntry};
use dataplane::policy::parse_mac;
use dataplane::wire::MacAddr;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Display};
use std::net::IpAddr;

/// The largest user rule id: compiled ids are `user id << 8 | expansion`.
pub const MAX_RULE_ID: u32 = 0x00ff_ffff;

/// One validation problem: where (`rules[3].dst[0]`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a model, displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl Problems {
    /// Whether some problem's path starts with `path` and its message contains `text`.
    pub fn has(&self, path: &str, text: &str) -> bool {
        self.0
            .iter()
            .any(|p| p.path.starts_with(path) && p.message.contains(text))
    }
}

/// How a group's members are given, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Members {
    /// Label key -> accepted values; a workload matches when every key has one of them.
    Selector(Vec<(String, Vec<String>)>),
    Macs(Vec<MacAddr>),
    Ips(Vec<IpNet>),
}

impl Members {
    /// Whether a workload with these labels is selected (always false for MAC and IP groups).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Members::Selector(sel) => selector_matches(sel, labels),
            _ => false,
        }
    }
}

/// Whether every key of `sel` has one of its values in `labels`.
pub fn selector_matches(sel: &[(String, Vec<String>)], labels: &BTreeMap<String, String>) -> bool {
    sel.iter()
        .all(|(k, vals)| labels.get(k).is_some_and(|v| vals.contains(v)))
}

/// A validated management exception: the hosts' MACs (named ones resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedManagement {
    pub net: IpNet,
    pub entries: Vec<ServiceEntry>,
    pub macs: Vec<MacAddr>,
}

/// A validated assignment rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedAssignment {
    pub mac_prefix: Option<MacPrefix>,
    pub vlan: Option<u16>,
    pub cidr: Option<IpNet>,
}

/// A validated model's parsed parts, index-aligned with the model's lists.
#[derive(Debug, Clone)]
pub struct Checked {
    pub workload_macs: Vec<MacAddr>,
    pub groups: Vec<Members>,
    /// Per rule: its services folded to one entry per protocol.
    pub rule_entries: Vec<Vec<ServiceEntry>>,
    pub management: Vec<CheckedManagement>,
    pub quarantine: Vec<MacAddr>,
    pub blocklist: Vec<IpNet>,
    pub assignment: Vec<CheckedAssignment>,
}

/// Parses `10.0.1.0/24`, `2001:db8::/32` or a bare address; host bits are cleared.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
    };
    Some(net.trunc())
}

/// What is wrong with a label key, if anything.
pub fn label_key_problem(k: &str) -> Option<String> {
    if k.trim().is_empty() {
        Some("empty label key".into())
    } else if k.contains(|c: char| c.is_whitespace() || "=;,".contains(c)) {
        Some(format!(
            "label key {k:?} may not contain whitespace, '=', ';' or ','"
        ))
    } else {
        None
    }
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn err(&mut self, path: impl ToString, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn mac(&mut self, s: &str, path: String) -> Option<MacAddr> {
        let m = parse_mac(s);
        if m.is_none() {
            self.err(path, format!("invalid MAC {s:?}"));
        }
        m
    }

    fn cidr(&mut self, s: &str, path: String) -> Option<IpNet> {
        let n = parse_cidr(s);
        if n.is_none() {
            self.err(path, format!("invalid CIDR {s:?}"));
        }
        n
    }

    fn vlan(&mut self, v: Option<u16>, path: String) {
        if let Some(v) = v.filter(|&v| v > 4095) {
            self.err(path, format!("VLAN id {v} out of range (0..=4095)"));
        }
    }

    fn labels<'a>(&mut self, keys: impl Iterator<Item = &'a String>, path: &str) {
        for k in keys {
            if let Some(m) = label_key_problem(k) {
                self.err(format!("{path}.{k}"), m);
            }
        }
    }

    /// Resolves a rule's group list (`any` allowed alone).
    fn group_refs(&mut self, names: &[String], path: &dyn Display, known: &HashMap<&str, usize>) {
        if names.is_empty() {
            self.err(path, "empty group list: name groups or \"any\"");
        }
        for (j, n) in names.iter().enumerate() {
            if n == "any" {
                if names.len() > 1 {
                    self.err(
                        Sub::index(path, j),
                        "\"any\" cannot be combined with group names",
                    );
                }
            } else if !known.contains_key(n.as_str()) {
                self.err(Sub::index(path, j), format!("unknown group {n:?}"));
            }
        }
    }

    /// Resolves a list of service references to folded entries.
    fn service_refs(
        &mut self,
        refs: &[ServiceRef],
        path: &dyn Display,
        defined: &HashMap<&str, Option<Vec<ServiceEntry>>>,
    ) -> Vec<ServiceEntry> {
        if refs.is_empty() {
            self.err(path, "no services: name services or \"any\"");
        }
        let mut out = Vec::new();
        for (k, r) in refs.iter().enumerate() {
            let p = Sub::index(path, k);
            match r {
                ServiceRef::Name(n) => match defined.get(n.as_str()) {
                    Some(Some(entries)) => out.extend(entries.iter().cloned()),
                    Some(None) => {} // the definition itself was reported
                    None => match services::builtin(n) {
                        Some(entries) => out.extend(entries),
                        None => self.err(p, format!("unknown service {n:?}")),
                    },
                },
                ServiceRef::Inline(spec) => {
                    let mut err = |path, msg| self.err(path, msg);
                    if let Some(e) = services::parse_port_spec(spec, &p, &mut err) {
                        out.push(e);
                    }
                }
            }
        }
        services::fold(out)
    }

    fn service_def(&mut self, s: &ServiceDef, path: &str) -> Option<Vec<ServiceEntry>> {
        let mut err = |p: String, m: String| {
            self.problems.push(Problem {
                path: p,
                message: m,
            })
        };
        match (&s.proto, s.entries.is_empty()) {
            (Some(proto), true) => {
                let proto = services::parse_proto(proto)
                    .map_err(|m| err(format!("{path}.proto"), m))
                    .ok();
                let ports =
                    services::parse_ports(proto, &s.ports, &format!("{path}.ports"), &mut err);
                Some(vec![ServiceEntry {
                    proto: proto?,
                    ports: ports?,
                }])
            }
            (None, false) => {
                if !s.ports.is_empty() {
                    err(
                        format!("{path}.ports"),
                        "ports without proto: put them in the entries".into(),
                    );
                }
                let mut out = Vec::new();
                let mut ok = true;
                for (k, e) in s.entries.iter().enumerate() {
                    match services::parse_port_spec(e, &format!("{path}.entries[{k}]"), &mut err) {
                        Some(e) => out.push(e),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            (Some(_), false) => {
                err(
                    path.to_string(),
                    "give proto/ports or entries, not both".into(),
                );
                None
            }
            (None, true) => {
                err(
                    path.to_string(),
                    "needs proto (and ports) or entries".into(),
                );
                None
            }
        }
    }
}

impl Model {
    /// Checks the whole model and reports every problem with its path.
    pub fn validate(&self) -> Result<(), Problems> {
        self.check().map(|_| ())
    }

    /// Checks the whole model; on success, its parsed parts.
    pub fn check(&self) -> Result<Checked, Problems> {
        let mut ck = Checker::default();
        let workload_macs = ck.workloads(self);
        let (group_ids, groups) = ck.groups(self);
        let defined = ck.services(self);
        let rule_entries = ck.rules(self, &group_ids, &defined);
        let management = ck.management(self, &workload_macs, &defined);
        let quarantine = self.quarantine.iter().enumerate();
        let quarantine = quarantine
            .filter_map(|(i, q)| ck.mac(&q.mac, format!("quarantine[{i}].mac")))
            .collect();
        let blocklist = self.blocklist.iter().enumerate();
        let blocklist = blocklist
            .filter_map(|(i, c)| ck.cidr(c, format!("blocklist[{i}]")))
            .collect();
        let assignment = ck.assignment(self);
        if !ck.problems.is_empty() {
            return Err(Problems(ck.problems));
        }
        Ok(Checked {
            workload_macs,
            groups,
            rule_entries,
            management,
            quarantine,
            blocklist,
            assignment,
        })
    }
}

/// Group ids by name, and services by name (None: defined with problems).
type GroupIds<'m> = HashMap<&'m str, usize>;
type Defined<'m> = HashMap<&'m str, Option<Vec<ServiceEntry>>>;

/// The sections of [`Model::check`], in order.
impl Checker {
    /// Workloads: unique MACs, labels, addresses, VLAN. Their MACs, in order.
    fn workloads(&mut self, model: &Model) -> Vec<MacAddr> {
        let ck = self;
        let mut workload_macs = Vec::with_capacity(model.workloads.len());
        let mut seen: HashMap<MacAddr, usize> = HashMap::with_capacity(model.workloads.len());
        for (i, w) in model.workloads.iter().enumerate() {
            if let Some(mac) = ck.mac(&w.mac, format!("workloads[{i}].mac")) {
                if let Some(j) = seen.insert(mac, i) {
                    ck.err(
                        format!("workloads[{i}].mac"),
                        format!("duplicate MAC {:?} (also workloads[{j}])", w.mac),
                    );
                }
                workload_macs.push(mac);
            }
            ck.labels(w.labels.keys(), &format!("workloads[{i}].labels"));
            for (k, ip) in w.ips.iter().enumerate() {
                if ip.trim().parse::<IpAddr>().is_err() {
                    ck.err(
                        format!("workloads[{i}].ips[{k}]"),
                        format!("invalid IP address {ip:?}"),
                    );
                }
            }
            ck.vlan(w.vlan, format!("workloads[{i}].vlan"));
        }
        workload_macs
    }

    /// Groups: unique names, exactly one way of membership. Ids by name and
    /// the members of each.
    fn groups<'m>(&mut self, model: &'m Model) -> (GroupIds<'m>, Vec<Members>) {
        let ck = self;
        let mut group_ids: GroupIds<'m> = HashMap::new();
        let mut groups = Vec::with_capacity(model.groups.len());
        for (i, g) in model.groups.iter().enumerate() {
            let path = format!("groups[{i}]");
            if g.name.trim().is_empty() {
                ck.err(format!("{path}.name"), "empty group name");
            } else if g.name.eq_ignore_ascii_case("any") {
                ck.err(
                    format!("{path}.name"),
                    "\"any\" is reserved (it means every endpoint in rules)",
                );
            } else if let Some(j) = group_ids.get(g.name.as_str()) {
                ck.err(
                    format!("{path}.name"),
                    format!("duplicate group name {:?} (also groups[{j}])", g.name),
                );
            } else {
                group_ids.insert(&g.name, i);
            }
            let given = [g.selector.is_some(), g.macs.is_some(), g.ips.is_some()];
            match given.iter().filter(|&&b| b).count() {
                0 => ck.err(&path, "needs one of match (labels), macs or ips"),
                1 => {}
                _ => ck.err(&path, "give only one of match, macs and ips"),
            }
            let members = if let Some(sel) = &g.selector {
                if sel.is_empty() {
                    ck.err(
                        format!("{path}.match"),
                        "empty selector (it would match every workload)",
                    );
                }
                ck.labels(sel.keys(), &format!("{path}.match"));
                for (k, v) in sel {
                    if matches!(v, LabelValues::AnyOf(vals) if vals.is_empty()) {
                        ck.err(format!("{path}.match.{k}"), "empty list of values");
                    }
                }
                Members::Selector(
                    sel.iter()
                        .map(|(k, v)| (k.clone(), v.as_slice().to_vec()))
                        .collect(),
                )
            } else if let Some(macs) = &g.macs {
                let macs = macs.iter().enumerate();
                Members::Macs(
                    macs.filter_map(|(k, m)| ck.mac(m, format!("{path}.macs[{k}]")))
                        .collect(),
                )
            } else {
                let ips = g.ips.as_deref().unwrap_or_default().iter().enumerate();
                Members::Ips(
                    ips.filter_map(|(k, c)| ck.cidr(c, format!("{path}.ips[{k}]")))
                        .collect(),
                )
            };
            groups.push(members);
        }
        (group_ids, groups)
    }

    /// User services: unique names, well-formed entries.
    fn services<'m>(&mut self, model: &'m Model) -> Defined<'m> {
        let ck = self;
        let mut defined: Defined<'m> = HashMap::new();
        let mut service_at: HashMap<&str, usize> = HashMap::new();
        for (i, s) in model.services.iter().enumerate() {
            let path = format!("services[{i}]");
            let entries = ck.service_def(s, &path);
            if s.name.trim().is_empty() {
                ck.err(format!("{path}.name"), "empty service name");
            } else if s.name.eq_ignore_ascii_case("any") {
                ck.err(
                    format!("{path}.name"),
                    "\"any\" is reserved (every protocol)",
                );
            } else if let Some(j) = service_at.insert(&s.name, i) {
                ck.err(
                    format!("{path}.name"),
                    format!("duplicate service name {:?} (also services[{j}])", s.name),
                );
            } else {
                defined.insert(&s.name, entries);
            }
        }
        defined
    }

    /// Rules: ids in range and unique, groups and services that exist. The
    /// service entries of each rule.
    fn rules(
        &mut self,
        model: &Model,
        group_ids: &GroupIds<'_>,
        defined: &Defined<'_>,
    ) -> Vec<Vec<ServiceEntry>> {
        let ck = self;
        let mut rule_at: HashMap<u32, usize> = HashMap::with_capacity(model.rules.len());
        let mut rule_entries = Vec::with_capacity(model.rules.len());
        for (i, r) in model.rules.iter().enumerate() {
            let path = Sub::index(&"rules", i);
            if r.id > MAX_RULE_ID {
                ck.err(
                    format!("{path}.id"),
                    format!("rule id {} is above the largest, {MAX_RULE_ID}", r.id),
                );
            }
            if let Some(j) = rule_at.insert(r.id, i) {
                ck.err(
                    format!("{path}.id"),
                    format!("duplicate rule id {} (also rules[{j}])", r.id),
                );
            }
            ck.group_refs(&r.src, &Sub::field(&path, "src"), group_ids);
            ck.group_refs(&r.dst, &Sub::field(&path, "dst"), group_ids);
            rule_entries.push(ck.service_refs(
                &r.services,
                &Sub::field(&path, "services"),
                defined,
            ));
        }
        rule_entries
    }

    /// Management exceptions: a network, services, and the management hosts
    /// by MAC or workload name (required).
    fn management(
        &mut self,
        model: &Model,
        workload_macs: &[MacAddr],
        defined: &Defined<'_>,
    ) -> Vec<CheckedManagement> {
        let ck = self;
        let mut management = Vec::with_capacity(model.management.len());
        for (i, m) in model.management.iter().enumerate() {
            let net = ck.cidr(&m.cidr, format!("management[{i}].cidr"));
            let entries =
                ck.service_refs(&m.services, &format!("management[{i}].services"), defined);
            let mut macs: Vec<MacAddr> = m
                .macs
                .iter()
                .enumerate()
                .filter_map(|(j, t)| ck.mac(t, format!("management[{i}].macs[{j}]")))
                .collect();
            for (j, name) in m.workloads.iter().enumerate() {
                let found = model
                    .workloads
                    .iter()
                    .zip(workload_macs)
                    .find(|(w, _)| w.name == *name);
                match found {
                    Some((_, &mac)) => macs.push(mac),
                    None => ck.err(
                        format!("management[{i}].workloads[{j}]"),
                        format!("no workload is named {name:?}"),
                    ),
                }
            }
            if m.macs.is_empty() && m.workloads.is_empty() {
                ck.err(
                    format!("management[{i}]"),
                    "name the management hosts (macs: [...] or workloads: [...]): an exception by address alone lets any host that takes the address through",
                );
            }
            macs.sort_unstable();
            macs.dedup();
            if let Some(net) = net {
                management.push(CheckedManagement { net, entries, macs });
            }
        }
        management
    }

    /// Assignment rules: at least one criterion, each well-formed.
    fn assignment(&mut self, model: &Model) -> Vec<CheckedAssignment> {
        let ck = self;
        let mut assignment = Vec::with_capacity(model.assignment.rules.len());
        for (i, a) in model.assignment.rules.iter().enumerate() {
            let path = format!("assignment.rules[{i}]");
            if a.mac_prefix.is_none() && a.vlan.is_none() && a.cidr.is_none() {
                ck.err(&path, "needs at least one of mac_prefix, vlan and cidr");
            }
            let mac_prefix = a.mac_prefix.as_deref().and_then(|p| {
                p.parse::<MacPrefix>()
                    .map_err(|m| ck.err(format!("{path}.mac_prefix"), m))
                    .ok()
            });
            ck.vlan(a.vlan, format!("{path}.vlan"));
            let cidr = a
                .cidr
                .as_deref()
                .and_then(|c| ck.cidr(c, format!("{path}.cidr")));
            ck.labels(a.labels.keys(), &format!("{path}.labels"));
            assignment.push(CheckedAssignment {
                mac_prefix,
                vlan: a.vlan,
                cidr,
            });
        }
        assignment
    }
}
