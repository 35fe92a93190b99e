#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use super::feeds::{check_sources, FeedError, FeedSource, Loader, Origin};
use super::{Action, Format, Severity};
use crate::testutil::TempDir;
use std::path::Path;

fn source(name: &str, path: &Path, format: Format, action: Action) -> FeedSource {
    FeedSource {
        name: name.into(),
        path: path.to_path_buf(),
        format,
        action,
        severity: Severity::High,
        quarantine: false,
        force: false,
        managed: false,
    }
}

fn ip(i: &super::Intel, s: &str) -> Option<(String, i64)> {
    i.ip(s.parse().unwrap())
        .map(|m| (m.feed.name.clone(), m.added_ms))
}

/// A new modification time even on a coarse filesystem clock.
fn rewrite(path: &Path, text: &str) {
    let before = std::fs::metadata(path).ok().and_then(|m| m.modified().ok());
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
    if let Some(t) = before {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(t + std::time::Duration::from_secs(1))
            .unwrap();
    }
}

#[test]
fn feeds_load_with_their_problems_and_reload_only_when_a_file_changes() {
    let dir = TempDir::new("intel-feeds");
    let ips = dir.0.join("ips.txt");
    let csv = dir.0.join("domains.csv");
    std::fs::write(
        &ips,
        "203.0.113.66\n# comment\nnot-an-ip!\n198.51.100.0/24\n",
    )
    .unwrap();
    std::fs::write(&csv, "indicator,category\nc2.evil.example,c2\n").unwrap();
    let mut loader = Loader::new(
        vec![
            source("ips", &ips, Format::List, Action::Block),
            source("names", &csv, Format::Csv, Action::Alert),
        ],
        &dir.0,
        vec![],
    )
    .unwrap();
    let first = loader.poll(false).expect("first load");
    assert_eq!(first.intel.len(), 3);
    assert_eq!(first.feeds[0].entries, 2);
    assert_eq!(first.feeds[0].origin, Origin::File);
    assert_eq!(first.feeds[0].problems.count, 1);
    assert_eq!(first.feeds[0].problems.list[0].line, 3);
    assert_eq!(first.feeds[1].entries, 1);
    assert_eq!(first.intel.blocked().len(), 2);
    let (_, added) = ip(&first.intel, "203.0.113.66").unwrap();
    assert!(loader.poll(false).is_none(), "nothing changed");

    // A changed file: the entry kept keeps its time, the new one is new.
    std::thread::sleep(std::time::Duration::from_millis(5));
    rewrite(&ips, "203.0.113.66\n192.0.2.99\n");
    let second = loader.poll(false).expect("the file changed");
    assert_eq!(
        ip(&second.intel, "203.0.113.66"),
        Some(("ips".into(), added))
    );
    let (_, new) = ip(&second.intel, "192.0.2.99").unwrap();
    assert!(new > added, "{new} > {added}");
    assert_eq!(ip(&second.intel, "198.51.100.7"), None, "removed");
    assert_eq!(second.feeds[0].problems.count, 0);
}

#[test]
fn a_broken_or_missing_file_keeps_the_last_good_version_even_across_a_restart() {
    let dir = TempDir::new("intel-last-good");
    let ips = dir.0.join("ips.txt");
    std::fs::write(&ips, "203.0.113.66\n").unwrap();
    let sources = vec![source("ips", &ips, Format::List, Action::Block)];
    let mut loader = Loader::new(sources.clone(), &dir.0, vec![]).unwrap();
    assert_eq!(loader.load().intel.len(), 1);

    for (broken, why) in [
        ("", "empty"),
        (
            "<html><body>captive portal</body></html>\n",
            "no entry in it",
        ),
    ] {
        rewrite(&ips, broken);
        let l = loader.poll(false).expect("the file changed");
        assert_eq!(l.feeds[0].origin, Origin::LastGood, "{broken:?}");
        assert!(l.feeds[0].error.as_deref().unwrap().contains(why), "{l:?}");
        assert!(ip(&l.intel, "203.0.113.66").is_some(), "still blocked");
    }
    std::fs::remove_file(&ips).unwrap();
    let l = loader.poll(false).expect("the file went");
    assert_eq!(l.feeds[0].origin, Origin::LastGood);
    assert!(l.feeds[0]
        .error
        .as_deref()
        .unwrap()
        .contains("No such file"));
    assert!(
        loader.poll(false).is_none(),
        "still missing: not read again"
    );

    // A restart finds the copy.
    let mut again = Loader::new(sources, &dir.0, vec![]).unwrap();
    let l = again.load();
    assert_eq!(l.feeds[0].origin, Origin::LastGood);
    assert_eq!(l.intel.len(), 1);

    // No copy and no file: nothing, said so.
    let other = dir.0.join("never.txt");
    let mut none = Loader::new(
        vec![source("never", &other, Format::List, Action::Alert)],
        &dir.0,
        vec![],
    )
    .unwrap();
    let l = none.load();
    assert_eq!(l.feeds[0].origin, Origin::Nothing);
    assert_eq!(l.intel.len(), 0);
}

