//! Arbitrary bytes as a policy file: load, validate, compile, snapshot, nft export (control::fuzzing::policy).

fn main() {
    bulkhead_fuzz::setup(control::fuzzing::policy);
    afl::fuzz!(|data: &[u8]| {
        control::fuzzing::policy(data);
    });
}
