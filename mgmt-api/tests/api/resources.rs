//! Every resource, as an admin or a viewer sees it.

use crate::common::{error, json, Bed, DB, WEB};
use reqwest::Method;
use serde_json::{json, Value};

#[test]
fn workloads_list_with_labels_groups_ips_and_quarantine_state() {
    let bed = Bed::start();
    let list = json(bed.get("/api/v1/workloads", &bed.viewer), 200);
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 3);
    let web = list.iter().find(|w| w["mac"] == WEB).expect("web-1");
    assert_eq!(web["name"], "web-1");
    assert_eq!(web["labels"]["app"], "web");
    assert_eq!(web["groups"], json!(["web"]));
    assert_eq!(web["ips"], json!(["10.0.0.11"]));
    assert_eq!(web["origin"], "declared");
    assert_eq!(web["quarantined"], false);

    // By MAC, in either notation.
    let one = json(
        bed.get("/api/v1/workloads/02-00-00-00-02-01", &bed.viewer),
        200,
    );
    assert_eq!(one["mac"], DB);
    assert_eq!(one["groups"], json!(["db"]));
    let e = error(
        bed.get("/api/v1/workloads/02:00:00:00:09:09", &bed.viewer),
        404,
    );
    assert_eq!(e["field"], "mac");
    let e = error(bed.get("/api/v1/workloads/not-a-mac", &bed.viewer), 400);
    assert_eq!(e["code"], "bad_request");
    assert_eq!(e["field"], "mac");
}

#[test]
fn groups_services_and_rules_with_hits() {
    let bed = Bed::start();
    let groups = json(bed.get("/api/v1/groups", &bed.viewer), 200);
    let by = |name: &str| -> Value {
        groups
            .as_array()
            .expect("array")
            .iter()
            .find(|g| g["name"] == name)
            .cloned()
            .expect("group")
    };
    assert_eq!(by("web")["kind"], "selector");
    assert_eq!(by("web")["members"], json!([WEB]));
    assert_eq!(by("web")["match"]["app"], json!(["web"]));
    assert_eq!(by("db")["mode"], "audit");
    assert_eq!(by("admins")["kind"], "macs");
    assert_eq!(by("admins")["members"], json!(["02:00:00:00:03:01"]));
    assert_eq!(by("outside")["kind"], "ips");
    assert_eq!(by("outside")["members"], json!(["198.51.100.0/24"]));

    let services = json(bed.get("/api/v1/services", &bed.viewer), 200);
    let services = services.as_array().expect("array");
    let ssh = services.iter().find(|s| s["name"] == "ssh").expect("ssh");
    assert_eq!(ssh["builtin"], true);
    assert_eq!(ssh["entries"], json!([{ "proto": "tcp", "ports": ["22"] }]));
    let api = services
        .iter()
        .find(|s| s["name"] == "app-api")
        .expect("user");
    assert_eq!(api["builtin"], false);
    assert_eq!(api["entries"][0]["ports"], json!(["8443", "9000-9010"]));

    let rules = json(bed.get("/api/v1/rules", &bed.viewer), 200);
    let rules = rules.as_array().expect("array");
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[0]["id"], 10);
    assert_eq!(rules[0]["action"], "allow");
    assert_eq!(rules[0]["hits"]["flows"], 0);
    assert_eq!(rules[0]["hits"]["last_hit"], Value::Null);
    assert_eq!(
        rules[2]["services"][1],
        json!({ "proto": "tcp", "ports": [139] })
    );
}

