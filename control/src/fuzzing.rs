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

/// The `dns` fuzz target's second half: the DNS messages the worker reported
/// for the input (`msgs`), then the input itself as one UDP message and as
/// a TCP stream cut into segments of its first byte's length, through the
/// decoder ([`crate::dns::DnsDecoder`]). Nothing may panic, and the decoder
/// must hold no more than one message and one segment for the stream.
/// (The first AFL run found this harness asserting one stream on a decoder
/// that also had the worker's: `fuzz/regressions/dns/` keeps two of them.)
pub fn dns_decode(data: &[u8], msgs: &[dataplane::event::DnsMessage]) {
    use crate::dns::DnsDecoder;
    use dataplane::event::DnsMessage;
    use dataplane::wire::MacAddr;
    use std::net::Ipv4Addr;
    let mut worker = DnsDecoder::new();
    for m in msgs {
        worker.feed(m);
    }
    // The input's own framings, on a decoder of their own: its one stream
    // is what the bound below is about.
    let mut d = DnsDecoder::new();
    let message = |proto, tcp_seq, payload: &[u8]| DnsMessage {
        time: 1,
        client_mac: MacAddr([2, 0, 0, 0, 0, 1]),
        client_ip: Ipv4Addr::new(10, 0, 0, 1).into(),
        client_port: 40_000,
        server_mac: MacAddr([2, 0, 0, 0, 0, 2]),
        server_ip: Ipv4Addr::new(10, 0, 0, 2).into(),
        vlan: [0, 0],
        proto,
        tcp_seq,
        payload: payload.into(),
        truncated: false,
        unsolicited: false,
    };
    for r in d.feed(&message(17, None, data)) {
        assert!(
            r.answers.len() <= data.len() / 11,
            "an answer takes 11 bytes at least"
        );
    }
    let cut = data.first().map_or(1, |&b| usize::from(b).max(1));
    let mut seq = 0xffff_ff00u32;
    for segment in data.chunks(cut) {
        d.feed(&message(6, Some(seq), segment));
        seq = seq.wrapping_add(segment.len() as u32);
        let (streams, bytes) = d.waiting();
        assert!(
            streams <= 1 && bytes <= 2 + 65_535 + cut,
            "{streams} {bytes}"
        );
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
