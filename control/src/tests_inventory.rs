//! Inventory import: CSV and JSON, bad lines reported by number, and the import's
//! effect on group membership.
//!
//! Compiled only with `cfg(test)`: its `unwrap`/`expect` fail a test on a
//! fixture the test wrote itself; none touches a packet, a file or a request
//! of the running appliance.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a cfg(test) module: unwrap/expect fail a test on a fixture the test wrote; none touches a packet, a file or a request of the running appliance"
)]

use crate::compile::compile;
use crate::inventory::{load_inventory, parse_csv, parse_json, parse_labels, ImportError};
use crate::model::{Origin, Timestamp};
use crate::tests_compile::example;
use dataplane::policy::parse_mac;

fn problems(e: ImportError) -> Vec<(usize, String)> {
    match e {
        ImportError::Invalid { problems, .. } => {
            problems.into_iter().map(|p| (p.line, p.message)).collect()
        }
        other => panic!("not a content error: {other}"),
    }
}

#[test]
fn labels_parse_from_key_value_pairs() {
    let l = parse_labels(" app=web; env = prod ;;zone=dmz").expect("labels");
    assert_eq!(l.len(), 3);
    assert_eq!(l["env"], "prod");
    assert!(parse_labels("").expect("empty").is_empty());
    assert!(parse_labels("app").unwrap_err().contains("key=value"));
    assert!(parse_labels("app=web;app=db")
        .unwrap_err()
        .contains("twice"));
    assert!(parse_labels("=web")
        .unwrap_err()
        .contains("empty label key"));
}

#[test]
fn csv_with_a_header_imports_names_and_labels() {
    let text = "\
mac,name,labels,uuid
# exported from vCenter
02:00:00:00:01:05,web-5,app=web;env=prod,4211-aa
\"02-00-00-00-02-05\",\"db, the fifth\",\"app=db\",4211-bb

02:00:00:00:07:01,,,
";
    let ws = parse_csv(text, "vms.csv").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ws.len(), 3);
    assert_eq!(ws[0].labels["env"], "prod");
    assert_eq!(ws[1].mac, "02:00:00:00:02:05");
    assert_eq!(ws[1].name, "db, the fifth");
    assert!(ws[2].labels.is_empty());
    assert!(ws.iter().all(|w| w.origin == Origin::Imported));
}

#[test]
fn csv_without_a_header_is_positional() {
    let ws = parse_csv(
        "02:00:00:00:01:05,web-5,app=web\n02:00:00:00:01:06\n",
        "x.csv",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ws.len(), 2);
    assert_eq!(ws[1].name, "");
}

#[test]
fn csv_bad_lines_are_all_reported_by_number() {
    let text = "\
mac,name,labels
02:00:00:00:01:05,web-5,app=web
02:00:00:00:01:0x,web-6,app=web
02:00:00:00:01:07,web-7,app
02:00:00:00:01:05,again,app=web
02:00:00:00:01:08,web-8,bad key=1
";
    let e = parse_csv(text, "vms.csv").expect_err("bad lines");
    let shown = e.to_string();
    assert!(shown.starts_with("vms.csv:3: invalid MAC"), "{shown}");
    let p = problems(e);
    let lines: Vec<usize> = p.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [3, 4, 5, 6], "{p:?}");
    assert!(p[1].1.contains("key=value"));
    assert!(p[2].1.contains("duplicate MAC") && p[2].1.contains("also line 2"));
    assert!(p[3].1.contains("may not contain whitespace"));
    let p = problems(parse_csv("02:00:00:00:01:05,a,b=c,extra\n", "x.csv").expect_err("too many"));
    assert_eq!(p[0].0, 1);
    assert!(p[0].1.contains("expected mac,name,labels"));
}

