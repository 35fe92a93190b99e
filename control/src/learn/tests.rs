//! The dry run over a real records store written by the writer: what a
//! draft breaks and opens, by group pair and service, judged by the live
//! policy or by the verdicts recorded, from raw records and rollups alike.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]

use super::*;
use crate::records::{
    Identity, ObservedTraffic, RecordKind, RecordsConfig, RecordsReader, RecordsWriter, StoredFlow,
};
use crate::testutil::TempDir;
use dataplane::event::{EndReason, FlowRecord};
use dataplane::flow::FlowState;
use dataplane::policy::{Mode, Verdict as Seen};
use dataplane::wire::MacAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOUR_MS: i64 = 3_600_000;

const LIVE: &str = r#"
default_mode: learn
workloads:
  - { mac: "02:00:00:00:01:01", name: web-1, labels: { app: web } }
  - { mac: "02:00:00:00:01:02", name: web-2, labels: { app: web } }
  - { mac: "02:00:00:00:02:01", name: db-1, labels: { app: db } }
  - { mac: "02:00:00:00:03:01", name: stray }
groups:
  - { name: web, mode: learn, match: { app: web } }
  - { name: db, mode: learn, match: { app: db } }
rules:
  - { id: 10, src: [web], dst: [db], services: [postgresql], action: allow }
  - { id: 20, src: [any], dst: [any], services: [rdp], action: deny }
"#;

