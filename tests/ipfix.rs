//! IPFIX export checked by the decoders network teams run (Debian's nfdump
//! 1.7, tshark and libfixbuf's ipfixDump), never by our own reader:
//! - a replayed capture exported over UDP to `nfcapd` and over TCP to a
//!   stream file: `nfdump` shows every flow the records store holds, with
//!   the same addresses, MACs, ports and counts both ways; `tshark` and
//!   `ipfixDump` decode every message without a warning and give the
//!   forwarding status and firewall event nfdump 1.7.1 does not decode;
//! - real traffic through the live appliance (`bulkhead run` in namespaces,
//!   needs root) reaching `nfcapd` beside it.
//!
//! Outside CI a missing tool (or root) skips a test and says why; with
//! `CI=true` it fails (`.ci/run` installs nfdump, tshark, libfixbuf-tools).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod cli;
mod collectors;
mod live_bed;

use collectors::{free_udp_port, ipfix_dump, nfdump_flows, tcp_to_file, Nfcapd, Tshark, TOOLS};
use dataplane::hostenv::{can_run, missing_tool, root_with};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bulkhead-ipfix-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The nfdump flow with this source and destination address and port.
fn find<'a>(flows: &'a [Value], src: (&str, u64), dst: (&str, u64)) -> &'a Value {
    let addr = |f: &Value, k4: &str, k6: &str| {
        f[k4]
            .as_str()
            .or_else(|| f[k6].as_str())
            .unwrap_or("")
            .to_string()
    };
    flows
        .iter()
        .find(|f| {
            addr(f, "src4_addr", "src6_addr") == src.0
                && addr(f, "dst4_addr", "dst6_addr") == dst.0
                // nfdump prints no ports for ICMP.
                && f["src_port"].as_u64().unwrap_or(0) == src.1
                && f["dst_port"].as_u64().unwrap_or(0) == dst.1
        })
        .unwrap_or_else(|| panic!("no flow {src:?} -> {dst:?} in nfdump's output:\n{flows:#?}"))
}

