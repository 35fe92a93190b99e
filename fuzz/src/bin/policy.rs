//! Arbitrary bytes as a policy file: load, validate, compile, snapshot, nft export (bulkhead_bench::fuzzing::policy).

fn main() {
    bulkhead_fuzz::setup(bulkhead_bench::fuzzing::policy);
    afl::fuzz!(|data: &[u8]| {
        bulkhead_bench::fuzzing::policy(data);
    });
}