#[test]
fn json_array_imports_with_scalar_label_values() {
    let text = r#"[
  {"mac": "02:00:00:00:01:05", "name": "web-5", "labels": {"app": "web", "tier": 1, "pci": true},
   "ips": ["10.0.1.15"], "uuid": "4211-aa"},
  {"mac": "02:00:00:00:02:05"}
]"#;
    let ws = parse_json(text, "vms.json").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ws.len(), 2);
    assert_eq!(ws[0].labels["tier"], "1");
    assert_eq!(ws[0].labels["pci"], "true");
    assert_eq!(ws[0].ips, ["10.0.1.15"]);
    assert!(parse_json(" [ ] ", "e.json").expect("empty").is_empty());
}

#[test]
fn json_bad_entries_are_reported_by_the_line_they_start_on() {
    let text = r#"[
  {"mac": "02:00:00:00:01:05", "name": "ok"},
  {"mac": "nope", "name": "bad mac"},
  {"name": "no mac"},
  {"mac": "02:00:00:00:01:06",
   "labels": {"app": ["web"]}}
]"#;
    let p = problems(parse_json(text, "vms.json").expect_err("bad entries"));
    let lines: Vec<usize> = p.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [3, 4, 5], "{p:?}");
    assert!(p[0].1.contains("invalid MAC \"nope\""));
    assert!(p[1].1.contains("missing field `mac`"));
    assert!(p[2].1.contains("not a string"));

    let p = problems(
        parse_json(
            "[\n {\"mac\": \"02:00:00:00:01:05\"},\n {\"mac\": }\n]",
            "s.json",
        )
        .expect_err("syntax"),
    );
    assert_eq!(p[0].0, 3, "{p:?}");
    assert!(p[0].1.contains("invalid JSON"));
    let p = problems(parse_json("{\"mac\": \"x\"}", "o.json").expect_err("not an array"));
    assert_eq!(p[0].0, 1);
    let p = problems(
        parse_json("[\n {\"mac\": \"02:00:00:00:01:05\"}\n {}]", "c.json").expect_err("comma"),
    );
    assert_eq!(p[0].0, 3, "{p:?}");
}

#[test]
fn importing_updates_workloads_and_their_groups() {
    let mut m = example();
    // An observed workload, then the inventory tells what it is.
    let a = parse_mac("02:00:00:00:07:01").expect("mac");
    m.observe(a, None, None, Timestamp(1));
    let ws = parse_csv(
        "mac,name,labels\n02:00:00:00:07:01,db-7,app=db\n02:00:00:00:02:01,db-1,app=db\n02:00:00:00:01:01,web-1,app=web;env=prod\n02:00:00:00:08:01,new,app=web\n",
        "inv.csv",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let s = m.import_workloads(ws);
    assert_eq!((s.added, s.updated, s.unchanged), (1, 2, 1), "{s}");
    let w = m.workloads.by_mac(a).expect("workload");
    assert_eq!((w.name.as_str(), w.origin), ("db-7", Origin::Imported));
    let c = compile(&m).unwrap_or_else(|e| panic!("{e}"));
    let members: Vec<(&str, usize)> = c
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.members))
        .collect();
    assert_eq!(members[0], ("web", 3));
    assert_eq!(members[1], ("db", 2));
}

#[test]
fn inventory_files_are_chosen_by_extension() {
    let dir = std::env::temp_dir().join(format!("bulkhead-inv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let csv = dir.join("a.csv");
    std::fs::write(&csv, "02:00:00:00:01:05,web-5,app=web\n").expect("write");
    assert_eq!(load_inventory(&csv).expect("csv").len(), 1);
    let json = dir.join("a.JSON");
    std::fs::write(&json, "[{\"mac\": \"02:00:00:00:01:05\"}]").expect("write");
    assert_eq!(load_inventory(&json).expect("json").len(), 1);
    let bad = dir.join("a.xml");
    assert!(matches!(
        load_inventory(&bad),
        Err(ImportError::UnknownFormat { .. })
    ));
    let missing = dir.join("missing.csv");
    assert!(matches!(
        load_inventory(&missing),
        Err(ImportError::Io { .. })
    ));
}
