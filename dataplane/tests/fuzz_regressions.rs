//! Replays the `frame` and `dns` fuzz targets' seed corpora and every input that
//! once crashed them (`fuzz/corpus/`, `fuzz/regressions/`) through the same
//! harnesses the AFL binaries run (`dataplane::fuzzing`), without AFL: the
//! harness code is checked on every `cargo test`, and a fixed crash stays fixed.
//! See docs/fuzzing.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
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
    files
}

fn replay(target: &str, harness: fn(&[u8])) -> usize {
    let files = inputs(target);
    for path in &files {
        let data = std::fs::read(path).expect("a readable input");
        // A panic names the input that caused it.
        eprintln!("replaying {}", path.display());
        harness(&data);
    }
    files.len()
}

#[test]
fn frame_corpus_and_regressions_replay() {
    let n = replay("frame", dataplane::fuzzing::frame);
    assert!(n >= 20, "the frame seed corpus is there ({n} files)");
}

#[test]
fn dns_corpus_and_regressions_replay() {
    let n = replay("dns", |d| {
        dataplane::fuzzing::dns(d);
    });
    assert!(n >= 10, "the dns seed corpus is there ({n} files)");
}
