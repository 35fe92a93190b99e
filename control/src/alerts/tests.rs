#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use super::*;
use crate::testutil::TempDir;

fn alert(at_ms: i64, mac: &str, indicator: &str) -> NewAlert {
    NewAlert {
        at_ms,
        kind: Kind::IntelIp,
        severity: Severity::High,
        mac: mac.parse().unwrap(),
        workload: Some("web-1".into()),
        indicator: indicator.into(),
        summary: format!("web-1 contacted {indicator}"),
        evidence: serde_json::json!({"dst": indicator}),
    }
}

const M1: &str = "02:00:00:00:00:01";
const M2: &str = "02:00:00:00:00:02";

#[test]
fn repeats_within_the_window_raise_a_count_and_a_flood_is_rate_limited() {
    let dir = TempDir::new("alerts-dedup");
    let mut store = Store::open(&dir.db()).unwrap();
    let mut a = Alerter::new(AlertConfig {
        window_ms: 60_000,
        per_minute: 3,
    });
    let first = a
        .raise(&alert(1_000, M1, "203.0.113.66"), &mut store)
        .unwrap();
    assert!(first.is_some());
    for t in 0..1000 {
        assert_eq!(
            a.raise(&alert(2_000 + t, M1, "203.0.113.66"), &mut store)
                .unwrap(),
            None
        );
    }
    assert!(a.pending());
    a.flush(&mut store, 3_000).unwrap();
    let stored = store.alert(first.unwrap()).unwrap().unwrap();
    assert_eq!(stored.count, 1001);
    assert_eq!(stored.last_ms, 2_999);
    assert_eq!(stored.state, State::Open);
    assert_eq!(stored.evidence["dst"], "203.0.113.66");

    // Another workload or indicator is another alert; the fourth new one in
    // a minute is only counted.
    assert!(a
        .raise(&alert(4_000, M2, "203.0.113.66"), &mut store)
        .unwrap()
        .is_some());
    assert!(a
        .raise(&alert(4_000, M1, "198.51.100.1"), &mut store)
        .unwrap()
        .is_some());
    assert_eq!(
        a.raise(&alert(4_000, M1, "198.51.100.2"), &mut store)
            .unwrap(),
        None
    );
    assert_eq!(a.counters().suppressed, 1);
    assert_eq!(a.counters().repeats, 1000);
    assert_eq!(a.counters().raised[&(Kind::IntelIp, Severity::High)], 3);
    // The next minute lets new ones through again.
    assert!(a
        .raise(&alert(61_000, M1, "198.51.100.2"), &mut store)
        .unwrap()
        .is_some());
    assert_eq!(a.take_fresh().len(), 4);

    // Past the window, a repeat is a new alert.
    let later = a
        .raise(&alert(200_000, M1, "203.0.113.66"), &mut store)
        .unwrap();
    assert!(later.is_some() && later != first);
}

#[test]
fn a_closed_alert_takes_no_more_repeats_and_the_next_one_is_new() {
    let dir = TempDir::new("alerts-closed");
    let mut store = Store::open(&dir.db()).unwrap();
    let mut a = Alerter::new(AlertConfig::default());
    let id = a
        .raise(&alert(1_000, M1, "evil.example"), &mut store)
        .unwrap()
        .unwrap();
    let acked = store
        .set_alert_state(id, State::Acknowledged, "alice", 1_500)
        .unwrap()
        .unwrap();
    assert_eq!(
        (acked.state, acked.state_by.as_deref()),
        (State::Acknowledged, Some("alice"))
    );
    a.raise(&alert(2_000, M1, "evil.example"), &mut store)
        .unwrap();
    a.flush(&mut store, 2_000).unwrap();
    assert_eq!(
        store.alert(id).unwrap().unwrap().count,
        2,
        "acknowledged still counts"
    );
    store
        .set_alert_state(id, State::Closed, "bob", 2_500)
        .unwrap();
    a.raise(&alert(3_000, M1, "evil.example"), &mut store)
        .unwrap();
    a.flush(&mut store, 3_000).unwrap();
    assert_eq!(
        store.alert(id).unwrap().unwrap().count,
        2,
        "closed takes nothing"
    );
    let new = a
        .raise(&alert(4_000, M1, "evil.example"), &mut store)
        .unwrap();
    assert!(
        new.is_some_and(|n| n != id),
        "a new alert after the closed one"
    );
    assert!(store
        .set_alert_state(999, State::Closed, "bob", 1)
        .unwrap()
        .is_none());

    // Listing: newest first, filtered.
    let all = store
        .alerts(&AlertFilter {
            limit: 10,
            ..AlertFilter::default()
        })
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].id > all[1].id);
    let open = store
        .alerts(&AlertFilter {
            state: Some(State::Open),
            limit: 10,
            ..AlertFilter::default()
        })
        .unwrap();
    assert_eq!(open.len(), 1);
    let critical = store
        .alerts(&AlertFilter {
            severity: Some(Severity::Critical),
            limit: 10,
            ..AlertFilter::default()
        })
        .unwrap();
    assert!(critical.is_empty());
    let states = store.alert_states().unwrap();
    assert!(states.contains(&(State::Closed, 1)));
}
