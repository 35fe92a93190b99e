//! `GET /api/v1/flows/follow`: a live tail of a real records store as
//! server-sent events, filtered like `GET /flows`, resumable after an event's
//! id, bounded in time and in the number open at once.

use crate::common::{error, temp_dir, Bed};
use crate::records::stored;
use control::records::{RecordsConfig, RecordsWriter};
use dataplane::policy::{Action, Reason};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Write records `ids` (every third denied) and wait until they are in.
fn write(path: &std::path::Path, ids: std::ops::Range<u16>) {
    let w = RecordsWriter::start(path, RecordsConfig::default()).unwrap();
    let now = i64::try_from(control::time::Timestamp::now().0 / 1_000_000).unwrap();
    let n = ids.len() as u64;
    let batch = ids
        .map(|i| {
            let (action, reason) = if i % 3 == 0 {
                (Action::Deny, Reason::Rule(50))
            } else {
                (Action::Allow, Reason::Rule(10))
            };
            stored(i, action, reason, now)
        })
        .collect();
    assert!(w.submit(batch));
    let c = w.counters();
    let until = Instant::now() + Duration::from_secs(10);
    while c.written.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < until, "records written");
        std::thread::sleep(Duration::from_millis(10));
    }
    w.finish();
}

/// The events of a stream, read until the server ends it: (id, flow).
fn events(resp: reqwest::blocking::Response) -> Vec<(i64, Value)> {
    assert_eq!(resp.status(), 200);
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    let (mut out, mut id, mut name) = (Vec::new(), None, None);
    let mut started = false;
    for line in BufReader::new(resp).lines() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse::<i64>().unwrap());
        } else if let Some(v) = line.strip_prefix("event: ") {
            name = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("data: ") {
            let id = id.take().expect("an id per event");
            let data: Value = serde_json::from_str(v).unwrap();
            if name.as_deref() == Some("start") {
                assert!(!started && out.is_empty(), "one start, first");
                assert_eq!(data["after"], id);
                started = true;
                continue;
            }
            assert_eq!(name.as_deref(), Some("flow"));
            out.push((id, data));
        }
    }
    assert!(started, "a start event");
    out
}

#[test]
fn a_tail_streams_new_matching_records_and_resumes_after_an_id() {
    let dir = temp_dir("follow");
    let path = dir.0.join("records.db");
    write(&path, 0..6);
    let bed = Bed::with(|cfg| cfg.records = Some(path.clone()));
    // Denied records written from now on, for 3 seconds.
    let resp = bed.get("/api/v1/flows/follow?verdict=deny&seconds=3", &bed.viewer);
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            write(&path, 100..109);
        })
    };
    let got = events(resp);
    writer.join().unwrap();
    let ports: Vec<i64> = got
        .iter()
        .map(|(_, f)| f["src"]["port"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ports,
        [40102, 40105, 40108],
        "only the new denied ones, in order"
    );
    assert!(got.iter().all(|(_, f)| f["verdict"] == "deny"));
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "ids ascend");

    // Reconnecting after the first event's id gets the rest, nothing twice.
    let after = got[0].0;
    let again = events(bed.get(
        &format!("/api/v1/flows/follow?verdict=deny&seconds=1&after={after}"),
        &bed.viewer,
    ));
    assert_eq!(again, got[1..].to_vec());
    // So does a browser's Last-Event-ID.
    let resp = bed
        .req(
            reqwest::Method::GET,
            "/api/v1/flows/follow?verdict=deny&seconds=1",
            &bed.viewer,
        )
        .header("Last-Event-ID", after.to_string())
        .send()
        .unwrap();
    assert_eq!(events(resp), got[1..].to_vec());
}

#[test]
fn tails_are_bounded_and_bad_parameters_are_400s() {
    let dir = temp_dir("follow-bounds");
    let path = dir.0.join("records.db");
    write(&path, 0..1);
    let bed = Bed::with(|cfg| cfg.records = Some(path.clone()));
    for (query, field) in [
        ("seconds=0", "seconds"),
        ("seconds=99999", "seconds"),
        ("seconds=ten", "seconds"),
        ("after=-1", "after"),
        ("verdict=maybe", "verdict"),
    ] {
        let e = error(
            bed.get(&format!("/api/v1/flows/follow?{query}"), &bed.viewer),
            400,
        );
        assert_eq!(e["field"], field, "{query}: {e}");
    }
    // Eight open at once; the ninth is refused until one ends.
    let open: Vec<_> = (0..mgmt_api::routes::follow::MAX_TAILS)
        .map(|_| {
            let r = bed.get("/api/v1/flows/follow?seconds=30", &bed.viewer);
            assert_eq!(r.status(), 200);
            r
        })
        .collect();
    error(bed.get("/api/v1/flows/follow?seconds=30", &bed.viewer), 429);
    drop(open);
    // The server notices the closed connections within a poll or two.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let r = bed.get("/api/v1/flows/follow?seconds=1", &bed.viewer);
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < until, "a slot comes back");
        std::thread::sleep(Duration::from_millis(200));
    }
}
