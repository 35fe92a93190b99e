//! The control thread: publication of commits, rollbacks and quarantines, the
//! draft, learning from events, rule hits, restart, and the dataplane
//! surviving the thread's death.
//!
//! Compiled only with `cfg(test)`: its `unwrap`/`expect` fail a test on a
//! fixture the test wrote itself; none touches a packet, a file or a request
//! of the running appliance.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]

use super::{Bootstrap, ControlError, Engine, EngineConfig};
use crate::model::Model;
use crate::store::{QuarantineSource, Store, Version};
use crate::testutil::TempDir;
use dataplane::event::{ArpSeen, Event, FlowRecord, LeaseSeen};
use dataplane::flow::FlowState;
use dataplane::io::mem::MemIo;
use dataplane::io::Port;
use dataplane::policy::{parse_mac, Action, FlowQuery, Mode, Reason, SnapshotCell, Verdict};
use dataplane::wire::MacAddr;
use dataplane::worker::{Worker, WorkerConfig};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WEB: &str = "02:00:00:00:01:01";
const DB: &str = "02:00:00:00:02:01";
const ADMIN: &str = "02:00:00:00:03:01";

const POLICY: &str = r#"
workloads:
  - { mac: "02:00:00:00:01:01", name: web-1, labels: { app: web }, ips: [10.0.0.11] }
  - { mac: "02:00:00:00:02:01", name: db-1, labels: { app: db }, ips: [10.0.0.21] }
  - { mac: "02:00:00:00:03:01", name: admin, labels: { role: admin }, ips: [10.0.3.5] }
groups:
  - { name: web, match: { app: web } }
  - { name: db, match: { app: db } }
  - { name: admin, match: { role: admin } }
rules:
  - { id: 10, src: [web], dst: [db], services: [postgresql], action: allow }
  - { id: 20, src: [admin], dst: [any], services: [ssh], action: allow }
  - { id: 30, src: [any], dst: [any], services: [smb], action: deny }
management:
  - { cidr: 10.0.3.0/24, workloads: [admin], services: [ssh] }
assignment:
  rules:
    - { mac_prefix: "02:00:00:00:01:*", labels: { app: web } }
"#;

fn mac(s: &str) -> MacAddr {
    parse_mac(s).expect("test MAC")
}

fn model(yaml: &str) -> Model {
    Model::from_yaml_str(yaml).expect("test model")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

struct Bed {
    _dir: TempDir,
    db: std::path::PathBuf,
    cell: Arc<SnapshotCell>,
    engine: Engine,
    events: crossbeam_channel::Sender<Event>,
}

fn start_with(dir: TempDir, cfg: EngineConfig) -> Bed {
    start_policy(dir, cfg, POLICY)
}

fn start_policy(dir: TempDir, cfg: EngineConfig, policy: &str) -> Bed {
    let db = dir.db();
    let store = Store::open(&db).expect("open store");
    let cell = Arc::new(SnapshotCell::default());
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let engine = Engine::start(
        store,
        Bootstrap {
            model: model(policy),
            source: "the test policy".into(),
        },
        cell.clone(),
        Some(rx),
        None,
        cfg,
    )
    .expect("engine starts");
    Bed {
        _dir: dir,
        db,
        cell,
        engine,
        events: tx,
    }
}

fn start(name: &str) -> Bed {
    start_with(TempDir::new(name), EngineConfig::default())
}

impl Bed {
    fn verdict(&self, src: (&str, &str), dst: (&str, &str), dst_port: u16) -> Verdict {
        self.cell.load().classify(&FlowQuery {
            src_mac: mac(src.0),
            dst_mac: mac(dst.0),
            src_ip: ip(src.1),
            dst_ip: ip(dst.1),
            proto: 6,
            dst_port,
        })
    }

    fn web_to_db(&self) -> Action {
        self.verdict((WEB, "10.0.0.11"), (DB, "10.0.0.21"), 5432)
            .action
    }

    /// Stops the thread; the directory of the database lives on in the answer.
    fn stop(self) -> (TempDir, std::path::PathBuf) {
        self.engine.handle.stop();
        let _ = self.engine.thread.join();
        (self._dir, self.db)
    }
}

/// Waits until `f` holds, for at most two seconds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(2);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn bootstrap_commits_the_model_as_version_one_and_publishes_it() {
    let bed = start("bootstrap");
    let h = &bed.engine.handle;
    let versions = h.versions().expect("versions");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].actor, "bootstrap");
    assert!(versions[0].live);
    assert_eq!(bed.cell.generation(), 1);
    assert_eq!(h.view().generation, 1);
    assert_eq!(bed.web_to_db(), Action::Allow);
    assert!(h.status().running);
}

