//! Arbitrary bytes as a UDP or TCP port-53 payload through a primed worker
//! (dataplane::fuzzing::dns), then the worker's DNS events and the bytes
//! themselves through the control plane's decoder (control::fuzzing::dns_decode).

fn run(data: &[u8]) {
    let msgs = dataplane::fuzzing::dns(data);
    control::fuzzing::dns_decode(data, &msgs);
}

fn main() {
    bulkhead_fuzz::setup(run);
    afl::fuzz!(|data: &[u8]| {
        run(data);
    });
}
