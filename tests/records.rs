//! Flow records as a user gets them: `bulkhead replay --records STORE`, then
//! `bulkhead records flows --store STORE` on the file, with filters, JSON,
//! paging, and files that are not a records store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod cli;

use cli::bulkhead;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(o: &Output) -> String {
    assert!(!o.status.success(), "should fail");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bulkhead-records-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Replays the sample capture into a fresh store; returns the store and the
/// replay's `--denied` report.
fn replay_into(store: &Path) -> String {
    ok(&bulkhead(&[
        "replay",
        "examples/sample.pcap",
        "--policy",
        "examples/policy.yaml",
        "--denied",
        "--records",
        store.to_str().unwrap(),
    ]))
}

/// `bulkhead records COMMAND --store STORE --json EXTRA...`, parsed.
fn records_json(command: &str, store: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "records",
        command,
        "--store",
        store.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(&bulkhead(&args))).expect("one JSON document")
}

/// The capture's day: the window of the graph and rule queries.
const DAY: [&str; 4] = [
    "--since",
    "2025-11-24T00:00:00Z",
    "--until",
    "2025-11-25T00:00:00Z",
];

fn flows_json(store: &Path, extra: &[&str]) -> Vec<Value> {
    match records_json("flows", store, extra) {
        Value::Array(rows) => rows,
        other => panic!("not an array: {other}"),
    }
}

/// `(source ip:port, destination ip:port, verdict)` of a JSON row, in the
/// replay report's words.
fn row_key(r: &Value) -> (String, String, String) {
    let end = |e: &Value| format!("{}:{}", e["ip"].as_str().unwrap(), e["port"]);
    let reason = match r["rule"].as_u64() {
        Some(id) => format!("rule {id}"),
        None => r["reason"].as_str().unwrap().to_string(),
    };
    let verdict = if r["verdict"] == "deny" {
        format!("deny: {reason}")
    } else {
        format!("would deny: {reason}")
    };
    (end(&r["src"]), end(&r["dst"]), verdict)
}

/// The same from the replay's DENIED AND WOULD-DENY FLOWS lines.
fn report_keys(report: &str) -> BTreeSet<(String, String, String)> {
    report
        .lines()
        .skip_while(|l| !l.starts_with("DENIED AND WOULD-DENY FLOWS"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let verdict_at = cols
                .iter()
                .position(|c| *c == "deny:" || *c == "would")
                .expect("a verdict column");
            (
                cols[2].to_string(),
                cols[3].to_string(),
                cols[verdict_at..].join(" "),
            )
        })
        .collect()
}

#[test]
fn replayed_records_list_exactly_the_denied_flows_the_replay_reports() {
    let d = dir("denied");
    let store = d.join("records.db");
    let report = replay_into(&store);
    let want = report_keys(&report);
    assert_eq!(want.len(), 6, "{report}");

    let deny = flows_json(&store, &["--verdict", "deny"]);
    let would = flows_json(&store, &["--verdict", "would-deny"]);
    assert!(deny.iter().all(|r| r["verdict"] == "deny"));
    assert!(would
        .iter()
        .all(|r| r["verdict"] == "allow" && r["would_deny"] == true));
    let got: BTreeSet<_> = deny.iter().chain(&would).map(row_key).collect();
    assert_eq!(got, want);
    assert_eq!(deny.len() + would.len(), want.len(), "no duplicates");

    // Every flow is stored, with the identities of its ends.
    let all = flows_json(&store, &[]);
    assert_eq!(all.len(), 15, "the replay created 15 flows");
    let web1 = all
        .iter()
        .find(|r| r["src"]["name"] == "web-1" && r["dst"]["port"] == 445)
        .expect("web-1 -> SMB");
    assert_eq!(web1["src"]["groups"], serde_json::json!(["web"]));
    assert_eq!(web1["src"]["labels"]["app"], "web");
    assert_eq!(web1["rule"], 50);
    assert_eq!(web1["reason"], "rule");
    assert_eq!(web1["mode"], "enforce");
    // Newest first, by the capture's own clock.
    let last: Vec<&str> = all
        .iter()
        .map(|r| r["last_seen"].as_str().unwrap())
        .collect();
    let mut sorted = last.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(last, sorted);
    assert!(last[0].starts_with("2025-11-24T16:00:"), "{}", last[0]);
}

