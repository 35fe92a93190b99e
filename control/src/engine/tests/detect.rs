//! Anomaly detection on the control thread beyond scans: first-seen
//! services after a group's baseline (kept across a restart), deny bursts,
//! fan-out, and the automatic quarantine a config may ask for.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]

use super::intel::alerts;
use super::*;
use crate::alerts::Kind;
use crate::detect::DetectConfig;
use crate::intel::Severity;

fn verdict(action: Action, would_deny: bool) -> Verdict {
    Verdict {
        action,
        reason: Reason::Default,
        mode: Mode::Enforce,
        would_deny,
    }
}

/// web-1 to db-1 on `port`.
fn web_to_db(port: u16, v: Verdict) -> Event {
    let Event::FlowStart(mut r) = flow_start(WEB, "10.0.0.11", DB, "10.0.0.21", v) else {
        unreachable!("flow_start makes a start")
    };
    r.dst_port = port;
    Event::FlowStart(r)
}

fn config(baseline: Duration) -> EngineConfig {
    EngineConfig {
        detect: DetectConfig {
            baseline,
            ..DetectConfig::default()
        },
        ..EngineConfig::default()
    }
}

fn of_kind(bed: &Bed, kind: Kind) -> Vec<crate::alerts::Alert> {
    alerts(bed).into_iter().filter(|a| a.kind == kind).collect()
}

#[test]
fn a_service_new_after_the_baseline_alerts_once_and_the_baseline_survives_a_restart() {
    let baseline = Duration::from_millis(400);
    let bed = start_with(TempDir::new("first-seen"), config(baseline));
    let allow = verdict(Action::Allow, false);
    // In the baseline: postgres (and the high ports, as one service).
    bed.events.send(web_to_db(5432, allow)).unwrap();
    bed.events.send(web_to_db(40_001, allow)).unwrap();
    eventually("seen", || bed.engine.handle.status().events == 2);
    std::thread::sleep(baseline + Duration::from_millis(1100));
    // After it: postgres again and another high port are not new; RDP is,
    // once, whether the policy lets it through or not.
    bed.events.send(web_to_db(5432, allow)).unwrap();
    bed.events.send(web_to_db(50_123, allow)).unwrap();
    bed.events
        .send(web_to_db(3389, verdict(Action::Deny, false)))
        .unwrap();
    bed.events.send(web_to_db(3389, allow)).unwrap();
    eventually("seen", || bed.engine.handle.status().events == 6);
    eventually("the alert", || {
        !of_kind(&bed, Kind::FirstSeenService).is_empty()
    });
    let found = of_kind(&bed, Kind::FirstSeenService);
    assert_eq!(found.len(), 1, "{found:?}");
    let a = &found[0];
    assert_eq!((a.mac.as_str(), a.count), (WEB, 1));
    assert_eq!(a.severity, Severity::High, "RDP is how intruders move");
    assert_eq!(a.indicator, "web -> db tcp/3389");
    assert!(
        a.summary
            .starts_with("web-1 (10.0.0.11) used tcp/3389 to db-1 (10.0.0.21): first time from web -> db (denied)"),
        "{}",
        a.summary
    );
    assert_eq!(a.evidence["pairs"][0], "web -> db");
    // Wait for the baseline's write, then restart on the same store.
    std::thread::sleep(Duration::from_millis(1200));
    let (dir, _) = bed.stop();
    let bed = start_with(dir, config(baseline));
    bed.events.send(web_to_db(3389, allow)).unwrap();
    bed.events.send(web_to_db(5432, allow)).unwrap();
    bed.events.send(web_to_db(22, allow)).unwrap();
    eventually("seen", || bed.engine.handle.status().events == 3);
    eventually("the second alert", || {
        of_kind(&bed, Kind::FirstSeenService).len() == 2
    });
    std::thread::sleep(Duration::from_millis(100));
    let found = of_kind(&bed, Kind::FirstSeenService);
    assert_eq!(found.len(), 2, "RDP and postgres were learned: {found:?}");
    assert_eq!(found[0].indicator, "web -> db tcp/22");
}

