//! The live appliance (`bulkhead run` in namespaces, real packets, the API
//! through `bulkhead ctl`) with a threat-intel block feed: an address added
//! to the feed file is blocked both ways within a reload interval, an
//! established connection to it is cut (offloaded or not), the reason is
//! counted as `intel`, a broken feed keeps its last good version, and the
//! API says which feed lists an address. With a real DNS server (dnsmasq):
//! the answer for a listed domain is blocked as it is resolved, alerts name
//! the workload that resolved it and then tried to connect and reach a
//! syslog receiver and an HTTPS webhook, and a feed with `quarantine`
//! quarantines the workload that resolves its domain, cutting its flows.
//!
//! Needs root; outside CI a non-root run says why it skips, with `CI=true` a
//! missing privilege is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod live_bed;

use control::alerts::receiver::Receiver;
use live_bed::{
    connects, connects_to, in_ns, listen, on_ns_thread, pings, resolve, serve, server, sh, Bed,
    Dnsmasq, EXE, MAC_A, MAC_B,
};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn policy() -> String {
    format!(
        r#"
default_mode: enforce
workloads:
  - {{ mac: "{MAC_A}", name: client, labels: {{ app: web }}, ips: [10.99.0.1] }}
  - {{ mac: "{MAC_B}", name: server, labels: {{ app: web }}, ips: [10.99.0.2] }}
groups:
  - {{ name: web, match: {{ app: web }} }}
rules:
  - {{ id: 10, src: [web], dst: [web], services: [{{ proto: tcp, ports: [9000, 9001] }}, {{ proto: udp, ports: [53] }}, icmp], action: allow }}
"#
    )
}

/// An echo server on host-b:9001.
fn echo(b: &str) {
    server(
        b,
        || TcpListener::bind("10.99.0.2:9001").expect("listen"),
        |l| {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        },
    );
}

