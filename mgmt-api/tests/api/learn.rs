//! The dry run and rule proposals over a real records store: what a draft
//! without a needed rule would break; proposals for what no rule allows,
//! accepted into the draft (never the live policy), refused by bad ids,
//! windows and roles.

use crate::common::{error, json, Bed};
use crate::records::store;
use serde_json::Value;

#[test]
fn a_dry_run_lists_what_a_draft_without_a_needed_rule_would_break() {
    let (_dir, path) = store(30);
    let bed = Bed::with(|cfg| cfg.records = Some(path.clone()));
    let run = |body: Value| {
        bed.send_json(
            reqwest::Method::POST,
            "/api/v1/policy/draft/dry-run",
            &bed.viewer,
            &body,
        )
    };
    // No draft: the live policy against itself.
    let same = json(run(serde_json::json!({})), 200);
    assert_eq!(same["flows"], 30);
    assert_eq!(same["unchanged_flows"], 30);
    assert_eq!(same["today"], "live policy");
    assert!(same["breaks"].as_array().unwrap().is_empty(), "{same}");

    // A draft that drops rule 10 (web -> db PostgreSQL).
    let mut draft = json(bed.get("/api/v1/policy/draft", &bed.viewer), 200);
    let rules = draft["rules"].as_array_mut().unwrap();
    rules.retain(|r| r["id"] != 10);
    json(
        bed.send_json(
            reqwest::Method::PUT,
            "/api/v1/policy/draft",
            &bed.admin,
            &draft,
        ),
        200,
    );
    let v = json(run(serde_json::json!({"since": "1h"})), 200);
    let breaks = v["breaks"].as_array().unwrap();
    assert_eq!(breaks.len(), 1, "{v}");
    let b = &breaks[0];
    assert_eq!(
        (b["src_groups"][0].as_str(), b["dst_groups"][0].as_str()),
        (Some("web"), Some("db"))
    );
    assert_eq!(
        (b["proto"].as_u64(), b["port"].as_u64()),
        (Some(6), Some(5432))
    );
    assert_eq!(b["service"], "postgresql");
    assert_eq!(b["flows"], 20);
    assert_eq!(b["today"]["rule"], 10);
    assert_eq!(
        (
            b["draft"]["verdict"].as_str(),
            b["draft"]["reason"].as_str()
        ),
        (Some("deny"), Some("default"))
    );
    assert_eq!(b["examples"][0]["src"]["name"], "web-1");
    // SMB stays denied by rule 30 either way.
    assert_eq!(v["unchanged_flows"], 10);

    // Bad windows and bodies are refused, naming the field.
    let e = error(run(serde_json::json!({"since": "yesterday-ish"})), 400);
    assert_eq!(e["field"], "since");
    let e = error(run(serde_json::json!({"since": "1h", "until": "2h"})), 400);
    assert_eq!(e["field"], "until");
    let e = error(run(serde_json::json!({"window": "1h"})), 400);
    assert_eq!(e["field"], "window");

    // An appliance without records says so.
    let off = Bed::start();
    error(
        off.send_json(
            reqwest::Method::POST,
            "/api/v1/policy/draft/dry-run",
            &off.viewer,
            &serde_json::json!({}),
        ),
        503,
    );
}

#[test]
fn proposals_are_listed_and_accepted_into_the_draft_only() {
    let (_dir, path) = store(30);
    let bed = Bed::with(|cfg| cfg.records = Some(path.clone()));
    // Without rule 10 live, web -> db PostgreSQL is allowed by no rule.
    let mut live = json(bed.get("/api/v1/policy/draft", &bed.viewer), 200);
    live["rules"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["id"] != 10);
    json(
        bed.send_json(
            reqwest::Method::PUT,
            "/api/v1/policy/draft",
            &bed.admin,
            &live,
        ),
        200,
    );
    json(
        bed.send_json(
            reqwest::Method::POST,
            "/api/v1/policy/commit",
            &bed.admin,
            &serde_json::json!({"comment": "no rule 10"}),
        ),
        200,
    );
    let p = json(bed.get("/api/v1/proposals?since=1h", &bed.viewer), 200);
    let proposals = p["proposals"].as_array().unwrap();
    assert_eq!(proposals.len(), 1, "{p}");
    let web_db = &proposals[0];
    assert_eq!(
        (web_db["src"].as_str(), web_db["dst"].as_str()),
        (Some("web"), Some("db"))
    );
    assert_eq!(web_db["services"], serde_json::json!(["postgresql"]));
    assert_eq!(web_db["flows"], 20);
    // SMB is denied by rule 30: never proposed.
    assert_eq!(p["denied_by_rule_flows"], 10);
    let id = web_db["id"].as_str().unwrap().to_string();

    // Refused: a viewer, an unknown id, neither ids nor all, a bad group.
    let accept = |token: &str, body: Value| {
        bed.send_json(
            reqwest::Method::POST,
            "/api/v1/proposals/accept",
            token,
            &body,
        )
    };
    error(
        accept(&bed.viewer, serde_json::json!({"ids": [id], "since": "1h"})),
        403,
    );
    let e = error(
        accept(
            &bed.admin,
            serde_json::json!({"ids": ["p-0"], "since": "1h"}),
        ),
        404,
    );
    assert_eq!(e["field"], "ids");
    error(accept(&bed.admin, serde_json::json!({"since": "1h"})), 400);
    let e = error(bed.get("/api/v1/proposals?groups=nope", &bed.viewer), 400);
    assert_eq!(e["field"], "groups");

    let a = json(
        accept(&bed.admin, serde_json::json!({"ids": [id], "since": "1h"})),
        200,
    );
    assert_eq!(a["accepted"][0]["proposal"], id);
    let rule = a["accepted"][0]["rule"].as_u64().unwrap();
    assert!(rule > 30, "after every rule: {a}");
    assert_eq!(a["diff"]["changes"].as_array().unwrap().len(), 1, "{a}");
    // In the draft, not live: the live policy still has no rule for it, and
    // the dry run of the draft says what it opens.
    let p = json(bed.get("/api/v1/proposals?since=1h", &bed.viewer), 200);
    assert_eq!(p["proposals"].as_array().unwrap().len(), 1);
    let run = json(
        bed.send_json(
            reqwest::Method::POST,
            "/api/v1/policy/draft/dry-run",
            &bed.viewer,
            &serde_json::json!({"since": "1h"}),
        ),
        200,
    );
    assert!(run["breaks"].as_array().unwrap().is_empty(), "{run}");
    assert_eq!(run["opens"][0]["flows"], 20, "{run}");
    assert_eq!(run["opens"][0]["draft"]["rule"], rule);
    let draft = json(bed.get("/api/v1/policy/draft", &bed.viewer), 200);
    assert!(draft["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == rule));
}
