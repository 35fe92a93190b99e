//! `bulkhead token` and `bulkhead ctl` against a real server in this process:
//! the pinned fingerprint, tables and `--json`, and the one-line errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

#[allow(dead_code, reason = "the CLI test helpers; this crate uses Tail only")]
mod cli;

use cli::Tail;
use control::engine::{Bootstrap, Engine, EngineConfig};
use control::store::Store;
use dataplane::policy::SnapshotCell;
use dataplane::worker::StatsBoard;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const POLICY: &str = r#"
workloads:
  - { mac: "02:00:00:00:01:01", name: web-1, labels: { app: web }, ips: [10.0.0.11] }
groups:
  - { name: web, match: { app: web } }
rules:
  - { id: 10, src: [web], dst: [web], services: [https], action: allow }
"#;

struct Bed {
    dir: PathBuf,
    url: String,
    fingerprint: String,
    server: Option<mgmt_api::ServerHandle>,
    engine: Option<Engine>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        if let Some(e) = self.engine.take() {
            e.handle.stop();
            let _ = e.thread.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bed() -> Bed {
    bed_with("main", |_| None)
}

/// A bed in its own directory (`tag`), set up by `prepare` (given the
/// directory) before the server starts, which returns the records store.
fn bed_with(tag: &str, prepare: impl FnOnce(&std::path::Path) -> Option<PathBuf>) -> Bed {
    let dir = std::env::temp_dir().join(format!("bulkhead-ctl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let records = prepare(&dir);
    let db = dir.join("bulkhead.db");
    let store = Store::open(&db).expect("store");
    let engine = Engine::start(
        store,
        Bootstrap {
            model: control::Model::from_yaml_str(POLICY).expect("policy"),
            source: "test".into(),
        },
        Arc::new(SnapshotCell::default()),
        None,
        None,
        EngineConfig::default(),
    )
    .expect("engine");
    let mut cfg = mgmt_api::ApiConfig::new("127.0.0.1:0".parse().expect("addr"), db);
    cfg.records = records;
    let server =
        mgmt_api::start(cfg, engine.handle.clone(), Arc::new(StatsBoard::new(1))).expect("server");
    Bed {
        url: format!("https://127.0.0.1:{}", server.addr.port()),
        fingerprint: server.fingerprint.clone(),
        server: Some(server),
        engine: Some(engine),
        dir,
    }
}

/// Runs the binary; (success, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bulkhead"));
    cmd.args(args)
        .env_remove("BULKHEAD_TOKEN")
        .env("HOME", "/nonexistent");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run bulkhead");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn token(bed: &Bed, role: &str, name: &str) -> String {
    let store = bed.dir.join("bulkhead.db");
    let (ok, out, err) = run(
        &[
            "token",
            "create",
            "--role",
            role,
            "--name",
            name,
            "--store",
            store.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(ok, "{err}");
    out.trim().to_string()
}

#[test]
fn ctl_drives_every_resource_and_says_what_went_wrong_in_one_line() {
    let bed = bed();
    let admin = token(&bed, "admin", "ada");
    let viewer = token(&bed, "viewer", "vera");
    assert!(admin.starts_with("bh_"));
    let (ok, out, _) = run(
        &[
            "token",
            "list",
            "--store",
            bed.dir.join("bulkhead.db").to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(ok && out.contains("ada") && out.contains("vera") && !out.contains(&admin));

    let env = |t: &str| -> Vec<(&'static str, String)> {
        vec![
            ("BULKHEAD_URL", bed.url.clone()),
            ("BULKHEAD_FINGERPRINT", bed.fingerprint.clone()),
            ("BULKHEAD_TOKEN", t.to_string()),
        ]
    };
    let ctl = |t: &str, args: &[&str]| {
        let e = env(t);
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut a = vec!["ctl"];
        a.extend_from_slice(args);
        run(&a, &e)
    };

    // The fingerprint the server shows is the one it logged.
    let (ok, out, err) = run(&["ctl", "--url", &bed.url, "fingerprint"], &[]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), bed.fingerprint);

    // Tables for people, JSON for scripts.
    let (ok, out, err) = ctl(&viewer, &["workloads"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("MAC") && out.contains("web-1") && out.contains("app=web"),
        "{out}"
    );
    let (ok, out, _) = ctl(&viewer, &["--json", "workloads", "02:00:00:00:01:01"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["name"], "web-1");
    for args in [
        &["groups"][..],
        &["services"],
        &["rules"],
        &["stats"],
        &["policy", "versions"],
        &["policy", "diff"],
        &["policy", "draft"],
        &["policy", "show", "1"],
        &["quarantine", "list"],
        &["quarantine", "history"],
        &["metrics"],
    ] {
        let (ok, _, err) = ctl(&viewer, args);
        assert!(ok, "{args:?}: {err}");
    }

    // Quarantine: forbidden for a viewer, done by an admin.
    let (ok, _, err) = ctl(&viewer, &["quarantine", "add", "02:00:00:00:01:01"]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("forbidden"), "{err}");
    let (ok, out, err) = ctl(
        &admin,
        &["quarantine", "add", "02:00:00:00:01:01", "--reason", "test"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("quarantined"), "{out}");
    let (ok, out, _) = ctl(&admin, &["quarantine", "release", "02:00:00:00:01:01"]);
    assert!(ok && out.contains("released"), "{out}");

    // A policy file with a problem: the field is named.
    let bad = bed.dir.join("bad.yaml");
    std::fs::write(&bad, POLICY.replace("[https]", "[httpz]")).expect("write");
    let (ok, _, err) = ctl(&admin, &["policy", "put", bad.to_str().expect("utf-8")]);
    assert!(!ok);
    assert!(
        err.contains("[field rules[0].services[0]]") && err.contains("httpz"),
        "{err}"
    );
    let good = bed.dir.join("good.yaml");
    std::fs::write(&good, POLICY.replace("[https]", "[https, ssh]")).expect("write");
    let (ok, out, err) = ctl(&admin, &["policy", "put", good.to_str().expect("utf-8")]);
    assert!(ok, "{err}");
    assert!(out.contains("~ rules 10"), "{out}");
    let (ok, out, err) = ctl(&admin, &["policy", "commit", "-m", "ssh too"]);
    assert!(ok && out.contains("version 2 is live"), "{out} {err}");

    // Tokens over the API, and the audit log.
    let (ok, out, _) = ctl(
        &admin,
        &["tokens", "create", "--name", "ci", "--role", "operator"],
    );
    assert!(ok && out.trim().starts_with("bh_"));
    let (ok, _, _) = ctl(&admin, &["tokens", "revoke", "ci"]);
    assert!(ok);
    let (ok, out, _) = ctl(&admin, &["audit"]);
    assert!(
        ok && out.contains("POST /api/v1/quarantine") && out.contains("ada"),
        "{out}"
    );

    // One-line errors: bad token, wrong fingerprint, unreachable, plain http.
    let (ok, _, err) = ctl("bh_wrong", &["workloads"]);
    assert!(
        !ok && err.contains("bad token") && err.lines().count() == 1,
        "{err}"
    );
    let wrong = "00".repeat(32);
    let (ok, _, err) = run(
        &[
            "ctl",
            "--url",
            &bed.url,
            "--fingerprint",
            &wrong,
            "--token",
            &viewer,
            "workloads",
        ],
        &[],
    );
    assert!(
        !ok && err.contains("fingerprint") && err.lines().count() == 1,
        "{err}"
    );
    let (ok, _, err) = run(
        &[
            "ctl",
            "--url",
            "https://127.0.0.1:1",
            "--insecure",
            "--token",
            &viewer,
            "workloads",
        ],
        &[],
    );
    assert!(
        !ok && err.contains("cannot reach") && err.lines().count() == 1,
        "{err}"
    );
    let (ok, _, err) = run(&["ctl", "--url", "http://127.0.0.1:1", "workloads"], &[]);
    assert!(!ok && err.contains("HTTPS"), "{err}");
}

/// `bulkhead replay` of the sample capture into `store` (records appended).
fn import_sample(store: &std::path::Path) {
    let (ok, _, err) = run(
        &[
            "replay",
            "examples/sample.pcap",
            "--policy",
            "examples/policy.yaml",
            "--records",
            store.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(ok, "{err}");
}

#[test]
fn ctl_flows_follow_prints_the_records_written_while_it_runs() {
    let bed = bed_with("follow", |dir| {
        let store = dir.join("records.db");
        import_sample(&store);
        Some(store)
    });
    let store = bed.dir.join("records.db");
    let viewer = token(&bed, "viewer", "tail");
    let (ok, page, err) = run(
        &[
            "ctl",
            "flows",
            "--verdict",
            "deny",
            "--limit",
            "10000",
            "--json",
        ],
        &[
            ("BULKHEAD_URL", &bed.url),
            ("BULKHEAD_FINGERPRINT", &bed.fingerprint),
            ("BULKHEAD_TOKEN", &viewer),
        ],
    );
    assert!(ok, "{err}");
    let denied = serde_json::from_str::<Vec<serde_json::Value>>(&page)
        .expect("a JSON array")
        .len();
    assert!(denied > 0);
    let tail = Tail::spawn(
        Command::new(env!("CARGO_BIN_EXE_bulkhead"))
            .args(["ctl", "flows", "--follow", "--json", "--verdict", "deny"])
            .env("HOME", "/nonexistent")
            .env("BULKHEAD_URL", &bed.url)
            .env("BULKHEAD_FINGERPRINT", &bed.fingerprint)
            .env("BULKHEAD_TOKEN", &viewer),
    );
    assert!(
        tail.quiet_for(Duration::from_millis(1500)),
        "only records written from now on"
    );
    import_sample(&store);
    let lines = tail.take(denied);
    assert_eq!(lines.len(), denied, "{lines:?}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("one JSON object a line");
        assert_eq!(v["verdict"], "deny", "{l}");
    }
}

#[test]
fn ctl_policy_dry_run_reports_what_the_draft_would_change() {
    let bed = bed_with("dry-run", |dir| {
        let store = dir.join("records.db");
        import_sample(&store);
        Some(store)
    });
    let admin = token(&bed, "admin", "dry");
    let env = [
        ("BULKHEAD_URL", bed.url.as_str()),
        ("BULKHEAD_FINGERPRINT", bed.fingerprint.as_str()),
        ("BULKHEAD_TOKEN", admin.as_str()),
    ];
    // The sample's policy as the draft of a live policy that allows only
    // web -> web HTTPS: what the sample's rules allow would open.
    let (ok, _, err) = run(&["ctl", "policy", "put", "examples/policy.yaml"], &env);
    assert!(ok, "{err}");
    let window = [
        "--since",
        "2025-11-24T00:00:00Z",
        "--until",
        "2025-11-25T00:00:00Z",
    ];
    let (ok, out, err) = run(
        &[&["ctl", "policy", "dry-run"][..], &window[..]].concat(),
        &env,
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("dry run against the live policy"), "{out}");
    assert!(
        out.contains("web -> db  tcp/5432 postgresql")
            && out.contains("deny (default) -> allow (rule 10)"),
        "{out}"
    );
    let (ok, out, err) = run(
        &[&["ctl", "--json", "policy", "dry-run"][..], &window[..]].concat(),
        &env,
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert!(!v["opens"].as_array().expect("opens").is_empty(), "{v}");
    let (ok, _, err) = run(&["ctl", "policy", "dry-run", "--since", "soon"], &env);
    assert!(
        !ok && err.contains("since") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn ctl_detect_shows_the_detectors_and_resets_the_baselines_as_admin_only() {
    let bed = bed_with("detect", |_| None);
    let viewer = token(&bed, "viewer", "watch");
    let admin = token(&bed, "admin", "boss");
    let as_viewer = [
        ("BULKHEAD_URL", bed.url.as_str()),
        ("BULKHEAD_FINGERPRINT", bed.fingerprint.as_str()),
        ("BULKHEAD_TOKEN", viewer.as_str()),
    ];
    let (ok, out, err) = run(&["ctl", "detect", "status"], &as_viewer);
    assert!(ok, "{err}");
    assert!(out.starts_with("baseline: 604800 s by default"), "{out}");
    assert!(
        out.contains("first-seen   on") && out.contains("automatic quarantine: none"),
        "{out}"
    );
    let (ok, _, err) = run(&["ctl", "detect", "reset"], &as_viewer);
    assert!(
        !ok && err.contains("needs admin") && err.lines().count() == 1,
        "{err}"
    );
    let as_admin = [
        ("BULKHEAD_URL", bed.url.as_str()),
        ("BULKHEAD_FINGERPRINT", bed.fingerprint.as_str()),
        ("BULKHEAD_TOKEN", admin.as_str()),
    ];
    let (ok, out, err) = run(&["ctl", "--json", "detect", "reset"], &as_admin);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["first_seen"]["services"], 0, "{v}");
}

/// `bulkhead token import`: the appliance image's day-0 path, where only
/// the token's SHA-256 is handed over. The imported token works over the
/// API; importing it again changes nothing; another hash under the same
/// name replaces it (the old token stops working); bad hex is refused.
#[test]
fn a_token_imported_by_its_hash_works_and_replaces_one_of_its_name() {
    let bed = bed_with("import", |_| None);
    let store = bed.dir.join("bulkhead.db");
    let store = store.to_str().expect("utf-8");
    let import = |sha: &str| {
        run(
            &[
                "token",
                "import",
                "--sha256",
                sha,
                "--role",
                "admin",
                "--name",
                "day0-admin",
                "--store",
                store,
            ],
            &[],
        )
    };
    let hex = |t: &str| -> String {
        mgmt_api::token::hash(t)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let works = |t: &str| {
        run(
            &[
                "ctl",
                "--url",
                &bed.url,
                "--fingerprint",
                &bed.fingerprint,
                "tokens",
                "list",
            ],
            &[("BULKHEAD_TOKEN", t)],
        )
        .0
    };
    let first = mgmt_api::token::generate().expect("token");
    let (ok, out, err) = import(&hex(&first));
    assert!(ok, "{err}");
    assert!(out.contains("installed"), "{out}");
    assert!(works(&first), "the imported token is accepted");
    // Again, upper case: the same token, nothing changes.
    let (ok, out, err) = import(&hex(&first).to_uppercase());
    assert!(ok, "{err}");
    assert!(out.contains("already active as \"day0-admin\""), "{out}");
    // A new hash under the same name replaces the old token.
    let second = mgmt_api::token::generate().expect("token");
    let (ok, _, err) = import(&hex(&second));
    assert!(ok, "{err}");
    assert!(works(&second));
    assert!(!works(&first), "the replaced token is revoked");
    for bad in ["abc", &"g".repeat(64), &format!("{}00", hex(&second))] {
        let (ok, _, err) = import(bad);
        assert!(!ok, "{bad} accepted");
        assert!(err.contains("64 hex digits"), "{err}");
    }
}