#[test]
fn policy_draft_diff_commit_versions_and_rollback() {
    let bed = Bed::start();
    let admin = &bed.admin;
    // Without a draft, the draft is the live policy and the diff is empty.
    let mut model = json(bed.get("/api/v1/policy/draft", admin), 200);
    assert_eq!(
        json(bed.get("/api/v1/policy/diff", admin), 200)["changes"],
        json!([])
    );
    let e = error(
        bed.send_json(Method::POST, "/api/v1/policy/commit", admin, &json!({})),
        409,
    );
    assert_eq!(e["code"], "conflict");

    // Save a draft with one more rule: the answer is its diff.
    model["rules"]
        .as_array_mut()
        .expect("rules")
        .push(json!({ "id": 40, "src": ["web"], "dst": ["web"], "services": ["https"], "action": "allow" }));
    let diff = json(
        bed.send_json(Method::PUT, "/api/v1/policy/draft", admin, &model),
        200,
    );
    assert_eq!(
        diff["changes"],
        json!([{ "kind": "added", "section": "rules", "key": "40" }])
    );
    assert_eq!(json(bed.get("/api/v1/policy/diff", admin), 200), diff);
    let draft = json(bed.get("/api/v1/policy/draft", &bed.viewer), 200);
    assert_eq!(draft["rules"].as_array().map(Vec::len), Some(4));

    // A draft with a problem is refused with the problem's path.
    let mut bad = model.clone();
    bad["rules"][3]["services"] = json!(["smbb"]);
    let e = error(
        bed.send_json(Method::PUT, "/api/v1/policy/draft", admin, &bad),
        422,
    );
    assert_eq!(e["code"], "invalid");
    assert_eq!(e["field"], "rules[3].services[0]");
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("smbb")),
        "{e}"
    );

    // Commit: version 2 is live, and the rules show it.
    let c = json(
        bed.send_json(
            Method::POST,
            "/api/v1/policy/commit",
            admin,
            &json!({ "comment": "https between web — ünïcode" }),
        ),
        200,
    );
    assert_eq!(c["version"], 2);
    assert!(c["generation"].as_u64().is_some_and(|g| g >= 2));
    assert_eq!(
        json(bed.get("/api/v1/rules", admin), 200)
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    let versions = json(bed.get("/api/v1/policy/versions", &bed.viewer), 200);
    let versions = versions.as_array().expect("array");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1]["live"], true);
    assert_eq!(versions[1]["actor"], "api:ada");
    assert_eq!(versions[1]["comment"], "https between web — ünïcode");
    let v1 = json(bed.get("/api/v1/policy/versions/1", &bed.viewer), 200);
    assert_eq!(v1["rules"].as_array().map(Vec::len), Some(3));
    error(bed.get("/api/v1/policy/versions/99", &bed.viewer), 404);
    let e = error(bed.get("/api/v1/policy/versions/two", &bed.viewer), 400);
    assert_eq!(e["field"], "version");

    // Rollback to 1: a new version 3 with version 1's content.
    let r = json(
        bed.send_json(
            Method::POST,
            "/api/v1/policy/rollback",
            admin,
            &json!({ "version": 1 }),
        ),
        200,
    );
    assert_eq!(r["version"], 3);
    assert_eq!(
        json(bed.get("/api/v1/rules", admin), 200)
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let e = error(
        bed.send_json(
            Method::POST,
            "/api/v1/policy/rollback",
            admin,
            &json!({ "version": 42 }),
        ),
        404,
    );
    assert_eq!(e["field"], "version");

    // Discard a draft.
    json(
        bed.send_json(Method::PUT, "/api/v1/policy/draft", admin, &model),
        200,
    );
    let resp = bed
        .req(Method::DELETE, "/api/v1/policy/draft", admin)
        .send()
        .expect("delete");
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(
        json(bed.get("/api/v1/policy/diff", admin), 200)["changes"],
        json!([])
    );
}

#[test]
fn quarantine_release_list_and_history() {
    let bed = Bed::start();
    let op = &bed.operator;
    let q = json(
        bed.send_json(
            Method::POST,
            "/api/v1/quarantine",
            op,
            &json!({ "mac": "02-00-00-00-01-01", "reason": "EDR alert 4711 ✓" }),
        ),
        200,
    );
    assert_eq!(q["mac"], WEB);
    assert_eq!(q["already"], false);
    assert_eq!(q["unknown_workload"], false);
    // Idempotent.
    let again = json(
        bed.send_json(
            Method::POST,
            "/api/v1/quarantine",
            op,
            &json!({ "mac": WEB }),
        ),
        200,
    );
    assert_eq!(again["already"], true);
    // A MAC not seen yet may be quarantined ahead.
    let ahead = json(
        bed.send_json(
            Method::POST,
            "/api/v1/quarantine",
            op,
            &json!({ "mac": "02:00:00:00:0f:0f" }),
        ),
        200,
    );
    assert_eq!(ahead["unknown_workload"], true);

    let list = json(bed.get("/api/v1/quarantine", &bed.viewer), 200);
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2);
    let web = list.iter().find(|q| q["mac"] == WEB).expect("web");
    assert_eq!(web["name"], "web-1");
    assert_eq!(web["reason"], "EDR alert 4711 ✓");
    assert_eq!(web["actor"], "api:otto");
    assert_eq!(web["source"], "command");
    let w = json(
        bed.get(&format!("/api/v1/workloads/{WEB}"), &bed.viewer),
        200,
    );
    assert_eq!(w["quarantined"], true);
    assert_eq!(w["quarantine_reason"], "EDR alert 4711 ✓");

    let r = json(
        bed.req(Method::DELETE, &format!("/api/v1/quarantine/{WEB}"), op)
            .send()
            .expect("release"),
        200,
    );
    assert_eq!(r["released"], true);
    let r = json(
        bed.req(Method::DELETE, &format!("/api/v1/quarantine/{WEB}"), op)
            .send()
            .expect("release"),
        200,
    );
    assert_eq!(r["released"], false);
    let e = error(
        bed.req(Method::DELETE, "/api/v1/quarantine/zz:zz", op)
            .send()
            .expect("bad"),
        400,
    );
    assert_eq!(e["field"], "mac");

    let h = json(
        bed.get(
            &format!("/api/v1/quarantine/history?mac={WEB}"),
            &bed.viewer,
        ),
        200,
    );
    let actions: Vec<&str> = h
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["quarantine", "release"]);
    let all = json(bed.get("/api/v1/quarantine/history", &bed.viewer), 200);
    assert_eq!(all.as_array().map(Vec::len), Some(3));
    error(
        bed.get("/api/v1/quarantine/history?mac=nope", &bed.viewer),
        400,
    );
}

