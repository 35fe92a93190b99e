//! Read-only views of the live (effective) policy: workloads, groups,
//! services, rules with their hit counts.

use crate::error::{ApiError, ApiResult};
use crate::state::{Caller, Shared};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::Json;
use control::engine::LiveView;
use control::model::{Model, Scalar, ServiceDef};
use control::validate::Members;
use dataplane::policy::{parse_mac, Action, Mode};
use dataplane::wire::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use utoipa::ToSchema;

/// A workload with what the policy makes of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkloadView {
    /// Canonical form, `02:00:00:00:01:0a`.
    pub mac: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The groups it is a member of, in policy order.
    pub groups: Vec<String>,
    pub ips: Vec<String>,
    pub vlan: Option<u16>,
    /// `declared`, `imported` or `observed`.
    pub origin: String,
    /// RFC 3339, for workloads learned from the wire.
    pub first_seen: Option<String>,
    pub quarantined: bool,
    pub quarantine_reason: Option<String>,
}

/// A group with its members now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    pub name: String,
    #[schema(value_type = String, example = "enforce")]
    pub mode: Mode,
    /// `selector`, `macs` or `ips`.
    pub kind: String,
    /// The label selector (key -> accepted values), for selector groups.
    #[serde(rename = "match")]
    pub selector: Option<BTreeMap<String, Vec<String>>>,
    /// Member MACs (selector and MAC groups) or CIDRs (IP-set groups).
    pub members: Vec<String>,
    pub comment: Option<String>,
}

/// One protocol and its ports (empty: every port).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceEntryView {
    pub proto: String,
    pub ports: Vec<String>,
}

/// A service usable in rules by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceView {
    pub name: String,
    /// From the built-in catalogue (not defined in the policy).
    pub builtin: bool,
    /// A user definition that replaces the built-in service of the same name.
    pub overrides_builtin: bool,
    pub entries: Vec<ServiceEntryView>,
    pub comment: Option<String>,
}

/// How often a rule decided new flows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct HitsView {
    pub flows: u64,
    /// Flows audit or learn mode let through although the rule denies them.
    pub would_deny: u64,
    /// RFC 3339; absent if never hit.
    pub last_hit: Option<String>,
}

/// A rule of the live policy, with its hits.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RuleView {
    pub id: u32,
    pub src: Vec<String>,
    pub dst: Vec<String>,
    /// Service names, or inline `{proto, ports}`.
    #[schema(value_type = Vec<super::doc::ServiceRef>)]
    pub services: Vec<serde_json::Value>,
    #[schema(value_type = String, example = "allow")]
    pub action: Action,
    pub enabled: bool,
    pub comment: Option<String>,
    pub hits: HitsView,
}

/// Whether `text` is a MAC as the API takes it ([`super::doc::MAC_PATTERN`]):
/// six pairs of hex digits, all separated by `:` or all by `-`; nothing
/// around them.
fn mac_syntax(text: &str) -> bool {
    let b = text.as_bytes();
    let Some(&sep) = b.get(2) else {
        return false;
    };
    b.len() == 17
        && (sep == b':' || sep == b'-')
        && b.iter().enumerate().all(|(i, &c)| {
            if i % 3 == 2 {
                c == sep
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Parses a MAC from a request, or 400 with `field`.
pub fn mac_param(text: &str, field: &str) -> ApiResult<MacAddr> {
    mac_syntax(text)
        .then(|| parse_mac(text))
        .flatten()
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid MAC address {text:?} (expected e.g. 02:00:00:00:01:0a or 02-00-00-00-01-0a)"
            ))
            .field(field)
        })
}

/// The `{mac}` of a path as text; a path segment that cannot be read (not
/// UTF-8 once decoded) is a 400 naming `mac` like any other malformed MAC.
pub struct MacSegment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for MacSegment {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(text)) => Ok(MacSegment(text)),
            Err(e) => Err(ApiError::bad_request(format!("invalid MAC address: {e}")).field("mac")),
        }
    }
}

