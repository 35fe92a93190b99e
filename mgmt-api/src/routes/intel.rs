//! Threat intel: the feeds in force and what their last reading did, a
//! lookup ("is this address or name listed, and by what?"), a reload, and
//! the `bulkhead_intel_*` metrics.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::{Caller, Shared};
use axum::extract::{Query, State};
use axum::Json;
use control::engine::IntelView;
use control::intel::{Action, Match};
use control::time::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A line of a feed that was skipped.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LineProblemView {
    /// 1-based.
    pub line: usize,
    /// The line's start.
    pub text: String,
    pub why: String,
}

/// A feed and what its last reading did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedView {
    pub name: String,
    pub path: String,
    /// `list`, `hosts` or `csv`.
    pub format: String,
    /// `alert` or `block`.
    pub action: String,
    /// Of entries that name none: `low`, `medium`, `high`, `critical`.
    pub severity: String,
    /// A workload that reaches an entry is quarantined.
    pub quarantine: bool,
    /// Entries in force.
    pub entries: usize,
    /// Where they came from: `file`, `last-good` (the file could not be
    /// read or held nothing: its last good version is kept) or `none`.
    pub origin: String,
    /// Why the file as it is now is not in force, if it is not.
    pub error: Option<String>,
    /// Lines skipped in the version in force, and the first of them.
    pub problems: usize,
    pub problem_lines: Vec<LineProblemView>,
    /// When the version in force was read (RFC 3339).
    pub loaded_at: Option<String>,
}

/// The threat intel in force.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IntelStatusView {
    /// Entries of every feed.
    pub entries: usize,
    /// Heap bytes of the match sets.
    pub bytes: usize,
    /// The policy generation that put it in force (0: no feed watcher runs).
    pub generation: u64,
    /// When (RFC 3339).
    pub published_at: Option<String>,
    /// How long reading the feeds took.
    pub took_ms: f64,
    pub feeds: Vec<FeedView>,
    /// The last retro-hunt (absent: none ran).
    pub hunt: Option<HuntView>,
}

/// What the last retro-hunt did: the entries a feed reading added, searched
/// for in the records of the retention window.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HuntView {
    /// When it ran (RFC 3339).
    pub at: String,
    /// Entries the reading added; searched; past the cap of 1,000.
    pub added: usize,
    pub searched: usize,
    pub not_searched: usize,
    /// `intel-retro` alerts it raised (before deduplication).
    pub alerts: usize,
    pub took_ms: f64,
    /// Why it could not search (the records store is unreadable).
    pub error: Option<String>,
}

/// Problems listed per feed at most.
const PROBLEM_LINES: usize = 20;

pub(super) fn rfc3339(ms: i64) -> String {
    Timestamp(u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)).to_string()
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Alert => "alert",
        Action::Block => "block",
    }
}

fn status_view(v: &IntelView) -> IntelStatusView {
    IntelStatusView {
        entries: v.intel.len(),
        bytes: v.intel.bytes(),
        generation: v.generation,
        published_at: (v.generation > 0).then(|| rfc3339(v.published_ms)),
        took_ms: v.took_ms,
        hunt: v.hunt.as_ref().map(|h| HuntView {
            at: rfc3339(h.at_ms),
            added: h.added,
            searched: h.searched,
            not_searched: h.not_searched,
            alerts: h.alerts,
            took_ms: h.took_ms,
            error: h.error.clone(),
        }),
        feeds: v
            .feeds
            .iter()
            .map(|f| FeedView {
                name: f.source.name.clone(),
                path: f.source.path.display().to_string(),
                format: format!("{:?}", f.source.format).to_lowercase(),
                action: action_name(f.source.action).into(),
                severity: f.source.severity.to_string(),
                quarantine: f.source.quarantine,
                entries: f.entries,
                origin: f.origin.name().into(),
                error: f.error.clone(),
                problems: f.problems.count,
                problem_lines: f
                    .problems
                    .list
                    .iter()
                    .take(PROBLEM_LINES)
                    .map(|p| LineProblemView {
                        line: p.line,
                        text: p.text.clone(),
                        why: p.why.clone(),
                    })
                    .collect(),
                loaded_at: f.loaded_ms.map(rfc3339),
            })
            .collect(),
    }
}

/// The feeds in force and what their last reading did.
#[utoipa::path(get, path = "/api/v1/intel", tag = "intel",
    responses((status = 200, body = IntelStatusView)))]