#[test]
fn a_replayed_capture_decodes_in_nfdump_tshark_and_ipfixdump_as_the_store_has_it() {
    if !can_run("the IPFIX replay test", missing_tool(&TOOLS)) {
        return;
    }
    let dir = tmp("replay");
    let port = free_udp_port();
    let nfcapd = Nfcapd::start(None, &dir.join("nf"), port);
    let capture = Tshark::start(None, &dir.join("export.pcap"), port);
    let stream = dir.join("stream.ipfix");
    let tcp = tcp_to_file(None, &stream);
    let store = dir.join("records.db");
    let out = cli::bulkhead(&[
        "replay",
        "examples/sample.pcap",
        "--policy",
        "examples/policy.yaml",
        "--records",
        store.to_str().unwrap(),
        "--ipfix",
        &format!("udp://127.0.0.1:{port}"),
        "--ipfix",
        &format!("tcp://127.0.0.1:{tcp}"),
        "--ipfix-enterprise",
        "32473",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "15 flow records in 2 messages sent to udp://127.0.0.1:{port}, 0 lost"
        )) || stderr.contains(&format!(
            "15 flow records in 3 messages sent to udp://127.0.0.1:{port}, 0 lost"
        )),
        "{stderr}"
    );
    let (file, log) = nfcapd.finish();
    assert!(
        log.contains("Flows: 15,") && log.contains("Sequence Errors: 0, Bad Packets: 0"),
        "{log}"
    );

    // What the store holds is what the collector got.
    let expected: Vec<Value> = serde_json::from_slice(
        &cli::bulkhead(&[
            "records",
            "flows",
            "--store",
            store.to_str().unwrap(),
            "--json",
        ])
        .stdout,
    )
    .expect("records JSON");
    assert_eq!(expected.len(), 15);
    let flows = nfdump_flows(&file);
    assert_eq!(flows.len(), 15, "{flows:#?}");
    // ICMP echo flows carry the echo id as their ports in the store; IPFIX
    // has no transport ports for them.
    let port = |e: &Value, end: &str| match e["proto"].as_u64() {
        Some(6 | 17) => e[end]["port"].as_u64().unwrap_or(0),
        _ => 0,
    };
    for e in &expected {
        let (s, d) = (&e["src"], &e["dst"]);
        let f = find(
            &flows,
            (s["ip"].as_str().unwrap(), port(e, "src")),
            (d["ip"].as_str().unwrap(), port(e, "dst")),
        );
        assert_eq!(f["proto"], e["proto"]);
        assert_eq!(f["in_src_mac"], s["mac"], "{f:#}");
        assert_eq!(f["in_dst_mac"], d["mac"], "{f:#}");
        assert_eq!(f["in_packets"], e["packets"][0], "{f:#}");
        assert_eq!(f["out_packets"], e["packets"][1], "{f:#}");
        assert_eq!(f["in_bytes"], e["bytes"][0], "{f:#}");
        assert_eq!(f["out_bytes"], e["bytes"][1], "{f:#}");
        // The replay feeds every frame in on segment A.
        assert_eq!(
            (f["input_snmp"].as_u64(), f["output_snmp"].as_u64()),
            (Some(1), Some(2))
        );
    }
    // The SMB attempt of the sample: SYNs only, denied, no answer.
    let smb = find(&flows, ("10.0.1.11", 42000), ("10.0.2.21", 445));
    assert_eq!(
        (smb["in_packets"].as_u64(), smb["out_packets"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(smb["tcp_flags"], "......S.");

    // tshark: every message decodes; forwarding status and firewall event
    // as the verdicts say (nfdump 1.7.1 does not decode them).
    let decoded = capture.finish(&[
        "cflow.srcport",
        "cflow.dstport",
        "cflow.forwarding_status",
        "cflow.firewall_event",
        "cflow.flow_end_reason",
    ]);
    assert_eq!(decoded.len(), 15, "{decoded:?}");
    for e in &expected {
        let (sp, dp) = (port(e, "src").to_string(), port(e, "dst").to_string());
        let row = decoded
            .iter()
            .find(|r| r[0] == sp && r[1] == dp)
            .unwrap_or_else(|| panic!("no record {sp} -> {dp} in {decoded:?}"));
        let (status, event) = match (e["verdict"].as_str(), e["would_deny"].as_bool()) {
            // Status is the top two bits: 1 forwarded, 2 dropped.
            (Some("deny"), _) => ("2", "3"),
            (_, Some(true)) => ("1", "4"),
            _ => ("1", "2"),
        };
        assert_eq!((row[2].as_str(), row[3].as_str()), (status, event), "{e:#}");
        let reason = if e["state"] == "timewait" || e["state"] == "closed" {
            "3"
        } else {
            "4"
        };
        assert_eq!(row[4], reason, "{e:#}");
    }

    // The TCP export: one stream, every record, no complaint from libfixbuf.
    std::thread::sleep(Duration::from_millis(200));
    let (dump, records) = ipfix_dump(&stream);
    assert_eq!(records, 15, "{dump}");
    assert!(dump.contains("reversePacketDeltaCount"), "{dump}");
    // The enterprise elements, named by the type records and decoded.
    assert!(
        dump.contains("bulkheadSourceWorkload : (len: 5) web-1"),
        "{dump}"
    );
    assert!(dump.contains("bulkheadRuleId : 50"), "{dump}");
    assert!(!dump.contains("_alienInformationElement"), "{dump}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn live_traffic_through_the_appliance_reaches_nfcapd() {
    let mut tools = vec!["ip", "ethtool", "nsenter", "ping"];
    tools.extend(TOOLS);
    if !root_with("the live IPFIX test", &tools) {
        return;
    }
    let port = free_udp_port();
    let ipfix =
        format!("\n[ipfix]\ncollectors = [\"udp://127.0.0.1:{port}\"]\nobservation_domain = 7\n");
    let mut bed = live_bed::Bed::new("ipfix", &live_bed::web_db_policy(), &ipfix);
    let [a, b, dut] = bed.ns.clone();
    let nfcapd = Nfcapd::start(Some(&dut), &bed.dir.join("nf"), port);
    let capture = Tshark::start(Some(&dut), &bed.dir.join("export.pcap"), port);
    live_bed::listen(&b);
    bed.start();
    assert!(live_bed::connects(&a, Duration::from_secs(5)), "allowed");
    assert!(!live_bed::pings(&a), "ICMP is denied by enforce");
    // The flows end with the appliance (a clean stop flushes them): their
    // records go out before it exits.
    bed.stop();
    let log = bed.log();
    assert!(log.contains("ipfix "), "{log}");
    let (file, nf_log) = nfcapd.finish();
    assert!(nf_log.contains("Observation domain 7"), "{nf_log}");
    let flows = nfdump_flows(&file);
    let tcp = flows
        .iter()
        .find(|f| f["proto"] == 6 && f["dst_port"] == 9000)
        .unwrap_or_else(|| panic!("no TCP flow in {flows:#?}"));
    assert_eq!(tcp["src4_addr"], "10.99.0.1");
    assert_eq!(tcp["dst4_addr"], "10.99.0.2");
    assert_eq!(tcp["in_src_mac"], live_bed::MAC_A);
    assert_eq!(tcp["in_dst_mac"], live_bed::MAC_B);
    assert!(
        tcp["in_packets"].as_u64() >= Some(3),
        "SYN, ACK, FIN: {tcp:#}"
    );
    assert!(
        tcp["out_packets"].as_u64() >= Some(2),
        "SYN-ACK, FIN: {tcp:#}"
    );
    assert!(tcp["in_bytes"].as_u64() >= Some(3 * 54), "{tcp:#}");
    let flags = tcp["tcp_flags"].as_str().unwrap_or("");
    assert!(
        flags.contains('S') && flags.contains('A') && flags.contains('F'),
        "{tcp:#}"
    );
    // host-a is on dut-a, the appliance's segment A.
    assert_eq!(
        (tcp["input_snmp"].as_u64(), tcp["output_snmp"].as_u64()),
        (Some(1), Some(2))
    );
    let icmp = flows
        .iter()
        .find(|f| f["proto"] == 1)
        .unwrap_or_else(|| panic!("no ICMP flow in {flows:#?}"));
    assert_eq!(icmp["in_packets"].as_u64(), Some(2), "{icmp:#}");
    assert_eq!(icmp["out_packets"].as_u64(), Some(0), "{icmp:#}");

    let decoded = capture.finish(&[
        "cflow.protocol",
        "cflow.forwarding_status",
        "cflow.firewall_event",
    ]);
    let row = |proto: &str| {
        decoded
            .iter()
            .find(|r| r[0] == proto)
            .unwrap_or_else(|| panic!("no protocol {proto} in {decoded:?}"))
            .clone()
    };
    assert_eq!(row("6")[1..], ["1", "2"], "TCP forwarded, flow deleted");
    assert_eq!(row("1")[1..], ["2", "3"], "ICMP dropped, flow denied");
}
