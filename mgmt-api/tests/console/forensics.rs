//! The console's Investigate view over a records store holding an incident
//! (control's `tests_forensics.rs`, on named workloads): web-1 resolves a C2
//! name through a CNAME and connects to the answer, moves laterally to db-1,
//! db-1 on to admin-1; web-1 is denied on laptop-1; web-1 changes address
//! and kiosk-1 takes its old one. laptop-1 resolved the name ten days ago.
//! A traceback finds web-1 only, its blast radius is drawn by hops in time
//! order, a reached workload is quarantined from it. A screenshot is kept
//! as `console-blast-radius.png` in the target directory.

use crate::common::{self, temp_dir, Bed, TempDir};
use crate::webdriver::{self, Driver, Session};
use control::dns::{Answer, AnswerData, DnsResponse};
use control::records::{
    AddressSeen, AddressSource, Batch, Identity, RecordKind, RecordsConfig, RecordsWriter,
    StoredDns, StoredFlow,
};
use dataplane::event::{EndReason, FlowRecord};
use dataplane::flow::FlowState;
use dataplane::policy::{Action, Mode, Reason, Verdict};
use dataplane::wire::MacAddr;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The compromised workload (the example policy's web-1).
const A: &str = "02:00:00:00:01:01";
/// Reached laterally (db-1), then D (admin-1) from it.
const C: &str = "02:00:00:00:02:01";
const D: &str = "02:00:00:00:03:01";
/// Took A's old address: unrelated.
const B: &str = "02:00:00:00:0b:01";
/// Resolved the name ten days ago; denied to A.
const E: &str = "02:00:00:00:0e:01";
const ROUTER: &str = "02:00:00:00:ff:01";
const X: &str = "10.0.0.5";
const Y: &str = "10.0.0.6";
const MINUTE: i64 = 60_000;

fn mac(m: &str) -> MacAddr {
    m.parse().unwrap()
}

fn who(m: &str) -> Arc<Identity> {
    let name = match m {
        A => "web-1",
        B => "kiosk-1",
        C => "db-1",
        D => "admin-1",
        E => "laptop-1",
        _ => return Arc::new(Identity::unknown(mac(m))),
    };
    Arc::new(Identity {
        mac: mac(m),
        name: name.into(),
        labels: [("app".to_string(), name.to_string())].into(),
        groups: vec![],
    })
}

/// An ended TCP flow from `src` to `dst` (MAC, address) on `port`.
fn flow(
    src: (&str, &str),
    dst: (&str, &str),
    port: u16,
    allowed: bool,
    first_ms: i64,
) -> StoredFlow {
    StoredFlow {
        flow: FlowRecord {
            src_mac: mac(src.0),
            dst_mac: mac(dst.0),
            src_ip: src.1.parse().unwrap(),
            dst_ip: dst.1.parse().unwrap(),
            proto: 6,
            src_port: 40000,
            dst_port: port,
            vlan: [0, 0],
            verdict: Verdict {
                action: if allowed { Action::Allow } else { Action::Deny },
                reason: if allowed {
                    Reason::Rule(1)
                } else {
                    Reason::Default
                },
                mode: Mode::Enforce,
                would_deny: false,
            },
            generation: 1,
            state: FlowState::Closed,
            first_seen: 0,
            last_seen: 0,
            packets: [3, 2],
            bytes: [300, 200],
            tcp_flags: 0,
            orig_port: dataplane::io::Port::A,
        },
        first_ms,
        last_ms: first_ms + MINUTE,
        src: who(src.0),
        dst: who(dst.0),
        kind: RecordKind::Ended(EndReason::Idle),
        opens: true,
        intel: None,
    }
}

/// `m` at `ip` resolving the C2 name, answered through a CNAME with `answer`.
fn resolution(m: &str, ip: &str, time_ms: i64, answer: &str) -> StoredDns {
    StoredDns {
        response: DnsResponse {
            time: 0,
            client_mac: mac(m),
            client_ip: ip.parse().unwrap(),
            server_ip: "10.0.0.53".parse().unwrap(),
            vlan: [0, 0],
            qname: "c2.evil.test".into(),
            qtype: 1,
            rcode: 0,
            answers: vec![
                Answer {
                    name: "c2.evil.test".into(),
                    ttl: 60,
                    data: AnswerData::Cname("edge.cdn-evil.test".into()),
                },
                Answer {
                    name: "edge.cdn-evil.test".into(),
                    ttl: 30,
                    data: AnswerData::Addr(answer.parse().unwrap()),
                },
            ],
        },
        time_ms,
        client: who(m),
    }
}

/// Minutes from three hours ago, on a whole second.
struct Clock(i64);

impl Clock {
    fn new() -> Clock {
        let now = i64::try_from(control::time::Timestamp::now().0 / 1_000_000).unwrap();
        Clock((now - 180 * MINUTE) / 1000 * 1000)
    }

    fn at(&self, min: i64) -> i64 {
        self.0 + min * MINUTE
    }
}

/// "HH:MM:SS" (UTC) of `ms`, as the drawing labels edges.
fn hms(ms: i64) -> String {
    let s = (ms / 1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn incident(t: &Clock) -> Batch {
    Batch {
        dns: vec![
            resolution(E, "10.0.0.9", t.at(-10 * 1440), "198.51.100.7"),
            resolution(A, X, t.at(10), "203.0.113.9"),
            resolution(A, Y, t.at(100), "203.0.113.10"),
        ],
        flows: vec![
            // Before the compromise: counts neither for the name nor the walk.
            flow((C, "10.0.0.7"), (D, "10.0.0.8"), 22, true, t.at(0)),
            flow((D, "10.0.0.8"), (ROUTER, "203.0.113.9"), 443, true, t.at(5)),
            flow((A, X), (ROUTER, "203.0.113.9"), 443, true, t.at(11)),
            flow((A, X), (C, "10.0.0.7"), 445, true, t.at(20)),
            flow((A, X), (E, "10.0.0.9"), 3389, false, t.at(22)),
            flow((C, "10.0.0.7"), (D, "10.0.0.8"), 3389, true, t.at(30)),
            flow((A, Y), (ROUTER, "203.0.113.10"), 443, true, t.at(101)),
            flow((B, X), (D, "10.0.0.8"), 80, true, t.at(120)),
        ],
        addresses: vec![AddressSeen {
            mac: mac(B),
            ip: X.parse().unwrap(),
            time_ms: t.at(119),
            source: AddressSource::Arp,
        }],
    }
}

fn store(t: &Clock) -> (TempDir, PathBuf) {
    let dir = temp_dir("console-forensics");
    let path = dir.0.join("records.db");
    let batch = incident(t);
    let (flows, dns) = (batch.flows.len() as u64, batch.dns.len() as u64);
    // No retention by age: laptop-1's resolution is ten days old.
    let w = RecordsWriter::start(&path, RecordsConfig::for_import()).unwrap();
    assert!(w.try_submit_batch(batch).is_ok());
    let c = w.counters();
    let until = Instant::now() + Duration::from_secs(10);
    while c.written.load(Ordering::Relaxed) < flows || c.dns_written.load(Ordering::Relaxed) < dns {
        assert!(Instant::now() < until, "records written");
        std::thread::sleep(Duration::from_millis(10));
    }
    w.finish();
    (dir, path)
}

/// The MACs of the traceback's workloads once it shows `n`.
fn traced(s: &Session, n: usize) -> Vec<Value> {
    let script = "const b = document.getElementById('traceback');
        if (b.dataset.state !== 'ready') { return null; }
        return Array.from(b.querySelectorAll('.traced')).map(d => d.dataset.mac);";
    let v = s.wait_script(script, |v| v.as_array().is_some_and(|a| a.len() == n));
    v.as_array().unwrap().clone()
}

/// The blast radius once drawn from `origin` with `nodes` and `edges`: its
/// nodes as [label, kind, depth, x, y], left to right then top to bottom.
fn drawn(s: &Session, origin: &str, nodes: u64, edges: u64) -> Vec<Value> {
    let script = "const b = document.getElementById('blast');
        if (b.dataset.state !== 'ready' || !blast.cy) { return null; }
        return [blast.data.origin, blast.cy.nodes().length, blast.cy.edges().length,
                Number(b.dataset.nodes), Number(b.dataset.edges)];";
    s.wait_script(script, |v| {
        *v == json!([origin, nodes, edges, nodes, edges])
    });
    let v = s.execute(
        "return blast.cy.nodes().map(n => [n.data('label'), n.data('kind'), n.data('depth'),
             n.position('x'), n.position('y')])
           .sort((a, b) => a[3] - b[3] || a[4] - b[4]);",
        json!([]),
    );
    v.as_array().unwrap().clone()
}

/// Where a screenshot goes: the target directory the test binary is in
/// (target/debug/deps/console-HASH).
fn artefact(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().join(name)
}

fn search(s: &Session, target: &str) {
    s.click("button.tab[data-view='investigate']");
    s.type_into("#tb-target", target);
    s.click("#tb-search");
}

#[test]
fn console_traces_a_c2_name_draws_the_blast_radius_and_quarantines_from_it() {
    if !webdriver::browser_present() {
        return;
    }
    let t = Clock::new();
    let (_records, path) = store(&t);
    let bed = Bed::with(|cfg| cfg.records = Some(path.clone()));
    let profile = common::temp_dir("chromium-forensics");
    let driver = Driver::start();
    let s = Session::new(&driver, &profile.0);
    s.goto(&bed.url("/"));
    s.execute(
        "window.cspRefused = [];
         document.addEventListener('securitypolicyviolation',
             e => window.cspRefused.push(e.violatedDirective + ' ' + e.blockedURI));",
        json!([]),
    );

    // A viewer may trace, but quarantining says the API's 403.
    s.log_in(&bed.viewer);
    search(&s, "c2.evil.test");
    assert_eq!(traced(&s, 1), vec![json!(A)]);
    s.click(&format!(".traced[data-mac='{A}'] .quarantine-button"));
    s.click("#confirm-yes");
    let msg = s.wait_text("#message", |t| t.contains("needs operator"));
    assert!(msg.contains("vera"), "{msg}");
    s.click("#logout");

    // An operator: the last 7 days hold web-1 only; not kiosk-1, which took
    // its old address, nor laptop-1, which asked ten days ago.
    s.log_in(&bed.operator);
    search(&s, "c2.evil.test");
    assert_eq!(traced(&s, 1), vec![json!(A)]);
    let row = format!(".traced[data-mac='{A}']");
    let text = s.text(&row);
    for want in [
        "web-1",
        "app=web-1",
        "10.0.0.5 (",
        "10.0.0.6 (",
        "c2.evil.test \u{2192} edge.cdn-evil.test (CNAME, 60 s)",
        "edge.cdn-evil.test \u{2192} 203.0.113.9 (30 s)",
        "203.0.113.10",
        "tcp/443",
    ] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }
    assert!(!text.contains(B) && !text.contains(E), "{text}");
    let cells = s.execute(
        "const r = document.querySelector(arguments[0]);
         return [Array.from(r.querySelectorAll('tr.resolution')).map(t => t.dataset.clientIp),
                 Array.from(r.querySelectorAll('tr.contact')).map(t => t.dataset.ip)];",
        json!([row]),
    );
    assert_eq!(
        cells,
        json!([[X, Y], ["203.0.113.9", "203.0.113.10"]]),
        "resolutions and contacts in time order"
    );
    s.wait_text("#tb-summary", |t| t.contains("203.0.113.9, 203.0.113.10"));
    let png = s.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    std::fs::write(artefact("console-traceback.png"), &png).unwrap();
    // The last 30 days: laptop-1 too, first.
    s.click("#tb-window option[value='30d']");
    assert_eq!(traced(&s, 2), vec![json!(E), json!(A)]);
    s.click("#tb-window option[value='7d']");
    traced(&s, 1);

    // web-1's blast radius from its first resolution: hops left to right,
    // first contact top to bottom.
    s.click(&format!("{row} .blast-button"));
    let nodes = drawn(&s, A, 5, 4);
    let order: Vec<(&str, &str, u64)> = nodes
        .iter()
        .map(|n| {
            (
                n[0].as_str().unwrap(),
                n[1].as_str().unwrap(),
                n[2].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        vec![
            ("web-1", "origin", 0),
            ("203.0.113.9", "external", 1),
            ("db-1", "workload", 1),
            ("203.0.113.10", "external", 1),
            ("admin-1", "workload", 2),
        ],
        "{nodes:?}"
    );
    let edges = s.execute(
        "return blast.cy.edges().map(e => e.source().data('label') + ' > ' +
             e.target().data('label') + ': ' + e.data('label')).sort();",
        json!([]),
    );
    assert_eq!(
        edges,
        json!([
            format!("db-1 > admin-1: {} tcp/3389", hms(t.at(30))),
            format!("web-1 > 203.0.113.10: {} tcp/443", hms(t.at(101))),
            format!("web-1 > 203.0.113.9: {} tcp/443", hms(t.at(11))),
            format!("web-1 > db-1: {} tcp/445", hms(t.at(20))),
        ])
    );
    let shapes = s.execute(
        "return blast.cy.nodes().map(n => n.data('kind') + ':' + n.style('shape')).sort();",
        json!([]),
    );
    assert_eq!(shapes[0], "external:diamond");
    let depths = s.execute(
        "return Array.from(document.getElementById('blast-reached').rows).map(r => r.dataset.key + '@' + r.dataset.depth);",
        json!([]),
    );
    assert_eq!(
        depths,
        json!([
            "203.0.113.9@1",
            format!("{C}@1"),
            "203.0.113.10@1",
            format!("{D}@2")
        ])
    );
    let attempts = s.text("#blast-attempts");
    assert!(
        attempts.contains("10.0.0.9 (02:00:00:00:0e:01)") && attempts.contains("tcp/3389"),
        "{attempts}"
    );
    s.wait_text("#blast-summary", |t| {
        t.contains("4 reached, 1 denied attempt,")
    });

    let png = s.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "a near-empty screenshot: {} bytes",
        png.len()
    );
    let shot = artefact("console-blast-radius.png");
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot: {} ({} bytes)", shot.display(), png.len());

    // One click on db-1 in it, one confirmation with the reason filled in.
    s.click(&format!(
        "#blast-reached tr[data-mac='{C}'] .quarantine-button"
    ));
    let reason = s.execute(
        "return document.getElementById('confirm-reason').value;",
        json!([]),
    );
    assert_eq!(reason, json!(format!("blast radius of {A}")));
    s.click("#confirm-yes");
    s.wait_text("#message", |t| t.contains("quarantined"));
    s.wait_text(
        &format!("#blast-reached tr[data-mac='{C}'] td.action"),
        |t| t == "quarantined",
    );
    let list = common::json(bed.get("/api/v1/quarantine", &bed.viewer), 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["mac"], C);
    assert_eq!(list[0]["actor"], "api:otto");
    assert_eq!(list[0]["reason"], json!(format!("blast radius of {A}")));

    // From a workload's detail panel: db-1 reached admin-1.
    s.click("button.tab[data-view='workloads']");
    s.click(&format!("tr[data-mac='{C}'] a.workload-link"));
    s.wait_text("#detail-title", |t| t.contains("db-1 (quarantined)"));
    s.click("#blast-button");
    let nodes = drawn(&s, C, 2, 1);
    assert_eq!(nodes[0][0], "db-1");
    assert_eq!(nodes[1][0], "admin-1");

    // A target the API refuses: its 400, with the field.
    search(&s, "evil test");
    let msg = s.wait_text("#message", |t| t.contains("[target]"));
    assert!(msg.contains("no domain, address or network"), "{msg}");
    s.wait_script(
        "return document.getElementById('traceback').dataset.state;",
        |v| v == "error",
    );

    let refused = s.execute("return window.cspRefused;", json!([]));
    assert_eq!(refused, json!([]), "the CSP refused something");
}
