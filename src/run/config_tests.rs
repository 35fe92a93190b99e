//! The `[ipfix]` section and what it does to the workers' reports; the
//! `[intel]` and `[alerts]` sections.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use super::config::Config;
use std::time::{Duration, Instant};

fn config(extra: &str) -> Result<Config, String> {
    let text = format!("[ports]\na = \"a\"\nb = \"b\"\n[policy]\nfile = \"p.yaml\"\n{extra}");
    control::load::parse_toml(&text, "bulkhead.toml").map_err(|e| e.to_string())
}

#[test]
fn without_collectors_nothing_is_exported_and_reports_follow_the_records() {
    let c = config("").unwrap();
    assert!(c.ipfix_plan(Instant::now()).unwrap().is_none());
    assert_eq!(c.interim_every(), Duration::from_secs(60));
    assert_eq!(c.idle_report(), Duration::ZERO);
    let c = config("[records]\nenabled = false\n").unwrap();
    assert_eq!(c.interim_every(), Duration::ZERO, "nobody reads reports");
}

#[test]
fn collectors_give_a_plan_and_the_shorter_timeouts_win() {
    let c = config(
        "[ipfix]\ncollectors = [\"udp://192.0.2.10:9995\", \"tcp://[2001:db8::5]\"]\n\
         active_timeout_secs = 30\nidle_timeout_secs = 10\nobservation_domain = 7\n\
         enterprise_elements = true\nenterprise_number = 99999\n",
    )
    .unwrap();
    let plan = c.ipfix_plan(Instant::now()).unwrap().unwrap();
    let names: Vec<String> = plan
        .config
        .collectors
        .iter()
        .map(|x| x.to_string())
        .collect();
    assert_eq!(names, ["udp://192.0.2.10:9995", "tcp://[2001:db8::5]:4739"]);
    assert_eq!(plan.config.observation_domain, 7);
    assert_eq!(plan.config.enterprise, Some(99999));
    assert_eq!(plan.config.idle_timeout, Duration::from_secs(10));
    assert_eq!(c.interim_every(), Duration::from_secs(30));
    assert_eq!(c.idle_report(), Duration::from_secs(10));
    // The records' own period is kept when it is the shorter one.
    let c =
        config("[records]\ninterim_secs = 20\n[ipfix]\ncollectors = [\"192.0.2.10\"]\n").unwrap();
    assert_eq!(c.interim_every(), Duration::from_secs(20));
}

#[test]
fn a_bad_ipfix_section_is_refused_with_the_field_named() {
    let err = |extra: &str| match config(extra) {
        Err(e) => e,
        Ok(c) => format!("{:#}", c.ipfix_plan(Instant::now()).unwrap_err()),
    };
    let e = err("[ipfix]\ncollectors = [\"sctp://x:1\"]\n");
    assert!(
        e.contains("ipfix.collectors") && e.contains("sctp://x:1"),
        "{e}"
    );
    let e = err("[ipfix]\ncollectors = [\"x\"]\nmax_message = 100\n");
    assert!(e.contains("max_message"), "{e}");
    let e = err("[ipfix]\ncollector = [\"x\"]\n");
    assert!(e.contains("collector"), "unknown field: {e}");
}

