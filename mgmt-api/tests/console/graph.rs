//! The console's access graph and flows table over a real records store:
//! flows written by `RecordsWriter` into a temporary store before the server
//! starts (and two more while the table is live), the graph drawn by
//! cytoscape.js at workload and group level and over two windows, an edge's
//! flows listed by clicking it, the table's filters, paging, errors and live
//! mode. A screenshot of the graph is kept as `console-graph.png` in the
//! target directory.

use crate::common::{self, temp_dir, Bed, TempDir};
use crate::webdriver::{self, Driver, Session};
use control::records::{Identity, StoredFlow};
use dataplane::policy::{Action, Mode, Reason, Verdict};
use dataplane::wire::MacAddr;
use serde_json::{json, Value};
use std::path::PathBuf;

const WEB1: &str = "02:00:00:00:01:01";
const DB1: &str = "02:00:00:00:02:01";
const EXTERNAL: &str = "203.0.113.7";
const MINUTE: i64 = 60_000;

fn end(mac: [u8; 6], name: &str, groups: &[&str]) -> Identity {
    Identity {
        mac: MacAddr(mac),
        name: name.into(),
        labels: Default::default(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

struct Ends {
    web1: (Identity, &'static str),
    web2: (Identity, &'static str),
    db1: (Identity, &'static str),
    jump1: (Identity, &'static str),
    admin1: (Identity, &'static str),
    outside: (Identity, &'static str),
}

fn ends() -> Ends {
    Ends {
        web1: (end([2, 0, 0, 0, 1, 1], "web-1", &["web"]), "10.0.0.11"),
        web2: (end([2, 0, 0, 0, 1, 2], "web-2", &["web"]), "10.0.0.12"),
        db1: (end([2, 0, 0, 0, 2, 1], "db-1", &["db"]), "10.0.0.21"),
        // A named workload in no group.
        jump1: (end([2, 0, 0, 0, 4, 1], "jump-1", &[]), "10.0.4.7"),
        admin1: (end([2, 0, 0, 0, 3, 1], "admin-1", &["admins"]), "10.0.3.5"),
        // The router's MAC, an address no workload has.
        outside: (Identity::unknown(MacAddr([2, 0, 0, 0, 0xff, 1])), EXTERNAL),
    }
}

#[derive(Clone, Copy)]
enum V {
    Allow,
    Deny,
    WouldDeny,
}

/// One ended flow from `src` to `dst` on `proto`/`port`, last seen at `last_ms`.
fn flow(
    src: &common::End,
    dst: &common::End,
    proto: u8,
    port: u16,
    v: V,
    n: u16,
    last_ms: i64,
) -> StoredFlow {
    let (action, reason, mode, would_deny) = match v {
        V::Allow => (Action::Allow, Reason::Rule(10), Mode::Enforce, false),
        V::Deny => (Action::Deny, Reason::Rule(50), Mode::Enforce, false),
        V::WouldDeny => (Action::Allow, Reason::Default, Mode::Audit, true),
    };
    let verdict = Verdict {
        action,
        reason,
        mode,
        would_deny,
    };
    common::ended_flow(src, dst, (proto, port), verdict, n, last_ms)
}

fn now_ms() -> i64 {
    i64::try_from(control::time::Timestamp::now().0 / 1_000_000).unwrap()
}

/// The store the console shows: 131 flows, one of them 3 hours old.
fn store() -> (TempDir, PathBuf) {
    let dir = temp_dir("console-records");
    let path = dir.0.join("records.db");
    let e = ends();
    let now = now_ms();
    let mut batch = Vec::new();
    for i in 0..4 {
        batch.push(flow(
            &e.web1,
            &e.db1,
            6,
            5432,
            V::Allow,
            i,
            now - MINUTE - i64::from(i) * 1000,
        ));
    }
    batch.push(flow(&e.web2, &e.db1, 6, 5432, V::Allow, 4, now - 50_000));
    for i in 0..3 {
        batch.push(flow(
            &e.web1,
            &e.db1,
            6,
            445,
            V::Deny,
            10 + i,
            now - 40_000 - i64::from(i) * 1000,
        ));
    }
    for i in 0..2 {
        batch.push(flow(
            &e.web1,
            &e.outside,
            6,
            443,
            V::WouldDeny,
            20 + i,
            now - 30_000 - i64::from(i) * 1000,
        ));
    }
    for i in 0..120 {
        batch.push(flow(
            &e.web2,
            &e.db1,
            17,
            53,
            V::Allow,
            100 + i,
            now - 2 * MINUTE - i64::from(i) * 100,
        ));
    }
    batch.push(flow(
        &e.jump1,
        &e.db1,
        6,
        22,
        V::Deny,
        30,
        now - 180 * MINUTE,
    ));
    common::write_records(&path, batch);
    (dir, path)
}

/// The rows of the flows table, once it is loaded with `n` of them.
fn rows(s: &Session, n: usize) -> Vec<Value> {
    let script = "const b = document.getElementById('flows');
        if (b.dataset.state !== 'ready') { return null; }
        return Array.from(b.rows).map(tr => Object.assign({}, tr.dataset));";
    let v = s.wait_script(script, |v| v.as_array().is_some_and(|a| a.len() == n));
    v.as_array().unwrap().clone()
}

fn all(rows: &[Value], key: &str, want: &str) {
    for r in rows {
        assert_eq!(r[key], want, "{key} of {r}");
    }
}

/// The graph once drawn: its node and edge counts.
fn drawn(s: &Session, nodes: u64, edges: u64) {
    let script = "const b = document.getElementById('graph');
        if (b.dataset.state !== 'ready' || !graph.cy) { return null; }
        return [graph.cy.nodes().length, graph.cy.edges().length,
                Number(b.dataset.nodes), Number(b.dataset.edges)];";
    s.wait_script(script, |v| *v == json!([nodes, edges, nodes, edges]));
}

/// The ids of the edges from the node labelled `src` to `dst` whose label
/// is `label`.
fn edge(s: &Session, src: &str, dst: &str, label: &str) -> String {
    let v = s.execute(
        "const [src, dst, label] = arguments;
         return graph.cy.edges().filter(e => e.source().data('label') === src
             && e.target().data('label') === dst && e.data('label') === label).map(e => e.id());",
        json!([src, dst, label]),
    );
    let ids = v.as_array().unwrap();
    assert_eq!(ids.len(), 1, "one edge {src} -> {dst} {label}: {v}");
    ids[0].as_str().unwrap().to_string()
}

fn tap(s: &Session, id: &str) {
    s.execute("graph.cy.$id(arguments[0]).emit('tap');", json!([id]));
}

fn value(s: &Session, css: &str) -> String {
    s.execute(
        "return document.querySelector(arguments[0]).value;",
        json!([css]),
    )
    .as_str()
    .unwrap()
    .to_string()
}

/// Where the screenshot goes: the target directory the test binary is in.
fn artefact(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/console-HASH
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    target.join(name)
}

/// A PNG's width and height, from its header.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[test]
fn console_draws_the_access_graph_and_lists_an_edges_flows() {
    if !webdriver::browser_present() {
        return;
    }
    let (_records, path) = store();
    let bed = Bed::with(|cfg| cfg.records = Some(path.clone()));
    let profile = common::temp_dir("chromium-graph");
    let driver = Driver::start();
    let s = Session::new(&driver, &profile.0);
    s.goto(&bed.url("/"));
    // Count what the Content-Security-Policy refuses from here on.
    s.execute(
        "window.cspRefused = [];
         document.addEventListener('securitypolicyviolation',
             e => window.cspRefused.push(e.violatedDirective + ' ' + e.blockedURI));",
        json!([]),
    );
    s.log_in(&bed.viewer);

    // Workload level, the last 24 hours: every flow.
    s.click("button.tab[data-view='graph']");
    drawn(&s, 5, 6);
    s.wait_text("#graph-summary", |t| t.contains("131 flows"));
    let deny = edge(&s, "web-1", "db-1", "tcp/445 \u{d7}3");
    let colours = s.execute(
        "const c = v => graph.cy.edges(`[verdict = '${v}']`).map(e => e.style('line-color'));
         return { deny: c('deny'), allow: c('allow'), would: c('would-deny') };",
        json!([]),
    );
    assert_eq!(colours["deny"], json!(["rgb(198,40,40)", "rgb(198,40,40)"]));
    assert_eq!(colours["allow"].as_array().unwrap().len(), 3, "{colours}");
    assert!(colours["allow"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c == "rgb(46,125,50)"));
    assert_eq!(colours["would"], json!(["rgb(249,168,37)"]));
    // The canvas really has red on it: the deny edges were painted.
    let red = s.wait_script(
        "let red = 0;
         for (const c of document.querySelectorAll('#graph canvas')) {
           if (!c.width || !c.height) { continue; }
           const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
           for (let i = 0; i < d.length; i += 4) {
             if (d[i + 3] > 200 && d[i] > 170 && d[i + 1] < 80 && d[i + 2] < 80) { red++; }
           }
         }
         return red;",
        |v| v.as_u64().is_some_and(|n| n > 50),
    );
    eprintln!("red pixels on the graph's canvas: {red}");

    let png = s.screenshot();
    let (w, h) = png_size(&png);
    assert!(w >= 800 && h >= 500, "screenshot {w}x{h}");
    assert!(
        png.len() > 20_000,
        "a near-empty screenshot: {} bytes",
        png.len()
    );
    let shot = artefact("console-graph.png");
    std::fs::write(&shot, &png).unwrap();
    eprintln!(
        "screenshot: {} ({w}x{h}, {} bytes)",
        shot.display(),
        png.len()
    );

    // Clicking the deny edge lists exactly its flows.
    tap(&s, &deny);
    s.wait_text("#flows-summary", |t| {
        t.contains("Flows of web-1 \u{2192} db-1, tcp/445, deny")
    });
    let r = rows(&s, 3);
    all(&r, "verdict", "deny");
    all(&r, "from", "web-1");
    all(&r, "to", "db-1");
    all(&r, "service", "tcp/445");
    assert_eq!(value(&s, "#f-from"), WEB1);
    assert_eq!(value(&s, "#f-to"), DB1);
    assert_eq!(value(&s, "#f-verdict"), "deny");
    assert_eq!(value(&s, "#f-port"), "445");
    let flows_png = s.screenshot();
    png_size(&flows_png);
    std::fs::write(artefact("console-flows.png"), &flows_png).unwrap();

    // An edge to an external address: its IP is the selector.
    s.click("button.tab[data-view='graph']");
    drawn(&s, 5, 6);
    let would = edge(&s, "web-1", EXTERNAL, "tcp/443 \u{d7}2");
    tap(&s, &would);
    let r = rows(&s, 2);
    all(&r, "verdict", "would-deny");
    all(&r, "to", EXTERNAL);
    assert_eq!(value(&s, "#f-to"), EXTERNAL);

    // The last hour leaves out jump-1's flow of three hours ago.
    s.click("button.tab[data-view='graph']");
    s.click("#graph-window option[value='1h']");
    s.click("#graph-show");
    drawn(&s, 4, 5);
    s.wait_text("#graph-summary", |t| t.contains("130 flows"));

    // Group level: web-1 and web-2 are one node; jump-1 is ungrouped.
    s.click("#graph-window option[value='24h']");
    s.click("#graph-level option[value='group']");
    drawn(&s, 4, 5);
    let kinds = s.execute(
        "return graph.cy.nodes().map(n => n.data('kind') + ':' + n.data('label')).sort();",
        json!([]),
    );
    assert_eq!(
        kinds,
        json!([
            "external:internet",
            "group:db",
            "group:web",
            "ungrouped:jump-1"
        ])
    );
    let web_db = edge(&s, "web", "db", "tcp/5432 \u{d7}5");
    tap(&s, &web_db);
    let r = rows(&s, 5);
    all(&r, "verdict", "allow");
    all(&r, "to", "db-1");
    all(&r, "service", "tcp/5432");
    let from: std::collections::BTreeSet<&str> =
        r.iter().map(|r| r["from"].as_str().unwrap()).collect();
    assert_eq!(from, ["web-1", "web-2"].into());
    assert_eq!(value(&s, "#f-from"), "group:web");
    // At group level an address no workload has is its network: the
    // internet, and the flows behind it are listed by that.
    s.click("button.tab[data-view='graph']");
    drawn(&s, 4, 5);
    let out = edge(&s, "web", "internet", "tcp/443 \u{d7}2");
    tap(&s, &out);
    let r = rows(&s, 2);
    all(&r, "to", EXTERNAL);
    assert_eq!(value(&s, "#f-to"), "external:internet");

    // The table's own filters: all flows in pages of 100, then a verdict.
    s.click("#flows-clear");
    rows(&s, 100);
    s.click("#flows-more");
    rows(&s, 131);
    s.wait_text("#flows-summary", |t| !t.contains("more below"));
    let shown = s.execute(
        "return document.getElementById('flows-more').hidden;",
        json!([]),
    );
    assert_eq!(shown, json!(true), "no More after the last page");
    s.click("#f-verdict option[value='deny']");
    s.click("#flows-apply");
    let r = rows(&s, 4);
    all(&r, "verdict", "deny");
    s.click("#f-verdict option[value='would-deny']");
    s.click("#flows-apply");
    all(&rows(&s, 2), "verdict", "would-deny");

    // A filter the API refuses: its 400 is shown, with the field.
    s.type_into("#f-since", "yesterday");
    s.click("#flows-apply");
    let msg = s.wait_text("#message", |t| t.contains("[since]"));
    assert!(msg.contains("invalid time"), "{msg}");
    s.wait_script(
        "return document.getElementById('flows').dataset.state;",
        |v| v == "error",
    );

    // Live: new records show up on top within a few polls.
    s.click("#flows-clear");
    rows(&s, 100);
    s.click("#flows-live");
    s.wait_text("#flows-summary", |t| t.contains("live"));
    let e = ends();
    let now = now_ms();
    common::write_records(
        &path,
        vec![
            flow(&e.admin1, &e.db1, 6, 22, V::Allow, 500, now),
            flow(&e.admin1, &e.db1, 6, 22, V::Allow, 501, now + 1),
        ],
    );
    let r = rows(&s, 102);
    all(&r[..2], "from", "admin-1");
    all(&r[..2], "service", "tcp/22");
    assert_eq!(
        r[2]["to"], EXTERNAL,
        "the newest row before stays below them"
    );
    // Leaving the view ends live mode.
    s.click("button.tab[data-view='graph']");
    let live = s.execute(
        "return document.getElementById('flows-live').checked;",
        json!([]),
    );
    assert_eq!(live, json!(false));

    let refused = s.execute("return window.cspRefused;", json!([]));
    assert_eq!(refused, json!([]), "the CSP refused something");
}
