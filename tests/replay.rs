//! `bulkhead replay` as a user runs it: the sample capture, pcapng, snapped
//! captures, and hostile or broken files (which must give an error with a
//! location, never a panic).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod cli;

use cli::bulkhead;
use std::path::{Path, PathBuf};
use std::process::Output;

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bulkhead-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write temp file");
    p
}

fn replay(capture: &Path, policy: &str) -> Output {
    bulkhead(&[
        "replay",
        capture.to_str().expect("utf-8 path"),
        "--policy",
        policy,
        "--denied",
    ])
}

fn sample() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample.pcap"))
        .expect("sample capture")
}

/// The row of a table whose first column starts with `label`, split on whitespace.
fn row<'a>(out: &'a str, label: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{out}"))
        .split_whitespace()
        .collect()
}

#[test]
fn sample_capture_gives_the_verdict_table() {
    let o = bulkhead(&[
        "replay",
        "examples/sample.pcap",
        "--policy",
        "examples/policy.yaml",
        "--denied",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.starts_with("replayed 71 frames"), "{out}");
    // Three PostgreSQL sessions (IPv4, IPv6, VLAN 20) under rule 10, 8 packets each.
    assert_eq!(row(&out, "10 allow")[2..5], ["3", "24", "1599"]);
    assert_eq!(row(&out, "deny ")[1..3], ["5", "10"]);
    assert_eq!(row(&out, "allow, would deny")[4..6], ["1", "8"]);
    assert!(row(&out, "60 allow").join(" ").ends_with("(never hit)"));
    assert_eq!(row(&out, "dropped: malformed")[3], "1");
    assert_eq!(row(&out, "dropped: fragment")[3], "1");
    for reason in [
        "deny: quarantine",
        "deny: blocklist",
        "would deny: rule 50",
        "deny: rule 50",
    ] {
        assert!(out.contains(reason), "{reason} missing:\n{out}");
    }
    assert!(out.contains("management exception (enforce)"));
    assert!(out.contains("events lost 0"));
}

#[test]
fn toml_policy_gives_the_same_answer_as_yaml() {
    let toml = r#"
[[workloads]]
mac = "02:00:00:00:01:01"
name = "web-1"
labels = { app = "web" }
[[workloads]]
mac = "02:00:00:00:02:01"
name = "db-1"
labels = { app = "db" }
[[groups]]
name = "web"
match = { app = "web" }
[[groups]]
name = "db"
match = { app = "db" }
[[rules]]
id = 10
src = ["web"]
dst = ["db"]
services = ["postgresql"]
action = "allow"
"#;
    let p = tmp("policy.toml", toml.as_bytes());
    let o = replay(
        Path::new("examples/sample.pcap"),
        p.to_str().expect("utf-8"),
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(row(&out, "10 allow")[2..4], ["3", "24"]);
}

/// A pcapng file: section header, an interface with the default (microsecond)
/// timestamp resolution, and the sample's frames as enhanced packet blocks.
fn pcapng_of_sample() -> Vec<u8> {
    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let pad = (4 - body.len() % 4) % 4;
        let len = (12 + body.len() + pad) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.extend(std::iter::repeat_n(0u8, pad));
        out.extend_from_slice(&len.to_le_bytes());
    }
    let pcap = sample();
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4d_u32.to_le_bytes());
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&1u16.to_le_bytes());
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&65535u32.to_le_bytes());
    block(&mut out, 1, &idb);
    let mut off = 24;
    while off + 16 <= pcap.len() {
        let rd = |i: usize| u32::from_le_bytes(pcap[i..i + 4].try_into().expect("4 bytes"));
        let (sec, usec, incl, orig) = (rd(off), rd(off + 4), rd(off + 8) as usize, rd(off + 12));
        let data = &pcap[off + 16..off + 16 + incl];
        let ts = u64::from(sec) * 1_000_000 + u64::from(usec);
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(incl as u32).to_le_bytes());
        epb.extend_from_slice(&orig.to_le_bytes());
        epb.extend_from_slice(data);
        epb.extend(std::iter::repeat_n(0u8, (4 - incl % 4) % 4));
        block(&mut out, 6, &epb);
        off += 16 + incl;
    }
    out
}

#[test]
fn pcapng_replays_like_pcap_with_microsecond_timestamps() {
    let p = tmp("sample.pcapng", &pcapng_of_sample());
    let o = replay(&p, "examples/policy.yaml");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.starts_with("replayed 71 frames (16.1 s of traffic)"),
        "{out}"
    );
    assert_eq!(row(&out, "10 allow")[2..5], ["3", "24", "1599"]);
}

