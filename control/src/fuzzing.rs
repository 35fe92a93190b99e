//! The harness of the `policy` fuzz target (`fuzz/`, see `docs/fuzzing.md`),
//! kept here so that the AFL binary and the test that replays its corpus and
//! regressions (`bench/tests/fuzz_regressions.rs`) run the same code; both go
//! through `bulkhead_bench::fuzzing::policy`, which adds the nftables rendering
//! (the renderer lives with the benchmark). Not an API.

use crate::compile::{CompileError, Compiled};
use crate::Model;

/// Arbitrary bytes as a policy file, down the path of `bulkhead policy check`:
/// the model read as YAML and as TOML, validated, compiled and its snapshot
/// built. Every rejection must be a typed error; a model that validates must
/// be accepted by the dataplane.
pub fn policy(data: &[u8]) {
    policy_with(data, |_| {});
}

/// [`policy`], handing every model that compiles to `also` (the `policy` fuzz
/// target renders it as nftables there: `bulkhead_bench::fuzzing::policy`).
pub fn policy_with(data: &[u8], mut also: impl FnMut(&Compiled)) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for model in [Model::from_yaml_str(text), Model::from_toml_str(text)]
        .into_iter()
        .flatten()
    {
        let _ = model.validate();
        let Ok(compiled) = crate::compile(&model) else {
            continue;
        };
        match compiled.snapshot(1) {
            Ok(_) | Err(CompileError::Invalid(_)) => {}
            Err(CompileError::Rejected(e)) => {
                panic!("a model that validates was rejected by the dataplane: {e}")
            }
        }
        also(&compiled);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn takes_empty_and_non_utf8_input() {
        for input in [&b""[..], b"\xff\xfe", b"groups: [", b"[[rules]]"] {
            super::policy(input);
        }
    }
}
