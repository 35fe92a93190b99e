//! Feeds managed through the API: made, filled and emptied through the
//! control handle, in force before the call returns, kept across a
//! restart, refused with a reason when the call is wrong.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]

use super::*;
use crate::engine::IntelWatch;
use crate::intel::feeds::{EntryInput, Loader, ManagedError, ManagedFeed, ManagedOp};
use crate::intel::{Action as FeedAction, Severity};

fn entry(indicator: &str) -> EntryInput {
    EntryInput {
        indicator: indicator.into(),
        category: Some("c2, botnet".into()),
        severity: None,
    }
}

fn create(name: &str) -> ManagedOp {
    ManagedOp::Create(ManagedFeed {
        name: name.into(),
        action: FeedAction::Block,
        severity: Severity::Critical,
        quarantine: false,
        force: false,
    })
}

#[test]
fn an_entry_added_through_the_api_is_in_force_at_the_answer_and_kept_across_a_restart() {
    let bed = start("intel-managed");
    let h = &bed.engine.handle;
    let dir = bed._dir.0.clone();
    let loader = Loader::new(vec![], &dir, vec!["10.0.3.0/24".parse().unwrap()]).unwrap();
    let watch = IntelWatch::start(loader, h.clone(), Duration::from_secs(60), None).unwrap();
    assert!(h.intel().feeds.is_empty());

    h.manage_intel(create("soc")).unwrap();
    assert_eq!(h.intel().feeds[0].source.name, "soc");
    assert_eq!(h.intel().feeds[0].origin.name(), "api");
    let before = bed.cell.generation();
    let done = h
        .manage_intel(ManagedOp::Add {
            feed: "soc".into(),
            entries: vec![
                entry("10.0.0.21"),
                entry("evil.test"),
                entry("10.0.0.21"),
                entry("10.0.3.9"),
                entry("com"),
                entry("not an indicator"),
            ],
        })
        .unwrap();
    assert_eq!(done.added, 2);
    assert_eq!(done.already, 1, "listed twice in the call");
    let refused: Vec<&str> = done.refused.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(refused, ["10.0.3.9", "com", "not an indicator"]);
    assert!(done.generation > before);
    assert_eq!(
        bed.cell.generation(),
        done.generation,
        "in force at the answer"
    );
    assert_eq!(bed.web_to_db(), Action::Deny);
    let m = h.intel();
    let listed = m.intel.domain("www.evil.test").unwrap();
    assert_eq!(listed.feed.name, "soc");
    assert_eq!(listed.category, Some("c2, botnet"));
    assert_eq!(listed.severity, Severity::Critical);
    let (entries, total) = h.managed_entries("soc", 0, 10).unwrap();
    assert_eq!(total, 2);
    assert_eq!(entries[1].entry.indicator.to_string(), "evil.test");
    assert_eq!(entries[1].added_ms, Some(listed.added_ms), "one time, kept");
    let added = listed.added_ms;

    // Wrong calls say why.
    let e = h.manage_intel(create("soc")).unwrap_err();
    assert!(
        matches!(e, ControlError::Feed(ManagedError::Exists(_))),
        "{e}"
    );
    let e = h.manage_intel(create("../x")).unwrap_err();
    assert!(
        matches!(e, ControlError::Feed(ManagedError::Name(_))),
        "{e}"
    );
    let e = h
        .manage_intel(ManagedOp::Add {
            feed: "nope".into(),
            entries: vec![entry("192.0.2.1")],
        })
        .unwrap_err();
    assert!(
        matches!(e, ControlError::Feed(ManagedError::NoFeed(_))),
        "{e}"
    );

    // A restart reads them back: same entries, same feed, same times (the
    // file's, not when it was last written: an hour later here).
    drop(watch);
    let csv = std::fs::File::options()
        .write(true)
        .open(dir.join("intel/managed/soc.csv"))
        .unwrap();
    csv.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    let loader = Loader::new(vec![], &dir, vec![]).unwrap();
    let mut again = loader;
    let loaded = again.load();
    assert_eq!(loaded.intel.len(), 2);
    assert_eq!(loaded.intel.domain("evil.test").unwrap().added_ms, added);
    assert_eq!(loaded.feeds[0].source.action, FeedAction::Block);
    assert!(loaded.added.is_empty(), "nothing new after a restart");

    // Removed: the rules decide again.
    let done = h
        .manage_intel(ManagedOp::Remove {
            feed: "soc".into(),
            indicators: vec!["10.0.0.21/32".into(), "192.0.2.9".into()],
        })
        .unwrap();
    assert_eq!(done.removed, 1);
    assert_eq!(done.not_found, ["192.0.2.9"]);
    assert_eq!(bed.web_to_db(), Action::Allow);
    h.manage_intel(ManagedOp::Delete("soc".into())).unwrap();
    assert!(h.intel().feeds.is_empty());
    assert!(h.intel().intel.domain("evil.test").is_none());
    assert!(!dir.join("intel/managed/soc.csv").exists());
}

#[test]
fn a_feed_file_of_the_config_is_not_edited_through_the_api() {
    let bed = start("intel-managed-file");
    let h = &bed.engine.handle;
    let dir = bed._dir.0.clone();
    let path = dir.join("c2.txt");
    std::fs::write(&path, "192.0.2.1\n").unwrap();
    let source = crate::intel::feeds::FeedSource {
        name: "c2".into(),
        path,
        format: crate::intel::Format::List,
        action: FeedAction::Block,
        severity: Severity::High,
        quarantine: false,
        force: false,
        managed: false,
    };
    let loader = Loader::new(vec![source], &dir, vec![]).unwrap();
    let _watch = IntelWatch::start(loader, h.clone(), Duration::from_secs(60), None).unwrap();
    let e = h
        .manage_intel(ManagedOp::Add {
            feed: "c2".into(),
            entries: vec![entry("192.0.2.2")],
        })
        .unwrap_err();
    assert!(
        matches!(e, ControlError::Feed(ManagedError::NotManaged(_))),
        "{e}"
    );
    let e = h.manage_intel(create("c2")).unwrap_err();
    assert!(
        matches!(e, ControlError::Feed(ManagedError::Exists(_))),
        "{e}"
    );
    let e = h.manage_intel(ManagedOp::Delete("c2".into())).unwrap_err();
    assert!(
        matches!(e, ControlError::Feed(ManagedError::NotManaged(_))),
        "{e}"
    );
    assert_eq!(h.intel().intel.len(), 1);
}
