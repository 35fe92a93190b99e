//! Rule analysis from the flow records: per rule over a window, the flows it
//! decided, how many of them audit or learn mode let through although the
//! rule denies (would-deny), when it last matched, and the rules of a policy
//! that matched nothing ("which rules can go?").

use super::filter::{parse_time, ParamError, MAX_WINDOW_DAYS};
use super::graph::Split;
use super::query::time_text;
use super::{RecordsError, RecordsReader};
use crate::model::Model;
use dataplane::policy::Action;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The window as text (query string or command line).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct WindowParams {
    /// The window's start: RFC 3339, or an age like `7d`.
    pub since: Option<String>,
    /// The window's end: RFC 3339, or an age (default now).
    pub until: Option<String>,
}

impl WindowParams {
    /// `(since_ms, until_ms)`; `since` defaults to `default_since_ms`.
    pub fn window(&self, now_ms: i64, default_since_ms: i64) -> Result<(i64, i64), ParamError> {
        let time = |v: &Option<String>, field, default| match v.as_deref() {
            None => Ok(default),
            Some(t) => parse_time(t, now_ms).map_err(|message| ParamError { field, message }),
        };
        let since = time(&self.since, "since", default_since_ms)?;
        let until = time(&self.until, "until", now_ms)?;
        if until < since {
            return Err(ParamError {
                field: "until",
                message: "the window ends before it starts".into(),
            });
        }
        if until - since > MAX_WINDOW_DAYS * 86_400_000 {
            return Err(ParamError {
                field: "since",
                message: format!("a window of at most {MAX_WINDOW_DAYS} days"),
            });
        }
        Ok((since, until))
    }
}

/// What the records say of one rule in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCounts {
    /// Flows the rule decided (would-denies included).
    pub flows: u64,
    /// Of them, let through by audit or learn mode although the rule denies.
    pub would_deny: u64,
    pub last_ms: i64,
}

/// A rule's use in a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleUse {
    /// The user rule's id.
    pub id: u32,
    /// `allow` or `deny`; absent for a rule no longer in the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// In the policy the report was made against (false: the records name a
    /// rule it no longer has).
    pub in_policy: bool,
    pub enabled: bool,
    pub flows: u64,
    pub would_deny: u64,
    /// RFC 3339; absent when it matched nothing in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_hit: Option<String>,
    /// In the policy, enabled, and matched no flow in the window.
    pub never_hit: bool,
}

/// Rule use over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleReport {
    pub since: String,
    pub until: String,
    /// The policy's rules in order, then rules the records name that it lacks.
    pub rules: Vec<RuleUse>,
}

impl RecordsReader {
    /// Flows per user rule id, from the records that ended in the window
    /// (the hourly rollups for its whole hours).
    pub fn rule_counts(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<BTreeMap<u32, RuleCounts>, RecordsError> {
        self.rule_counts_from(Split::of(since_ms, until_ms))
    }

    /// [`RecordsReader::rule_counts`] reading where `split` says.
    pub(super) fn rule_counts_from(
        &self,
        split: Split,
    ) -> Result<BTreeMap<u32, RuleCounts>, RecordsError> {
        const FROM_RECORDS: &str = "
            SELECT rule_id, sum(opens), sum(opens * would_deny), max(last_ms) FROM flows
            WHERE reason = 'rule' AND last_ms BETWEEN ?1 AND ?2
            GROUP BY rule_id";
        const FROM_ROLLUPS: &str = "
            SELECT rule_id, sum(flows), sum(flows * would_deny), max(last_ms) FROM hourly
            WHERE reason = 'rule' AND hour_ms >= ?1 AND hour_ms < ?2
            GROUP BY rule_id";
        let parts = split
            .raw
            .iter()
            .flatten()
            .map(|&range| (FROM_RECORDS, range))
            .chain(
                split
                    .hours
                    .iter()
                    .flatten()
                    .chain(&split.days)
                    .map(|&range| (FROM_ROLLUPS, range)),
            );
        let mut out: BTreeMap<u32, RuleCounts> = BTreeMap::new();
        for (sql, (a, b)) in parts {
            let mut stmt = self.conn().prepare_cached(sql)?;
            let mut rows = stmt.query([a, b])?;
            while let Some(r) = rows.next()? {
                let Some(id) = r
                    .get::<_, Option<i64>>(0)?
                    .and_then(|v| u32::try_from(v).ok())
                else {
                    continue;
                };
                let c = out.entry(id).or_default();
                c.flows += u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0);
                c.would_deny += u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0);
                c.last_ms = c.last_ms.max(r.get(3)?);
            }
        }
        Ok(out)
    }
}

/// The report of `counts` against `policy` (its rules in order, each with
/// its counts, never-hit marked), then the ids the records name that the
/// policy lacks. Without a policy, the rules the records name.
pub fn rule_report(
    policy: Option<&Model>,
    counts: &BTreeMap<u32, RuleCounts>,
    since_ms: i64,
    until_ms: i64,
) -> RuleReport {
    let used = |id: u32, r: &mut RuleUse| {
        if let Some(c) = counts.get(&id) {
            r.flows = c.flows;
            r.would_deny = c.would_deny;
            r.last_hit = Some(time_text(c.last_ms));
        }
    };
    let mut rules = Vec::new();
    let mut known = std::collections::BTreeSet::new();
    for rule in policy.map(|m| m.rules.as_slice()).unwrap_or_default() {
        known.insert(rule.id);
        let mut r = RuleUse {
            id: rule.id,
            action: Some(
                match rule.action {
                    Action::Allow => "allow",
                    Action::Deny => "deny",
                }
                .to_string(),
            ),
            comment: rule.comment.clone(),
            in_policy: true,
            enabled: rule.enabled,
            flows: 0,
            would_deny: 0,
            last_hit: None,
            never_hit: false,
        };
        used(rule.id, &mut r);
        r.never_hit = r.enabled && r.flows == 0;
        rules.push(r);
    }
    for &id in counts.keys().filter(|id| !known.contains(id)) {
        let mut r = RuleUse {
            id,
            action: None,
            comment: None,
            in_policy: false,
            enabled: false,
            flows: 0,
            would_deny: 0,
            last_hit: None,
            never_hit: false,
        };
        used(id, &mut r);
        rules.push(r);
    }
    RuleReport {
        since: time_text(since_ms),
        until: time_text(until_ms),
        rules,
    }
}