/// Group names by workload index.
fn memberships(model: &Model) -> HashMap<usize, Vec<String>> {
    let mut out: HashMap<usize, Vec<String>> = HashMap::new();
    let Ok(checked) = model.check() else {
        return out;
    };
    for (g, members) in model.groups.iter().zip(&checked.groups) {
        for i in model.group_workloads(members) {
            out.entry(i).or_default().push(g.name.clone());
        }
    }
    out
}

fn quarantines(view: &LiveView) -> HashMap<MacAddr, Option<String>> {
    view.quarantines
        .iter()
        .filter_map(|q| Some((parse_mac(&q.mac)?, q.reason.clone())))
        .collect()
}

fn workload_views(view: &LiveView) -> Vec<WorkloadView> {
    let model = &view.model;
    let groups = memberships(model);
    let quarantined = quarantines(view);
    model
        .workloads
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let mac = parse_mac(&w.mac);
            let q = mac.and_then(|m| quarantined.get(&m));
            WorkloadView {
                mac: mac.map(|m| m.to_string()).unwrap_or_else(|| w.mac.clone()),
                name: w.name.clone(),
                labels: w.labels.clone(),
                groups: groups.get(&i).cloned().unwrap_or_default(),
                ips: w.ips.clone(),
                vlan: w.vlan,
                origin: serde_json::to_value(w.origin)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                first_seen: w.first_seen.map(|t| t.to_string()),
                quarantined: q.is_some(),
                quarantine_reason: q.cloned().flatten(),
            }
        })
        .collect()
}

/// Workloads of the live policy, learned ones included.
#[utoipa::path(get, path = "/api/v1/workloads", tag = "inventory",
    responses((status = 200, body = Vec<WorkloadView>), (status = 401, body = crate::error::ErrorBody)))]
pub async fn list_workloads(State(st): State<Shared>, _c: Caller) -> Json<Vec<WorkloadView>> {
    Json(workload_views(&st.control.view()))
}

/// One workload, by MAC.
#[utoipa::path(get, path = "/api/v1/workloads/{mac}", tag = "inventory",
    params(("mac" = String, Path, description = "e.g. 02:00:00:00:01:0a or 02-00-00-00-01-0a",
        pattern = "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$|^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5}$")),
    responses((status = 200, body = WorkloadView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_workload(
    State(st): State<Shared>,
    _c: Caller,
    MacSegment(mac): MacSegment,
) -> ApiResult<Json<WorkloadView>> {
    let wanted = mac_param(&mac, "mac")?.to_string();
    workload_views(&st.control.view())
        .into_iter()
        .find(|w| w.mac == wanted)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no workload with MAC {wanted}")).field("mac"))
}

/// Groups with their members and modes.
#[utoipa::path(get, path = "/api/v1/groups", tag = "inventory",
    responses((status = 200, body = Vec<GroupView>)))]
pub async fn list_groups(State(st): State<Shared>, _c: Caller) -> Json<Vec<GroupView>> {
    let view = st.control.view();
    let model = &view.model;
    let checked = model.check().ok();
    let groups = model
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let members = checked.as_ref().and_then(|c| c.groups.get(i));
            let (kind, list) = match members {
                Some(m @ Members::Selector(_)) | Some(m @ Members::Macs(_)) => (
                    if matches!(m, Members::Selector(_)) {
                        "selector"
                    } else {
                        "macs"
                    },
                    model
                        .group_workloads(m)
                        .into_iter()
                        .filter_map(|w| model.workloads.get(w))
                        .map(|w| {
                            parse_mac(&w.mac)
                                .map(|m| m.to_string())
                                .unwrap_or(w.mac.clone())
                        })
                        .collect(),
                ),
                Some(Members::Ips(nets)) => ("ips", nets.iter().map(|n| n.to_string()).collect()),
                None => ("unknown", Vec::new()),
            };
            GroupView {
                name: g.name.clone(),
                mode: g.mode,
                kind: kind.to_string(),
                selector: g.selector.as_ref().map(|s| {
                    s.iter()
                        .map(|(k, v)| (k.clone(), v.as_slice().to_vec()))
                        .collect()
                }),
                members: list,
                comment: g.comment.clone(),
            }
        })
        .collect();
    Json(groups)
}