#[test]
fn filters_narrow_and_pages_continue() {
    let d = dir("filters");
    let store = d.join("records.db");
    replay_into(&store);
    let s = store.to_str().unwrap();

    let rule50 = flows_json(&store, &["--reason", "rule:50"]);
    assert_eq!(rule50.len(), 4, "rule 50 decided 4 flows");
    let from_web1 = flows_json(&store, &["--from", "web-1"]);
    assert!(!from_web1.is_empty());
    assert!(from_web1.iter().all(|r| r["src"]["name"] == "web-1"));
    let by_mac = flows_json(&store, &["--from", "02:00:00:00:01:01"]);
    assert_eq!(by_mac.len(), from_web1.len(), "a name and its MAC agree");
    let to_db_net = flows_json(&store, &["--to", "10.0.2.0/24", "--port", "445"]);
    assert!(to_db_net.iter().all(
        |r| r["dst"]["ip"].as_str().unwrap().starts_with("10.0.2.") && r["dst"]["port"] == 445
    ));
    assert_eq!(flows_json(&store, &["--proto", "udp"]).len(), 3, "DNS");
    // Groups and label selectors, as the ends were when recorded.
    let from_web = flows_json(&store, &["--from", "group:web"]);
    assert_eq!(from_web.len(), 10);
    assert!(from_web.iter().all(|r| r["src"]["groups"]
        .as_array()
        .unwrap()
        .contains(&Value::from("web"))));
    assert_eq!(flows_json(&store, &["--from", "label:app=web"]).len(), 10);
    assert_eq!(
        flows_json(&store, &["--from", "label:app=web,tier=none"]).len(),
        0
    );
    assert_eq!(flows_json(&store, &["--to", "group:internet"]).len(), 1);
    assert!(
        flows_json(&store, &["--since", "2h"]).is_empty(),
        "a 2025 capture"
    );
    assert_eq!(
        flows_json(&store, &["--since", "2025-11-24T16:00:13Z"]).len(),
        flows_json(&store, &["--since", "2025-11-24T16:00:13.000Z"]).len()
    );

    // Pages of 4: every flow once, the cursor on stderr.
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut args = vec!["records", "flows", "--store", s, "--json", "--limit", "4"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let o = bulkhead(&args);
        let rows: Vec<Value> = serde_json::from_str(&ok(&o)).unwrap();
        for r in &rows {
            assert!(seen.insert(r.to_string()), "a row twice: {r}");
        }
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        cursor = err.split("--cursor ").nth(1).map(|c| c.trim().to_string());
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 15);
}

