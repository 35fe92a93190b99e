#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use super::*;
use crate::alerts::deliver::{Deliverer, DeliveryConfig};
use crate::alerts::receiver::{Answer, Receiver};
use crate::alerts::{Kind, NewAlert};
use crate::intel::Severity;
use crate::testutil::TempDir;

const LOCAL: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

fn alert(indicator: &str) -> NewAlert {
    NewAlert {
        at_ms: 1_764_000_000_000,
        kind: Kind::IntelDns,
        severity: Severity::Critical,
        mac: "02:00:00:00:00:07".parse().unwrap(),
        workload: Some("web-7".into()),
        indicator: indicator.into(),
        summary: format!("web-7 resolved {indicator}"),
        evidence: serde_json::json!({"dns": [42]}),
    }
}

fn hook(r: &Receiver) -> Webhook {
    Webhook {
        ca: Some(r.ca.clone()),
        token: Some("s3cret".into()),
        ..Webhook::new(&r.url)
    }
}

fn deliverer(hooks: Vec<Webhook>) -> Deliverer {
    Deliverer::start(&DeliveryConfig {
        hostname: "bh-test".into(),
        webhooks: hooks,
        ..DeliveryConfig::default()
    })
    .unwrap()
}

#[test]
fn an_alert_is_posted_as_json_with_the_token_and_a_5xx_is_tried_again() {
    let dir = TempDir::new("webhook-post");
    let r = Receiver::start(&dir.0, LOCAL, vec![Answer::Status(503)]).unwrap();
    let d = deliverer(vec![hook(&r)]);
    d.offer(9, &alert("c2.example"));
    let got = r.wait_for(2, Duration::from_secs(15));
    assert_eq!(got.len(), 2, "the 503 is tried again: {got:?}");
    assert_eq!(got[0].body, got[1].body, "the same alert");
    assert_eq!(got[1].method, "POST");
    assert_eq!(got[1].path, "/alerts");
    assert_eq!(got[1].header("authorization"), Some("Bearer s3cret"));
    assert_eq!(got[1].header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(v["id"], 9);
    assert_eq!(v["kind"], "intel-dns");
    assert_eq!(v["severity"], "critical");
    assert_eq!(v["mac"], "02:00:00:00:00:07");
    assert_eq!(v["indicator"], "c2.example");
    assert_eq!(v["appliance"], "bh-test");
    assert_eq!(v["evidence"]["dns"][0], 42);
    let c = &d.counters()[0];
    wait_until(|| c.sent.load(Ordering::Relaxed) == 1);
    assert_eq!(c.errors.load(Ordering::Relaxed), 1);
    assert_eq!(c.retries.load(Ordering::Relaxed), 1);
    assert_eq!(c.dropped.load(Ordering::Relaxed), 0);
    assert!(c.up.load(Ordering::Relaxed));
    assert!(
        c.name.starts_with("webhook+https://127.0.0.1:"),
        "{}",
        c.name
    );
}

#[test]
fn a_refusal_is_not_tried_again_and_garbage_costs_a_counter() {
    let dir = TempDir::new("webhook-refuse");
    let r = Receiver::start(
        &dir.0,
        LOCAL,
        vec![Answer::Status(400), Answer::Garbage, Answer::Status(200)],
    )
    .unwrap();
    let d = deliverer(vec![hook(&r)]);
    d.offer(1, &alert("a.example"));
    d.offer(2, &alert("b.example"));
    // 400 drops the first; the garbage answer to the second is tried again
    // and the retry is taken.
    let got = r.wait_for(3, Duration::from_secs(15));
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].body.contains("a.example"));
    assert!(got[1].body.contains("b.example") && got[2].body.contains("b.example"));
    let c = &d.counters()[0];
    wait_until(|| c.sent.load(Ordering::Relaxed) == 1);
    assert_eq!(c.dropped.load(Ordering::Relaxed), 1, "the refused one");
    assert_eq!(c.errors.load(Ordering::Relaxed), 2);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(r.requests().len(), 3, "nothing more: the 400 is final");
}

#[test]
fn a_receiver_that_hangs_costs_only_its_own_target() {
    let dir = TempDir::new("webhook-hang");
    let hanging = Receiver::start(&dir.0, LOCAL, vec![Answer::Hang; 8]).unwrap();
    let good = Receiver::start(&dir.0, LOCAL, Vec::new()).unwrap();
    let slow = Webhook {
        timeout: Duration::from_millis(500),
        retry_for: Duration::from_millis(800),
        ..hook(&hanging)
    };
    let d = deliverer(vec![slow, hook(&good)]);
    let started = Instant::now();
    for i in 0..5 {
        d.offer(i, &alert(&format!("n{i}.example")));
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "offering never waits"
    );
    let got = good.wait_for(5, Duration::from_secs(10));
    assert_eq!(got.len(), 5, "the good target got every alert meanwhile");
    let c = &d.counters()[0];
    // Each alert: a timed-out post, one retry a second later (that times
    // out too), then dropped: its retry time is over.
    wait_until(|| c.dropped.load(Ordering::Relaxed) >= 1);
    assert_eq!(c.sent.load(Ordering::Relaxed), 0);
    assert!(c.errors.load(Ordering::Relaxed) >= 1);
    assert!(!c.up.load(Ordering::Relaxed));
}

#[test]
fn bad_targets_are_refused_at_start_with_the_reason() {
    let e = Webhook::new("http://siem.example/hook")
        .check()
        .unwrap_err();
    assert!(e.to_string().contains("HTTPS only"), "{e}");
    let e = Webhook::new("not a url").check().unwrap_err();
    assert!(e.to_string().contains("not a URL"), "{e}");
    let e = Webhook {
        ca: Some("/nonexistent/ca.pem".into()),
        ..Webhook::new("https://siem.example/hook")
    }
    .check()
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    let e = Webhook {
        token: Some("two\nlines".into()),
        ..Webhook::new("https://siem.example/hook")
    }
    .check()
    .unwrap_err();
    assert!(e.to_string().contains("token"), "{e}");
    // A secret in the URL stays out of the counters' name.
    let w = Webhook::new("https://user:pw@siem.example:8443/hook?key=abc#x");
    assert_eq!(w.name(), "webhook+https://siem.example:8443/hook");
    assert!(!format!("{w:?}").contains("abc"));
}

#[test]
fn a_receiver_with_another_certificate_is_not_trusted() {
    let dir = TempDir::new("webhook-trust");
    let r = Receiver::start(&dir.0, LOCAL, Vec::new()).unwrap();
    let other = Receiver::start(&dir.0, LOCAL, Vec::new()).unwrap();
    let w = Webhook {
        ca: Some(other.ca.clone()),
        retry_for: Duration::ZERO,
        ..Webhook::new(&r.url)
    };
    let d = deliverer(vec![w]);
    d.offer(1, &alert("x.example"));
    let c = &d.counters()[0];
    wait_until(|| c.dropped.load(Ordering::Relaxed) == 1);
    assert!(r.requests().is_empty(), "no request reached it");
}

fn wait_until(f: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < until, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}
