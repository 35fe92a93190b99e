//! Arbitrary bytes as a UDP or TCP port-53 payload through a primed worker (dataplane::fuzzing::dns).

fn main() {
    bulkhead_fuzz::setup(dataplane::fuzzing::dns);
    afl::fuzz!(|data: &[u8]| {
        dataplane::fuzzing::dns(data);
    });
}
