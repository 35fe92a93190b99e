//! The router: every `/api/v1` route is registered through `utoipa-axum`, so
//! the OpenAPI document is built from the same list as the router.

pub mod admin;
pub mod alerts;
pub mod detect;
pub mod doc;
pub mod follow;
pub mod intel;
pub mod intel_feeds;
pub mod inventory;
pub mod ipfix;
pub mod metrics;
pub mod policy;
pub mod proposals;
pub mod quarantine;
pub mod records;
pub mod status;

use crate::error::ApiError;
use crate::middleware;
use crate::state::Shared;
use crate::token::Role;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("bh_ token")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bulkhead management API",
        description = "Manage a bulkhead appliance: inventory, policy, quarantine, status. \
            Every call but health needs `Authorization: Bearer bh_...`; roles are \
            viewer (reads, flow records) < operator (quarantine) < admin (policy, tokens, \
            audit). Errors are \
            `{code, message, field}`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "inventory", description = "Workloads, groups, services, rules"),
        (name = "policy", description = "Draft, diff, commit, versions, rollback"),
        (name = "quarantine", description = "Quarantine by MAC"),
        (name = "admin", description = "Tokens and the audit log"),
        (name = "records", description = "Flow records"),
        (name = "intel", description = "Threat-intel feeds"),
        (name = "alerts", description = "Alerts: threat-intel matches and anomaly detection"),
        (name = "status", description = "Stats and health"),
    )
)]
struct ApiDoc;

/// Routes any token may call (viewer and up): the reads.
fn viewer_routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(inventory::list_workloads))
        .routes(routes!(inventory::get_workload))
        .routes(routes!(inventory::list_groups))
        .routes(routes!(inventory::list_services))
        .routes(routes!(inventory::list_rules))
        .routes(routes!(policy::get_draft))
        .routes(routes!(policy::get_diff))
        .routes(routes!(policy::versions))
        .routes(routes!(policy::version))
        .routes(routes!(policy::dry_run))
        .routes(routes!(proposals::list))
        .routes(routes!(quarantine::list))
        .routes(routes!(quarantine::history))
        .routes(routes!(status::stats))
        .routes(routes!(records::flows))
        .routes(routes!(follow::follow))
        .routes(routes!(records::graph))
        .routes(routes!(records::rule_usage))
        .routes(routes!(records::traceback))
        .routes(routes!(records::blast_radius))
        .routes(routes!(records::addresses))
        .routes(routes!(records::dns))
        .routes(routes!(intel::status))
        .routes(routes!(intel::lookup))
        .routes(routes!(intel_feeds::list))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::get))
        .routes(routes!(detect::status))
}

/// Routes for operators and admins: quarantine and release.
fn operator_routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(quarantine::add))
        .routes(routes!(quarantine::release))
        .routes(routes!(alerts::ack))
        .routes(routes!(alerts::close))
}

/// Routes for admins: policy changes, tokens, the audit log.
fn admin_routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(policy::put_draft, policy::delete_draft))
        .routes(routes!(policy::commit))
        .routes(routes!(policy::rollback))
        .routes(routes!(proposals::accept))
        .routes(routes!(admin::list_tokens, admin::create_token))
        .routes(routes!(admin::revoke_token))
        .routes(routes!(admin::audit))
        .routes(routes!(intel::reload))
        .routes(routes!(intel_feeds::create))
        .routes(routes!(intel_feeds::delete))
        .routes(routes!(intel_feeds::add))
        .routes(routes!(intel_feeds::remove))
        .routes(routes!(detect::reset))
}

/// The API routes and their document (without state or outer layers). The
/// role a route needs is declared here, by the group it is registered in:
/// a route outside the three groups is not served with a token at all.
pub fn api(state: Shared) -> (Router<Shared>, utoipa::openapi::OpenApi) {
    let role =
        |r: Role| axum::middleware::from_fn(move |req, next| middleware::at_least(r, req, next));
    let protected = viewer_routes()
        .route_layer(role(Role::Viewer))
        .merge(operator_routes().route_layer(role(Role::Operator)))
        .merge(admin_routes().route_layer(role(Role::Admin)))
        .layer(axum::middleware::from_fn_with_state(
            state,
            middleware::guard,
        ));
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(protected)
        .routes(routes!(status::health))
        .split_for_parts();
    doc::CommonResponses.modify(&mut doc);
    (router, doc)
}

/// The OpenAPI document as served (pretty JSON).
pub fn openapi_json(doc: &utoipa::openapi::OpenApi) -> String {
    doc.to_pretty_json().unwrap_or_else(|_| "{}".to_string())
}

/// A list's `limit` parameter: digits, default 100, taken as 1 to 1000 (a
/// number too large for `usize` is over 1000 all the same); anything else
/// is 400 with `field: "limit"`.
pub(crate) fn limit_param(v: Option<&str>) -> Result<usize, ApiError> {
    match v {
        None => Ok(100),
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(n.parse::<usize>().unwrap_or(usize::MAX).clamp(1, 1000))
        }
        Some(n) => Err(
            ApiError::bad_request(format!("limit {n:?} is not a non-negative integer"))
                .field("limit"),
        ),
    }
}

/// An optional parameter or field read with `FromStr` (its error says what
/// is expected); a bad value is 400 naming `field`.
pub(crate) fn parse_param<T: std::str::FromStr<Err = String>>(
    v: Option<&str>,
    field: &str,
) -> Result<Option<T>, ApiError> {
    v.map(str::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e).field(field))
}

/// The message of the 404 for a path no route serves.
pub const NO_ROUTE: &str = "no such endpoint";

/// The whole application: API, metrics, OpenAPI document, console.
pub fn app(state: Shared, api: Router<Shared>, openapi: String) -> Router {
    let openapi = std::sync::Arc::new(openapi);
    api.route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = openapi.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        axum::http::HeaderValue::from_static("application/json"),
                    )],
                    doc.as_str().to_string(),
                )
            }
        }),
    )
    .route("/metrics", get(metrics::metrics))
    .merge(crate::console::routes())
    .fallback(|| async { ApiError::not_found(NO_ROUTE).into_response() })
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        middleware::outer,
    ))
    .with_state(state)
}
