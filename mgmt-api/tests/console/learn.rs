//! The console's Learn view over a real records store (flows written by
//! `RecordsWriter` before the server starts): the rule proposals and the
//! labelling gaps listed, a viewer's accept refused with the API's 403
//! shown, one proposal accepted into the draft as an admin (the draft holds
//! its rule, the live policy does not), and the draft's dry run with what
//! it would break, open and flag. A screenshot is kept as
//! `console-learn.png` in the target directory.

use crate::common::{self, temp_dir, Bed, End, TempDir};
use crate::webdriver::{self, Driver, Session};
use control::records::{Identity, StoredFlow};
use dataplane::policy::{Action, Mode, Reason, Verdict};
use dataplane::wire::MacAddr;
use serde_json::{json, Value};
use std::path::PathBuf;

fn workload(mac: [u8; 6], name: &str) -> Identity {
    Identity {
        mac: MacAddr(mac),
        name: name.into(),
        labels: Default::default(),
        groups: Vec::new(),
    }
}

/// One ended flow, with the verdict it was recorded with (the proposals and
/// the dry run judge it again by the live policy and the draft).
fn flow(src: &End, dst: &End, port: u16, action: Action, n: u16, last_ms: i64) -> StoredFlow {
    let reason = if action == Action::Allow {
        Reason::Rule(10)
    } else {
        Reason::Default
    };
    let verdict = Verdict {
        action,
        reason,
        mode: Mode::Enforce,
        would_deny: false,
    };
    common::ended_flow(src, dst, (6, port), verdict, n, last_ms)
}

/// The recorded traffic: web-1 -> db-1 PostgreSQL (rule 10) and SMB (rule
/// 30 denies it), admin-1 -> web-1 SSH (rule 20), and what no rule allows:
/// admin-1 -> web-1 HTTPS, web-1 -> db-1 tcp/8443, and two ends in no
/// group (jump-1, a MAC the policy does not have, and an outside address).
fn store() -> (TempDir, PathBuf) {
    let dir = temp_dir("console-learn-records");
    let path = dir.0.join("records.db");
    let web1: End = (workload([2, 0, 0, 0, 1, 1], "web-1"), "10.0.0.11");
    let db1: End = (workload([2, 0, 0, 0, 2, 1], "db-1"), "10.0.0.21");
    let admin1: End = (workload([2, 0, 0, 0, 3, 1], "admin-1"), "10.0.3.5");
    let jump1: End = (workload([2, 0, 0, 0, 4, 1], "jump-1"), "10.0.4.7");
    let outside: End = (
        Identity::unknown(MacAddr([2, 0, 0, 0, 0xff, 1])),
        "203.0.113.7",
    );
    let now = i64::try_from(control::time::Timestamp::now().0 / 1_000_000).unwrap();
    let mut batch = Vec::new();
    let mut n = 0u16;
    let mut add = |src: &End, dst: &End, port: u16, action: Action, count: u16| {
        for _ in 0..count {
            n += 1;
            batch.push(flow(
                src,
                dst,
                port,
                action,
                n,
                now - 60_000 - i64::from(n) * 1000,
            ));
        }
    };
    add(&web1, &db1, 5432, Action::Allow, 4);
    add(&web1, &db1, 445, Action::Deny, 2);
    add(&admin1, &web1, 22, Action::Allow, 2);
    add(&admin1, &web1, 443, Action::Deny, 3);
    add(&web1, &db1, 8443, Action::Allow, 2);
    add(&jump1, &db1, 22, Action::Allow, 1);
    add(&web1, &outside, 443, Action::Deny, 2);
    common::write_records(&path, batch);
    (dir, path)
}

/// The rows of a table body as their cells' text, once it has `n` rows.
fn rows(s: &Session, body: &str, n: usize) -> Vec<Vec<String>> {
    let script = format!(
        "const b = document.getElementById('{body}');
         return Array.from(b.rows).map(tr => Array.from(tr.cells).map(td => td.textContent));"
    );
    let v = s.wait_script(&script, |v| v.as_array().is_some_and(|a| a.len() == n));
    serde_json::from_value(v).unwrap()
}

fn state(s: &Session, id: &str, want: &str) {
    s.wait_script(
        &format!("return document.getElementById('{id}').dataset.state;"),
        |v| v == want,
    );
}

fn log_in(s: &Session, token: &str) {
    s.log_in(token);
    s.click("button.tab[data-view='learn']");
}

