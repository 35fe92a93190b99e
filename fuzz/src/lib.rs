//! Set-up shared by the fuzz targets in `src/bin/`; the harnesses themselves are
//! `dataplane::fuzzing`, `control::fuzzing` and `bulkhead_bench::fuzzing`
//! (the policy target: control's harness plus the nftables rendering), which
//! the tests replay too.

/// What a target's `main` does before its fuzz loop: fixed hash seeds, then one
/// run of `harness` on an empty input, so that one-time work (the harness
/// policy compiled into a `OnceLock`, thread-locals, arc-swap's per-thread
/// node) happens before AFL measures anything and does not count as coverage
/// of whichever input happens to run first.
pub fn setup(harness: fn(&[u8])) {
    fixed_hash_seeds();
    harness(&[]);
    harness(&[0]);
}

/// A hash-seed source that always answers the same.
struct FixedSeed;

impl ahash::random_state::RandomSource for FixedSeed {
    fn gen_hasher_seed(&self) -> usize {
        0x5eed
    }
}

/// Makes every `ahash::RandomState` of this process hash alike, so that a
/// worker's flow and fragment tables lay out the same input the same way on
/// every run: AFL sees the same path for the same input (stability) instead of
/// one that depends on where random seeds put a flow. Call before anything
/// hashes.
pub fn fixed_hash_seeds() {
    // Fails only when a source is already set or in use: then it is too late,
    // which a target's `main` calling this first rules out.
    let _ = ahash::random_state::set_random_source(FixedSeed);
}
