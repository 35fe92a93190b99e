//! Control-plane fixtures: policy models in the operator's form (workloads with
//! labels, selector groups, ordered rules) of any size.

use control::model::{Group, LabelValues, Model, PortSpec, Rule, ServiceRef, Workload};
use dataplane::policy::Action;
use std::collections::BTreeMap;

/// Workloads in [`model`]: one per tier label value.
pub const TIERS: u32 = 500;

/// MAC of workload `i` of [`model`].
pub fn model_mac(i: u32) -> String {
    format!("02:00:00:00:{:02x}:{:02x}", i >> 8, i & 0xff)
}

/// A model of `rules` rules between selector groups `g0..g499` (one workload
/// each, label `tier`), over built-in and inline services; about a seventh deny.
/// `flip` turns the action of rule 1 around, so two models differ by one rule.
pub fn model(rules: u32, flip: bool) -> Model {
    let mut m = Model::default();
    for i in 0..TIERS * 2 {
        m.workloads.push(Workload {
            mac: model_mac(i),
            labels: BTreeMap::from([("tier".to_string(), format!("t{}", i % TIERS))]),
            ..Workload::default()
        });
    }
    for g in 0..TIERS {
        m.groups.push(Group {
            name: format!("g{g}"),
            selector: Some([("tier".to_string(), LabelValues::One(format!("t{g}")))].into()),
            ..Group::default()
        });
    }
    for r in 0..rules {
        let services = match r % 3 {
            0 => vec![ServiceRef::Name("postgresql".into())],
            1 => vec![ServiceRef::Name("dns".into())],
            _ => vec![ServiceRef::Inline(PortSpec {
                proto: "tcp".into(),
                ports: vec![i64::from(1024 + r % 60000).into()],
            })],
        };
        let deny = (r % 7 == 0) != (flip && r == 0);
        m.rules.push(Rule {
            id: r + 1,
            src: vec![format!("g{}", r % TIERS)],
            dst: vec![format!("g{}", (r / TIERS) % TIERS)],
            services,
            action: if deny { Action::Deny } else { Action::Allow },
            enabled: true,
            comment: None,
        });
    }
    m
}
