//! A small W3C WebDriver client over reqwest for the console tests:
//! chromedriver, a session, navigate, find, click, type, text, script,
//! screenshot.

use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether the browser is there. Without it a console test is skipped,
/// except in CI (`CI=true`), where it fails.
pub fn browser_present() -> bool {
    if std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists() {
        return true;
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "CI must run the console tests: install chromium and chromium-driver"
    );
    eprintln!(
        "skipped: {CHROMEDRIVER} or {CHROMIUM} missing (apt-get install chromium chromium-driver)"
    );
    false
}
/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver, ended when dropped.
pub struct Driver {
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
    pub fn start() -> Driver {
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

    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
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

pub struct Session<'a> {
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
    pub fn new<'d>(d: &'d Driver, profile: &std::path::Path) -> Session<'d> {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1280,900",
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

    pub fn post(&self, path: &str, body: Value) -> Value {
        self.d.call(
            reqwest::Method::POST,
            &format!("/session/{}{path}", self.id),
            Some(body),
        )
    }

    pub fn get(&self, path: &str) -> Value {
        self.d.call(
            reqwest::Method::GET,
            &format!("/session/{}{path}", self.id),
            None,
        )
    }

    pub fn goto(&self, url: &str) {
        let v = self.post("/url", json!({ "url": url }));
        assert!(v["value"].is_null(), "navigate: {v}");
    }

    /// The element for a CSS selector, waiting up to 10 s for it to exist.
    pub fn find(&self, css: &str) -> String {
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

    pub fn click(&self, css: &str) {
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

    /// Logs in to the console with `token` and waits for the workloads list.
    pub fn log_in(&self, token: &str) {
        self.type_into("#token", token);
        self.click("#login-button");
        self.wait_text("#workloads", |t| t.contains("web-1"));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.post(&format!("/element/{el}/clear"), json!({}));
        let v = self.post(&format!("/element/{el}/value"), json!({ "text": text }));
        assert!(v["value"].is_null(), "type into {css}: {v}");
    }

    pub fn text(&self, css: &str) -> String {
        let el = self.find(css);
        self.get(&format!("/element/{el}/text"))["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits up to 10 s for the text of `css` to satisfy `ok`.
    pub fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
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

    /// Runs `script` (a function body; `arguments` are `args`) in the page
    /// and answers what it returns. A script error fails the test.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        let v = self.post("/execute/sync", json!({ "script": script, "args": args }));
        assert!(
            v["value"].get("error").is_none(),
            "script {script:?} failed: {v}"
        );
        v["value"].clone()
    }

    /// Waits up to 20 s (a loaded CI machine) for `script` to return
    /// something `ok` takes.
    pub fn wait_script(&self, script: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.execute(script, json!([]));
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{script:?} gives {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the viewport (`GET /session/{id}/screenshot`).
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let v = self.get("/screenshot");
        let b64 = v["value"]
            .as_str()
            .unwrap_or_else(|| panic!("no screenshot: {v}"));
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("screenshot base64")
    }
}
