//! `ctl flows`, `ctl graph`, `ctl rules-usage`, `ctl traceback`,
//! `ctl blast-radius`, `ctl addresses`: the records queries over the
//! API, with the flags and the tables of `bulkhead records`.

use super::client::Api;
use super::seg;
use crate::forensics_cmd::{
    addresses_text, blast_text, dns_text, traceback_text, AddressArgs, BlastArgs, DnsArgs,
    TracebackArgs,
};
use crate::records_cmd::{
    flow_table, graph_table, rule_table, FlowFilterArgs, FollowOut, GraphWindowArgs, WindowArgs,
};
use anyhow::Context;
use control::records::{
    AddressHistory, BlastRadius, FlowParams, FlowRow, Graph, Resolution, RuleReport, Traceback,
};
use mgmt_api::routes::records::FlowPageView;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// `base?k=v&...` for the parameters that are set, values percent-encoded.
fn query_path(base: &str, params: &[(&str, &Option<String>)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| format!("{k}={}", seg(v))))
        .collect();
    if query.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", query.join("&"))
    }
}

/// GET `path` as the server's type `T`.
fn get<T: DeserializeOwned + Serialize>(api: &Api, path: &str) -> anyhow::Result<T> {
    let v = api.get_as::<T>(path)?;
    serde_json::from_value(v).with_context(|| format!("the answer of {path}"))
}

/// The flow filters as query parameters, then two more.
fn filters<'a>(
    p: &'a FlowParams,
    more: [(&'a str, &'a Option<String>); 2],
) -> Vec<(&'a str, &'a Option<String>)> {
    let mut v = vec![
        ("from", &p.from),
        ("to", &p.to),
        ("verdict", &p.verdict),
        ("reason", &p.reason),
        ("proto", &p.proto),
        ("port", &p.port),
        ("since", &p.since),
        ("until", &p.until),
    ];
    v.extend(more);
    v
}

/// `GET /api/v1/flows` with the filters as its query string; with
/// `--follow`, `GET /api/v1/flows/follow`.
pub fn flows(api: &Api, f: &FlowFilterArgs, as_json: bool) -> anyhow::Result<()> {
    if f.follow {
        return follow(api, f, as_json);
    }
    let p = f.params();
    let path = query_path(
        "/api/v1/flows",
        &filters(&p, [("limit", &p.limit), ("cursor", &p.cursor)]),
    );
    let page: FlowPageView = get(api, &path)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&page.flows)?);
    } else {
        print!("{}", flow_table(&page.flows));
    }
    if let Some(next) = page.next {
        eprintln!("more flows: add --cursor {next}");
    }
    Ok(())
}

/// Seconds a tail is asked for; then it is asked again after the last
/// record seen, so nothing is missed between the two.
const TAIL_SECONDS: u64 = 600;

/// The live tail: server-sent events read as they come, until interrupted.
fn follow(api: &Api, f: &FlowFilterArgs, as_json: bool) -> anyhow::Result<()> {
    use std::io::BufRead;
    let p = f.params();
    let mut out = FollowOut::new(as_json);
    let mut after: Option<String> = None;
    let seconds = Some(TAIL_SECONDS.to_string());
    loop {
        let path = query_path(
            "/api/v1/flows/follow",
            &filters(&p, [("after", &after), ("seconds", &seconds)]),
        );
        let resp = api.stream(&path, Duration::from_secs(TAIL_SECONDS + 30))?;
        let mut event = String::new();
        for line in std::io::BufReader::new(resp).lines() {
            let line = line.context("reading the tail")?;
            if let Some(v) = line.strip_prefix("event: ") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("id: ") {
                // The start's id, then each record's: where to resume.
                after = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                if event == "flow" {
                    let row: FlowRow = serde_json::from_str(v).context("a record of the tail")?;
                    out.row(&row)?;
                }
            }
        }
    }
}

/// `GET /api/v1/graph`.
pub fn graph(api: &Api, g: &GraphWindowArgs, as_json: bool) -> anyhow::Result<()> {
    let p = g.params();
    let path = query_path(
        "/api/v1/graph",
        &[
            ("level", &p.level),
            ("since", &p.since),
            ("until", &p.until),
        ],
    );
    let graph: Graph = get(api, &path)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&graph)?);
    } else {
        print!("{}", graph_table(&graph));
    }
    Ok(())
}

/// `GET /api/v1/rules/usage`.
pub fn rules_usage(api: &Api, w: &WindowArgs, as_json: bool) -> anyhow::Result<()> {
    let p = w.params();
    let path = query_path(
        "/api/v1/rules/usage",
        &[("since", &p.since), ("until", &p.until)],
    );
    let report: RuleReport = get(api, &path)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", rule_table(&report));
    }
    Ok(())
}

/// `GET /api/v1/traceback`.
pub fn traceback(api: &Api, a: &TracebackArgs, as_json: bool) -> anyhow::Result<()> {
    let p = a.params();
    let path = query_path(
        "/api/v1/traceback",
        &[
            ("target", &p.target),
            ("since", &p.since),
            ("until", &p.until),
            ("limit", &p.limit),
            ("cursor", &p.cursor),
        ],
    );
    let t: Traceback = get(api, &path)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&t)?);
    } else {
        print!("{}", traceback_text(&t));
    }
    Ok(())
}

/// `GET /api/v1/blast-radius`.
pub fn blast_radius(api: &Api, a: &BlastArgs, as_json: bool) -> anyhow::Result<()> {
    let p = a.params();
    let path = query_path(
        "/api/v1/blast-radius",
        &[
            ("mac", &p.mac),
            ("since", &p.since),
            ("until", &p.until),
            ("depth", &p.depth),
        ],
    );
    let b: BlastRadius = get(api, &path)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&b)?);
    } else {
        print!("{}", blast_text(&b));
    }
    Ok(())
}

/// `GET /api/v1/addresses`.
pub fn addresses(api: &Api, a: &AddressArgs, as_json: bool) -> anyhow::Result<()> {
    let p = a.params();
    let path = query_path(
        "/api/v1/addresses",
        &[
            ("ip", &p.ip),
            ("at", &p.at),
            ("since", &p.since),
            ("until", &p.until),
        ],
    );
    let h: AddressHistory = get(api, &path)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&h)?);
    } else {
        print!("{}", addresses_text(&h));
    }
    Ok(())
}

/// `GET /api/v1/dns`.
pub fn dns(api: &Api, a: &DnsArgs, as_json: bool) -> anyhow::Result<()> {
    let p = a.params();
    let path = query_path(
        "/api/v1/dns",
        &[
            ("domain", &p.domain),
            ("client", &p.client),
            ("rcode", &p.rcode),
            ("since", &p.since),
            ("until", &p.until),
            ("limit", &p.limit),
        ],
    );
    let rows: Vec<Resolution> = get(api, &path)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", dns_text(&rows));
    }
    Ok(())
}
