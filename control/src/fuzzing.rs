//! The harness of the `policy` fuzz target (`fuzz/`, see `docs/fuzzing.md`),
//! kept here so that the AFL binary and the test that replays its corpus and
//! regressions (`tests/fuzz_regressions.rs`) run the same code. Not an API.

use crate::compile::CompileError;
use crate::nft::Form;
use crate::Model;
use dataplane::policy::{PolicySnapshot, PolicySpec};

/// Arbitrary bytes as a policy file, down the path of `bulkhead policy check`
/// and `policy export --nft`: the model read as YAML and as TOML, validated,
/// compiled, its snapshot built and rendered as nftables; and the same text as
/// the dataplane's own policy form, compiled to a snapshot. Every rejection must
/// be a typed error; a model that validates must be accepted by the dataplane.
pub fn policy(data: &[u8]) {
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
        for form in [Form::Best, Form::Linear] {
            let _ = crate::nft::render(&compiled, form, "<fuzz>");
        }
    }
    for spec in [
        PolicySpec::from_yaml_str(text),
        PolicySpec::from_toml_str(text),
    ]
    .into_iter()
    .flatten()
    {
        let _ = PolicySnapshot::compile(&spec, 1);
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
