#![allow(
    clippy::unwrap_used,
    reason = "a cfg(test) module: unwrap fails a test on a fixture the test wrote"
)]

use super::burst::DenyBurst;
use super::dns::{registered, Answer, DnsDetector, DnsFound};
use super::first_seen::{BaselineWrite, FirstSeen, Flow, ServiceKey};
use super::*;
use dataplane::wire::MacAddr;
use std::time::Duration;

const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const WEEK: i64 = 7 * 86_400_000;

fn flow<'a>(src: &'a [&'a str], dst: &'a [&'a str], port: u16, now_ms: i64) -> Flow<'a> {
    Flow {
        src_mac: A,
        src,
        dst,
        proto: 6,
        port,
        now_ms,
    }
}

#[test]
fn a_service_is_learned_in_the_baseline_and_new_once_after_it() {
    let mut f = FirstSeen::new(ServicesConfig::default());
    let w = |_: &str| WEEK;
    assert!(f.flow(&flow(&["web"], &["db"], 5432, 0), w).is_none());
    // An ephemeral port in the baseline stands for all of them.
    assert!(f.flow(&flow(&["web"], &["db"], 40_000, 1), w).is_none());
    let after = WEEK + 1;
    assert!(f.flow(&flow(&["web"], &["db"], 5432, after), w).is_none());
    assert!(f.flow(&flow(&["web"], &["db"], 61_000, after), w).is_none());
    let new = f.flow(&flow(&["web"], &["db"], 3389, after), w).unwrap();
    assert_eq!(new.pairs, [("web".into(), "db".into())]);
    assert_eq!((new.proto, new.port), (6, 3389));
    assert!(
        f.flow(&flow(&["web"], &["db"], 3389, after), w).is_none(),
        "new once"
    );
    // A group first seen now learns its own baseline, with any pair.
    assert!(f.flow(&flow(&["batch"], &["db"], 3389, after), w).is_none());
    assert!(f.flow(&flow(&["web"], &["batch"], 22, after), w).is_none());
    // Ends in no group are not baselined.
    assert!(f.flow(&flow(&[], &["db"], 22, after), w).is_none());
    // What the store is to keep: the groups' starts and every service.
    let writes = f.take_writes();
    let services = writes
        .iter()
        .filter(|w| matches!(w, BaselineWrite::Service { .. }))
        .count();
    assert_eq!(services, 5, "{writes:?}");
    assert!(writes.contains(&BaselineWrite::Group {
        name: "batch".into(),
        started_ms: after
    }));
    assert!(!f.has_writes());
}

#[test]
fn a_group_with_a_longer_baseline_keeps_its_pairs_learning() {
    let mut f = FirstSeen::new(ServicesConfig::default());
    let w = |g: &str| if g == "db" { 2 * WEEK } else { WEEK };
    f.flow(&flow(&["web"], &["db"], 5432, 0), w);
    f.flow(&flow(&["web"], &["cache"], 6379, 0), w);
    let later = WEEK + 1;
    assert!(f.flow(&flow(&["web"], &["db"], 3389, later), w).is_none());
    assert!(f
        .flow(&flow(&["web"], &["cache"], 3389, later), w)
        .is_some());
}

#[test]
fn a_source_past_its_limit_is_neither_alerted_nor_learned() {
    let cfg = ServicesConfig {
        per_source: 3,
        per: Duration::from_secs(600),
    };
    let mut f = FirstSeen::new(cfg);
    f.load([("web".to_string(), 0), ("db".to_string(), 0)], []);
    let w = |_: &str| WEEK;
    let now = WEEK;
    let found = (1..=100u16)
        .filter(|p| f.flow(&flow(&["web"], &["db"], *p, now), w).is_some())
        .count();
    assert_eq!(found, 3);
    assert_eq!(f.suppressed, 97);
    assert_eq!(f.len(), 3, "the scan's ports are not the baseline");
    // Ten minutes on, the next new one alerts.
    assert!(f
        .flow(&flow(&["web"], &["db"], 50, now + 600_000), w)
        .is_some());
}

#[test]
fn loaded_services_are_known() {
    let mut f = FirstSeen::new(ServicesConfig::default());
    f.load(
        [("web".to_string(), 0), ("db".to_string(), 0)],
        [ServiceKey {
            src: "web".into(),
            dst: "db".into(),
            proto: 6,
            port: 3389,
        }],
    );
    let w = |_: &str| WEEK;
    assert!(f.flow(&flow(&["web"], &["db"], 3389, WEEK), w).is_none());
    assert!(f.flow(&flow(&["web"], &["db"], 22, WEEK), w).is_some());
    assert!(!f
        .take_writes()
        .iter()
        .any(|w| matches!(w, BaselineWrite::Group { .. })));
}

#[test]
fn a_deny_burst_is_found_once_a_window() {
    let mut d = DenyBurst::new(BurstConfig {
        window: Duration::from_secs(60),
        flows: 10,
    });
    let dst = "10.0.0.2".parse().unwrap();
    let found: Vec<_> = (0..50)
        .filter_map(|i| d.denied(A, dst, (6, 445), i, 10))
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].flows, 10);
    assert_eq!(found[0].services, [((6, 445), 10)]);
    // Another source has its own window; a new window alerts again.
    assert!((0..9).all(|i| d.denied(B, dst, (6, 445), i, 10).is_none()));
    assert!((0..10)
        .filter_map(|i| d.denied(A, dst, (6, 445), 60_000 + i, 10))
        .next()
        .is_some());
}