#[test]
fn snapped_capture_is_padded_back_and_counted_at_wire_length() {
    // Rewrite the sample with a 96-byte snap length, as `tcpdump -s 96` would.
    let pcap = sample();
    let mut out = pcap[..24].to_vec();
    out[16..20].copy_from_slice(&96u32.to_le_bytes());
    let mut off = 24;
    while off + 16 <= pcap.len() {
        let incl =
            u32::from_le_bytes(pcap[off + 8..off + 12].try_into().expect("4 bytes")) as usize;
        let cut = incl.min(96);
        out.extend_from_slice(&pcap[off..off + 8]);
        out.extend_from_slice(&(cut as u32).to_le_bytes());
        out.extend_from_slice(&pcap[off + 12..off + 16]);
        out.extend_from_slice(&pcap[off + 16..off + 16 + cut]);
        off += 16 + incl;
    }
    let p = tmp("snapped.pcap", &out);
    let o = replay(&p, "examples/policy.yaml");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(row(&out, "10 allow")[2..5], ["3", "24", "1599"], "{out}");
    assert!(out.contains("cut by the capture's snap length"));
}

#[test]
fn broken_captures_are_errors_with_a_location() {
    let pcap = sample();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.pcap", vec![], "not a pcap or pcapng file"),
        (
            "text.pcap",
            b"hello, this is not a capture\n".to_vec(),
            "not a pcap or pcapng file",
        ),
        ("cut.pcap", pcap[..pcap.len() - 7].to_vec(), "byte offset"),
        ("header-only.pcap", pcap[..20].to_vec(), "byte offset 0"),
        (
            "sll.pcap",
            {
                let mut p = pcap.clone();
                p[20..24].copy_from_slice(&113u32.to_le_bytes());
                p
            },
            "is not Ethernet",
        ),
        (
            "huge-record.pcap",
            {
                let mut p = pcap[..24].to_vec();
                p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
                p.extend_from_slice(&u32::MAX.to_le_bytes());
                p.extend_from_slice(&u32::MAX.to_le_bytes());
                p
            },
            "byte offset 24",
        ),
    ];
    for (name, bytes, expect) in cases {
        let p = tmp(name, &bytes);
        let o = replay(&p, "examples/policy.yaml");
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.starts_with("bulkhead: ") && err.contains(expect),
            "{name}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
    }
    let o = bulkhead(&[
        "replay",
        "/nonexistent/x.pcap",
        "--policy",
        "examples/policy.yaml",
    ]);
    assert!(text(&o).1.contains("/nonexistent/x.pcap: No such file"));
}

#[test]
fn mutated_captures_never_crash_the_replay() {
    let pcap = sample();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..150 {
        let mut m = pcap.clone();
        for _ in 0..1 + rand() % 8 {
            let at = (rand() as usize) % m.len();
            m[at] = rand() as u8;
        }
        if i % 3 == 0 {
            m.truncate(24 + (rand() as usize) % (m.len() - 24));
        }
        let p = tmp(&format!("mutated-{i}.pcap"), &m);
        let o = replay(&p, "examples/policy.yaml");
        let code = o.status.code();
        assert!(
            matches!(code, Some(0) | Some(1)),
            "mutation {i}: exit {code:?}: {}",
            text(&o).1
        );
    }
}

#[test]
fn bad_policies_list_every_problem_with_its_place() {
    let bad = r#"
workloads:
  - { mac: "02:00:00:00:01:0g", labels: { app: web } }
groups: [{ name: web, match: { app: web } }, { name: web, match: { app: web } }]
rules:
  - { id: 1, src: [web], dst: [dbb], services: [smb], action: deny }
  - { id: 1, src: [web], dst: [web], services: [{ proto: icmp, ports: [22] }], action: allow }
"#;
    let p = tmp("bad.yaml", bad.as_bytes());
    let o = bulkhead(&[
        "replay",
        "examples/sample.pcap",
        "--policy",
        p.to_str().expect("utf-8"),
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    for expect in [
        "groups[1]",
        "workloads[0].mac",
        "rules[0].dst[0]",
        "dbb",
        "rules[1]",
    ] {
        assert!(err.contains(expect), "{expect} missing: {err}");
    }
    let p = tmp("syntax.yaml", b"groups:\n  - name: web\n   mode: enforce\n");
    let o = bulkhead(&[
        "replay",
        "examples/sample.pcap",
        "--policy",
        p.to_str().expect("utf-8"),
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("syntax.yaml:3"), "line number missing: {err}");
}
