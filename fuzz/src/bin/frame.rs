//! Arbitrary bytes as one Ethernet frame through the parser and a primed worker (dataplane::fuzzing::frame).

fn main() {
    bulkhead_fuzz::setup(dataplane::fuzzing::frame);
    afl::fuzz!(|data: &[u8]| {
        dataplane::fuzzing::frame(data);
    });
}
