//! `/api/v1/alerts`: listed newest first with filters, one by id,
//! acknowledged and closed by operators (who and when kept), bad input
//! refused by field, and counted in the metrics.

use crate::common::{error, json, Bed};
use control::alerts::{Kind, NewAlert};
use control::intel::Severity;
use control::store::Store;
use reqwest::Method;

fn raise(store: &mut Store, kind: Kind, severity: Severity, mac: &str, indicator: &str) -> i64 {
    store
        .insert_alert(&NewAlert {
            at_ms: control::time::Timestamp::now().millis(),
            kind,
            severity,
            mac: mac.parse().unwrap(),
            workload: Some("web-1".into()),
            indicator: indicator.into(),
            summary: format!("web-1 resolved {indicator}"),
            evidence: serde_json::json!({"dns": {"qname": indicator}}),
        })
        .unwrap()
}

#[test]
fn alerts_are_listed_filtered_acknowledged_and_closed_by_operators() {
    let bed = Bed::start();
    let mut store = Store::open(&bed.store_path).unwrap();
    let mac = "02:00:00:00:01:01";
    let a = raise(
        &mut store,
        Kind::IntelDns,
        Severity::Critical,
        mac,
        "evil.test",
    );
    let b = raise(
        &mut store,
        Kind::IntelIp,
        Severity::Low,
        "02:00:00:00:02:01",
        "203.0.113.9",
    );

    let list = json(bed.get("/api/v1/alerts", &bed.viewer), 200);
    let ids: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [b, a], "newest first");
    assert_eq!(list[1]["kind"], "intel-dns");
    assert_eq!(list[1]["severity"], "critical");
    assert_eq!(list[1]["state"], "open");
    assert_eq!(list[1]["evidence"]["dns"]["qname"], "evil.test");
    assert_eq!(list[1]["count"], 1);

    let only = |q: &str| {
        json(bed.get(&format!("/api/v1/alerts?{q}"), &bed.viewer), 200)
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(only("severity=high"), [a]);
    assert_eq!(only("kind=intel-ip"), [b]);
    assert_eq!(only(&format!("mac={}", mac.replace(':', "-"))), [a]);
    assert_eq!(only("since=1h"), [b, a]);
    assert_eq!(only(&format!("before={b}")), [a]);
    assert_eq!(only("limit=1"), [b]);
    assert!(
        only("kind=scan").is_empty(),
        "a kind of its own, none raised"
    );
    for (q, field) in [
        ("state=done", "state"),
        ("kind=portscan", "kind"),
        ("severity=9", "severity"),
        ("mac=nope", "mac"),
        ("since=yesterday-ish", "since"),
        ("limit=-1", "limit"),
    ] {
        let e = error(bed.get(&format!("/api/v1/alerts?{q}"), &bed.viewer), 400);
        assert_eq!(e["field"], field, "{q}: {e}");
    }

    // Viewers read; operators acknowledge and close.
    let one = json(bed.get(&format!("/api/v1/alerts/{a}"), &bed.viewer), 200);
    assert_eq!(one["indicator"], "evil.test");
    error(bed.get("/api/v1/alerts/999999", &bed.viewer), 404);
    error(bed.get("/api/v1/alerts/x1", &bed.viewer), 400);
    let ack = format!("/api/v1/alerts/{a}/ack");
    error(
        bed.req(Method::POST, &ack, &bed.viewer).send().unwrap(),
        403,
    );
    let v = json(
        bed.req(Method::POST, &ack, &bed.operator).send().unwrap(),
        200,
    );
    assert_eq!(v["state"], "acknowledged");
    assert!(v["state_by"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["state_at"].is_string());
    let v = json(
        bed.req(
            Method::POST,
            &format!("/api/v1/alerts/{a}/close"),
            &bed.admin,
        )
        .send()
        .unwrap(),
        200,
    );
    assert_eq!(v["state"], "closed");
    assert_eq!(only("state=open"), [b]);
    error(
        bed.req(Method::POST, "/api/v1/alerts/424242/close", &bed.operator)
            .send()
            .unwrap(),
        404,
    );

    let metrics = bed.get("/metrics", &bed.viewer).text().unwrap();
    assert!(
        metrics.contains("bulkhead_alerts{state=\"closed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("bulkhead_alerts{state=\"open\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("bulkhead_alerts_raised_total{kind=\"intel-dns\",severity=\"high\"} 0")
    );
}
