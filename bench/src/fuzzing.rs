//! The `policy` fuzz target's harness (`fuzz/`, see `docs/fuzzing.md`): the
//! control plane's ([`control::fuzzing::policy_with`]) plus the nftables
//! rendering of every model that compiles, in both forms. The AFL binary and
//! `tests/fuzz_regressions.rs` run this. Not an API.

use crate::nft::{render, Form};

/// Arbitrary bytes as a policy file, down the path of `bulkhead policy check`
/// and `bulkhead-bench nft`: the model read as YAML and as TOML, validated,
/// compiled, its snapshot built and rendered as nftables; and the same text as
/// the dataplane's own policy form, compiled to a snapshot. Every rejection must
/// be a typed error; a model that validates must be accepted by the dataplane.
pub fn policy(data: &[u8]) {
    control::fuzzing::policy_with(data, |compiled| {
        for form in [Form::Best, Form::Linear] {
            let _ = render(compiled, form, "<fuzz>");
        }
    });
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