/// From host-a: a connection to the echo server that sends a byte every
/// 20 ms and waits for it back. Returns once it got its first answers and
/// then, on `cut`, how long after `cut` was signalled the echoes stopped
/// (`None`: they never stopped within 10 s).
fn echo_stream(
    a: &str,
    started: std::sync::mpsc::Sender<()>,
    cut: std::sync::mpsc::Receiver<Instant>,
) -> std::thread::JoinHandle<Option<Duration>> {
    let a = a.to_string();
    std::thread::spawn(move || {
        in_ns(&a, move || {
            let addr = "10.99.0.2:9001".parse().unwrap();
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let one = |s: &mut TcpStream| -> bool {
                let mut b = [0u8; 1];
                s.write_all(b"x").is_ok() && s.read_exact(&mut b).is_ok()
            };
            for _ in 0..25 {
                assert!(one(&mut s), "the echo answers before the feed lists it");
                std::thread::sleep(Duration::from_millis(20));
            }
            started.send(()).unwrap();
            let mut listed_at = None;
            let give_up = Instant::now() + Duration::from_secs(30);
            while Instant::now() < give_up {
                if listed_at.is_none() {
                    listed_at = cut.try_recv().ok();
                }
                if !one(&mut s) {
                    return listed_at.map(|t| t.elapsed());
                }
                if listed_at.is_some_and(|t| t.elapsed() > Duration::from_secs(10)) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        })
    })
}

#[test]
fn a_listed_address_is_blocked_both_ways_and_its_established_flows_are_cut() {
    if !dataplane::hostenv::root_with("the intel test", &["ip", "ethtool", "nsenter", "ping"]) {
        return;
    }
    let feeds =
        std::env::temp_dir().join(format!("bulkhead-live-intel-feed-{}", std::process::id()));
    std::fs::create_dir_all(&feeds).unwrap();
    let feed = feeds.join("c2.txt");
    std::fs::write(&feed, "# C2 addresses\n192.0.2.1\n").unwrap();
    let intel = format!(
        "\n[intel]\nreload_secs = 1\n[[intel.feeds]]\nname = \"c2\"\npath = \"{}\"\n\
         action = \"block\"\nseverity = \"critical\"\n",
        feed.display()
    );
    let mut bed = Bed::new("intel", &policy(), &intel);
    let [a, b, _] = bed.ns.clone();
    listen(&b);
    echo(&b);
    bed.start();
    assert!(bed.log().contains("intel: 1 entries"), "{}", bed.log());
    assert!(connects(&a, Duration::from_secs(10)), "not listed: allowed");
    let feeds_view = bed.ctl(&["intel", "feeds"]);
    assert_eq!(feeds_view["feeds"][0]["entries"], 1);
    assert_eq!(feeds_view["feeds"][0]["origin"], "file");

    // An established connection, then the server's address in the feed.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (cut_tx, cut_rx) = std::sync::mpsc::channel();
    let stream = echo_stream(&a, started_tx, cut_rx);
    started_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the echo stream runs");
    let generation = feeds_view["generation"].as_u64().unwrap();
    let tmp = feeds.join("c2.new");
    std::fs::write(&tmp, "# C2 addresses\n192.0.2.1\n10.99.0.2 # the server\n").unwrap();
    std::fs::rename(&tmp, &feed).unwrap();
    cut_tx.send(Instant::now()).unwrap();
    let cut_after = stream.join().unwrap();
    let cut_after = cut_after.unwrap_or_else(|| {
        panic!(
            "the established connection was not cut within 10 s:\n{}",
            bed.log()
        )
    });
    eprintln!("the established connection was cut {cut_after:?} after the feed file changed");
    // The feed is looked at every second: the cut follows within it.
    assert!(
        cut_after < Duration::from_secs(5),
        "cut after {cut_after:?}"
    );
    // The log says which feed and entry cut it.
    let until = Instant::now() + Duration::from_secs(5);
    while !bed.log().contains("by intel c2 10.99.0.2") {
        assert!(Instant::now() < until, "the entry named:\n{}", bed.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let view = bed.ctl(&["intel", "feeds"]);
    assert!(view["generation"].as_u64().unwrap() > generation);
    assert_eq!(view["feeds"][0]["entries"], 2);

    // New flows both ways.
    assert!(
        !connects(&a, Duration::from_secs(2)),
        "to the listed address"
    );
    assert!(!pings(&a), "ping to the listed address");
    let back = in_ns(&b, || {
        let addr = "10.99.0.1:9000".parse().unwrap();
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    });
    assert!(!back, "from the listed address");
    let found = bed.ctl(&["intel", "lookup", "10.99.0.2"]);
    assert_eq!(found["match"]["feed"], "c2");
    assert_eq!(found["match"]["action"], "block");
    assert_eq!(found["match"]["severity"], "critical");
    assert!(bed.ctl(&["intel", "lookup", "10.99.0.1"])["match"].is_null());
    // Worker reports are published every second or so.
    let until = Instant::now() + Duration::from_secs(5);
    let intel_drops = loop {
        let stats = bed.ctl(&["stats"]);
        let n: u64 = stats["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| w["drops"]["intel"].as_u64())
            .sum();
        if n > 0 || Instant::now() > until {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(intel_drops > 0, "drops counted as intel");

    // A broken download keeps the last good version.
    std::fs::write(&feed, "<html>502 Bad Gateway</html>\n").unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let view = loop {
        let v = bed.ctl(&["intel", "feeds"]);
        if v["feeds"][0]["origin"] == "last-good" || Instant::now() > until {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(view["feeds"][0]["origin"], "last-good", "{view}");
    assert_eq!(view["feeds"][0]["entries"], 2);
    assert!(!connects(&a, Duration::from_secs(2)), "still blocked");

    // Listed no more: allowed again.
    std::fs::write(&feed, "192.0.2.1\n").unwrap();
    assert!(connects(&a, Duration::from_secs(10)), "unlisted: allowed");

    // Through the API: an entry added to a managed feed with `bulkhead ctl
    // intel add` is in force when the command returns.
    let made = bed.ctl(&["intel", "create", "soc", "--action", "block"]);
    assert_eq!(made["feed"], "soc");
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (cut_tx, cut_rx) = std::sync::mpsc::channel();
    let stream = echo_stream(&a, started_tx, cut_rx);
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let asked = Instant::now();
    cut_tx.send(asked).unwrap();
    let added = bed.ctl(&["intel", "add", "soc", "10.99.0.2", "--category", "c2"]);
    let call = asked.elapsed();
    assert_eq!(added["added"], 1, "{added}");
    let cut_after = stream.join().unwrap();
    // In force at the answer: the echoes stop within the call, give or take
    // the 300 ms the client waits for an echo (bench/e2e.sh --intel times
    // it to the frame).
    assert!(
        cut_after.is_some_and(|d| d < call + Duration::from_millis(500)),
        "cut {cut_after:?} after the call began, which took {call:?}\n{}",
        bed.log()
    );
    let entries = bed.ctl(&["intel", "entries", "soc"]);
    assert_eq!(entries["total"], 1);
    assert_eq!(entries["entries"][0]["category"], "c2");
    assert_eq!(
        bed.ctl(&["intel", "lookup", "10.99.0.2"])["match"]["feed"],
        "soc"
    );
    // A new connection is refused too, and its flow record names the feed
    // and the entry (records are flushed when the appliance stops).
    assert!(
        !connects(&a, Duration::from_secs(2)),
        "listed through the API"
    );
    bed.stop();
    let store = bed.dir.join("records.db");
    let store = store.to_str().unwrap();
    let rows = sh(&[
        EXE, "records", "flows", "--store", store, "--reason", "intel", "--json",
    ]);
    let rows: serde_json::Value = serde_json::from_str(&rows).unwrap();
    let named: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["dst"]["ip"] == "10.99.0.2")
        .filter_map(|r| r["intel"].as_str())
        .collect();
    assert!(named.contains(&"soc 10.99.0.2"), "{rows}");
    bed.start();
    let removed = bed.ctl(&["intel", "remove", "soc", "10.99.0.2"]);
    assert_eq!(removed["removed"], 1);
    assert!(connects(&a, Duration::from_secs(5)), "removed: allowed");
    bed.ctl(&["intel", "delete", "soc"]);
    let _ = std::fs::remove_dir_all(&feeds);
}

#[test]
fn the_answer_for_a_listed_domain_is_blocked_as_it_is_resolved_and_alerts_name_the_resolver() {
    if !dataplane::hostenv::root_with(
        "the DNS-aware blocking test",
        &["ip", "ethtool", "nsenter", "dnsmasq", "getent"],
    ) {
        return;
    }
    let feeds = std::env::temp_dir().join(format!(
        "bulkhead-live-intel-dns-feed-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&feeds).unwrap();
    let feed = feeds.join("c2-domains.txt");
    std::fs::write(&feed, "evil.test\n").unwrap();
    let worm = feeds.join("worm.txt");
    std::fs::write(&worm, "worm.test\n").unwrap();
    // The webhook receiver's port and certificate (written below, in the
    // appliance's namespace, before the appliance starts).
    const HOOK_PORT: u16 = 15443;
    let intel = format!(
        "\n[intel]\nreload_secs = 1\n[[intel.feeds]]\nname = \"c2-domains\"\npath = \"{}\"\n\
         action = \"block\"\n[[intel.feeds]]\nname = \"worm\"\npath = \"{}\"\n\
         action = \"alert\"\nquarantine = true\n\n\
         [alerts]\nsyslog = [\"udp://127.0.0.1:15514\"]\nhostname = \"bh-live\"\n\
         [[alerts.webhook]]\nurl = \"https://127.0.0.1:{HOOK_PORT}/alerts\"\nca = \"{}\"\n\
         token = \"live-token\"\n",
        feed.display(),
        worm.display(),
        feeds.join(format!("webhook-{HOOK_PORT}.pem")).display(),
    );
    let mut bed = Bed::new("inteldns", &policy(), &intel);
    let [a, b, dut] = bed.ns.clone();
    let hook_dir = feeds.clone();
    let hook = on_ns_thread(&dut, move || {
        Receiver::start(&hook_dir, ([127, 0, 0, 1], HOOK_PORT).into(), Vec::new())
    })
    .join()
    .unwrap()
    .expect("the webhook receiver");
    // A syslog receiver beside the appliance (its namespace's loopback).
    let (tx, syslog) = std::sync::mpsc::channel();
    server(
        &dut,
        || {
            let s = std::net::UdpSocket::bind("127.0.0.1:15514").expect("syslog port");
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s
        },
        move |s| {
            let mut buf = [0u8; 9000];
            while let Ok(n) = s.recv(&mut buf) {
                if tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        },
    );
    // host-b is also the "C2" (10.99.0.66) and the DNS server.
    sh(&[
        "ip",
        "-n",
        &b,
        "addr",
        "add",
        "10.99.0.66/24",
        "dev",
        "host-b",
    ]);
    // Every name under .test is answered with the C2's address.
    let _dns = Dnsmasq::start(&b, "10.99.0.2", "test", "10.99.0.66", &a);
    serve(&b, "0.0.0.0:9000");
    bed.start();
    assert!(
        connects_to(&a, "10.99.0.66:9000", Duration::from_secs(10)),
        "not resolved yet: the address itself is not listed"
    );

    let answer = resolve(&a, "c2.evil.test");
    assert!(
        answer.contains("10.99.0.66"),
        "dnsmasq's answer: {answer:?}"
    );
    // The first answer was held back until its address was blocked; the
    // client's retry got it: its very first connection is refused.
    assert!(
        !connects_to(&a, "10.99.0.66:9000", Duration::from_millis(1)),
        "the first connection after the answer is refused:\n{}",
        bed.log()
    );
    assert!(
        !connects_to(&a, "10.99.0.66:9000", Duration::from_secs(2)),
        "and every one after it"
    );
    let held: u64 = bed.ctl(&["stats"])["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["dns_held"].as_u64())
        .sum();
    assert!(held >= 1, "the first answer was held back");
    assert!(
        connects_to(&a, "10.99.0.2:9000", Duration::from_secs(5)),
        "the server's other address is not"
    );

    let until = Instant::now() + Duration::from_secs(10);
    let alerts = loop {
        let v = bed.ctl(&["alerts", "list"]);
        if v.as_array().is_some_and(|l| l.len() >= 2) || Instant::now() > until {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let list = alerts.as_array().expect("a list");
    let dns = list
        .iter()
        .find(|a| a["kind"] == "intel-dns")
        .unwrap_or_else(|| panic!("an intel-dns alert: {alerts:#}"));
    assert_eq!(dns["mac"], MAC_A);
    assert_eq!(dns["workload"], "client");
    assert_eq!(dns["indicator"], "evil.test");
    assert_eq!(dns["evidence"]["dns"]["qname"], "c2.evil.test");
    assert_eq!(dns["evidence"]["blocked"][0], "10.99.0.66");
    let ip = list
        .iter()
        .find(|a| a["kind"] == "intel-ip")
        .unwrap_or_else(|| panic!("an intel-ip alert: {alerts:#}"));
    assert_eq!(ip["mac"], MAC_A);
    assert_eq!(ip["evidence"]["flow"]["dst_ip"], "10.99.0.66");
    assert_eq!(ip["evidence"]["flow"]["verdict"], "deny");

    // The same alert reached syslog: RFC 5424, the alert as JSON.
    let line = syslog
        .recv_timeout(Duration::from_secs(10))
        .expect("a syslog message");
    assert!(line.starts_with("<131>1 "), "local0, err (high): {line}");
    let fields: Vec<&str> = line.splitn(7, ' ').collect();
    assert_eq!(
        &fields[2..6],
        ["bh-live", "bulkhead", "-", "intel-dns"],
        "{line}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&line[line.find("] {").expect("SD then JSON") + 2..]).unwrap();
    assert_eq!(json["mac"], MAC_A);
    assert_eq!(json["indicator"], "evil.test");
    assert_eq!(json["id"], dns["id"]);
    // And the webhook: the alert's JSON POSTed over HTTPS with the token.
    let posted = hook.wait_for(1, Duration::from_secs(10));
    let post = posted
        .iter()
        .find(|r| r.body.contains("\"intel-dns\""))
        .unwrap_or_else(|| panic!("the intel-dns alert posted: {posted:?}"));
    assert_eq!(post.header("authorization"), Some("Bearer live-token"));
    let json: serde_json::Value = serde_json::from_str(&post.body).unwrap();
    assert_eq!(json["id"], dns["id"]);
    assert_eq!(json["mac"], MAC_A);
    assert_eq!(json["appliance"], "bh-live");
    let id = dns["id"].as_i64().unwrap().to_string();
    let acked = bed.ctl(&["alerts", "ack", &id]);
    assert_eq!(acked["state"], "acknowledged");
    let closed = bed.ctl(&["alerts", "close", &id]);
    assert_eq!(closed["state"], "closed");

    // Retro-hunt: the client resolves a name nobody lists yet; once the
    // feed lists it, the records name the client as having resolved it.
    let answer = resolve(&a, "early.test");
    assert!(answer.contains("10.99.0.66"), "{answer:?}");
    // Listed at once: passive DNS, which traceback reads, has the
    // resolution only some seconds later (the record's batch, then the
    // rollups every 5 s), so the first search may miss it; the second,
    // 8 s after, finds it.
    std::fs::write(&feed, "evil.test\nearly.test\n").unwrap();
    let until = Instant::now() + Duration::from_secs(25);
    let retro = loop {
        let v = bed.ctl(&["alerts", "list", "--kind", "intel-retro"]);
        if let Some(a) = v.as_array().and_then(|l| l.first()) {
            break a.clone();
        }
        assert!(
            Instant::now() < until,
            "a retro-hunt alert: {}\n{}",
            bed.ctl(&["intel", "feeds"]),
            bed.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(retro["mac"], MAC_A);
    assert_eq!(retro["indicator"], "early.test");
    assert!(
        retro["summary"]
            .as_str()
            .unwrap()
            .starts_with("client resolved early.test at "),
        "{retro}"
    );
    assert_eq!(bed.ctl(&["intel", "feeds"])["hunt"]["searched"], 1);
    assert_eq!(bed.ctl(&["traceback", "early.test"])["total"], 1);

    // A feed with `quarantine`: resolving its domain quarantines the
    // client, and its established connection to the server is cut.
    echo(&b);
    let (started_tx, started) = std::sync::mpsc::channel();
    let (cut_tx, cut_rx) = std::sync::mpsc::channel();
    let stream = echo_stream(&a, started_tx, cut_rx);
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    let answer = resolve(&a, "x.worm.test");
    cut_tx.send(Instant::now()).unwrap();
    assert!(answer.contains("10.99.0.66"), "an alert feed: {answer:?}");
    let cut_after = stream.join().unwrap();
    assert!(
        cut_after.is_some_and(|d| d < Duration::from_secs(5)),
        "the client's echo is cut once it is quarantined: {cut_after:?}\n{}",
        bed.log()
    );
    let q = bed.ctl(&["quarantine", "list"]);
    let entry = q
        .as_array()
        .and_then(|l| l.iter().find(|e| e["mac"] == MAC_A))
        .unwrap_or_else(|| panic!("the client is quarantined: {q:#}"));
    assert_eq!(entry["actor"], "intel", "{entry}");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("worm"),
        "the feed is the reason: {entry}"
    );
    let _ = std::fs::remove_dir_all(&feeds);
}