#[test]
fn console_lists_proposals_accepts_one_into_the_draft_and_dry_runs_it() {
    if !webdriver::browser_present() {
        return;
    }
    let (_records, path) = store();
    let bed = Bed::with(|cfg| cfg.records = Some(path.clone()));
    let listed = common::json(bed.get("/api/v1/proposals?since=14d", &bed.viewer), 200);
    let id_of = |src: &str, dst: &str| {
        listed["proposals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["src"] == src && p["dst"] == dst)
            .unwrap_or_else(|| panic!("a proposal {src} -> {dst}: {listed}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let https = id_of("admins", "web");
    id_of("web", "db");

    let profile = common::temp_dir("chromium-learn");
    let driver = Driver::start();
    let s = Session::new(&driver, &profile.0);
    s.goto(&bed.url("/"));
    s.execute(
        "window.cspRefused = [];
         document.addEventListener('securitypolicyviolation',
             e => window.cspRefused.push(e.violatedDirective + ' ' + e.blockedURI));",
        json!([]),
    );

    // A viewer lists the proposals and the gaps, and may not accept.
    log_in(&s, &bed.viewer);
    let since = s.execute(
        "return document.getElementById('learn-since').value;",
        json!([]),
    );
    assert_eq!(since, json!("14d"), "the default window");
    s.click("#learn-propose");
    state(&s, "learn-proposals", "ready");
    let proposals = rows(&s, "learn-proposals", 2);
    let row = proposals
        .iter()
        .find(|r| r[1] == "admins \u{2192} web")
        .unwrap_or_else(|| panic!("{proposals:?}"));
    assert_eq!(row[2], "https");
    assert_eq!((row[3].as_str(), row[4].as_str()), ("3", "900"), "{row:?}");
    assert_eq!(row[5], "1", "one pair");
    let web_db = proposals
        .iter()
        .find(|r| r[1] == "web \u{2192} db")
        .unwrap();
    assert_eq!(web_db[2], "tcp/8443");
    let summary = s.text("#learn-summary");
    assert!(
        summary.contains("2 proposals") && summary.contains("16 flows judged"),
        "{summary}"
    );
    let gaps = rows(&s, "learn-gaps", 2);
    let names: Vec<&str> = gaps.iter().map(|g| g[0].as_str()).collect();
    assert!(names.contains(&"jump-1"), "{gaps:?}");
    assert!(
        gaps.iter().any(|g| g[2] == "203.0.113.7"),
        "the outside address: {gaps:?}"
    );
    s.click(&format!("tr[data-id='{https}'] input.learn-pick"));
    s.click("#learn-accept");
    s.wait_text("#accept-what", |t| t == "1 proposal");
    s.click("#accept-yes");
    let refused = s.wait_text("#message", |t| t.contains("needs admin"));
    assert!(refused.contains("role viewer"), "{refused}");
    assert!(s
        .execute(
            "return document.getElementById('message').className;",
            json!([])
        )
        .as_str()
        .unwrap()
        .contains("error"));
    let draft = common::json(bed.get("/api/v1/policy/draft", &bed.viewer), 200);
    assert_eq!(draft["rules"].as_array().unwrap().len(), 3, "{draft}");

    // The admin's draft: rules 10 and 20 left out and web in audit mode,
    // so the dry run has something to break (SSH from admins, enforced) and
    // to flag (PostgreSQL from web to db, both in audit now) besides what
    // the accepted rule opens.
    let mut draft = common::json(bed.get("/api/v1/policy/draft", &bed.admin), 200);
    draft["rules"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["id"] != 10 && r["id"] != 20);
    for g in draft["groups"].as_array_mut().unwrap() {
        if g["name"] == "web" {
            g["mode"] = json!("audit");
        }
    }
    common::json(
        bed.send_json(
            reqwest::Method::PUT,
            "/api/v1/policy/draft",
            &bed.admin,
            &draft,
        ),
        200,
    );

    // Log out: what the viewer was shown goes; an admin accepts.
    s.click("#logout");
    let hidden = s.execute(
        "return document.getElementById('learn-proposals-panel').hidden
            && document.getElementById('learn-proposals').rows.length === 0;",
        json!([]),
    );
    assert_eq!(hidden, json!(true), "the Learn view is reset on logout");
    log_in(&s, &bed.admin);
    s.click("#learn-propose");
    rows(&s, "learn-proposals", 2);
    s.click(&format!("tr[data-id='{https}'] input.learn-pick"));
    // Cancelled first: nothing is accepted.
    s.click("#learn-accept");
    s.click("#accept-no");
    let draft = common::json(bed.get("/api/v1/policy/draft", &bed.viewer), 200);
    assert_eq!(draft["rules"].as_array().unwrap().len(), 1, "{draft}");
    s.click("#learn-accept");
    s.click("#accept-yes");
    let said = s.wait_text("#message", |t| t.contains("Accepted into the draft"));
    assert!(said.contains("(admins \u{2192} web)"), "{said}");
    let rule = s.wait_text(&format!("tr[data-id='{https}'] td.draft"), |t| {
        t.starts_with("in the draft as rule ")
    });
    let rule: u64 = rule
        .trim_start_matches("in the draft as rule ")
        .parse()
        .unwrap();
    assert!(rule > 30, "after every rule: {rule}");
    assert!(said.contains(&format!("rule {rule}")), "{said}");

    // The draft holds the rule; the live policy does not.
    let draft = common::json(bed.get("/api/v1/policy/draft", &bed.viewer), 200);
    let r = draft["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == rule)
        .unwrap_or_else(|| panic!("rule {rule} in the draft: {draft}"));
    assert_eq!(r["src"], json!(["admins"]));
    assert_eq!(r["dst"], json!(["web"]));
    assert_eq!(r["services"], json!(["https"]));
    assert_eq!(r["action"], "allow");
    let live = common::json(bed.get("/api/v1/proposals?since=14d", &bed.viewer), 200);
    assert_eq!(live["proposals"].as_array().unwrap().len(), 2, "still live");

    // The dry run of the draft: its three tables and the totals.
    s.click("#learn-dry-run");
    state(&s, "learn-dry-panel", "ready");
    let breaks = rows(&s, "learn-breaks", 1);
    assert_eq!(breaks[0][0], "admins \u{2192} web");
    assert_eq!(breaks[0][1], "tcp/22 ssh");
    assert_eq!(breaks[0][2], "2");
    assert_eq!(breaks[0][5], "allow (rule 20)");
    assert_eq!(breaks[0][6], "deny (default)");
    let opens = rows(&s, "learn-opens", 3);
    assert_eq!(opens[0][0], "admins \u{2192} web", "most flows first");
    assert_eq!(opens[0][1], "tcp/443 https");
    assert_eq!(opens[0][2], "3");
    assert_eq!(opens[0][5], "deny (default)");
    assert_eq!(opens[0][6], format!("allow (rule {rule})"));
    assert!(
        opens[0][7].contains("admin-1 \u{2192} web-1 (3)"),
        "{opens:?}"
    );
    // Let through flagged now that web is in audit mode: what no rule
    // allows, and what rule 30 denies.
    let open = |service: &str| {
        opens
            .iter()
            .find(|r| r[1] == service)
            .unwrap_or_else(|| panic!("{service}: {opens:?}"))
    };
    assert_eq!(open("tcp/8443")[0], "web \u{2192} db");
    assert_eq!(open("tcp/8443")[6], "would-deny (default)");
    assert_eq!(open("tcp/445 smb")[5], "deny (rule 30)");
    assert_eq!(open("tcp/445 smb")[6], "would-deny (rule 30)");
    let flagged = rows(&s, "learn-flagged", 1);
    assert_eq!(flagged[0][0], "web \u{2192} db");
    assert_eq!(flagged[0][1], "tcp/5432 postgresql");
    assert_eq!(flagged[0][5], "allow (rule 10)");
    assert_eq!(flagged[0][6], "would-deny (default)");
    let totals = s.text("#learn-dry-summary");
    assert!(
        totals.contains("16 flows judged, 3 unchanged")
            && totals.contains("would break 2 flows in 1 change")
            && totals.contains("open 7 flows in 3 changes")
            && totals.contains("flag 4 flows in 1 change"),
        "{totals}"
    );
    for none in ["learn-no-breaks", "learn-no-opens", "learn-no-flagged"] {
        let hidden = s.execute(
            "return document.getElementById(arguments[0]).hidden;",
            json!([none]),
        );
        assert_eq!(hidden, json!(true), "{none}");
    }
    // The same answer as the API's.
    let run = common::json(
        bed.send_json(
            reqwest::Method::POST,
            "/api/v1/policy/draft/dry-run",
            &bed.viewer,
            &json!({"since": "14d"}),
        ),
        200,
    );
    assert_eq!(run["opens"][0]["draft"]["rule"], rule, "{run}");

    s.execute("window.scrollTo(0, 0);", json!([]));
    let shot = s.screenshot();
    let exe = std::env::current_exe().unwrap();
    let _ = std::fs::write(
        exe.ancestors().nth(3).unwrap().join("console-learn.png"),
        shot,
    );

    // A window the API refuses: its 400 is shown, with the field.
    s.type_into("#learn-since", "yesterday");
    s.click("#learn-propose");
    let msg = s.wait_text("#message", |t| t.contains("[since]"));
    assert!(!msg.is_empty());
    state(&s, "learn-proposals", "error");

    let refused: Value = s.execute("return window.cspRefused;", json!([]));
    assert_eq!(refused, json!([]), "the CSP refused something");
}
