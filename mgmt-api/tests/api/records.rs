//! `GET /api/v1/flows`: a real records store written by the records writer,
//! filters, pages and a capped limit; hostile parameters are 400s naming the
//! field; an appliance without records answers 503.

use crate::common::{ended_flow, error, json, temp_dir, write_records, Bed, TempDir};
use control::records::{Identity, StoredFlow};
use dataplane::policy::{Action, Mode, Reason, Verdict};
use dataplane::wire::MacAddr;
use serde_json::Value;
use std::path::PathBuf;

pub(crate) fn stored(i: u16, action: Action, reason: Reason, last_ms: i64) -> StoredFlow {
    let web = Identity {
        mac: MacAddr([2, 0, 0, 0, 1, 1]),
        name: "web-1".into(),
        labels: [("app".to_string(), "web".to_string())].into(),
        groups: vec!["web".into()],
    };
    let db = Identity::unknown(MacAddr([2, 0, 0, 0, 2, 1]));
    let verdict = Verdict {
        action,
        reason,
        mode: Mode::Enforce,
        would_deny: false,
    };
    let port = if action == Action::Deny { 445 } else { 5432 };
    ended_flow(
        &(web, "10.0.1.11"),
        &(db, "10.0.2.21"),
        (6, port),
        verdict,
        i,
        last_ms,
    )
}

/// A records store with `n` flows, every third denied by rule 50.
pub(crate) fn store(n: u16) -> (TempDir, PathBuf) {
    let dir = temp_dir("records");
    let path = dir.0.join("records.db");
    let now = i64::try_from(control::time::Timestamp::now().0 / 1_000_000).unwrap();
    let batch = (0..n)
        .map(|i| {
            let (action, reason) = if i % 3 == 0 {
                (Action::Deny, Reason::Rule(50))
            } else {
                (Action::Allow, Reason::Rule(10))
            };
            stored(i, action, reason, now - 1000 + i64::from(i))
        })
        .collect();
    write_records(&path, batch);
    (dir, path)
}

