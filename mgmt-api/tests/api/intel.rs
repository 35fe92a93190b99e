//! `/api/v1/intel`: the feeds in force with their problems, a lookup by
//! address or name, a reload for admins only, and the metrics; feeds
//! managed through the API, and the retro-hunt of an entry added through it
//! over records of an hour before.

use crate::common::{error, json, Bed};
use control::engine::IntelWatch;
use control::intel::feeds::{FeedSource, Loader};
use control::intel::{Action, Format, Severity};
use reqwest::Method;
use std::time::{Duration, Instant};

fn with_feeds(bed: &Bed) -> std::path::PathBuf {
    let dir = bed._dir.0.clone();
    let ips = dir.join("c2.txt");
    std::fs::write(&ips, "203.0.113.66\nnot an address\n198.51.100.0/24\n").unwrap();
    let names = dir.join("names.txt");
    std::fs::write(&names, "0.0.0.0 evil.example\n").unwrap();
    let source = |name: &str, path: &std::path::Path, format, action| FeedSource {
        name: name.into(),
        path: path.to_path_buf(),
        format,
        action,
        severity: Severity::High,
        quarantine: false,
        force: false,
        managed: false,
    };
    let loader = Loader::new(
        vec![
            source("c2", &ips, Format::List, Action::Block),
            source("names", &names, Format::Hosts, Action::Alert),
        ],
        &dir,
        vec![],
    )
    .unwrap();
    let h = bed.engine.as_ref().unwrap().handle.clone();
    IntelWatch::start(loader, h, Duration::from_secs(3600), None).unwrap();
    ips
}