pub async fn status(State(st): State<Shared>, _c: Caller) -> Json<IntelStatusView> {
    Json(status_view(&st.control.intel()))
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
pub struct LookupQuery {
    /// An IPv4 or IPv6 address, or a DNS name.
    #[param(min_length = 1, max_length = 255)]
    pub q: String,
}

/// The entry that lists what was looked up.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IntelMatchView {
    pub feed: String,
    /// `alert` or `block`.
    pub action: String,
    /// The listed address, network or domain.
    pub listed: String,
    pub category: Option<String>,
    pub severity: String,
    /// When the entry was first read (RFC 3339).
    pub added_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LookupResult {
    pub query: String,
    /// `null`: not listed.
    #[serde(rename = "match")]
    pub matched: Option<IntelMatchView>,
}

fn match_view(m: Match<'_>) -> IntelMatchView {
    IntelMatchView {
        feed: m.feed.name.clone(),
        action: action_name(m.feed.action).into(),
        listed: m.listed.to_string(),
        category: m.category.map(str::to_string),
        severity: m.severity.to_string(),
        added_at: rfc3339(m.added_ms),
    }
}

/// Whether an address or a name is listed, and by which feed and entry (a
/// name matches a listed domain it is under; an address a listed network
/// that holds it; a block feed's entry before an alert feed's).
#[utoipa::path(get, path = "/api/v1/intel/lookup", tag = "intel",
    params(LookupQuery),
    responses((status = 200, body = LookupResult), (status = 400, body = ErrorBody)))]
pub async fn lookup(
    State(st): State<Shared>,
    _c: Caller,
    Query(q): Query<LookupQuery>,
) -> ApiResult<Json<LookupResult>> {
    let text = q.q.trim();
    if text.is_empty() || text.len() > 255 {
        return Err(
            ApiError::bad_request("an address or a name of 1 to 255 characters").field("q"),
        );
    }
    let view = st.control.intel();
    let matched = match text.parse::<std::net::IpAddr>() {
        Ok(ip) => view.intel.ip(ip).map(match_view),
        Err(_) => {
            let ok = text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "{text:?} is neither an address nor a DNS name"
                ))
                .field("q"));
            }
            view.intel.domain(text).map(match_view)
        }
    };
    Ok(Json(LookupResult {
        query: text.to_string(),
        matched,
    }))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReloadResult {
    /// `false`: no feed watcher runs (the appliance always runs one).
    pub reloading: bool,
}

/// Reads every feed again now (admin); the answer does not wait for it:
/// `GET /intel` shows the new generation when it is in force.
#[utoipa::path(post, path = "/api/v1/intel/reload", tag = "intel",
    responses((status = 200, body = ReloadResult), (status = 403, body = ErrorBody)))]
pub async fn reload(State(st): State<Shared>, _c: Caller) -> Json<ReloadResult> {
    Json(ReloadResult {
        reloading: st.control.reload_intel(),
    })
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeedLabel {
    feed: String,
    action: String,
    origin: String,
}

/// `bulkhead_intel_*` metrics.
pub(crate) fn register(reg: &mut Registry, v: &IntelView) {
    if v.generation == 0 {
        return;
    }
    let entries = Family::<FeedLabel, Gauge>::default();
    let problems = Family::<FeedLabel, Gauge>::default();
    for f in &v.feeds {
        let label = FeedLabel {
            feed: f.source.name.clone(),
            action: action_name(f.source.action).into(),
            origin: f.origin.name().into(),
        };
        entries
            .get_or_create(&label)
            .set(i64::try_from(f.entries).unwrap_or(i64::MAX));
        problems
            .get_or_create(&label)
            .set(i64::try_from(f.problems.count).unwrap_or(i64::MAX));
    }
    reg.register(
        "intel_entries",
        "Threat-intel entries in force, by feed (origin last-good: the file is broken and its last good version is kept)",
        entries,
    );
    reg.register(
        "intel_feed_problems",
        "Lines of a feed's version in force that were skipped",
        problems,
    );
    let bytes = Gauge::<i64>::default();
    bytes.set(i64::try_from(v.intel.bytes()).unwrap_or(i64::MAX));
    reg.register(
        "intel_bytes",
        "Heap bytes of the threat-intel match sets",
        bytes,
    );
}