#[test]
fn flows_are_filtered_paged_and_capped() {
    let (_dir, path) = store(30);
    let bed = Bed::with(|cfg| cfg.records = Some(path.clone()));
    let page = json(bed.get("/api/v1/flows", &bed.viewer), 200);
    assert_eq!(page["flows"].as_array().unwrap().len(), 30);
    assert_eq!(page["limit"], 100);
    assert!(page.get("next").is_none(), "{page}");
    assert_eq!(page["flows"][0]["src"]["port"], 40029, "newest first");
    assert_eq!(page["flows"][0]["src"]["name"], "web-1");

    let denied = json(
        bed.get(
            "/api/v1/flows?verdict=deny&reason=rule:50&port=445",
            &bed.viewer,
        ),
        200,
    );
    assert_eq!(denied["flows"].as_array().unwrap().len(), 10);
    let from = json(
        bed.get(
            "/api/v1/flows?from=02-00-00-00-01-01&to=10.0.2.0%2F24",
            &bed.viewer,
        ),
        200,
    );
    assert_eq!(from["flows"].as_array().unwrap().len(), 30);

    // A huge limit is capped, and says so.
    let capped = json(
        bed.get("/api/v1/flows?limit=999999999999999999999999", &bed.viewer),
        200,
    );
    assert_eq!(capped["limit"], 10_000);

    // Pages of 7 reach every flow once.
    let mut seen = std::collections::BTreeSet::new();
    let mut path = "/api/v1/flows?limit=7".to_string();
    loop {
        let p = json(bed.get(&path, &bed.viewer), 200);
        for f in p["flows"].as_array().unwrap() {
            assert!(seen.insert(f["src"]["port"].as_u64().unwrap()));
        }
        match p["next"].as_str() {
            Some(next) => path = format!("/api/v1/flows?limit=7&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 30);
}

#[test]
fn hostile_parameters_are_400s_naming_the_field() {
    let (_dir, path) = store(3);
    let bed = Bed::with(|cfg| cfg.records = Some(path.clone()));
    for (query, field) in [
        ("verdict=maybe", "verdict"),
        ("reason=rule:x", "reason"),
        ("reason=fate", "reason"),
        ("proto=999", "proto"),
        ("port=70000", "port"),
        ("port=-1", "port"),
        ("since=yesterday", "since"),
        ("until=2025-13-45T00:00:00Z", "until"),
        ("limit=-5", "limit"),
        ("limit=ten", "limit"),
        ("cursor=nope", "cursor"),
        ("from=", "from"),
    ] {
        let v = error(bed.get(&format!("/api/v1/flows?{query}"), &bed.viewer), 400);
        assert_eq!(v["code"], "bad_request", "{query}");
        assert_eq!(v["field"], field, "{query}: {v}");
    }
}

#[test]
fn without_records_the_answer_is_503() {
    let bed = Bed::start();
    let v = error(bed.get("/api/v1/flows", &bed.viewer), 503);
    assert_eq!(v["code"], "unavailable");
}

#[test]
fn the_graph_answers_and_refuses_bad_windows() {
    let (_dir, path) = store(30);
    let bed = Bed::with(|cfg| cfg.records = Some(path.clone()));
    let g = json(
        bed.get("/api/v1/graph?level=group&since=1h", &bed.viewer),
        200,
    );
    assert_eq!(g["level"], "group");
    let nodes = g["nodes"].as_array().unwrap();
    let edges = g["edges"].as_array().unwrap();
    // web -> (an address no workload has), allowed on 5432 and denied on 445.
    assert_eq!(nodes.len(), 2, "{g}");
    assert_eq!(edges.len(), 2, "{g}");
    let flows: u64 = edges.iter().map(|e| e["flows"].as_u64().unwrap()).sum();
    assert_eq!(flows, 30);
    assert_eq!(g["truncated"], false);
    for (query, field) in [
        ("level=planet", "level"),
        ("since=2h&until=3h", "until"),
        ("since=3000d", "since"),
        ("until=whenever", "until"),
    ] {
        let v = error(bed.get(&format!("/api/v1/graph?{query}"), &bed.viewer), 400);
        assert_eq!(v["field"], field, "{query}: {v}");
    }
    let off = Bed::start();
    error(off.get("/api/v1/graph", &off.viewer), 503);
}

#[test]
fn rule_use_covers_the_live_rules_since_their_commit() {
    let (_dir, path) = store(30);
    let bed = Bed::with(|cfg| cfg.records = Some(path.clone()));
    let r = json(bed.get("/api/v1/rules/usage?since=1h", &bed.viewer), 200);
    let rules = r["rules"].as_array().unwrap();
    let get = |id: u64| rules.iter().find(|u| u["id"] == id).unwrap();
    // The policy has rules 10, 20 and 30; the records name 10 and 50.
    assert_eq!(get(10)["flows"], 20);
    assert_eq!(get(20)["never_hit"], true);
    assert_eq!(get(30)["never_hit"], true);
    assert_eq!(get(50)["flows"], 10);
    assert_eq!(
        get(50)["in_policy"],
        false,
        "a rule the policy no longer has"
    );
    // By default the window starts at the live version's commit, after
    // these records: every rule is unused since.
    let since_commit = json(bed.get("/api/v1/rules/usage", &bed.viewer), 200);
    let since: Vec<&Value> = since_commit["rules"].as_array().unwrap().iter().collect();
    assert_eq!(since.len(), 3, "only the policy's rules: {since_commit}");
    assert!(since
        .iter()
        .all(|u| u["flows"] == 0 && u["never_hit"] == true));
    let v = error(
        bed.get("/api/v1/rules/usage?since=2h&until=3h", &bed.viewer),
        400,
    );
    assert_eq!(v["field"], "until");
}

#[test]
fn traceback_blast_radius_and_addresses_answer_by_mac_and_refuse_bad_input() {
    let (_dir, path) = store(6);
    let bed = Bed::with(|cfg| cfg.records = Some(path.clone()));
    // 10.0.2.21 is private and its MAC unicast: web-1 reached it as a workload.
    let b = json(
        bed.get(
            "/api/v1/blast-radius?mac=02:00:00:00:01:01&since=1h",
            &bed.viewer,
        ),
        200,
    );
    assert_eq!(b["reached"][0]["mac"], "02:00:00:00:02:01", "{b}");
    assert_eq!(b["reached"][0]["depth"], 1);
    assert_eq!(b["attempted"][0]["service"], "tcp/445", "{b}");
    let t = json(
        bed.get("/api/v1/traceback?target=10.0.2.21&since=1h", &bed.viewer),
        200,
    );
    assert_eq!(t["workloads"][0]["mac"], "02:00:00:00:01:01", "{t}");
    assert_eq!(t["workloads"][0]["identity_then"]["name"], "web-1");
    assert_eq!(t["total"], t["workloads"].as_array().unwrap().len(), "{t}");
    assert_eq!(t["truncated"], false);
    assert!(t.get("next").is_none(), "{t}");
    let page = json(
        bed.get(
            "/api/v1/traceback?target=10.0.2.21&since=1h&limit=1&cursor=0-000000000000",
            &bed.viewer,
        ),
        200,
    );
    assert_eq!(page["workloads"][0]["mac"], "02:00:00:00:01:01", "{page}");
    let h = json(bed.get("/api/v1/addresses?ip=10.0.1.11", &bed.viewer), 200);
    assert_eq!(h["holders"][0]["mac"], "02:00:00:00:01:01", "{h}");
    assert_eq!(h["holders"][0]["sources"][0], "flow");
    let d = json(bed.get("/api/v1/dns?domain=example.test", &bed.viewer), 200);
    assert_eq!(d, serde_json::json!([]));
    for bad in [
        "/api/v1/traceback",
        "/api/v1/traceback?target=a..b",
        "/api/v1/traceback?target=x.test&since=yesterday",
        "/api/v1/traceback?target=x.test&limit=0",
        "/api/v1/traceback?target=x.test&limit=5000",
        "/api/v1/traceback?target=x.test&cursor=next",
        "/api/v1/blast-radius?mac=nope",
        "/api/v1/blast-radius?mac=02:00:00:00:01:01&depth=99",
        "/api/v1/addresses?ip=300.1.1.1",
        "/api/v1/addresses?ip=10.0.0.1&at=soon",
        "/api/v1/dns?domain=10.0.0.0/8",
        "/api/v1/dns?client=02:00",
        "/api/v1/dns?rcode=maybe",
        "/api/v1/dns?limit=-1",
    ] {
        let r = bed.get(bad, &bed.viewer);
        assert_eq!(r.status().as_u16(), 400, "{bad}");
    }
}