#[test]
fn the_appliance_networks_are_refused_unless_forced() {
    let dir = TempDir::new("intel-protected");
    let ips = dir.0.join("ips.txt");
    std::fs::write(&ips, "192.168.50.7\n203.0.113.66\n").unwrap();
    let protected = vec!["192.168.50.0/24".parse().unwrap()];
    let mut s = source("ips", &ips, Format::List, Action::Block);
    let l = Loader::new(vec![s.clone()], &dir.0, protected.clone())
        .unwrap()
        .load();
    assert_eq!(l.intel.len(), 1);
    assert!(l.feeds[0].problems.list[0].why.contains("192.168.50.0/24"));
    s.force = true;
    let l = Loader::new(vec![s], &dir.0, protected).unwrap().load();
    assert_eq!(l.intel.len(), 2);
}

#[test]
fn feed_names_are_unique_and_file_safe() {
    let p = Path::new("/x");
    let s = |n: &str| source(n, p, Format::List, Action::Alert);
    assert_eq!(
        check_sources(&[s("a"), s("a")]),
        Err(FeedError::Duplicate("a".into()))
    );
    for bad in ["", "../etc", ".hidden", "a b", &"x".repeat(65)] {
        assert_eq!(check_sources(&[s(bad)]), Err(FeedError::Name(bad.into())));
    }
    assert!(check_sources(&[s("abuse.ch-feodo_ips")]).is_ok());
}

#[test]
fn an_api_change_rebuilds_the_api_layer_only_and_a_file_change_the_files_layer_only() {
    use super::feeds::{EntryInput, ManagedFeed, ManagedOp};
    use super::API_LAYER;
    use std::sync::Arc;
    let dir = TempDir::new("intel-layers");
    let ips = dir.0.join("ips.txt");
    std::fs::write(&ips, "203.0.113.66\n198.51.100.0/24\n").unwrap();
    let mut loader = Loader::new(
        vec![source("ips", &ips, Format::List, Action::Block)],
        &dir.0,
        vec![],
    )
    .unwrap();
    let first = loader.load();
    loader
        .manage(ManagedOp::Create(ManagedFeed {
            name: "soc".into(),
            action: Action::Block,
            severity: Severity::Critical,
            quarantine: false,
            force: false,
        }))
        .unwrap();
    let add = |indicator: &str| ManagedOp::Add {
        feed: "soc".into(),
        entries: vec![EntryInput {
            indicator: indicator.into(),
            category: None,
            severity: None,
        }],
    };
    loader.manage(add("192.0.2.7")).unwrap();
    // The file changed meanwhile: an API change does not read it.
    rewrite(&ips, "203.0.113.66\n");
    let api = loader.load_managed();
    assert!(
        Arc::ptr_eq(api.intel.files(), first.intel.files()),
        "files' layer shared"
    );
    assert_eq!(
        api.added,
        vec![super::Indicator::Net("192.0.2.7/32".parse().unwrap())]
    );
    let m = api.intel.ip("192.0.2.7".parse().unwrap()).unwrap();
    assert_eq!((m.feed.name.as_str(), m.id & API_LAYER), ("soc", API_LAYER));
    assert_eq!(
        ip(&api.intel, "198.51.100.9").unwrap().0,
        "ips",
        "file not read"
    );
    let blocked = api.intel.blocked();
    assert_eq!(blocked.len(), 3);
    assert_eq!(blocked.ip("192.0.2.7".parse().unwrap()), Some(m.id));
    assert_eq!(
        api.intel.describe(m.id, &["192.0.2.7".parse().unwrap()]),
        Some("soc 192.0.2.7".into())
    );
    let names: Vec<_> = api.feeds.iter().map(|f| f.source.name.as_str()).collect();
    assert_eq!(names, ["ips", "soc"], "the files' status kept");

    // The file's change is read by the next poll, without the API's layer.
    let polled = loader.poll(false).unwrap();
    assert!(
        Arc::ptr_eq(polled.intel.api(), api.intel.api()),
        "API layer shared"
    );
    assert!(ip(&polled.intel, "198.51.100.9").is_none());
    assert!(polled.intel.ip("192.0.2.7".parse().unwrap()).is_some());
    assert!(loader.poll(false).is_none(), "nothing changed since");

    // An entry in both layers: the files' matches first; both block.
    loader.manage(add("203.0.113.66")).unwrap();
    let both = loader.load_managed();
    let m = both.intel.ip("203.0.113.66".parse().unwrap()).unwrap();
    assert_eq!(m.feed.name, "ips");
    assert!(both.intel.blocked().ips[1]
        .lookup("203.0.113.66".parse().unwrap())
        .is_some_and(|id| id & API_LAYER != 0));
}