fn scalar_text(s: &Scalar) -> String {
    match s {
        Scalar::Int(n) => n.to_string(),
        Scalar::Text(t) => t.clone(),
    }
}

fn user_service(s: &ServiceDef) -> Vec<ServiceEntryView> {
    let mut entries: Vec<ServiceEntryView> = s
        .proto
        .iter()
        .map(|p| ServiceEntryView {
            proto: scalar_text(p),
            ports: s.ports.iter().map(scalar_text).collect(),
        })
        .collect();
    entries.extend(s.entries.iter().map(|e| ServiceEntryView {
        proto: scalar_text(&e.proto),
        ports: e.ports.iter().map(scalar_text).collect(),
    }));
    entries
}

/// The built-in catalogue and the policy's own services.
#[utoipa::path(get, path = "/api/v1/services", tag = "inventory",
    responses((status = 200, body = Vec<ServiceView>)))]
pub async fn list_services(State(st): State<Shared>, _c: Caller) -> Json<Vec<ServiceView>> {
    let view = st.control.view();
    let user = &view.model.services;
    let mut out: Vec<ServiceView> = control::services::BUILTIN
        .iter()
        .filter(|(name, _)| !user.iter().any(|u| u.name.eq_ignore_ascii_case(name)))
        .map(|(name, entries)| ServiceView {
            name: name.to_string(),
            builtin: true,
            overrides_builtin: false,
            entries: entries
                .iter()
                .map(|(proto, ports)| ServiceEntryView {
                    proto: proto.to_string(),
                    ports: ports
                        .iter()
                        .map(|&(lo, hi)| {
                            if lo == hi {
                                lo.to_string()
                            } else {
                                format!("{lo}-{hi}")
                            }
                        })
                        .collect(),
                })
                .collect(),
            comment: None,
        })
        .collect();
    out.extend(user.iter().map(|s| ServiceView {
        name: s.name.clone(),
        builtin: false,
        overrides_builtin: control::services::builtin(&s.name).is_some(),
        entries: user_service(s),
        comment: s.comment.clone(),
    }));
    Json(out)
}

/// Rules of the live policy in order, with their hit counts.
#[utoipa::path(get, path = "/api/v1/rules", tag = "inventory",
    responses((status = 200, body = Vec<RuleView>), (status = 503, body = crate::error::ErrorBody)))]
pub async fn list_rules(State(st): State<Shared>, _c: Caller) -> ApiResult<Json<Vec<RuleView>>> {
    let hits: HashMap<u32, control::engine::RuleHits> =
        st.control(|h| h.rule_hits()).await?.into_iter().collect();
    let view = st.control.view();
    let rules = view
        .model
        .rules
        .iter()
        .map(|r| {
            let h = hits.get(&r.id).copied().unwrap_or_default();
            RuleView {
                id: r.id,
                src: r.src.clone(),
                dst: r.dst.clone(),
                services: r
                    .services
                    .iter()
                    .map(|s| serde_json::to_value(s).unwrap_or(serde_json::Value::Null))
                    .collect(),
                action: r.action,
                enabled: r.enabled,
                comment: r.comment.clone(),
                hits: HitsView {
                    flows: h.flows,
                    would_deny: h.would_deny,
                    last_hit: (h.last_hit > 0)
                        .then(|| control::time::Timestamp(h.last_hit).to_string()),
                },
            }
        })
        .collect();
    Ok(Json(rules))
}
