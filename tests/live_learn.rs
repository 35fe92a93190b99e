//! From learn to enforce on the live appliance (`bulkhead run` in
//! namespaces, real packets): a segment in learn mode sees real traffic; the
//! rule proposals accepted into the draft, switched to enforce, dry-run
//! clean and committed let exactly that traffic through and block a service
//! never seen; a draft that drops the rule again is dry-run to list the
//! flows it would break.
//!
//! Needs root; outside CI a non-root run says why it skips, with `CI=true` a
//! missing privilege is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod live_bed;

use live_bed::{connects_to, serve, Bed, MAC_A, MAC_B};
use serde_json::Value;
use std::time::Duration;

fn learn_policy() -> String {
    format!(
        r#"
default_mode: learn
workloads:
  - {{ mac: "{MAC_A}", name: client, labels: {{ app: web }}, ips: [10.99.0.1] }}
  - {{ mac: "{MAC_B}", name: server, labels: {{ app: db }}, ips: [10.99.0.2] }}
groups:
  - {{ name: web, mode: learn, match: {{ app: web }} }}
  - {{ name: db, mode: learn, match: {{ app: db }} }}
"#
    )
}

const SEEN: [&str; 2] = ["10.99.0.2:9000", "10.99.0.2:9001"];
const UNSEEN: &str = "10.99.0.2:7000";

/// `ctl policy put` of `model` (JSON) through a file.
fn put_draft(bed: &Bed, model: &Value) {
    let file = bed.dir.join("draft.json");
    std::fs::write(&file, serde_json::to_string(model).unwrap()).unwrap();
    bed.ctl(&["policy", "put", file.to_str().unwrap()]);
}

#[test]
fn proposals_from_learned_traffic_enforced_let_exactly_that_traffic_through() {
    if !dataplane::hostenv::root_with("the live learn test", &["ip", "ethtool", "nsenter"]) {
        return;
    }
    let mut bed = Bed::new("learn", &learn_policy(), "");
    let [a, b, _] = bed.ns.clone();
    for addr in SEEN.into_iter().chain([UNSEEN]) {
        serve(&b, addr);
    }
    bed.start();
    // Learn mode: the client uses two services of the server, three times each.
    for to in SEEN {
        for _ in 0..3 {
            assert!(
                connects_to(&a, to, Duration::from_secs(10)),
                "learn lets {to} through"
            );
        }
    }
    // The flows end at the stop and are recorded; the proposals read them.
    bed.stop();
    bed.start();

    let p = bed.ctl(&["proposals", "list", "--since", "1h"]);
    let proposals = p["proposals"].as_array().unwrap();
    assert_eq!(proposals.len(), 1, "one rule: web -> db: {p}");
    let web_db = &proposals[0];
    assert_eq!(
        (web_db["src"].as_str(), web_db["dst"].as_str()),
        (Some("web"), Some("db"))
    );
    assert_eq!(web_db["seen"], serde_json::json!(["tcp/9000", "tcp/9001"]));
    assert_eq!(web_db["flows"], 6);
    assert_eq!(web_db["examples"][0]["src"]["mac"], MAC_A);

    // Accepted into the draft (the live policy is unchanged), switched to enforce.
    let accepted = bed.ctl(&["proposals", "accept", "--all", "--since", "1h"]);
    assert_eq!(
        accepted["accepted"].as_array().unwrap().len(),
        1,
        "{accepted}"
    );
    let mut draft = bed.ctl(&["policy", "draft"]);
    draft["default_mode"] = "enforce".into();
    for g in draft["groups"].as_array_mut().unwrap() {
        g["mode"] = "enforce".into();
    }
    put_draft(&bed, &draft);
    // Enforcing it breaks nothing that was seen.
    let run = bed.ctl(&["policy", "dry-run", "--since", "1h"]);
    assert!(run["breaks"].as_array().unwrap().is_empty(), "{run}");
    assert_eq!(run["flows"], 6, "{run}");
    bed.ctl(&["policy", "commit", "-m", "proposals, enforced"]);

    for to in SEEN {
        assert!(
            connects_to(&a, to, Duration::from_secs(10)),
            "{to} was seen: allowed"
        );
    }
    assert!(
        !connects_to(&a, UNSEEN, Duration::from_secs(3)),
        "{UNSEEN} was never seen: denied"
    );

    // A draft without the proposed rule: the dry run lists what it breaks.
    let mut without = bed.ctl(&["policy", "draft"]);
    without["rules"] = serde_json::json!([]);
    put_draft(&bed, &without);
    let run = bed.ctl(&["policy", "dry-run", "--since", "1h"]);
    let breaks = run["breaks"].as_array().unwrap();
    let ports: Vec<u64> = breaks.iter().filter_map(|c| c["port"].as_u64()).collect();
    assert!(ports.contains(&9000) && ports.contains(&9001), "{run}");
    let b9000 = breaks.iter().find(|c| c["port"] == 9000).unwrap();
    assert_eq!(b9000["draft"]["verdict"], "deny");
    assert_eq!(b9000["today"]["verdict"], "allow");
    assert_eq!(b9000["examples"][0]["dst"]["mac"], MAC_B);
}