#[test]
fn quarantine_by_mac_publishes_at_once_keeps_management_and_release_restores() {
    let bed = start("quarantine");
    let h = &bed.engine.handle;
    let before = bed.cell.generation();
    let q = h
        .quarantine(mac(WEB), Some("EDR alert".into()), "alice")
        .expect("quarantine");
    // The snapshot is published before the call returns.
    assert_eq!(bed.cell.generation(), q.generation);
    assert!(q.generation > before);
    assert!(!q.already && !q.unknown_workload);
    assert_eq!(q.mac, WEB);
    let v = bed.verdict((WEB, "10.0.0.11"), (DB, "10.0.0.21"), 5432);
    assert_eq!((v.action, v.reason), (Action::Deny, Reason::Quarantine));
    // Inbound too.
    let v = bed.verdict((DB, "10.0.0.21"), (WEB, "10.0.0.11"), 80);
    assert_eq!(v.action, Action::Deny);
    // The management exception still reaches it.
    let v = bed.verdict((ADMIN, "10.0.3.5"), (WEB, "10.0.0.11"), 22);
    assert_eq!((v.action, v.reason), (Action::Allow, Reason::Management));

    // Idempotent: nothing new published.
    let again = h.quarantine(mac(WEB), None, "bob").expect("again");
    assert!(again.already);
    assert_eq!(again.generation, q.generation);
    assert_eq!(h.quarantines().expect("list").len(), 1);

    let r = h
        .release(mac(WEB), Some("cleaned".into()), "alice")
        .expect("release");
    assert!(r.released);
    assert_eq!(bed.cell.generation(), r.generation);
    assert_eq!(bed.web_to_db(), Action::Allow);
    assert!(!h.release(mac(WEB), None, "alice").expect("again").released);
    let history = h.quarantine_history(Some(mac(WEB))).expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].actor, "alice");
    assert_eq!(history[0].reason.as_deref(), Some("EDR alert"));
}

#[test]
fn a_mac_never_seen_may_be_quarantined_and_it_says_so() {
    let bed = start("preemptive");
    let q = bed
        .engine
        .handle
        .quarantine(mac("02:00:00:00:09:09"), None, "alice")
        .expect("quarantine");
    assert!(q.unknown_workload);
    assert!(bed.cell.load().is_quarantined(mac("02:00:00:00:09:09")));
}

#[test]
fn quarantines_survive_a_restart_and_a_policy_commit_or_rollback() {
    let bed = start("restart");
    let h = bed.engine.handle.clone();
    h.quarantine(mac(WEB), Some("incident".into()), "alice")
        .expect("quarantine");
    // A new version and a rollback do not release it.
    let mut m = model(POLICY);
    m.rules.retain(|r| r.id != 30);
    h.replace(m, "bob", "drop rule 30").expect("replace");
    h.rollback(Version(1), "bob").expect("rollback");
    assert!(bed.cell.load().is_quarantined(mac(WEB)));
    let (_dir, db) = bed.stop();

    let store = Store::open(&db).expect("reopen");
    let cell = Arc::new(SnapshotCell::default());
    let engine = Engine::start(
        store,
        Bootstrap {
            model: Model::default(),
            source: "nothing".into(),
        },
        cell.clone(),
        None,
        None,
        EngineConfig::default(),
    )
    .expect("restart");
    assert!(
        engine.origin.contains("live version 3"),
        "{}",
        engine.origin
    );
    assert!(cell.load().is_quarantined(mac(WEB)));
    let active = engine.handle.quarantines().expect("active");
    assert_eq!(active[0].source, QuarantineSource::Command);
    assert_eq!(engine.handle.versions().expect("versions").len(), 3);
    engine.handle.stop();
    let _ = engine.thread.join();
}

