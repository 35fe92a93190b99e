//! The web console: plain HTML, CSS and JavaScript embedded in the binary,
//! served at `/` by the same server. It talks to the API with the token the
//! user typed, kept in the tab's `sessionStorage`.
//!
//! The access graph is drawn by cytoscape.js, vendored in
//! `console/vendor/` (the appliance has no internet, so no CDN; see
//! `console/vendor/README.md`). It is served under a path carrying its
//! version, so it may be cached for good.

use crate::state::Shared;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const GRAPH: &str = include_str!("console/graph.js");
const FLOWS: &str = include_str!("console/flows.js");
const INVESTIGATE: &str = include_str!("console/investigate.js");
const ALERTS: &str = include_str!("console/alerts.js");
const LEARN: &str = include_str!("console/learn.js");
const STYLE: &str = include_str!("console/console.css");
const CYTOSCAPE: &str = include_str!("console/vendor/cytoscape.min.js");

/// The vendored cytoscape.js release; `index.html` loads [`CYTOSCAPE_PATH`].
macro_rules! cytoscape_version {
    () => {
        "3.35.0"
    };
}
/// Where the console loads cytoscape.js from: a new release is a new path.
const CYTOSCAPE_PATH: &str = concat!("/vendor/cytoscape-", cytoscape_version!(), ".min.js");

/// Only our own files; no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn asset(body: &'static str, content_type: &'static str, cache: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

/// Our own files change with the binary: revalidated on every load.
const FRESH: &str = "no-cache";
/// A versioned path never changes.
const FOREVER: &str = "public, max-age=31536000, immutable";
const JS: &str = "text/javascript; charset=utf-8";

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8", FRESH) }),
        )
        .route("/console.js", get(|| async { asset(SCRIPT, JS, FRESH) }))
        .route("/graph.js", get(|| async { asset(GRAPH, JS, FRESH) }))
        .route("/flows.js", get(|| async { asset(FLOWS, JS, FRESH) }))
        .route(
            "/investigate.js",
            get(|| async { asset(INVESTIGATE, JS, FRESH) }),
        )
        .route("/alerts.js", get(|| async { asset(ALERTS, JS, FRESH) }))
        .route("/learn.js", get(|| async { asset(LEARN, JS, FRESH) }))
        .route(
            "/console.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8", FRESH) }),
        )
        .route(
            CYTOSCAPE_PATH,
            get(|| async { asset(CYTOSCAPE, JS, FOREVER) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_cytoscape_is_the_version_the_page_loads() {
        assert!(
            CYTOSCAPE.contains(concat!("version=\"", cytoscape_version!(), "\"")),
            "console/vendor/cytoscape.min.js is not release {}",
            cytoscape_version!()
        );
        assert!(
            INDEX.contains(&format!("src=\"{CYTOSCAPE_PATH}\"")),
            "index.html must load {CYTOSCAPE_PATH}"
        );
        for script in [
            "/console.js",
            "/graph.js",
            "/flows.js",
            "/investigate.js",
            "/alerts.js",
            "/learn.js",
        ] {
            assert!(INDEX.contains(&format!("src=\"{script}\"")), "{script}");
        }
    }
}