#[test]
fn stats_health_and_metrics() {
    let bed = Bed::start();
    // No worker report yet: health is degraded (503) but answers without a token.
    let resp = bed
        .client
        .get(bed.url("/api/v1/health"))
        .send()
        .expect("health");
    let h = json(resp, 503);
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["control_running"], true);

    let mut report = dataplane::worker::StatsReport::default();
    report.worker.ports[0].rx_packets = 7;
    report.worker.ports[1].tx_bytes = 1234;
    report.live_flows = 3;
    report.flow_capacity = 1024;
    report.flows.evictions = 2;
    report.io.socket.fill_ring_empty = 5;
    report.io.socket.rx_dropped = 5;
    bed.publish_stats(report);
    let h = json(
        bed.client
            .get(bed.url("/api/v1/health"))
            .send()
            .expect("health"),
        200,
    );
    assert_eq!(h["status"], "ok");
    assert!(h["worker_report_age_ms"].as_u64().is_some());

    let s = json(bed.get("/api/v1/stats", &bed.viewer), 200);
    assert_eq!(s["workers"][0]["ports"]["a"]["rx_packets"], 7);
    assert_eq!(s["workers"][0]["ports"]["b"]["tx_bytes"], 1234);
    assert_eq!(s["workers"][0]["flow_table"]["live"], 3);
    assert_eq!(s["workers"][0]["flow_table"]["evictions"], 2);
    assert_eq!(s["workers"][0]["drops"]["rule-deny"], 0);
    assert_eq!(s["workers"][0]["socket_drops"]["fill-ring-empty"], 5);
    assert_eq!(s["workers"][0]["socket_drops"]["rx-ring-full"], 0);
    assert_eq!(s["control"]["running"], true);
    assert_eq!(s["control"]["live_version"], 1);

    // Metrics need a token by default.
    let resp = bed.client.get(bed.url("/metrics")).send().expect("metrics");
    assert_eq!(resp.status().as_u16(), 401);
    let resp = bed.get("/metrics", &bed.viewer);
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().expect("text");
    let samples = parse_metrics(&text);
    let value = |name: &str, labels: &str| -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l.contains(labels))
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{text}"))
    };
    assert_eq!(
        value("bulkhead_port_packets_total", "port=\"a\",direction=\"rx\""),
        7.0
    );
    assert_eq!(
        value("bulkhead_port_bytes_total", "port=\"b\",direction=\"tx\""),
        1234.0
    );
    assert_eq!(value("bulkhead_drops_total", "reason=\"quarantine\""), 0.0);
    assert_eq!(
        value("bulkhead_socket_drops_total", "reason=\"fill-ring-empty\""),
        5.0
    );
    assert_eq!(value("bulkhead_live_flows", "worker=\"0\""), 3.0);
    assert_eq!(value("bulkhead_flow_evictions_total", "worker=\"0\""), 2.0);
    assert_eq!(value("bulkhead_events_lost_total", "worker=\"0\""), 0.0);
    assert!(value("bulkhead_policy_generation", "") >= 1.0);
    assert_eq!(value("bulkhead_control_up", ""), 1.0);
    assert!(value("bulkhead_api_requests_total", "status=\"200\"") >= 1.0);
    assert!(value("bulkhead_api_requests_total", "status=\"401\"") >= 1.0);
}

#[test]
fn metrics_may_be_open_when_the_config_says_so() {
    let bed = Bed::with(|c| c.metrics_unauthenticated = true);
    let resp = bed.client.get(bed.url("/metrics")).send().expect("metrics");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(!parse_metrics(&resp.text().expect("text")).is_empty());
}

/// A strict reading of the text format: every line a comment (`# HELP`,
/// `# TYPE`, `# UNIT`, `# EOF`) or `name{labels} value` with a numeric value.
fn parse_metrics(text: &str) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    let mut saw_eof = false;
    for line in text.lines() {
        if line == "# EOF" {
            saw_eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let kind = rest.split(' ').next().unwrap_or("");
            assert!(
                ["HELP", "TYPE", "UNIT"].contains(&kind),
                "bad comment: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                assert!(l.ends_with('}'), "bad labels: {line}");
                (n, l.trim_end_matches('}'))
            }
            None => (series, ""),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name: {line}"
        );
        out.push((name.to_string(), labels.to_string(), value));
    }
    assert!(saw_eof, "no # EOF");
    out
}