#[test]
fn intel_and_alerts_sections_are_checked_with_the_field_named() {
    let c = config(
        "[intel]\n[[intel.feeds]]\nname = \"c2\"\npath = \"/x\"\naction = \"block\"\n\
         [alerts]\nsyslog = [\"10.0.0.5\", \"tcp://siem:601\"]\nhostname = \"bh\"\n",
    )
    .unwrap();
    let sources = c.intel.sources().unwrap();
    assert_eq!(sources[0].action, control::intel::Action::Block);
    assert_eq!(sources[0].format, control::intel::Format::List);
    let (alerts, delivery) = c.alerts.plan().unwrap();
    assert_eq!(alerts.per_minute, 60);
    assert_eq!(delivery.syslog[0].port, 514, "syslog's port by default");
    assert_eq!(delivery.syslog[1].to_string(), "tcp://siem:601");
    assert_eq!(delivery.hostname, "bh");
    let err = |extra: &str| -> String {
        match config(extra) {
            Err(e) => e,
            Ok(c) => match (c.intel.sources(), c.alerts.plan()) {
                (Err(e), _) | (_, Err(e)) => format!("{e:#}"),
                _ => String::new(),
            },
        }
    };
    let e = err("[[intel.feeds]]\nname = \"c2\"\npath = \"/x\"\naction = \"drop\"\n");
    assert!(
        e.contains("intel.feeds[0]") && e.contains("alert or block"),
        "{e}"
    );
    let scan = c.detect.scan().unwrap().unwrap();
    assert_eq!((scan.ports, scan.hosts), (15, 25), "on by default");
    let c = config("[detect.scan]\nenabled = false\n").unwrap();
    assert!(c.detect.scan().unwrap().is_none());
    let c = config("[detect.scan]\nports = 1\n").unwrap();
    let e = format!("{:#}", c.detect.scan().unwrap_err());
    assert!(e.contains("detect.scan.ports"), "{e}");
    assert!(
        config("[detect.scan]\nport = 20\n").is_err(),
        "unknown field"
    );
    let d = config("").unwrap().detect.config().unwrap();
    assert!(d.services.is_some() && d.fanout.is_some() && d.dns.is_some());
    assert_eq!(d.baseline.as_secs(), 7 * 86_400);
    assert!(d.respond.is_empty(), "no automatic quarantine unless asked");
    let c = config(
        "[detect]\nbaseline = \"30s\"\nrespond = [\"scan:high\", \"deny-burst\"]\n\
         [detect.groups.db]\nbaseline = \"14d\"\nfanout_peers = 8\n",
    )
    .unwrap();
    let d = c.detect.config().unwrap();
    assert_eq!(d.baseline.as_secs(), 30);
    assert_eq!(
        d.respond,
        [
            (control::alerts::Kind::Scan, control::intel::Severity::High),
            (
                control::alerts::Kind::DenyBurst,
                control::intel::Severity::Low
            )
        ]
    );
    let db = d.limits(["db"]);
    assert_eq!((db.baseline_ms, db.fanout_peers), (14 * 86_400_000, 8));
    for (text, key) in [
        ("[detect]\nbaseline = \"soon\"\n", "detect.baseline"),
        (
            "[detect]\nrespond = [\"scan:urgent\"]\n",
            "detect.respond[0]",
        ),
        ("[detect]\nrespond = [\"rdp\"]\n", "detect.respond[0]"),
        (
            "[detect.groups.db]\nnxdomain = 1\n",
            "detect.groups.db.nxdomain",
        ),
        ("[detect.dns]\nwindow_secs = 0\n", "detect.dns.window_secs"),
    ] {
        let e = format!("{:#}", config(text).unwrap().detect.config().unwrap_err());
        assert!(e.contains(key), "{text}: {e}");
    }
    let e = err("[[intel.feeds]]\nname = \"../c2\"\npath = \"/x\"\n");
    assert!(e.contains("feed name"), "{e}");
    let e = err("[alerts]\nsyslog = [\"smtp://x\"]\n");
    assert!(e.contains("alerts.syslog"), "{e}");
    let e = err("[alerts]\nsyslog_facility = 30\n");
    assert!(e.contains("syslog_facility"), "{e}");
    assert!(err("[alerts]\nsyslg = []\n").contains("syslg"));
    let e = err("[[alerts.webhook]]\nurl = \"http://soar/hook\"\n");
    assert!(
        e.contains("alerts.webhook[0]") && e.contains("HTTPS only"),
        "{e}"
    );
    let e = err("[[alerts.webhook]]\nurl = \"https://soar/hook\"\nca = \"/nonexistent.pem\"\n");
    assert!(e.contains("/nonexistent.pem"), "{e}");
    let e = err("[[alerts.webhook]]\nurl = \"https://soar/hook\"\ntimeout_secs = 0\n");
    assert!(e.contains("timeout_secs"), "{e}");
    let e = err("[[alerts.webhook]]\nurl = \"https://soar/hook\"\nheaders = 1\n");
    assert!(e.contains("headers"), "unknown field: {e}");
}

#[test]
fn a_webhook_is_read_with_its_settings() {
    let dir = std::env::temp_dir().join(format!("bulkhead-config-hook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A real certificate to trust: the test receiver's.
    let r = control::alerts::receiver::Receiver::start(
        &dir,
        "127.0.0.1:0".parse().unwrap(),
        Vec::new(),
    )
    .unwrap();
    let c = config(&format!(
        "[[alerts.webhook]]\nurl = \"https://soar.example:8443/h?k=1\"\nca = \"{}\"\n\
         token = \"t\"\ntimeout_secs = 2\nretry_secs = 60\n",
        r.ca.display()
    ))
    .unwrap();
    let (_, delivery) = c.alerts.plan().unwrap();
    let w = &delivery.webhooks[0];
    assert_eq!(w.name(), "webhook+https://soar.example:8443/h");
    assert_eq!(w.timeout, Duration::from_secs(2));
    assert_eq!(w.retry_for, Duration::from_secs(60));
    assert_eq!(w.token.as_deref(), Some("t"));
    let _ = std::fs::remove_dir_all(&dir);
}