fn answer(client: MacAddr, qname: &str, rcode: u16, now_ms: i64) -> Answer<'_> {
    Answer {
        client,
        qname,
        rcode,
        now_ms,
    }
}

#[test]
fn registered_domains_fold_hosts_of_one_site() {
    assert_eq!(registered("a.b.Example.co.uk."), "example.co.uk");
    assert_eq!(registered("cdn-17.example.com"), "example.com");
    assert_eq!(registered("localhost"), "localhost");
}

#[test]
fn nxdomain_bursts_and_never_seen_names_are_found_per_client() {
    let cfg = DnsConfig {
        window: Duration::from_secs(300),
        nxdomain: 5,
        new_names: 4,
    };
    let mut d = DnsDetector::new(cfg);
    let base = 1000;
    // The baseline: names answered (a CDN's hosts fold into one).
    for (i, n) in ["www.example.com", "img1.example.com", "api.corp.net"]
        .iter()
        .enumerate()
    {
        assert!(d.answer(&answer(A, n, 0, i as i64), 5, 4, base).is_none());
    }
    assert_eq!(d.len(), 2);
    // NXDOMAIN in the baseline is counted too, but not learned.
    let later = base + 10;
    let nx: Vec<DnsFound> = (0..20)
        .filter_map(|i| {
            d.answer(
                &answer(B, &format!("x{i}q7kd.com"), 3, later + i),
                5,
                4,
                base,
            )
        })
        .collect();
    assert_eq!(
        nx.len(),
        2,
        "one NXDOMAIN alert, and one for new names: {nx:?}"
    );
    // The fourth new name crosses its threshold first, the fifth NXDOMAIN
    // its own.
    let DnsFound::NewNames { count, .. } = &nx[0] else {
        panic!("{nx:?}")
    };
    assert_eq!(*count, 4);
    let DnsFound::Nxdomain {
        client,
        count,
        names,
        ..
    } = &nx[1]
    else {
        panic!("{nx:?}")
    };
    assert_eq!((*client, *count, names.len()), (B, 5, 5));
    // Known names are not new; new answered names are new once.
    assert!(d
        .answer(&answer(A, "cdn.example.com", 0, later), 5, 4, base)
        .is_none());
    let found = (0..4)
        .filter_map(|i| d.answer(&answer(A, &format!("site{i}.test"), 0, later), 5, 4, base))
        .count();
    assert_eq!(found, 1);
    let (started, names) = d.take_writes();
    assert_eq!(started, Some(0));
    assert_eq!(names.len(), 2 + 4, "answered names only: {names:?}");
    // Loaded back, the same names are known.
    let mut again = DnsDetector::new(cfg);
    again.load(started, names.into_iter().map(String::from));
    assert!(again
        .answer(&answer(B, "site1.test", 0, later), 5, 1, base)
        .is_none());
}

#[test]
fn a_workload_in_several_groups_gets_the_most_lenient_limits() {
    let mut cfg = DetectConfig::default();
    cfg.groups.insert(
        "db".into(),
        GroupLimits {
            fanout_peers: Some(8),
            baseline: Some(Duration::from_secs(14 * 86_400)),
            ..GroupLimits::default()
        },
    );
    cfg.groups.insert(
        "batch".into(),
        GroupLimits {
            fanout_peers: Some(500),
            ..GroupLimits::default()
        },
    );
    let d = cfg.defaults();
    assert_eq!(cfg.limits(["web"]), d);
    assert_eq!(cfg.limits([]), d);
    let db = cfg.limits(["db"]);
    assert_eq!((db.fanout_peers, db.baseline_ms), (8, 14 * 86_400_000));
    let both = cfg.limits(["db", "prod"]);
    assert_eq!(
        both.fanout_peers, d.fanout_peers,
        "prod keeps the default 64"
    );
    assert_eq!(cfg.limits(["db", "batch"]).fanout_peers, 500);
}
