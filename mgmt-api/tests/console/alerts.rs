//! The console's Alerts view: an intel alert is listed with its severity,
//! opened with its evidence, its workload quarantined from it through the
//! confirmation dialog (the alert named in the reason), then acknowledged
//! and closed; the filters hide what is handled. A screenshot is kept as
//! `console-alerts.png` in the target directory.

use crate::common::{self, Bed, WEB};
use crate::webdriver::{self, Driver, Session};
use control::alerts::{Kind, NewAlert};
use control::intel::Severity;
use control::store::Store;

fn raise(store: &mut Store, kind: Kind, severity: Severity, indicator: &str) -> i64 {
    store
        .insert_alert(&NewAlert {
            at_ms: control::time::Timestamp::now().millis(),
            kind,
            severity,
            mac: WEB.parse().unwrap(),
            workload: Some("web-1".into()),
            indicator: indicator.into(),
            summary: format!("web-1 resolved c2.{indicator}, listed by feed soc"),
            evidence: serde_json::json!({
                "dns": {"qname": format!("c2.{indicator}"), "answers": ["203.0.113.9"]},
                "entry": {"feed": "soc", "listed": indicator},
            }),
        })
        .unwrap()
}

#[test]
fn console_lists_an_alert_shows_its_evidence_and_quarantines_its_workload() {
    if !webdriver::browser_present() {
        return;
    }
    let bed = Bed::start();
    let mut store = Store::open(&bed.store_path).unwrap();
    let low = raise(&mut store, Kind::IntelIp, Severity::Low, "198.51.100.7");
    let id = raise(&mut store, Kind::IntelDns, Severity::Critical, "evil.test");
    let profile = common::temp_dir("chromium-alerts");
    let driver = Driver::start();
    let s = Session::new(&driver, &profile.0);
    s.goto(&bed.url("/"));
    s.log_in(&bed.operator);

    s.click("button.tab[data-view='alerts']");
    let rows = s.wait_text("#alerts", |t| t.contains("evil.test"));
    assert!(
        rows.contains("critical") && rows.contains("198.51.100.7"),
        "{rows}"
    );
    // Only high and above: the low one goes.
    s.execute(
        "document.getElementById('al-severity').value = 'high';",
        serde_json::json!([]),
    );
    s.click("#alerts-show");
    s.wait_text("#alerts", |t| {
        t.contains("evil.test") && !t.contains("198.51.100.7")
    });

    // Its evidence, as the API gives it.
    s.click(&format!("tr[data-id='{id}'] a.workload-link"));
    s.wait_text("#alert-title", |t| t.contains(&format!("Alert {id}")));
    let evidence = s.text("#alert-evidence");
    let v: serde_json::Value = serde_json::from_str(&evidence).unwrap();
    assert_eq!(v["dns"]["qname"], "c2.evil.test");
    assert!(s.text("#alert-fields").contains(WEB));
    let shot = s.screenshot();
    let exe = std::env::current_exe().unwrap();
    let _ = std::fs::write(
        exe.ancestors().nth(3).unwrap().join("console-alerts.png"),
        shot,
    );

    // Quarantine its workload from it: the reason names the alert.
    s.click("#alert-quarantine");
    let reason = s.execute(
        "return document.getElementById('confirm-reason').value;",
        serde_json::json!([]),
    );
    assert!(
        reason
            .as_str()
            .unwrap()
            .starts_with(&format!("alert {id}: web-1 resolved")),
        "{reason}"
    );
    s.click("#confirm-yes");
    s.wait_text("#message", |t| t.contains("quarantined"));
    let q = common::json(bed.get("/api/v1/quarantine", &bed.viewer), 200);
    assert_eq!(q[0]["mac"], WEB);
    assert!(q[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with(&format!("alert {id}")));

    // Acknowledged, then closed: gone from the open ones.
    s.click("#alert-ack");
    s.wait_text("#message", |t| t.contains("acknowledged"));
    s.wait_text("#alert-fields", |t| t.contains("acknowledged by api:otto"));
    s.click("#alert-close");
    s.wait_text("#message", |t| t.contains("closed"));
    s.wait_text("#alerts-summary", |t| t.contains("No alert matches"));
    let a = common::json(bed.get(&format!("/api/v1/alerts/{id}"), &bed.viewer), 200);
    assert_eq!(a["state"], "closed");
    assert_eq!(a["state_by"], "api:otto");
    let other = common::json(bed.get(&format!("/api/v1/alerts/{low}"), &bed.viewer), 200);
    assert_eq!(other["state"], "open");
}
