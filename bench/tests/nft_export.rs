//! `bulkhead-bench nft [--linear] FILE` as the benchmark harness runs it: a
//! policy model file as an nftables bridge ruleset.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn nft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bulkhead-bench"))
        .arg("nft")
        .args(args)
        // The workspace root, where the example policy is.
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("the bulkhead-bench binary runs")
}

fn tmp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bulkhead-bench-nft-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write temp file");
    p
}

#[test]
fn nft_renders_both_forms_of_the_example() {
    let best = nft(&["examples/policy.yaml"]);
    assert!(
        best.status.success(),
        "{}",
        String::from_utf8_lossy(&best.stderr)
    );
    let best = String::from_utf8_lossy(&best.stdout);
    assert!(best.contains("table bridge bulkhead {"));
    assert!(best.contains("ether daddr vmap @dst_mac"));
    let out = std::env::temp_dir().join(format!("bulkhead-nft-{}.nft", std::process::id()));
    let linear = nft(&[
        "--linear",
        "-o",
        out.to_str().expect("utf-8 temp path"),
        "examples/policy.yaml",
    ]);
    assert!(
        linear.status.success(),
        "{}",
        String::from_utf8_lossy(&linear.stderr)
    );
    let linear = std::fs::read_to_string(&out).expect("written");
    let _ = std::fs::remove_file(&out);
    assert!(linear.contains("tcp dport 5432 accept comment \"rule 2560\""));
    // An invalid file is refused with its problems, nothing rendered.
    let bad = tmp(
        "bad.yaml",
        "rules:\n  - { id: 1, src: [nope], dst: [any], services: [ssh], action: allow }\n",
    );
    let o = nft(&[bad.to_str().expect("utf-8")]);
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
}