#[test]
fn the_feeds_their_problems_and_a_lookup_are_served_and_only_admins_reload() {
    let bed = Bed::start();
    // Without feeds: nothing in force, said plainly.
    let v = json(bed.get("/api/v1/intel", &bed.viewer), 200);
    assert_eq!(v["generation"], 0);
    assert_eq!(v["feeds"].as_array().unwrap().len(), 0);
    let r = json(
        bed.req(Method::POST, "/api/v1/intel/reload", &bed.admin)
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(r["reloading"], false);

    let ips = with_feeds(&bed);
    let v = json(bed.get("/api/v1/intel", &bed.viewer), 200);
    assert_eq!(v["entries"], 3);
    let c2 = &v["feeds"][0];
    assert_eq!(c2["name"], "c2");
    assert_eq!(c2["action"], "block");
    assert_eq!(c2["entries"], 2);
    assert_eq!(c2["origin"], "file");
    assert_eq!(c2["problems"], 1);
    assert_eq!(c2["problem_lines"][0]["line"], 2);
    assert_eq!(v["feeds"][1]["format"], "hosts");

    let look = |q: &str| {
        json(
            bed.get(&format!("/api/v1/intel/lookup?q={q}"), &bed.viewer),
            200,
        )
    };
    let m = look("198.51.100.7");
    assert_eq!(m["match"]["feed"], "c2");
    assert_eq!(m["match"]["listed"], "198.51.100.0/24");
    assert_eq!(look("www.Evil.Example.")["match"]["listed"], "evil.example");
    assert_eq!(look("www.Evil.Example.")["match"]["action"], "alert");
    assert!(look("192.0.2.1")["match"].is_null());
    for bad in ["", "a%20b", "%3Cscript%3E"] {
        let e = error(
            bed.get(&format!("/api/v1/intel/lookup?q={bad}"), &bed.viewer),
            400,
        );
        assert_eq!(e["field"], "q", "{bad:?}: {e}");
    }

    // Reload: admins only; a new generation follows.
    error(
        bed.req(Method::POST, "/api/v1/intel/reload", &bed.operator)
            .send()
            .unwrap(),
        403,
    );
    let before = v["generation"].as_u64().unwrap();
    std::fs::write(&ips, "203.0.113.66\n").unwrap();
    let r = json(
        bed.req(Method::POST, "/api/v1/intel/reload", &bed.admin)
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(r["reloading"], true);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let v = json(bed.get("/api/v1/intel", &bed.viewer), 200);
        if v["generation"].as_u64().unwrap() > before {
            assert_eq!(v["feeds"][0]["entries"], 1);
            break;
        }
        assert!(Instant::now() < until, "the reload is in force");
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = bed.get("/metrics", &bed.viewer).text().unwrap();
    assert!(
        metrics.contains("bulkhead_intel_entries{feed=\"c2\",action=\"block\",origin=\"file\"} 1"),
        "{metrics}"
    );
}

#[test]
fn feeds_are_made_filled_and_emptied_through_the_api_by_admins() {
    let bed = Bed::start();
    let _ips = with_feeds(&bed);
    let admin =
        |m: Method, path: &str, body: serde_json::Value| bed.send_json(m, path, &bed.admin, &body);
    // Operators may not; a config feed is not edited here.
    error(
        bed.send_json(
            Method::POST,
            "/api/v1/intel/feeds",
            &bed.operator,
            &serde_json::json!({"name": "soc"}),
        ),
        403,
    );
    let e = error(
        admin(
            Method::POST,
            "/api/v1/intel/feeds/c2/entries",
            serde_json::json!({"entries": [{"indicator": "192.0.2.1"}]}),
        ),
        409,
    );
    assert!(e["message"].as_str().unwrap().contains("config"), "{e}");
    let e = error(
        admin(
            Method::POST,
            "/api/v1/intel/feeds",
            serde_json::json!({"name": "soc", "action": "drop"}),
        ),
        400,
    );
    assert_eq!(e["field"], "action");

    let made = json(
        admin(
            Method::POST,
            "/api/v1/intel/feeds",
            serde_json::json!({"name": "soc", "action": "block", "severity": "critical"}),
        ),
        201,
    );
    assert_eq!(made["feed"], "soc");
    error(
        admin(
            Method::POST,
            "/api/v1/intel/feeds",
            serde_json::json!({"name": "soc"}),
        ),
        409,
    );
    let added = json(
        admin(
            Method::POST,
            "/api/v1/intel/feeds/soc/entries",
            serde_json::json!({"entries": [
                {"indicator": "192.0.2.66", "category": "c2"},
                {"indicator": "10.20.0.0/16"},
                {"indicator": "bad.example", "severity": "low"},
                {"indicator": "0.0.0.0/0"},
                {"indicator": "<script>"}
            ]}),
        ),
        200,
    );
    assert_eq!(added["added"], 3, "{added}");
    assert_eq!(added["refused"].as_array().unwrap().len(), 2, "{added}");
    assert_eq!(added["refused"][0]["indicator"], "0.0.0.0/0");
    let generation = added["generation"].as_u64().unwrap();
    let v = json(bed.get("/api/v1/intel", &bed.viewer), 200);
    assert_eq!(
        v["generation"].as_u64().unwrap(),
        generation,
        "in force at the answer"
    );
    let soc = v["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "soc")
        .unwrap()
        .clone();
    assert_eq!(soc["origin"], "api");
    assert_eq!(soc["entries"], 3);
    let m = json(
        bed.get("/api/v1/intel/lookup?q=www.bad.example", &bed.viewer),
        200,
    );
    assert_eq!(m["match"]["feed"], "soc");
    assert_eq!(m["match"]["severity"], "low");

    let page = json(
        bed.get("/api/v1/intel/feeds/soc/entries?limit=2", &bed.viewer),
        200,
    );
    assert_eq!(page["total"], 3);
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    assert_eq!(page["entries"][0]["indicator"], "192.0.2.66");
    assert_eq!(page["entries"][0]["category"], "c2");
    // When it was added: the same time the lookup gives.
    let added = page["entries"][0]["added_at"].as_str().unwrap().to_string();
    assert!(added.starts_with("20") && added.ends_with('Z'), "{added}");
    let found = json(
        bed.get("/api/v1/intel/lookup?q=192.0.2.66", &bed.viewer),
        200,
    );
    assert_eq!(found["match"]["added_at"], added.as_str());
    let page = json(
        bed.get("/api/v1/intel/feeds/soc/entries?offset=2", &bed.viewer),
        200,
    );
    assert_eq!(page["entries"][0]["severity"], "low");
    error(
        bed.get("/api/v1/intel/feeds/nope/entries", &bed.viewer),
        404,
    );

    let gone = json(
        bed.req(
            Method::DELETE,
            "/api/v1/intel/feeds/soc/entries/10.20.0.0%2F16",
            &bed.admin,
        )
        .send()
        .unwrap(),
        200,
    );
    assert_eq!(gone["removed"], 1);
    let gone = json(
        bed.req(Method::DELETE, "/api/v1/intel/feeds/soc", &bed.admin)
            .send()
            .unwrap(),
        200,
    );
    assert!(gone["generation"].as_u64().unwrap() > generation);
    let m = json(
        bed.get("/api/v1/intel/lookup?q=192.0.2.66", &bed.viewer),
        200,
    );
    assert!(m["match"].is_null());
}

/// A records store in which web-1 resolved `c2.late.test` an hour ago.
fn resolved_an_hour_ago() -> (crate::common::TempDir, std::path::PathBuf, i64) {
    use control::dns::{Answer, AnswerData, DnsResponse};
    use control::records::{Batch, Identity, RecordsConfig, RecordsWriter, StoredDns};
    use std::sync::atomic::Ordering;
    let dir = crate::common::temp_dir("intel-hunt");
    let path = dir.0.join("records.db");
    let at_ms = control::time::Timestamp::now().millis() - 3_600_000;
    let mac: dataplane::wire::MacAddr = crate::common::WEB.parse().unwrap();
    let dns = StoredDns {
        response: DnsResponse {
            time: 0,
            client_mac: mac,
            client_ip: "10.0.0.11".parse().unwrap(),
            server_ip: "10.0.0.53".parse().unwrap(),
            vlan: [0, 0],
            qname: "c2.late.test".into(),
            qtype: 1,
            rcode: 0,
            answers: vec![Answer {
                name: "c2.late.test".into(),
                ttl: 60,
                data: AnswerData::Addr("203.0.113.77".parse().unwrap()),
            }],
        },
        time_ms: at_ms,
        client: std::sync::Arc::new(Identity {
            mac,
            name: "web-1".into(),
            labels: Default::default(),
            groups: vec![],
        }),
    };
    let w = RecordsWriter::start(&path, RecordsConfig::for_import()).unwrap();
    assert!(w
        .try_submit_batch(Batch {
            dns: vec![dns],
            flows: vec![],
            addresses: vec![],
        })
        .is_ok());
    let c = w.counters();
    let until = Instant::now() + Duration::from_secs(10);
    while c.dns_written.load(Ordering::Relaxed) < 1 {
        assert!(Instant::now() < until, "the resolution is written");
        std::thread::sleep(Duration::from_millis(10));
    }
    w.finish();
    (dir, path, at_ms)
}

#[test]
fn an_entry_added_through_the_api_is_hunted_in_the_records_of_an_hour_ago() {
    let (_records, path, at_ms) = resolved_an_hour_ago();
    let bed = Bed::with(|cfg| cfg.records = Some(path.clone()));
    let loader = Loader::new(vec![], &bed._dir.0, vec![]).unwrap();
    let h = bed.engine.as_ref().unwrap().handle.clone();
    let plan = control::engine::HuntPlan {
        records: path.clone(),
        window_ms: 7 * 86_400_000,
    };
    IntelWatch::start(loader, h, Duration::from_secs(3600), Some(plan)).unwrap();
    let admin =
        |path: &str, body: serde_json::Value| bed.send_json(Method::POST, path, &bed.admin, &body);
    json(
        admin(
            "/api/v1/intel/feeds",
            serde_json::json!({"name": "soc", "action": "block"}),
        ),
        201,
    );
    let added = json(
        admin(
            "/api/v1/intel/feeds/soc/entries",
            serde_json::json!({"entries": [{"indicator": "late.test", "category": "c2"}]}),
        ),
        200,
    );
    assert_eq!(added["added"], 1);
    let until = Instant::now() + Duration::from_secs(10);
    let alert = loop {
        let list = json(bed.get("/api/v1/alerts?kind=intel-retro", &bed.viewer), 200);
        if let Some(a) = list.as_array().and_then(|l| l.first()) {
            break a.clone();
        }
        assert!(Instant::now() < until, "a retro-hunt alert");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(alert["mac"], crate::common::WEB);
    assert_eq!(alert["indicator"], "late.test");
    assert_eq!(alert["workload"], "web-1");
    let summary = alert["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("web-1 resolved c2.late.test at ")
            && summary.ends_with("before feed soc listed late.test"),
        "{summary}"
    );
    assert_eq!(alert["evidence"]["entry"]["feed"], "soc");
    let first = &alert["evidence"]["resolutions"][0];
    assert!(first.to_string().contains("c2.late.test"), "{alert}");
    // The resolution of an hour ago, by its time (records keep
    // milliseconds).
    let then = control::time::Timestamp(u64::try_from(at_ms).unwrap() * 1_000_000)
        .to_string()
        .replace("000000Z", "Z");
    // A whole second prints without a fraction; records keep `.000`.
    let then = if then.len() == "2026-01-01T00:00:00Z".len() {
        then.replace('Z', ".000Z")
    } else {
        then
    };
    assert_eq!(first["time"], then.as_str(), "{alert}");
    let v = json(bed.get("/api/v1/intel", &bed.viewer), 200);
    assert_eq!(v["hunt"]["searched"], 1);
}
