//! `bulkhead lab` and `bulkhead run` as a user runs them: the whole demo, with
//! real packets through the appliance in network namespaces, in both fail modes;
//! and the appliance's one-line errors for a bad configuration.
//!
//! The lab needs root. Outside CI a non-root run says why it skips; with
//! `CI=true` (as `.ci/run` sets) a missing privilege is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod cli;

use cli::bulkhead;
use std::process::Command;
use std::sync::Mutex;

/// The lab's namespaces have fixed names: one lab at a time.
static LAB: Mutex<()> = Mutex::new(());

/// Root and the lab's tools, or skip (outside CI) / fail (in CI).
fn root_or_skip() -> bool {
    dataplane::hostenv::root_with("the lab tests", &["ip", "ping", "ethtool", "nsenter"])
}

fn lab(fail_mode: &str) {
    if !root_or_skip() {
        return;
    }
    let _one = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let o = bulkhead(&["lab", "--fail-mode", fail_mode]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "lab failed:\n{out}\n{err}");
    for step in [
        "web-1 -> db-1 tcp/445",
        "quarantine web-2 (by MAC) mid-stream",
        "admin -> web-2 tcp/22 while quarantined",
        "release web-2",
        "appliance stopped",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(step))
            .unwrap_or_else(|| panic!("no step {step:?} in:\n{out}"));
        assert!(line.ends_with(" ok"), "{line}");
    }
    // The quarantine went through `bulkhead ctl` and the HTTPS API.
    for said in [
        "$ bulkhead ctl quarantine add 02:b4:00:00:01:02",
        "02:b4:00:00:01:02 quarantined (generation",
        "02:b4:00:00:01:02 released (generation",
    ] {
        assert!(out.contains(said), "no {said:?} in:\n{out}");
    }
    // The run's flow records: the graph by group, with what the lab did.
    let edges: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.starts_with("access graph, group level"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    let flows = |src: &str, dst: &str, service: &str, verdict: &str| -> u64 {
        edges
            .iter()
            .filter(|e| e[..4] == [src, dst, service, verdict])
            .map(|e| e[4].parse::<u64>().unwrap())
            .sum()
    };
    for (src, dst, service, verdict, n) in [
        ("web", "db", "tcp/445", "deny", 1),
        ("admin", "web", "tcp/3389", "deny", 1),
        ("legacy", "db", "tcp/445", "deny", 1),
        ("legacy", "legacy", "tcp/445", "would-deny", 1),
        // The connection web-2 opened while quarantined.
        ("web", "db", "tcp/5432", "deny", 1),
    ] {
        assert_eq!(
            flows(src, dst, service, verdict),
            n,
            "{src} -> {dst} {service} {verdict} in:\n{out}"
        );
    }
    assert!(flows("web", "db", "tcp/5432", "allow") >= 2, "{out}");
    assert!(flows("admin", "web", "tcp/22", "allow") >= 2, "{out}");
    assert!(out.contains("deny: quarantine"), "{out}");
    assert!(out.contains("would deny: rule 50"), "{out}");
    let left = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains("bh-lab-"),
        "the lab cleaned up its namespaces"
    );
}

#[test]
fn lab_demo_passes_every_step_fail_closed() {
    lab("closed");
}

#[test]
fn lab_demo_passes_every_step_fail_open() {
    lab("open");
}

#[test]
fn run_refuses_bad_configs_in_one_line() {
    let dir = std::env::temp_dir().join(format!("bulkhead-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.yaml");
    let cases = [
        ("missing.toml", None, "cannot read"),
        ("syntax.toml", Some("[ports]\na = \"x\"\nb = \n"), "syntax.toml:3"),
        ("unknown.toml", Some(&*format!("[ports]\na = \"x\"\nb = \"y\"\ncolour = 1\n[policy]\nfile = \"{policy}\"\n")), "unknown field `colour`"),
        ("mode.toml", Some(&*format!("[ports]\na = \"x\"\nb = \"y\"\nfail_mode = \"ajar\"\n[policy]\nfile = \"{policy}\"\n")), "expected one of open, closed"),
        ("offload.toml", Some(&*format!("[ports]\na = \"x\"\nb = \"y\"\n[dataplane]\noffload = \"maybe\"\n[policy]\nfile = \"{policy}\"\n")), "dataplane.offload = \"maybe\": expected one of on, off"),
        ("noif.toml", Some(&*format!("[ports]\na = \"bh-no-such-if0\"\nb = \"bh-no-such-if1\"\n[policy]\nfile = \"{policy}\"\n")), "interface bh-no-such-if0 does not exist"),
        ("nopolicy.toml", Some("[ports]\na = \"x\"\nb = \"y\"\n[policy]\nfile = \"/nonexistent/p.yaml\"\n"), "/nonexistent/p.yaml"),
    ];
    for (name, text, expect) in cases {
        let path = dir.join(name);
        if let Some(t) = text {
            std::fs::write(&path, t).expect("write config");
        }
        let o = bulkhead(&["run", "--config", path.to_str().expect("utf-8")]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(expect), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line: {err}");
    }
}
