//! Replays the `policy` fuzz target's seed corpus and every input that once
//! crashed it (`fuzz/corpus/policy/`, `fuzz/regressions/policy/`) through the
//! harness the AFL binary runs (`bulkhead_bench::fuzzing::policy`: the control
//! plane's `control::fuzzing::policy_with` plus the nftables rendering), without AFL.
//! See docs/fuzzing.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;

#[test]
fn policy_corpus_and_regressions_replay() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join("policy")) else {
            continue;
        };
        for e in entries {
            let path = e.expect("a readable directory entry").path();
            if path.is_file() && path.file_name().is_some_and(|n| n != "README") {
                files.push(path);
            }
        }
    }
    files.sort();
    for path in &files {
        let data = std::fs::read(path).expect("a readable input");
        eprintln!("replaying {}", path.display());
        bulkhead_bench::fuzzing::policy(&data);
    }
    assert!(files.len() >= 3, "the policy seed corpus is there");
    // The seeds are real policies: each loads and compiles (so the harness
    // reaches past the parser on them).
    for name in ["examples-policy.yaml", "src-lab-lab-policy.yaml"] {
        let text = std::fs::read_to_string(fuzz.join("corpus/policy").join(name)).expect("seed");
        let model = control::Model::from_yaml_str(&text).expect("the seed parses");
        control::compile_snapshot(&model, 1).expect("the seed compiles");
    }
    let text = std::fs::read_to_string(fuzz.join("corpus/policy/model.toml")).expect("seed");
    let model = control::Model::from_toml_str(&text).expect("the TOML seed parses");
    control::compile_snapshot(&model, 1).expect("the TOML seed compiles");
}

/// The `dns` target's whole harness as the AFL binary runs it: the worker's
/// half, then the control plane's decoder on its events and on the input.
#[test]
fn dns_corpus_and_regressions_replay_through_the_decoder() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join("dns")) else {
            continue;
        };
        for e in entries {
            let path = e.expect("a readable directory entry").path();
            if !path.is_file() || path.file_name().is_some_and(|n| n == "README") {
                continue;
            }
            let data = std::fs::read(&path).expect("a readable input");
            eprintln!("replaying {}", path.display());
            let msgs = dataplane::fuzzing::dns(&data);
            control::fuzzing::dns_decode(&data, &msgs);
            n += 1;
        }
    }
    assert!(n >= 12, "the dns corpus and regressions are there ({n})");
}
