//! Tokens, roles, revocation, the failed-attempt limit and the audit log.

use crate::common::{error, json, metric, Bed, WEB};
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
fn every_write_in_the_document_refuses_a_viewer_before_reading_the_request() {
    // Roles are declared at the router: whatever route the document lists,
    // a viewer's write is refused (403) before the handler or its body
    // parsing runs, and an operator reaches only quarantine and alert writes.
    let bed = Bed::start();
    let doc = json(bed.get("/api/v1/openapi.json", &bed.viewer), 200);
    let paths = doc["paths"].as_object().expect("paths");
    let mut writes = 0;
    for (path, ops) in paths {
        let concrete = path
            .replace("{mac}", WEB)
            .replace("{version}", "1")
            .replace("{name}", "x");
        for method in ops.as_object().expect("operations").keys() {
            // The dry run is a POST that writes nothing (its window is a
            // body): a viewer may run it (tested in learn.rs).
            if path.ends_with("/dry-run") {
                continue;
            }
            let m = match method.as_str() {
                "post" => Method::POST,
                "put" => Method::PUT,
                "delete" => Method::DELETE,
                "patch" => Method::PATCH,
                _ => continue,
            };
            writes += 1;
            let url = format!("/api/v1{}", concrete.trim_start_matches("/api/v1"));
            let status = |token: &str| {
                bed.req(m.clone(), &url, token)
                    .body("not json")
                    .send()
                    .expect("req")
                    .status()
                    .as_u16()
            };
            assert_eq!(status(&bed.viewer), 403, "{method} {path} as a viewer");
            if !path.contains("quarantine") && !path.contains("alerts") {
                assert_eq!(status(&bed.operator), 403, "{method} {path} as an operator");
            }
        }
    }
    assert!(writes >= 8, "the document lists the writes: {writes}");
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

/// A well-formed token no one was given.
fn wrong(i: usize) -> String {
    format!("bh_{:A>43}", format!("wrong{i}"))
}

/// A metric's value in the OpenMetrics text.
#[test]
fn twenty_bad_tokens_from_one_address_do_not_lock_out_a_valid_token() {
    let bed = Bed::start();
    let mut refused = 0;
    for i in 0..20 {
        let token = if i % 2 == 0 {
            wrong(i)
        } else {
            format!("garbage{i}")
        };
        let status = bed.get("/api/v1/workloads", &token).status().as_u16();
        assert!(status == 401 || status == 429, "attempt {i}: {status}");
        refused += usize::from(status == 429);
    }
    assert_eq!(refused, 10, "the budget is 10 failures");
    // Every role's valid token still works from the same address, and so
    // does /metrics with one.
    json(bed.get("/api/v1/workloads", &bed.admin), 200);
    json(bed.get("/api/v1/tokens", &bed.admin), 200);
    json(bed.get("/api/v1/stats", &bed.viewer), 200);
    let resp = bed.send_json(
        Method::POST,
        "/api/v1/quarantine",
        &bed.operator,
        &json!({"mac": WEB, "reason": "after the failures"}),
    );
    json(resp, 200);
    let resp = bed.get("/metrics", &bed.viewer);
    assert_eq!(resp.status().as_u16(), 200);
    // Still refused for bad tokens.
    error(bed.get("/api/v1/workloads", &wrong(99)), 429);
}

#[test]
fn a_burst_of_bad_tokens_gets_429_with_retry_after_once_the_budget_is_spent() {
    let bed = Bed::start();
    for i in 0..10 {
        let resp = bed.get("/api/v1/workloads", &wrong(i));
        assert!(!resp.headers().contains_key("retry-after"));
        assert_eq!(error(resp, 401)["code"], "unauthorized", "attempt {i}");
    }
    for i in 10..15 {
        let resp = bed.get("/api/v1/policy/versions", &wrong(i));
        let secs: u64 = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in seconds");
        assert!((1..=300).contains(&secs), "{secs}");
        assert_eq!(error(resp, 429)["code"], "rate_limited", "attempt {i}");
    }
    // Malformed tokens count the same; /metrics is guarded the same way.
    error(bed.get("/api/v1/workloads", "garbage"), 429);
    error(bed.get("/metrics", "garbage"), 429);
    // Health needs no token and is never refused.
    let resp = bed
        .client
        .get(bed.url("/api/v1/health"))
        .send()
        .expect("health");
    assert_ne!(resp.status().as_u16(), 429);
    let text = bed.get("/metrics", &bed.viewer).text().expect("metrics");
    assert_eq!(metric(&text, "bulkhead_api_auth_failures_total"), 10.0);
    assert_eq!(metric(&text, "bulkhead_api_auth_refused_total"), 7.0);
    assert_eq!(metric(&text, "bulkhead_api_auth_tracked_addresses"), 1.0);
}

#[test]
fn the_limiter_table_stays_bounded_under_failures_from_many_addresses() {
    let bed = Bed::with(|c| c.limits.max_tracked = 8);
    let port = bed.server.as_ref().expect("server").addr.port();
    let cert = bed.server.as_ref().expect("server").cert_path.clone();
    let from = |last: u8| {
        let pem = std::fs::read(&cert).expect("cert");
        reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
            .tls_built_in_root_certs(false)
            .local_address(std::net::IpAddr::from([127, 0, 0, last]))
            .build()
            .expect("client")
    };
    let url = format!("https://127.0.0.1:{port}/api/v1/workloads");
    // 40 addresses, 2 failures each, two rounds: never more than 8 tracked.
    for round in 0..2 {
        for last in 2..42u8 {
            let c = from(last);
            for i in 0..2 {
                let resp = c
                    .get(&url)
                    .bearer_auth(wrong(usize::from(last) * 10 + i))
                    .send()
                    .expect("request");
                assert_eq!(resp.status().as_u16(), 401, "round {round} 127.0.0.{last}");
            }
        }
    }
    let text = bed.get("/metrics", &bed.viewer).text().expect("metrics");
    assert_eq!(metric(&text, "bulkhead_api_auth_tracked_addresses"), 8.0);
    assert_eq!(metric(&text, "bulkhead_api_auth_evictions_total"), 72.0);
    // The newest address is still limited after all the evictions.
    let c = from(41);
    let mut statuses = Vec::new();
    for i in 0..10 {
        let resp = c
            .get(&url)
            .bearer_auth(wrong(1000 + i))
            .send()
            .expect("request");
        statuses.push(resp.status().as_u16());
    }
    // It had 2 failures of this round: 8 more spend the budget of 10.
    assert_eq!(&statuses[..8], &[401; 8], "{statuses:?}");
    assert_eq!(&statuses[8..], &[429; 2], "{statuses:?}");
    // And a valid token from there is served.
    let resp = c.get(&url).bearer_auth(&bed.admin).send().expect("request");
    json(resp, 200);
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