#[test]
fn a_quarantine_listed_in_the_policy_ends_when_a_new_version_drops_it() {
    let bed = start("policy-quarantine");
    let h = &bed.engine.handle;
    let mut m = model(POLICY);
    m.quarantine.push(crate::model::Quarantine {
        mac: DB.into(),
        reason: Some("listed".into()),
        ..Default::default()
    });
    h.replace(m, "file", "with quarantine").expect("replace");
    assert!(bed.cell.load().is_quarantined(mac(DB)));
    h.replace(model(POLICY), "file", "without")
        .expect("replace");
    assert!(!bed.cell.load().is_quarantined(mac(DB)));
    let history = h.quarantine_history(Some(mac(DB))).expect("history");
    assert_eq!(history.len(), 2);
    assert!(history[1]
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("no longer in the live policy")));
}

#[test]
fn draft_diff_commit_and_rollback_publish_in_order() {
    let bed = start("draft");
    let h = &bed.engine.handle;
    assert!(matches!(
        h.commit("alice", "nothing"),
        Err(ControlError::NoDraft)
    ));
    // The draft starts as the live policy.
    let mut draft = h.draft().expect("draft");
    assert_eq!(draft, model(POLICY));
    draft.rules.retain(|r| r.id != 10);
    let d = h.save_draft(draft).expect("save");
    assert_eq!(d.to_string().trim(), "- rules 10");
    assert_eq!(h.diff().expect("diff"), d);
    // The dataplane does not see a draft.
    assert_eq!(bed.web_to_db(), Action::Allow);

    let c = h.commit("alice", "no more web -> db").expect("commit");
    assert_eq!(c.version, 2);
    assert_eq!(bed.cell.generation(), c.generation);
    assert_eq!(bed.web_to_db(), Action::Deny);
    assert!(h.diff().expect("diff").is_empty());

    let r = h.rollback(Version(1), "bob").expect("rollback");
    assert_eq!(r.version, 3);
    assert!(r.generation > c.generation);
    assert_eq!(bed.web_to_db(), Action::Allow);
    let versions = h.versions().expect("versions");
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[2].rollback_of, Some(Version(1)));
    assert!(matches!(
        h.rollback(Version(99), "bob"),
        Err(ControlError::NoSuchVersion(Version(99)))
    ));
}

#[test]
fn an_invalid_draft_is_refused_with_every_problem() {
    let bed = start("invalid");
    let h = &bed.engine.handle;
    let mut bad = model(POLICY);
    bad.rules[0].services = vec!["smbb".into()];
    bad.rules[1].src = vec!["nosuchgroup".into()];
    let err = h.save_draft(bad).expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("rules[0].services[0]"), "{text}");
    assert!(text.contains("rules[1].src[0]"), "{text}");
    // Nothing was stored or published.
    assert!(h.diff().expect("diff").is_empty());
    assert_eq!(bed.cell.generation(), 1);
}

fn flow_start(src: &str, src_ip: &str, dst: &str, dst_ip: &str, verdict: Verdict) -> Event {
    Event::FlowStart(FlowRecord {
        src_mac: mac(src),
        dst_mac: mac(dst),
        src_ip: ip(src_ip),
        dst_ip: ip(dst_ip),
        proto: 6,
        src_port: 40000,
        dst_port: 5432,
        vlan: [0, 0],
        verdict,
        generation: 1,
        state: FlowState::SynSent,
        first_seen: 0,
        last_seen: 0,
        packets: [1, 0],
        bytes: [60, 0],
        tcp_flags: 0,
        orig_port: dataplane::io::Port::A,
    })
}

