//! The web console in headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven over the W3C WebDriver protocol by a small
//! client (`console/webdriver.rs`): here, log in with a token, open a
//! workload, quarantine it through the confirmation dialog, and see it
//! quarantined in the list; the access graph and the flows table over a
//! real records store in `console/graph.rs`; traceback, blast radius and
//! quarantine from it over an incident in `console/forensics.rs`; the
//! alerts list, an alert's evidence and a quarantine from it in
//! `console/alerts.rs`; the rule proposals, accepting one into the draft
//! and the draft's dry run over a real records store in
//! `console/learn.rs`. Without chromedriver the tests are skipped, except
//! in CI (`CI=true`), where they fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

#[path = "api/common.rs"]
#[allow(dead_code)]
mod common;

#[path = "console/webdriver.rs"]
mod webdriver;

#[path = "console/graph.rs"]
mod graph;

#[path = "console/forensics.rs"]
mod forensics;

#[path = "console/alerts.rs"]
mod alerts;

#[path = "console/learn.rs"]
mod learn;

use common::{Bed, WEB};
use webdriver::{Driver, Session};

#[test]
fn console_logs_in_opens_a_workload_quarantines_it_and_lists_it() {
    if !webdriver::browser_present() {
        return;
    }
    let bed = Bed::start();
    let profile = common::temp_dir("chromium");
    let driver = Driver::start();
    let s = Session::new(&driver, &profile.0);
    s.goto(&bed.url("/"));

    // A wrong token is refused and said so.
    s.type_into("#token", "bh_not-a-token");
    s.click("#login-button");
    s.wait_text("#login-error", |t| t.contains("Login failed"));

    // Log in as an operator; the workloads list shows up.
    s.type_into("#token", &bed.operator);
    s.click("#login-button");
    s.wait_text("#workloads", |t| t.contains("web-1") && t.contains("db-1"));

    // Open web-1 and quarantine it through the confirmation dialog.
    s.click(&format!("tr[data-mac='{WEB}'] a.workload-link"));
    s.wait_text("#detail-title", |t| t.contains("web-1"));
    s.click("#quarantine-button");
    s.type_into("#confirm-reason", "console test");
    s.click("#confirm-yes");
    s.wait_text("#message", |t| t.contains("quarantined"));
    s.wait_text(&format!("tr[data-mac='{WEB}'] td.state"), |t| {
        t.contains("quarantined")
    });
    s.wait_text("#detail-title", |t| t.contains("(quarantined)"));

    // The quarantine view lists it; the API agrees.
    s.click("button.tab[data-view='quarantine']");
    s.wait_text("#quarantines", |t| {
        t.contains(WEB) && t.contains("console test")
    });
    let list = common::json(bed.get("/api/v1/quarantine", &bed.viewer), 200);
    assert_eq!(list[0]["mac"], WEB);
    assert_eq!(list[0]["actor"], "api:otto");

    // Policy versions are listed.
    s.click("button.tab[data-view='versions']");
    s.wait_text("#versions", |t| t.contains("live"));
}
