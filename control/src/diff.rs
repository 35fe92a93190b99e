//! What a draft changes against the live policy: items added, removed and
//! changed, keyed the way an operator names them (rule ids, group and service
//! names, workload MACs, management CIDRs, blocklist entries).

use crate::model::Model;
use dataplane::policy::parse_mac;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// What happened to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One changed item: its section (`rules`, `groups` ...) and key (`10`, `web` ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub section: &'static str,
    pub key: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.kind {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Changed => '~',
        };
        write!(f, "{sign} {} {}", self.section, self.key)
    }
}

/// The changes from one model to another, in section order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyDiff {
    pub changes: Vec<Change>,
}

impl PolicyDiff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl fmt::Display for PolicyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return f.write_str("no changes");
        }
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Compares the items of one section by key; the first item of a duplicate key counts.
fn section<T: PartialEq>(
    out: &mut Vec<Change>,
    name: &'static str,
    from: &[T],
    to: &[T],
    key: impl Fn(&T) -> String,
) {
    let index = |items: &[T]| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            m.entry(key(item)).or_insert(i);
        }
        m
    };
    let (old, new) = (index(from), index(to));
    for (k, &i) in &old {
        match new.get(k) {
            None => out.push(Change {
                kind: ChangeKind::Removed,
                section: name,
                key: k.clone(),
            }),
            Some(&j) if from.get(i) != to.get(j) => out.push(Change {
                kind: ChangeKind::Changed,
                section: name,
                key: k.clone(),
            }),
            Some(_) => {}
        }
    }
    for k in new.keys().filter(|k| !old.contains_key(*k)) {
        out.push(Change {
            kind: ChangeKind::Added,
            section: name,
            key: k.clone(),
        });
    }
}

/// Rules kept by both whose order relative to each other changed (first match
/// wins, so order is policy): reported as changed.
fn moved_rules(out: &mut Vec<Change>, from: &Model, to: &Model) {
    let ids = |a: &Model, b: &Model| -> Vec<u32> {
        a.rules
            .iter()
            .map(|r| r.id)
            .filter(|id| b.rules.iter().any(|r| r.id == *id))
            .collect()
    };
    let (old, new) = (ids(from, to), ids(to, from));
    for (i, id) in new.iter().enumerate() {
        let key = id.to_string();
        let reported = out.iter().any(|c| c.section == "rules" && c.key == key);
        if old.get(i) != Some(id) && !reported {
            out.push(Change {
                kind: ChangeKind::Changed,
                section: "rules",
                key,
            });
        }
    }
}

/// A MAC in canonical form where it parses, as written otherwise.
fn mac_key(mac: &str) -> String {
    parse_mac(mac).map_or_else(|| mac.to_string(), |m| m.to_string())
}

/// The changes that turn `from` into `to`. Rule order counts: a rule that moved
/// is reported as changed.
pub fn diff(from: &Model, to: &Model) -> PolicyDiff {
    let mut out = Vec::new();
    if from.default_mode != to.default_mode {
        out.push(Change {
            kind: ChangeKind::Changed,
            section: "default_mode",
            key: format!("{:?}", to.default_mode).to_lowercase(),
        });
    }
    section(&mut out, "workloads", &from.workloads, &to.workloads, |w| {
        mac_key(&w.mac)
    });
    section(&mut out, "groups", &from.groups, &to.groups, |g| {
        g.name.clone()
    });
    section(&mut out, "services", &from.services, &to.services, |s| {
        s.name.clone()
    });
    section(&mut out, "rules", &from.rules, &to.rules, |r| {
        r.id.to_string()
    });
    moved_rules(&mut out, from, to);
    section(
        &mut out,
        "management",
        &from.management,
        &to.management,
        |m| m.cidr.clone(),
    );
    section(
        &mut out,
        "quarantine",
        &from.quarantine,
        &to.quarantine,
        |q| mac_key(&q.mac),
    );
    section(&mut out, "blocklist", &from.blocklist, &to.blocklist, |b| {
        b.trim().to_string()
    });
    if from.assignment != to.assignment {
        out.push(Change {
            kind: ChangeKind::Changed,
            section: "assignment",
            key: "rules".into(),
        });
    }
    PolicyDiff { changes: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(yaml: &str) -> Model {
        Model::from_yaml_str(yaml).expect("test model parses")
    }

    #[test]
    fn reports_added_removed_changed_and_moved_items() {
        let a = model(
            r#"
workloads: [{ mac: "02:00:00:00:00:01", labels: { app: web } }]
groups: [{ name: web, match: { app: web } }, { name: db, match: { app: db } }]
rules:
  - { id: 10, src: [web], dst: [db], services: [postgresql], action: allow }
  - { id: 20, src: [any], dst: [db], services: [smb], action: deny }
blocklist: [203.0.113.1/32]
"#,
        );
        let b = model(
            r#"
default_mode: audit
workloads: [{ mac: "02-00-00-00-00-01", labels: { app: web } }, { mac: "02:00:00:00:00:02" }]
groups: [{ name: web, match: { app: [web, api] } }, { name: db, match: { app: db } }]
rules:
  - { id: 20, src: [any], dst: [db], services: [smb], action: deny }
  - { id: 10, src: [web], dst: [db], services: [postgresql], action: allow }
  - { id: 30, src: [web], dst: [web], services: [ssh], action: allow }
"#,
        );
        let got: Vec<String> = diff(&a, &b).changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            got,
            vec![
                "~ default_mode audit",
                // The same MAC written differently is a change of the item, not a new one.
                "~ workloads 02:00:00:00:00:01",
                "+ workloads 02:00:00:00:00:02",
                "~ groups web",
                "+ rules 30",
                "~ rules 20",
                "~ rules 10",
                "- blocklist 203.0.113.1/32",
            ]
        );
        assert!(diff(&a, &a).is_empty());
        assert_eq!(diff(&a, &a).to_string(), "no changes");
    }
}