fn ident(mac: MacAddr, name: &str, groups: &[&str]) -> Arc<Identity> {
    Arc::new(Identity {
        mac,
        name: name.into(),
        labels: Default::default(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    })
}

const WEB1: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const WEB2: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
const DB1: MacAddr = MacAddr([2, 0, 0, 0, 2, 1]);
const STRAY: MacAddr = MacAddr([2, 0, 0, 0, 3, 1]);

/// A record of `src` -> `dst` over `proto`/`port` ending at `last_ms`, with
/// the verdict learn mode gave it (allowed; would-deny for a deny rule).
fn flow(
    src: (MacAddr, &str),
    dst: (MacAddr, &str),
    proto: u8,
    port: u16,
    last_ms: i64,
) -> StoredFlow {
    let group = |name: &str| -> Vec<&str> {
        match name {
            "web-1" | "web-2" => vec!["web"],
            "db-1" => vec!["db"],
            _ => vec![],
        }
    };
    StoredFlow {
        flow: FlowRecord {
            src_mac: src.0,
            dst_mac: dst.0,
            src_ip: "10.0.0.1".parse().unwrap(),
            dst_ip: "10.0.0.2".parse().unwrap(),
            proto,
            src_port: 40000,
            dst_port: port,
            vlan: [0, 0],
            verdict: Seen {
                action: dataplane::policy::Action::Allow,
                reason: dataplane::policy::Reason::Default,
                mode: Mode::Learn,
                would_deny: port == 3389,
            },
            generation: 1,
            state: FlowState::Established,
            first_seen: 0,
            last_seen: 0,
            packets: [3, 2],
            bytes: [300, 200],
            tcp_flags: 0,
            orig_port: dataplane::io::Port::A,
        },
        opens: true,
        first_ms: last_ms - 1000,
        last_ms,
        src: ident(src.0, src.1, &group(src.1)),
        dst: ident(dst.0, dst.1, &group(dst.1)),
        kind: RecordKind::Ended(EndReason::Idle),
        intel: None,
    }
}

fn write(path: &std::path::Path, records: Vec<StoredFlow>) {
    let n = records.len() as u64;
    let w = RecordsWriter::start(path, RecordsConfig::default()).unwrap();
    let mut batch = records;
    while let Err(back) = w.try_submit(batch) {
        batch = back;
        std::thread::sleep(Duration::from_millis(1));
    }
    let c = w.counters();
    let until = Instant::now() + Duration::from_secs(20);
    while c.written.load(Ordering::Relaxed) < n && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(c.written.load(Ordering::Relaxed), n);
    w.finish();
}

/// Five hours of learn-mode traffic: web -> db over PostgreSQL (the rule)
/// and HTTPS (no rule), an RDP attempt web -> db (the deny rule), and a
/// workload in no group reaching the database over SSH.
fn store(dir: &TempDir) -> (std::path::PathBuf, i64, i64) {
    let path = dir.0.join("records.db");
    let now = crate::records::now_ms();
    let start = (now / HOUR_MS - 5) * HOUR_MS;
    let mut records = Vec::new();
    for i in 0..200 {
        let t = start + 1_000 + i * (5 * HOUR_MS / 200);
        let web = if i % 2 == 0 {
            (WEB1, "web-1")
        } else {
            (WEB2, "web-2")
        };
        records.push(flow(web, (DB1, "db-1"), 6, 5432, t));
        if i % 4 == 0 {
            let web = if i % 8 == 0 {
                (WEB1, "web-1")
            } else {
                (WEB2, "web-2")
            };
            records.push(flow(web, (DB1, "db-1"), 6, 443, t));
        }
        if i % 50 == 0 {
            records.push(flow((WEB1, "web-1"), (DB1, "db-1"), 6, 3389, t));
            records.push(flow((STRAY, "stray"), (DB1, "db-1"), 6, 22, t));
        }
    }
    write(&path, records);
    (path, start + 500, start + 5 * HOUR_MS)
}

fn model(yaml: &str) -> crate::Model {
    crate::Model::from_yaml_str(yaml).unwrap()
}

fn enforce(yaml: &str) -> String {
    yaml.replace("mode: learn", "mode: enforce")
}

#[test]
fn enforcing_the_learned_groups_breaks_what_no_rule_allows_by_pair_and_service() {
    let dir = TempDir::new("dry-run");
    let (path, since, until) = store(&dir);
    let reader = RecordsReader::open(&path).unwrap();
    let traffic = reader.observed(since, until).unwrap();
    // Whole hours from the rollups, the ragged end raw: every flow counted once.
    assert_eq!(
        traffic.keys.iter().map(|o| o.flows).sum::<u64>(),
        200 + 50 + 4 + 4
    );

    let live = Judge::new(&model(LIVE)).unwrap();
    let draft = Judge::new(&model(&enforce(LIVE))).unwrap();
    let run = dry_run(
        &traffic,
        Today::Policy(&live),
        "live policy",
        &draft,
        (since, until),
    );
    assert_eq!(run.flows, 258);
    // PostgreSQL is allowed by rule 10 either way.
    assert_eq!(run.unchanged_flows, 200);
    assert!(run.opens.is_empty() && !run.truncated);

    // HTTPS web -> db: learn's default today, enforce's default tomorrow.
    let https = run
        .breaks
        .iter()
        .find(|c| c.port == 443)
        .expect("https breaks");
    assert_eq!(
        (https.src_groups.as_slice(), https.dst_groups.as_slice()),
        (&["web".to_string()][..], &["db".to_string()][..])
    );
    assert_eq!(https.service.as_deref(), Some("https"));
    assert_eq!((https.flows, https.pairs), (50, 2));
    assert_eq!(https.today.verdict, Verdict::Allow);
    assert_eq!(
        (https.draft.verdict, https.draft.reason.as_str()),
        (Verdict::Deny, "default")
    );
    assert_eq!(https.examples.len(), 2);
    assert_eq!(https.examples[0].dst.name, "db-1");
    assert_eq!(https.examples[0].flows, 25);

    // RDP: flagged by the deny rule today (learn), denied by it tomorrow.
    let rdp = run
        .breaks
        .iter()
        .find(|c| c.port == 3389)
        .expect("rdp breaks");
    assert_eq!(rdp.today.verdict, Verdict::WouldDeny);
    assert_eq!(
        (rdp.draft.reason.as_str(), rdp.draft.rule),
        ("rule", Some(20))
    );
    assert_eq!(rdp.service.as_deref(), Some("rdp"));

    // SSH from a workload in no group: an empty source group list, the MAC in the example.
    let ssh = run
        .breaks
        .iter()
        .find(|c| c.port == 22)
        .expect("ssh breaks");
    assert!(ssh.src_groups.is_empty());
    assert_eq!(ssh.examples[0].src.mac, STRAY.to_string());
    assert_eq!(run.breaks.len(), 3);
    // The most flows first.
    assert_eq!(run.breaks[0].port, 443);
}

#[test]
fn a_draft_with_the_rules_added_breaks_nothing_and_opens_what_was_denied() {
    let dir = TempDir::new("dry-run-opens");
    let (path, since, until) = store(&dir);
    let traffic = RecordsReader::open(&path)
        .unwrap()
        .observed(since, until)
        .unwrap();
    let with_https = enforce(LIVE).replace(
        "  - { id: 20,",
        "  - { id: 15, src: [web], dst: [db], services: [https], action: allow }\n  - { id: 20,",
    );
    let live = Judge::new(&model(&with_https)).unwrap();
    let draft = Judge::new(&model(&with_https)).unwrap();
    let same = dry_run(
        &traffic,
        Today::Policy(&live),
        "live policy",
        &draft,
        (since, until),
    );
    assert!(same.breaks.is_empty() && same.opens.is_empty() && same.flagged.is_empty());
    assert_eq!(same.unchanged_flows, same.flows);

    // Against the recorded verdicts (all let through by learn mode), an
    // enforcing draft with the HTTPS rule breaks only RDP and the stray's SSH.
    let run = dry_run(
        &traffic,
        Today::Recorded,
        "recorded verdicts",
        &draft,
        (since, until),
    );
    let mut broken: Vec<_> = run.breaks.iter().map(|c| (c.port, c.flows)).collect();
    broken.sort();
    assert_eq!(broken, vec![(22, 4), (3389, 4)]);
    assert_eq!(run.breaks[0].today.reason, "recorded");

    // An enforcing live policy without it, a draft with it: HTTPS opens.
    let strict = Judge::new(&model(&enforce(LIVE))).unwrap();
    let run = dry_run(
        &traffic,
        Today::Policy(&strict),
        "live policy",
        &draft,
        (since, until),
    );
    assert!(run.breaks.is_empty());
    assert_eq!(run.opens.len(), 1);
    assert_eq!(
        (
            run.opens[0].port,
            run.opens[0].flows,
            run.opens[0].draft.rule
        ),
        (443, 50, Some(15))
    );
}

#[test]
fn an_audit_draft_flags_instead_of_breaking() {
    let dir = TempDir::new("dry-run-audit");
    let (path, since, until) = store(&dir);
    let traffic = RecordsReader::open(&path)
        .unwrap()
        .observed(since, until)
        .unwrap();
    let live = Judge::new(&model(LIVE)).unwrap();
    let draft = Judge::new(&model(&LIVE.replace("mode: learn", "mode: audit"))).unwrap();
    let run = dry_run(
        &traffic,
        Today::Policy(&live),
        "live policy",
        &draft,
        (since, until),
    );
    assert!(run.breaks.is_empty());
    let mut flagged: Vec<_> = run.flagged.iter().map(|c| (c.port, c.flows)).collect();
    flagged.sort();
    // RDP was flagged already (learn's deny rule): unchanged.
    assert_eq!(flagged, vec![(22, 4), (443, 50)]);
}

#[test]
fn the_quarantine_list_is_not_the_policy_judged() {
    let quarantined = format!(
        "{LIVE}quarantine:\n  - {{ mac: \"02:00:00:00:01:01\", reason: test, actor: soc }}\n"
    );
    let judge = Judge::new(&model(&quarantined)).unwrap();
    let o = crate::records::Observed {
        src: crate::records::ObservedEnd {
            mac: WEB1,
            name: "web-1".into(),
            ip: None,
        },
        dst: crate::records::ObservedEnd {
            mac: DB1,
            name: "db-1".into(),
            ip: None,
        },
        proto: 6,
        port: 5432,
        allowed: true,
        would_deny: false,
        flows: 1,
        packets: 1,
        bytes: 1,
        first_ms: 0,
        last_ms: 0,
    };
    let d = judge.decide(&o);
    assert_eq!(
        (d.verdict, d.reason.as_str(), d.rule),
        (Verdict::Allow, "rule", Some(10))
    );
}

#[test]
fn proposals_cover_what_no_rule_allows_and_report_ungrouped_ends_as_gaps() {
    let dir = TempDir::new("propose");
    let (path, since, until) = store(&dir);
    let traffic = RecordsReader::open(&path)
        .unwrap()
        .observed(since, until)
        .unwrap();
    let live = Judge::new(&model(LIVE)).unwrap();
    let p = propose(&traffic, &live, &[], (since, until));
    assert_eq!(p.flows, 258);
    assert_eq!((p.allowed_by_rule_flows, p.denied_by_rule_flows), (200, 4));
    assert_eq!((p.proposed_flows, p.gap_flows), (50, 4));
    assert_eq!(p.proposals.len(), 1, "{p:?}");
    let web_db = &p.proposals[0];
    assert_eq!((web_db.src.as_str(), web_db.dst.as_str()), ("web", "db"));
    assert_eq!(
        web_db.services,
        vec![crate::model::ServiceRef::Name("https".into())]
    );
    assert_eq!(web_db.seen, vec!["tcp/443".to_string()]);
    assert_eq!((web_db.flows, web_db.pairs), (50, 2));
    // The stray workload: a gap, not an allow-any rule.
    assert_eq!(p.gaps.len(), 1);
    assert_eq!(p.gaps[0].end.mac, STRAY.to_string());
    assert_eq!((p.gaps[0].flows, p.gaps[0].peers), (4, 1));
    // The same window and policy give the same ids.
    let again = propose(&traffic, &live, &[], (since, until));
    assert_eq!(again.proposals[0].id, web_db.id);
    // A scope of other groups proposes nothing.
    let none = propose(&traffic, &live, &["dns".to_string()], (since, until));
    assert!(none.proposals.is_empty() && none.gaps.is_empty());

    // Accepted into the policy and enforced: the observed traffic passes
    // (but the deny rule's RDP and the ungrouped SSH), a new service does not.
    let mut m = model(&enforce(LIVE));
    let after = m.rules.iter().map(|r| r.id).max().unwrap_or(0);
    m.rules.extend(rules_of(&[web_db], after, "in a test"));
    assert_eq!(m.rules.last().map(|r| r.id), Some(30));
    let enforced = Judge::new(&m).unwrap();
    let run = dry_run(
        &traffic,
        Today::Recorded,
        "recorded verdicts",
        &enforced,
        (since, until),
    );
    let mut broken: Vec<_> = run.breaks.iter().map(|c| c.port).collect();
    broken.sort();
    assert_eq!(broken, vec![22, 3389]);
    let mut unseen = traffic.keys.iter().find(|o| o.port == 443).unwrap().clone();
    unseen.port = 8443;
    assert_eq!(enforced.decide(&unseen).verdict, Verdict::Deny);
}

#[test]
fn the_fewest_group_pairs_are_proposed_the_more_specific_on_a_tie() {
    let yaml = r#"
default_mode: learn
workloads:
  - { mac: "02:00:00:00:01:01", name: web-1, labels: { app: web, env: prod } }
  - { mac: "02:00:00:00:01:02", name: web-2, labels: { app: web, env: staging } }
  - { mac: "02:00:00:00:02:01", name: db-1, labels: { app: db, env: prod } }
groups:
  - { name: prod, match: { env: prod } }
  - { name: staging, match: { env: staging } }
  - { name: web, match: { app: web } }
  - { name: db, match: { app: db } }
  - { name: web-prod, match: { app: web, env: prod } }
"#;
    let judge = Judge::new(&model(yaml)).unwrap();
    let key = |src: MacAddr, proto: u8, port: u16, flows: u64| crate::records::Observed {
        src: crate::records::ObservedEnd {
            mac: src,
            name: "w".into(),
            ip: None,
        },
        dst: crate::records::ObservedEnd {
            mac: DB1,
            name: "db-1".into(),
            ip: None,
        },
        proto,
        port,
        allowed: true,
        would_deny: false,
        flows,
        packets: flows,
        bytes: flows,
        first_ms: 1_000,
        last_ms: 2_000,
    };
    let mut keys = vec![
        key(WEB1, 6, 443, 5),
        key(WEB2, 6, 443, 5),
        key(WEB1, 1, 0, 1),
    ];
    // Twenty high ports from web-1 and three contiguous ones.
    keys.extend((0..20).map(|i| key(WEB1, 6, 30_000 + i * 7, 1)));
    keys.extend((8000..8003).map(|p| key(WEB1, 17, p, 1)));
    let traffic = ObservedTraffic {
        keys,
        truncated: false,
        rows: 0,
    };
    let p = propose(&traffic, &judge, &[], (0, 3_000));
    // web -> db covers both sources (prod -> db only one); web-1's own
    // traffic then needs no second rule.
    assert_eq!(p.proposals.len(), 1, "{p:#?}");
    let r = &p.proposals[0];
    assert_eq!((r.src.as_str(), r.dst.as_str()), ("web", "db"));
    let services = serde_json::to_value(&r.services).unwrap();
    assert_eq!(
        services,
        serde_json::json!(["https", "icmp", {"proto": "tcp", "ports": ["30000-30133"]}, {"proto": "udp", "ports": ["8000-8002"]}])
    );
    // Only web-1 (in web-prod, smaller than web): the more specific pair.
    let p = propose(
        &ObservedTraffic {
            keys: vec![key(WEB1, 6, 443, 5)],
            truncated: false,
            rows: 0,
        },
        &judge,
        &[],
        (0, 3_000),
    );
    assert_eq!(
        (p.proposals[0].src.as_str(), p.proposals[0].dst.as_str()),
        ("web-prod", "db")
    );
}