#[test]
fn bad_filters_and_foreign_files_are_one_line_errors() {
    let d = dir("bad");
    let store = d.join("records.db");
    replay_into(&store);
    let s = store.to_str().unwrap();
    for (flag, value, says) in [
        ("--verdict", "maybe", "invalid verdict"),
        ("--reason", "rule:x", "invalid reason"),
        ("--proto", "tcpp", "invalid protocol"),
        ("--since", "yesterday", "--since"),
        ("--cursor", "nope", "invalid cursor"),
        ("--from", "label:app", "invalid label selector"),
        ("--to", "group:", "needs a group name"),
    ] {
        let err = fails(&bulkhead(&["records", "flows", "--store", s, flag, value]));
        assert!(err.contains(says), "{flag} {value}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }

    let missing = d.join("nope.db");
    let err = fails(&bulkhead(&[
        "records",
        "flows",
        "--store",
        missing.to_str().unwrap(),
    ]));
    assert!(err.contains("no such file"), "{err}");
    assert!(!missing.exists(), "a query creates nothing");

    let text = d.join("notes.txt");
    std::fs::write(
        &text,
        "not a database at all, just some words\n".repeat(200),
    )
    .unwrap();
    let err = fails(&bulkhead(&[
        "records",
        "flows",
        "--store",
        text.to_str().unwrap(),
    ]));
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Another SQLite file (bulkhead's own policy store) is refused, and left
    // as it was.
    let other = d.join("policy.db");
    ok(&bulkhead(&[
        "token",
        "create",
        "--store",
        other.to_str().unwrap(),
        "--role",
        "viewer",
        "--name",
        "t",
    ]));
    let before = std::fs::read(&other).unwrap();
    let err = fails(&bulkhead(&[
        "records",
        "flows",
        "--store",
        other.to_str().unwrap(),
    ]));
    assert!(err.contains("not a bulkhead records store"), "{err}");
    assert_eq!(std::fs::read(&other).unwrap(), before, "left untouched");
}

fn graph_json(store: &Path, extra: &[&str]) -> Value {
    records_json("graph", store, &[&DAY[..], extra].concat())
}

/// `(source, destination, service, verdict) -> flows`, nodes by label.
fn edges(g: &Value) -> BTreeMap<(String, String, String, String), u64> {
    let nodes = g["nodes"].as_array().unwrap();
    let label = |i: &Value| {
        let n = &nodes[i.as_u64().unwrap() as usize];
        match n["name"].as_str() {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => n["id"].as_str().unwrap().to_string(),
        }
    };
    g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let service = format!("{}/{}", e["proto"], e["port"]);
            (
                (
                    label(&e["src"]),
                    label(&e["dst"]),
                    service,
                    e["verdict"].as_str().unwrap().to_string(),
                ),
                e["flows"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_access_graph_of_a_capture_by_workload_and_by_group() {
    let d = dir("graph");
    let store = d.join("records.db");
    replay_into(&store);
    let key = |s: &str, d: &str, svc: &str, v: &str| {
        (s.to_string(), d.to_string(), svc.to_string(), v.to_string())
    };

    let w = edges(&graph_json(&store, &[]));
    assert_eq!(w.get(&key("web-1", "db-1", "6/5432", "allow")), Some(&3));
    assert_eq!(w.get(&key("web-1", "db-1", "6/445", "deny")), Some(&1));
    assert_eq!(
        w.get(&key("legacy", "legacy-files", "6/445", "would-deny")),
        Some(&1)
    );
    assert_eq!(
        w.get(&key("web-1", "203.0.113.66", "6/443", "deny")),
        Some(&1),
        "an address no workload has is a node of its own: {w:?}"
    );
    let total: u64 = w.values().sum();
    assert_eq!(total, 15, "every flow on one edge");

    let g = graph_json(&store, &["--level", "group"]);
    assert_eq!(g["level"], "group");
    let e = edges(&g);
    assert_eq!(e.get(&key("admin", "web", "6/22", "allow")), Some(&2));
    assert_eq!(e.get(&key("web", "internet", "6/443", "deny")), Some(&1));
    assert_eq!(e.get(&key("legacy", "db", "6/445", "deny")), Some(&1));

    // An empty window is an empty graph; a bad window is a one-line error.
    let empty = records_json(
        "graph",
        &store,
        &[
            "--since",
            "2025-11-24T00:00:00Z",
            "--until",
            "2025-11-24T01:00:00Z",
        ],
    );
    assert!(empty["edges"].as_array().unwrap().is_empty());
    let s = store.to_str().unwrap();
    for (args, says) in [
        (vec!["--level", "planet"], "invalid level"),
        (
            vec!["--since", "2h", "--until", "3h"],
            "ends before it starts",
        ),
        (vec!["--since", "3000d"], "at most 400 days"),
    ] {
        let mut a = vec!["records", "graph", "--store", s];
        a.extend(args);
        let err = fails(&bulkhead(&a));
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn rule_use_matches_the_replay_and_names_never_hit_rules() {
    let d = dir("rules");
    let store = d.join("records.db");
    replay_into(&store);
    let report = records_json(
        "rules",
        &store,
        &[&DAY[..], &["--policy", "examples/policy.yaml"]].concat(),
    );
    let by_id: BTreeMap<u64, &Value> = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r))
        .collect();
    // The replay's own rule table: 10: 3 flows, 20: 1, 30: 3, 40: 1, 50: 4
    // (one would-deny), 60 and 70 never hit.
    for (id, flows) in [
        (10, 3),
        (20, 1),
        (30, 3),
        (40, 1),
        (50, 4),
        (60, 0),
        (70, 0),
    ] {
        assert_eq!(by_id[&id]["flows"], flows, "rule {id}");
        assert_eq!(by_id[&id]["never_hit"], flows == 0, "rule {id}");
    }
    assert_eq!(by_id[&50]["would_deny"], 1);
    assert_eq!(by_id[&50]["action"], "deny");

    // Without the policy: the rules the records name.
    let bare = records_json("rules", &store, &DAY);
    let ids: Vec<u64> = bare["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [10, 20, 30, 40, 50]);
    assert!(bare["rules"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["in_policy"] == false));
}

#[test]
fn follow_prints_records_as_they_are_written_as_json_lines() {
    use std::time::Duration;
    let d = dir("follow");
    let store = d.join("capture.db");
    replay_into(&store);
    let denied = flows_json(&store, &["--verdict", "deny"]).len();
    assert!(denied > 0);
    let tail = cli::Tail::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_bulkhead"))
            .args(["records", "flows", "--store"])
            .arg(&store)
            .args(["--follow", "--json", "--verdict", "deny"]),
    );
    // Nothing old is printed; the same capture imported again is.
    assert!(
        tail.quiet_for(Duration::from_millis(800)),
        "only records written from now on"
    );
    replay_into(&store);
    let lines = tail.take(denied);
    assert_eq!(lines.len(), denied, "{lines:?}");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["verdict"], "deny", "{l}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_replayed_capture_is_investigated_like_live_traffic() {
    let d = dir("forensics");
    let store = d.join("records.db");
    replay_into(&store);
    // The capture's DNS responses, and who resolved the C2 name.
    let dns = records_json("dns", &store, &DAY);
    let names: Vec<&str> = dns
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["qname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c2.bad.example", "db.internal"], "{dns:#}");
    let mut args = vec!["c2.bad.example"];
    args.extend_from_slice(&DAY);
    let t = records_json("traceback", &store, &args);
    let w = &t["workloads"][0];
    assert_eq!(t["workloads"].as_array().unwrap().len(), 1, "{t:#}");
    assert_eq!(w["resolutions"][0]["answers"][0]["ip"], "203.0.113.66");
    let client = w["mac"].as_str().unwrap().to_string();
    let ip = w["resolutions"][0]["client_ip"]
        .as_str()
        .unwrap()
        .to_string();
    let then = w["resolutions"][0]["time"].as_str().unwrap().to_string();
    // Who held the client's address then: the same MAC.
    let h = records_json("addresses", &store, &[ip.as_str(), "--at", then.as_str()]);
    assert_eq!(h["holders"][0]["mac"], client.as_str(), "{h:#}");
    // Its blast radius over the day; the table form too.
    let mut args = vec![client.as_str()];
    args.extend_from_slice(&DAY);
    let b = records_json("blast-radius", &store, &args);
    assert!(
        b["reached"].is_array() && b["attempted"].is_array(),
        "{b:#}"
    );
    let mut cmd = vec!["records", "traceback", "c2.bad.example", "--store"];
    cmd.push(store.to_str().unwrap());
    cmd.extend_from_slice(&DAY);
    let text = ok(&bulkhead(&cmd));
    assert!(text.contains("203.0.113.66"), "{text}");
    // Bad input: one line, no panic.
    for bad in [
        vec!["traceback", "a..b"],
        vec!["blast-radius", "not-a-mac"],
        vec!["addresses", "10.0.0.300"],
        vec!["dns", "--rcode", "sometimes"],
    ] {
        let mut cmd = vec!["records"];
        cmd.extend_from_slice(&bad);
        cmd.extend_from_slice(&["--store", store.to_str().unwrap()]);
        let err = fails(&bulkhead(&cmd));
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_offline_dry_run_lists_the_flows_a_draft_would_break() {
    let d = dir("dry-run");
    let store = d.join("records.db");
    replay_into(&store);
    let policy = "examples/policy.yaml";
    // The replay's own policy against itself: nothing changes.
    let same = records_json(
        "dry-run",
        &store,
        &[&DAY[..], &["--policy", policy, "--against", policy]].concat(),
    );
    assert!(same["flows"].as_u64().unwrap() > 0);
    assert_eq!(same["unchanged_flows"], same["flows"], "{same}");

    // A draft without rule 10 (web -> db PostgreSQL) breaks exactly that.
    let text = std::fs::read_to_string(policy).unwrap();
    let draft = d.join("draft.yaml");
    let without: String = text
        .lines()
        .filter(|l| !l.contains("id: 10,"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, text);
    std::fs::write(&draft, without).unwrap();
    let draft = draft.to_str().unwrap();
    let run = records_json(
        "dry-run",
        &store,
        &[&DAY[..], &["--policy", draft, "--against", policy]].concat(),
    );
    let breaks = run["breaks"].as_array().unwrap();
    assert_eq!(breaks.len(), 1, "{run}");
    assert_eq!(breaks[0]["service"], "postgresql");
    // Three from web-1, one from web-2 (quarantined then: quarantine is not
    // the policy judged).
    assert_eq!(
        (breaks[0]["flows"].as_u64(), breaks[0]["pairs"].as_u64()),
        (Some(4), Some(2)),
        "{run}"
    );
    assert_eq!(breaks[0]["today"]["rule"], 10);
    assert_eq!(breaks[0]["src_groups"][0], "web");
    assert!(run["opens"].as_array().unwrap().is_empty());

    // As text, naming the pair and the example workloads.
    let s = store.to_str().unwrap();
    let out = ok(&bulkhead(
        &[
            &[
                "records",
                "dry-run",
                "--store",
                s,
                "--policy",
                draft,
                "--against",
                policy,
            ][..],
            &DAY[..],
        ]
        .concat(),
    ));
    assert!(
        out.contains("would break") && out.contains("web -> db  tcp/5432 postgresql  4 flows"),
        "{out}"
    );
    assert!(
        out.contains("e.g. web-1 (02:00:00:00:01:01) -> db-1"),
        "{out}"
    );

    // Against the recorded verdicts, the quarantine the policy file lists is
    // not the policy judged: the flows it cut open, said to be recorded.
    let recorded = records_json(
        "dry-run",
        &store,
        &[&DAY[..], &["--policy", policy]].concat(),
    );
    let opens = recorded["opens"].as_array().unwrap();
    assert!(!opens.is_empty(), "{recorded}");
    assert!(opens.iter().all(|c| c["today"]["reason"] == "recorded"));

    // Bad input is one line.
    let err = fails(&bulkhead(&[
        "records",
        "dry-run",
        "--store",
        s,
        "--policy",
        "/nonexistent.yaml",
    ]));
    assert!(
        err.contains("nonexistent") && err.lines().count() == 1,
        "{err}"
    );
}
