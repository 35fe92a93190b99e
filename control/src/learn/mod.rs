//! From learn to enforce: what a policy would do with the traffic the flow
//! records saw. A [`Judge`] is a model compiled into the dataplane's own
//! snapshot, so its answer for an observed flow is the packet path's
//! answer; the dry run ([`dry_run`]) judges a window's traffic by two
//! policies (or by the draft and the verdicts recorded) and reports what
//! would change; the proposals ([`propose`]) are the fewest group rules
//! that allow what today's policy allows by no rule.
//!
//! Quarantines and threat intel are left out of both sides: they are not
//! the policy being changed, and they deny whatever the policy says.

mod dry_run;
mod propose;
#[cfg(test)]
mod tests;

pub use dry_run::{dry_run, Change, DryRun, Example, ExampleEnd, Today, MAX_CHANGES, MAX_EXAMPLES};
pub use propose::{
    propose, rules_of, Gap, Proposal, Proposals, MAX_GAPS, MAX_PROPOSALS, WIDE_PORTS,
};

use crate::compile::{compile_snapshot, CompileError, RuleMap};
use crate::model::Model;
use crate::records::{Observed, ObservedEnd};
use dataplane::policy::{Action, FlowQuery, PolicySnapshot, Reason};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

/// The window a dry run or the proposals read when none is given, in days.
pub const DEFAULT_WINDOW_DAYS: i64 = 14;

/// The window of a dry run or of proposals, `(since_ms, until_ms)`: `since`
/// defaults to [`DEFAULT_WINDOW_DAYS`] before `now_ms`, `until` to now.
pub fn window(
    since: Option<String>,
    until: Option<String>,
    now_ms: i64,
) -> Result<(i64, i64), crate::records::ParamError> {
    crate::records::WindowParams { since, until }
        .window(now_ms, now_ms - DEFAULT_WINDOW_DAYS * 86_400_000)
}

/// The groups of a comma-separated list (blanks dropped); empty: all.
pub fn scope(groups: Option<&str>) -> Vec<String> {
    groups
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

/// A policy ready to judge observed traffic.
pub struct Judge {
    snapshot: PolicySnapshot,
    rules: RuleMap,
    /// Each group's members (MACs, or CIDRs of an address group).
    sizes: HashMap<String, usize>,
}

impl Judge {
    /// Compiles `model` (with the learned workloads it should hold: the
    /// appliance's effective model), its quarantine list left out.
    pub fn new(model: &Model) -> Result<Judge, CompileError> {
        let (snapshot, compiled) = if model.quarantine.is_empty() {
            compile_snapshot(model, 1)?
        } else {
            let mut m = model.clone();
            m.quarantine.clear();
            compile_snapshot(&m, 1)?
        };
        Ok(Judge {
            snapshot,
            sizes: compiled
                .groups
                .iter()
                .map(|g| (g.name.clone(), g.members))
                .collect(),
            rules: compiled.rules,
        })
    }

    /// The packet path's verdict for a flow of `o`'s key.
    pub fn decide(&self, o: &Observed) -> Decision {
        let v = self.snapshot.classify(&FlowQuery {
            src_mac: o.src.mac,
            dst_mac: o.dst.mac,
            src_ip: address(&o.src),
            dst_ip: address(&o.dst),
            proto: o.proto,
            dst_port: o.port,
        });
        let verdict = match (v.action, v.would_deny) {
            (Action::Deny, _) => Verdict::Deny,
            (Action::Allow, true) => Verdict::WouldDeny,
            (Action::Allow, false) => Verdict::Allow,
        };
        let (reason, rule) = match v.reason {
            Reason::Rule(id) => ("rule", self.rules.user_rule(id)),
            other => (crate::records::reason_name(other).0, None),
        };
        Decision {
            verdict,
            reason: reason.to_string(),
            rule,
        }
    }

    /// The groups of an end, in policy order.
    pub fn groups(&self, end: &ObservedEnd) -> Vec<String> {
        self.snapshot
            .endpoint_groups(end.mac, address(end))
            .into_iter()
            .map(str::to_string)
            .collect()
    }
}

impl Judge {
    /// A group's members (0 for a group it does not have).
    pub fn group_size(&self, group: &str) -> usize {
        self.sizes.get(group).copied().unwrap_or(0)
    }
}

/// The address an end is classified with: its own for an end no workload
/// had, else `0.0.0.0` (the records keep no workload's address: it is
/// classified by its MAC).
fn address(end: &ObservedEnd) -> IpAddr {
    end.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// What happens to a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Allow,
    /// Let through by audit or learn mode, flagged.
    WouldDeny,
    Deny,
}

impl Verdict {
    /// Whether the flow's packets pass.
    pub fn passes(self) -> bool {
        self != Verdict::Deny
    }

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::WouldDeny => "would-deny",
            Verdict::Deny => "deny",
        }
    }

    /// The verdict a record holds.
    pub fn recorded(allowed: bool, would_deny: bool) -> Verdict {
        match (allowed, would_deny) {
            (false, _) => Verdict::Deny,
            (true, true) => Verdict::WouldDeny,
            (true, false) => Verdict::Allow,
        }
    }
}

/// A verdict and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Decision {
    pub verdict: Verdict,
    /// `rule`, `default`, `blocklist` (a policy's own), or `recorded` (the
    /// verdict the records hold, when no policy is judged against).
    pub reason: String,
    /// The user rule, with reason `rule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
}