#[test]
fn a_new_mac_on_the_wire_is_labelled_and_gets_its_group_policy() {
    let bed = start_with(
        TempDir::new("learn"),
        EngineConfig {
            debounce: Duration::from_millis(20),
            ..EngineConfig::default()
        },
    );
    let new_web = "02:00:00:00:01:77";
    let q = |cell: &SnapshotCell| {
        cell.load()
            .classify(&FlowQuery {
                src_mac: mac(new_web),
                dst_mac: mac(DB),
                src_ip: ip("10.0.0.77"),
                dst_ip: ip("10.0.0.21"),
                proto: 6,
                dst_port: 5432,
            })
            .action
    };
    assert_eq!(q(&bed.cell), Action::Deny);
    bed.events
        .send(Event::Arp(ArpSeen {
            time: 0,
            mac: mac(new_web),
            ip: Ipv4Addr::new(10, 0, 0, 77),
            vlan: [0, 0],
        }))
        .expect("send");
    eventually("the new web workload is allowed to db", || {
        q(&bed.cell) == Action::Allow
    });
    let view = bed.engine.handle.view();
    let w = view.model.workloads.by_mac(mac(new_web)).expect("learned");
    assert_eq!(w.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(w.ips, vec!["10.0.0.77".to_string()]);
    assert_eq!(bed.engine.handle.status().workloads_learned, 1);

    // A DHCP lease teaches the address of a MAC that has not spoken yet.
    bed.events
        .send(Event::DhcpLease(LeaseSeen {
            time: 0,
            mac: mac("02:00:00:00:01:78"),
            ip: Ipv4Addr::new(10, 0, 0, 78),
            vlan: [0, 0],
        }))
        .expect("send");
    eventually("the leased address is learned", || {
        bed.engine.handle.status().workloads_learned == 2
    });

    // Learned workloads are kept in the store across a restart.
    let (_dir, db) = bed.stop();
    let store = Store::open(&db).expect("reopen");
    assert!(store
        .workloads()
        .expect("workloads")
        .iter()
        .any(|w| w.mac == new_web));
}

#[test]
fn a_mac_flood_is_capped_and_multicast_sources_are_ignored() {
    let bed = start_with(
        TempDir::new("flood"),
        EngineConfig {
            max_observed: 100,
            ..EngineConfig::default()
        },
    );
    let allow = Verdict {
        action: Action::Allow,
        reason: Reason::Default,
        mode: Mode::Learn,
        would_deny: false,
    };
    for i in 0..1000u32 {
        let b = i.to_be_bytes();
        let src = format!("02:aa:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3]);
        bed.events
            .send(flow_start(&src, "10.9.0.1", DB, "10.0.0.21", allow))
            .expect("send");
    }
    bed.events
        .send(flow_start(
            "03:00:00:00:00:01",
            "10.9.0.2",
            DB,
            "10.0.0.21",
            allow,
        ))
        .expect("send");
    let h = &bed.engine.handle;
    eventually("all events handled", || h.status().events == 1001);
    let s = h.status();
    assert_eq!(s.workloads_learned, 100);
    assert_eq!(s.observed_refused, 900);
    let view_learned = || {
        h.view()
            .model
            .workloads
            .iter()
            .filter(|w| w.origin == crate::model::Origin::Observed)
            .count()
    };
    // The view catches up at the next publish; force one.
    h.quarantine(mac("02:00:00:00:09:01"), None, "test")
        .expect("quarantine");
    assert_eq!(view_learned(), 100);
    assert!(h
        .view()
        .model
        .workloads
        .by_mac(mac("03:00:00:00:00:01"))
        .is_none());
}

#[test]
fn rule_hits_count_flows_and_would_denies_per_user_rule() {
    let bed = start("hits");
    let allow10 = Verdict {
        action: Action::Allow,
        reason: Reason::Rule(crate::compile::compiled_rule_id(10, 0)),
        mode: Mode::Enforce,
        would_deny: false,
    };
    let audit30 = Verdict {
        action: Action::Allow,
        reason: Reason::Rule(crate::compile::compiled_rule_id(30, 0)),
        mode: Mode::Audit,
        would_deny: true,
    };
    for _ in 0..3 {
        bed.events
            .send(flow_start(WEB, "10.0.0.11", DB, "10.0.0.21", allow10))
            .expect("send");
    }
    bed.events
        .send(flow_start(WEB, "10.0.0.11", DB, "10.0.0.21", audit30))
        .expect("send");
    let h = &bed.engine.handle;
    eventually("events handled", || h.status().events == 4);
    let hits = h.rule_hits().expect("hits");
    let of = |id| {
        hits.iter()
            .find(|(r, _)| *r == id)
            .map(|(_, h)| *h)
            .expect("listed")
    };
    assert_eq!(of(10).flows, 3);
    assert!(of(10).last_hit > 0);
    assert_eq!((of(30).flows, of(30).would_deny), (0, 1));
    // Never hit, still listed.
    assert_eq!(of(20).flows, 0);
}

/// A UDP frame from web-1 to db-1 on port 5432 (allowed by rule 10 only for TCP,
/// so the policy here allows UDP 5432 too).
fn udp_frame(sport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(WEB).0, mac(DB).0)
        .ipv4([10, 0, 0, 11], [10, 0, 0, 21], 64)
        .udp(sport, 5432)
        .write(&mut out, &[0u8; 18])
        .expect("build frame");
    out
}

#[test]
fn when_the_control_thread_dies_the_worker_forwards_with_the_last_snapshot() {
    let dir = TempDir::new("crash");
    let store = Store::open(&dir.db()).expect("open");
    let cell = Arc::new(SnapshotCell::default());
    let (sink, events) = dataplane::event::channel(1024);
    let mut policy = model(POLICY);
    policy.rules.insert(
        0,
        model(
            r#"rules: [{ id: 5, src: [web], dst: [db], services: [{ proto: udp, ports: [5432] }], action: allow }]"#,
        )
        .rules[0]
            .clone(),
    );
    let engine = Engine::start(
        store,
        Bootstrap {
            model: policy,
            source: "the test policy".into(),
        },
        cell.clone(),
        Some(events),
        None,
        EngineConfig::default(),
    )
    .expect("start");
    let mut worker = Worker::new(WorkerConfig::default(), cell.clone(), sink);
    let mut io = MemIo::new(256, 2048);
    let mut forwarded = 0usize;
    let mut pass = |worker: &mut Worker, io: &mut MemIo, sport: u16| {
        io.inject(Port::A, &udp_frame(sport)).expect("inject");
        worker.poll(io, 0).expect("poll");
        let n = io.take_tx(Port::B).len();
        forwarded += n;
        n
    };
    assert_eq!(pass(&mut worker, &mut io, 1000), 1);

    engine.handle.crash_for_test();
    let _ = engine.thread.join();
    let status = engine.handle.status();
    assert!(!status.running);
    assert!(status
        .failure
        .as_deref()
        .is_some_and(|f| f.contains("panicked")));
    assert!(matches!(
        engine.handle.quarantine(mac(WEB), None, "alice"),
        Err(ControlError::Stopped(Some(_)))
    ));

    // New flows and the existing one still pass on the last snapshot; the
    // events nobody reads any more are counted as lost.
    for sport in [1000, 1001, 1002] {
        assert_eq!(pass(&mut worker, &mut io, sport), 1);
    }
    assert_eq!(forwarded, 4);
    assert!(worker.stats().events_lost > 0);
    assert_eq!(cell.generation(), 1);
}

mod detect;
mod intel;
mod intel_managed;
mod learning;
mod records;
mod scan;
