//! The `bulkhead` binary run as a user runs it, from the repository's root
//! (where `examples/` is): shared by the test crates that drive the CLI.

use std::process::{Command, Output};

pub fn bulkhead(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the bulkhead binary runs")
}