#[test]
fn a_deny_burst_alerts_once_and_may_quarantine_its_source() {
    let mut cfg = config(Duration::from_secs(3600));
    cfg.detect.respond = vec![(Kind::DenyBurst, Severity::Medium)];
    let bed = start_with(TempDir::new("deny-burst"), cfg);
    let deny = verdict(Action::Deny, false);
    for i in 0..250u16 {
        bed.events.send(web_to_db(445 + i % 2, deny)).unwrap();
    }
    eventually("seen", || bed.engine.handle.status().events == 250);
    eventually("the alert", || !of_kind(&bed, Kind::DenyBurst).is_empty());
    let found = of_kind(&bed, Kind::DenyBurst);
    assert_eq!(found.len(), 1, "{found:?}");
    let a = &found[0];
    assert!(
        a.summary
            .starts_with("web-1 (10.0.0.11) started 100 flows the policy denies within 60 s"),
        "{}",
        a.summary
    );
    assert!(
        a.summary.ends_with("quarantined automatically"),
        "{}",
        a.summary
    );
    assert_eq!(a.evidence["response"], "quarantine");
    assert_eq!(a.evidence["services"][0]["flows"], 50);
    eventually("quarantined", || bed.cell.load().is_quarantined(mac(WEB)));
    let q = bed.engine.handle.quarantines().unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].actor, "detect");
    assert!(q[0]
        .reason
        .as_deref()
        .unwrap_or("")
        .starts_with("deny-burst alert"));
    // A person releases it; the burst goes on, folded into the same alert:
    // not quarantined again.
    bed.engine
        .handle
        .release(mac(WEB), Some("checked".into()), "alice")
        .unwrap();
    for _ in 0..150 {
        bed.events.send(web_to_db(445, deny)).unwrap();
    }
    eventually("seen", || bed.engine.handle.status().events == 400);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!bed.cell.load().is_quarantined(mac(WEB)));
}

#[test]
fn fan_out_past_the_floor_alerts_after_the_baseline_only() {
    let mut cfg = config(Duration::from_millis(300));
    cfg.detect.fanout = Some(crate::detect::FanoutConfig {
        peers: 10,
        factor: 4,
    });
    let bed = start_with(TempDir::new("fan-out"), cfg);
    let allow = verdict(Action::Allow, false);
    let to = |i: u32| {
        let Event::FlowStart(mut r) = web_to_db(443, allow) else {
            unreachable!()
        };
        r.dst_ip = IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i));
        Event::FlowStart(r)
    };
    // Learning: 30 peers, no alert.
    for i in 0..30 {
        bed.events.send(to(i)).unwrap();
    }
    eventually("seen", || bed.engine.handle.status().events == 30);
    std::thread::sleep(Duration::from_millis(400));
    for i in 30..60 {
        bed.events.send(to(i)).unwrap();
    }
    eventually("seen", || bed.engine.handle.status().events == 60);
    eventually("the alert", || !of_kind(&bed, Kind::Fanout).is_empty());
    let found = of_kind(&bed, Kind::Fanout);
    assert_eq!(found.len(), 1, "{found:?}");
    // Same hour: the 31st peer crossed 10 (no busiest hour yet).
    assert_eq!(found[0].evidence["peers"], 31);
    assert_eq!(found[0].evidence["threshold"], 10);
}

#[test]
fn the_status_shows_each_baseline_and_a_reset_forgets_them_all() {
    let bed = start_with(
        TempDir::new("detect-status"),
        config(Duration::from_secs(3600)),
    );
    let h = &bed.engine.handle;
    bed.events
        .send(web_to_db(5432, verdict(Action::Allow, false)))
        .unwrap();
    eventually("seen", || h.status().events == 1);
    let s = h.detect().unwrap();
    assert_eq!(s.baseline_secs, 3600);
    let f = s.first_seen.unwrap();
    assert_eq!(f.services, 1);
    let groups: Vec<(&str, bool)> = f
        .groups
        .iter()
        .map(|g| (g.group.as_str(), g.learning))
        .collect();
    assert_eq!(groups, [("db", true), ("web", true)]);
    assert_eq!(s.fanout.unwrap().workloads, 1);
    assert!(s.respond.is_empty());
    // Written within a second; then forgotten, in the store too.
    std::thread::sleep(Duration::from_millis(1100));
    bed.events
        .send(web_to_db(6379, verdict(Action::Allow, false)))
        .unwrap();
    eventually("seen", || h.status().events == 2);
    eventually("stored", || {
        !Store::open(&bed.db)
            .unwrap()
            .baselines()
            .unwrap()
            .services
            .is_empty()
    });
    h.reset_baselines().unwrap();
    let s = h.detect().unwrap();
    assert_eq!(s.first_seen.unwrap().services, 0);
    assert_eq!(
        Store::open(&bed.db).unwrap().baselines().unwrap(),
        crate::store::StoredBaselines::default()
    );
}
