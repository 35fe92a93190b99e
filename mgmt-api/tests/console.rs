//! The web console in headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven over the W3C WebDriver protocol by a small
//! client below: log in with a token, open a workload, quarantine it through
//! the confirmation dialog, and see it quarantined in the list. Without
//! chromedriver the test is skipped, except in CI (`CI=true`), where it fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

#[path = "api/common.rs"]
#[allow(dead_code)]
mod common;

use common::{Bed, WEB};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver, ended when dropped.
struct Driver {
    child: Child,
    base: String,
    http: Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = d
                .http
                .get(format!("{}/status", d.base))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req
            .send()
            .expect("webdriver")
            .json()
            .expect("webdriver json");
        v
    }
}

struct Session<'a> {
    d: &'a Driver,
    id: String,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.d.call(
            reqwest::Method::DELETE,
            &format!("/session/{}", self.id),
            None,
        );
    }
}

impl Session<'_> {
    fn new<'d>(d: &'d Driver, profile: &std::path::Path) -> Session<'d> {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let v = d.call(reqwest::Method::POST, "/session", Some(caps));
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Session { d, id }
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.d.call(
            reqwest::Method::POST,
            &format!("/session/{}{path}", self.id),
            Some(body),
        )
    }

    fn get(&self, path: &str) -> Value {
        self.d.call(
            reqwest::Method::GET,
            &format!("/session/{}{path}", self.id),
            None,
        )
    }

    fn goto(&self, url: &str) {
        let v = self.post("/url", json!({ "url": url }));
        assert!(v["value"].is_null(), "navigate: {v}");
    }

    /// The element for a CSS selector, waiting up to 10 s for it to exist.
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.post("/element", json!({ "using": "css selector", "value": css }));
            if let Some(id) = v["value"][ELEMENT].as_str() {
                return id.to_string();
            }
            assert!(Instant::now() < deadline, "no element {css}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let el = self.find(css);
            let v = self.post(&format!("/element/{el}/click"), json!({}));
            if v["value"].is_null() {
                return;
            }
            // Not yet interactable (still hidden, or being re-rendered): retry.
            assert!(Instant::now() < deadline, "click {css}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.post(&format!("/element/{el}/clear"), json!({}));
        let v = self.post(&format!("/element/{el}/value"), json!({ "text": text }));
        assert!(v["value"].is_null(), "type into {css}: {v}");
    }

    fn text(&self, css: &str) -> String {
        let el = self.find(css);
        self.get(&format!("/element/{el}/text"))["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits up to 10 s for the text of `css` to satisfy `ok`.
    fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = self.text(css);
            if ok(&t) {
                return t;
            }
            assert!(Instant::now() < deadline, "{css} has {t:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn console_logs_in_opens_a_workload_quarantines_it_and_lists_it() {
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must run the console test: install chromium and chromium-driver"
        );
        eprintln!("skipped: {CHROMEDRIVER} or {CHROMIUM} missing (apt-get install chromium chromium-driver)");
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
