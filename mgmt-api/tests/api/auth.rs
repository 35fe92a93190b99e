//! Tokens, roles, revocation, the failed-attempt limit and the audit log.

use crate::common::{error, json, Bed, WEB};
use mgmt_api::Role;
use reqwest::Method;
use serde_json::json;

#[test]
fn no_token_or_a_bad_token_is_401_in_the_error_shape() {
    let bed = Bed::start();
    let resp = bed
        .client
        .get(bed.url("/api/v1/workloads"))
        .send()
        .expect("req");
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(error(resp, 401)["code"], "unauthorized");
    error(
        bed.get(
            "/api/v1/workloads",
            "bh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ),
        401,
    );
    error(bed.get("/api/v1/workloads", "garbage"), 401);
    let resp = bed
        .client
        .get(bed.url("/api/v1/workloads"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .expect("req");
    error(resp, 401);
}

#[test]
fn each_role_has_its_limits() {
    let bed = Bed::start();
    let quarantine = |token: &str| {
        bed.send_json(
            Method::POST,
            "/api/v1/quarantine",
            token,
            &json!({ "mac": WEB }),
        )
        .status()
        .as_u16()
    };
    // A viewer reads but cannot quarantine.
    json(bed.get("/api/v1/quarantine", &bed.viewer), 200);
    let e = error(
        bed.send_json(
            Method::POST,
            "/api/v1/quarantine",
            &bed.viewer,
            &json!({ "mac": WEB }),
        ),
        403,
    );
    assert_eq!(e["code"], "forbidden");
    assert_eq!(
        bed.req(
            Method::DELETE,
            &format!("/api/v1/quarantine/{WEB}"),
            &bed.viewer
        )
        .send()
        .expect("req")
        .status()
        .as_u16(),
        403
    );
    // An operator quarantines but cannot change policy.
    assert_eq!(quarantine(&bed.operator), 200);
    let model = json(bed.get("/api/v1/policy/draft", &bed.operator), 200);
    for token in [&bed.viewer, &bed.operator] {
        error(
            bed.send_json(Method::PUT, "/api/v1/policy/draft", token, &model),
            403,
        );
        error(
            bed.send_json(
                Method::POST,
                "/api/v1/policy/commit",
                token,
                &json!({ "comment": "x" }),
            ),
            403,
        );
        error(
            bed.send_json(
                Method::POST,
                "/api/v1/policy/rollback",
                token,
                &json!({ "version": 1 }),
            ),
            403,
        );
        error(
            bed.req(Method::DELETE, "/api/v1/policy/draft", token)
                .send()
                .expect("req"),
            403,
        );
        error(bed.get("/api/v1/tokens", token), 403);
        error(bed.get("/api/v1/audit", token), 403);
        error(
            bed.send_json(
                Method::POST,
                "/api/v1/tokens",
                token,
                &json!({ "name": "x", "role": "admin" }),
            ),
            403,
        );
    }
    // An admin does all of it.
    assert_eq!(quarantine(&bed.admin), 200);
    json(
        bed.send_json(Method::PUT, "/api/v1/policy/draft", &bed.admin, &model),
        200,
    );
    json(bed.get("/api/v1/audit", &bed.admin), 200);
    let _ = Role::ALL;
}

#[test]
fn tokens_are_created_listed_and_revoked_over_the_api() {
    let bed = Bed::start();
    let created = json(
        bed.send_json(
            Method::POST,
            "/api/v1/tokens",
            &bed.admin,
            &json!({ "name": "grafana", "role": "viewer" }),
        ),
        201,
    );
    let token = created["token"].as_str().expect("token").to_string();
    assert!(token.starts_with("bh_"));
    json(bed.get("/api/v1/workloads", &token), 200);
    error(
        bed.send_json(
            Method::POST,
            "/api/v1/quarantine",
            &token,
            &json!({ "mac": WEB }),
        ),
        403,
    );

    // Names are unique among active tokens, and checked.
    let e = error(
        bed.send_json(
            Method::POST,
            "/api/v1/tokens",
            &bed.admin,
            &json!({ "name": "grafana", "role": "admin" }),
        ),
        409,
    );
    assert_eq!(e["field"], "name");
    let e = error(
        bed.send_json(
            Method::POST,
            "/api/v1/tokens",
            &bed.admin,
            &json!({ "name": "a b", "role": "admin" }),
        ),
        422,
    );
    assert_eq!(e["field"], "name");
    let e = error(
        bed.send_json(
            Method::POST,
            "/api/v1/tokens",
            &bed.admin,
            &json!({ "name": "x", "role": "root" }),
        ),
        400,
    );
    assert_eq!(e["field"], "role");

    let list = json(bed.get("/api/v1/tokens", &bed.admin), 200);
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["vera", "otto", "ada", "grafana"]);
    assert!(
        !list.to_string().contains(&token),
        "the list never shows a token"
    );

    // Revoked: it stops working at once.
    let resp = bed
        .req(Method::DELETE, "/api/v1/tokens/grafana", &bed.admin)
        .send()
        .expect("revoke");
    assert_eq!(resp.status().as_u16(), 204);
    error(bed.get("/api/v1/workloads", &token), 401);
    error(
        bed.req(Method::DELETE, "/api/v1/tokens/grafana", &bed.admin)
            .send()
            .expect("again"),
        404,
    );
    let all = json(bed.get("/api/v1/tokens?revoked=true", &bed.admin), 200);
    let g = all
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["name"] == "grafana")
        .cloned()
        .expect("kept");
    assert_eq!(g["revoked_by"], "api:ada");
}

#[test]
fn a_token_revoked_in_the_store_by_another_process_stops_working() {
    let bed = Bed::start();
    json(bed.get("/api/v1/workloads", &bed.operator), 200);
    let mut store = control::store::Store::open(&bed.store_path).expect("second connection");
    assert!(store.revoke_token("otto", "cli").expect("revoke"));
    error(bed.get("/api/v1/workloads", &bed.operator), 401);
}

#[test]
fn ten_failed_attempts_block_the_address_with_429() {
    let bed = Bed::start();
    for i in 0..10 {
        let resp = bed.get("/api/v1/workloads", &format!("bh_wrong{i}"));
        assert_eq!(resp.status().as_u16(), 401, "attempt {i}");
    }
    // Blocked now, even with a good token; health stays open.
    let resp = bed.get("/api/v1/workloads", &bed.admin);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(error(resp, 429)["code"], "rate_limited");
    let resp = bed
        .client
        .get(bed.url("/api/v1/health"))
        .send()
        .expect("health");
    assert_ne!(resp.status().as_u16(), 429);
}

#[test]
fn every_mutating_call_is_in_the_audit_log() {
    let bed = Bed::start();
    json(
        bed.send_json(
            Method::POST,
            "/api/v1/quarantine",
            &bed.operator,
            &json!({ "mac": WEB, "reason": "ticket 9" }),
        ),
        200,
    );
    error(
        bed.send_json(
            Method::POST,
            "/api/v1/quarantine",
            &bed.viewer,
            &json!({ "mac": WEB }),
        ),
        403,
    );
    error(
        bed.send_json(
            Method::POST,
            "/api/v1/quarantine",
            &bed.operator,
            &json!({ "mac": "bad" }),
        ),
        400,
    );
    json(bed.get("/api/v1/workloads", &bed.admin), 200);
    let log = json(bed.get("/api/v1/audit", &bed.admin), 200);
    let log = log.as_array().expect("array");
    assert_eq!(log.len(), 3, "reads are not audited: {log:?}");
    // Newest first.
    assert_eq!(log[0]["actor"], "otto");
    assert_eq!(log[0]["status"], 400);
    assert!(log[0]["result"]
        .as_str()
        .is_some_and(|r| r.contains("bad_request")));
    assert_eq!(log[1]["actor"], "vera");
    assert_eq!(log[1]["role"], "viewer");
    assert_eq!(log[1]["status"], 403);
    assert_eq!(log[2]["actor"], "otto");
    assert_eq!(log[2]["role"], "operator");
    assert_eq!(log[2]["action"], "POST /api/v1/quarantine");
    assert_eq!(log[2]["status"], 200);
    assert_eq!(log[2]["result"], "ok");
    assert!(log[2]["detail"]
        .as_str()
        .is_some_and(|d| d.contains("ticket 9")));
    assert!(log[2]["at"].as_str().is_some_and(|t| t.ends_with('Z')));
    // Paging.
    let id = log[1]["id"].as_i64().expect("id");
    let page = json(
        bed.get(&format!("/api/v1/audit?limit=5&before={id}"), &bed.admin),
        200,
    );
    assert_eq!(page.as_array().map(Vec::len), Some(1));
}
