//! `bulkhead records traceback|blast-radius|addresses|dns --store FILE`: the
//! forensic queries on a records store file, with the API's parameters
//! (checked by the same code) and the tables `bulkhead ctl` prints.

use anyhow::Context;
use clap::Args;
use control::records::{
    AddressHistory, AddressParams, BlastParams, BlastRadius, DnsParams, RecordsReader, Resolution,
    Traceback, TracebackParams,
};
use control::time::Timestamp;
use std::fmt::Write as _;
use std::path::PathBuf;

/// `traceback TARGET`, as `records` and `ctl` take it.
#[derive(Args, Debug, Clone, Default)]
pub struct TracebackArgs {
    /// A domain (itself and every name under it; `=name` itself only), an
    /// IP address or a CIDR.
    pub target: String,
    /// The window's start: RFC 3339 or an age like 7d (default 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// The window's end: RFC 3339 or an age (default now).
    #[arg(long)]
    pub until: Option<String>,
    /// Workloads listed at most, 1 to 1000 (default 25), first seen first.
    #[arg(long)]
    pub limit: Option<String>,
    /// Continue after this workload: the `next` a previous answer printed.
    #[arg(long)]
    pub cursor: Option<String>,
}

impl TracebackArgs {
    pub fn params(&self) -> TracebackParams {
        TracebackParams {
            target: Some(self.target.clone()),
            since: self.since.clone(),
            until: self.until.clone(),
            limit: self.limit.clone(),
            cursor: self.cursor.clone(),
        }
    }
}

/// `blast-radius MAC`, as `records` and `ctl` take it.
#[derive(Args, Debug, Clone, Default)]
pub struct BlastArgs {
    /// The workload's MAC.
    pub mac: String,
    /// From when its reach counts: RFC 3339 or an age (default 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// The window's end (default now).
    #[arg(long)]
    pub until: Option<String>,
    /// Hops at most, 1 to 10 (default 3).
    #[arg(long)]
    pub depth: Option<String>,
}

impl BlastArgs {
    pub fn params(&self) -> BlastParams {
        BlastParams {
            mac: Some(self.mac.clone()),
            since: self.since.clone(),
            until: self.until.clone(),
            depth: self.depth.clone(),
        }
    }
}

/// `addresses IP`, as `records` and `ctl` take it.
#[derive(Args, Debug, Clone, Default)]
pub struct AddressArgs {
    /// The address.
    pub ip: String,
    /// The holder at this time (RFC 3339 or an age) instead of all of them.
    #[arg(long)]
    pub at: Option<String>,
    /// The window's start (default 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// The window's end (default now).
    #[arg(long)]
    pub until: Option<String>,
}

impl AddressArgs {
    pub fn params(&self) -> AddressParams {
        AddressParams {
            ip: Some(self.ip.clone()),
            at: self.at.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
        }
    }
}

/// `dns`, as `records` and `ctl` take it.
#[derive(Args, Debug, Clone, Default)]
pub struct DnsArgs {
    /// A name and the names under it (`=name`: that name only).
    #[arg(long)]
    pub domain: Option<String>,
    /// The client's MAC.
    #[arg(long)]
    pub client: Option<String>,
    /// noerror, nxdomain, servfail, refused or a number.
    #[arg(long)]
    pub rcode: Option<String>,
    /// The window's start: RFC 3339 or an age (default 24h).
    #[arg(long)]
    pub since: Option<String>,
    /// The window's end (default now).
    #[arg(long)]
    pub until: Option<String>,
    /// Rows at most (default 100, at most 10000).
    #[arg(long)]
    pub limit: Option<String>,
}

impl DnsArgs {
    pub fn params(&self) -> DnsParams {
        DnsParams {
            domain: self.domain.clone(),
            client: self.client.clone(),
            rcode: self.rcode.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            limit: self.limit.clone(),
        }
    }
}

/// A store and `--json`, for every offline query.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// The records store (an SQLite file written by bulkhead).
    #[arg(long)]
    pub store: PathBuf,
    /// One JSON document on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn now_ms() -> i64 {
    i64::try_from(Timestamp::now().0 / 1_000_000).unwrap_or(i64::MAX)
}

fn bad(e: control::records::ParamError) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", e.field, e.message)
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(v).context("rendering JSON")?
    );
    Ok(())
}

pub fn traceback(args: &TracebackArgs, store: &StoreArgs) -> anyhow::Result<()> {
    let (target, since, until, page) = args.params().query(now_ms()).map_err(bad)?;
    let t = RecordsReader::open(&store.store)?.traceback_page(&target, since, until, page)?;
    if store.json {
        print_json(&t)
    } else {
        print!("{}", traceback_text(&t));
        Ok(())
    }
}

pub fn blast_radius(args: &BlastArgs, store: &StoreArgs) -> anyhow::Result<()> {
    let (mac, since, until, depth) = args.params().query(now_ms()).map_err(bad)?;
    let b = RecordsReader::open(&store.store)?.blast_radius(mac, since, until, depth)?;
    if store.json {
        print_json(&b)
    } else {
        print!("{}", blast_text(&b));
        Ok(())
    }
}

pub fn addresses(args: &AddressArgs, store: &StoreArgs) -> anyhow::Result<()> {
    let (ip, at, since, until) = args.params().query(now_ms()).map_err(bad)?;
    let h = RecordsReader::open(&store.store)?.addresses(ip, at, since, until)?;
    if store.json {
        print_json(&h)
    } else {
        print!("{}", addresses_text(&h));
        Ok(())
    }
}

pub fn dns(args: &DnsArgs, store: &StoreArgs) -> anyhow::Result<()> {
    let q = args.params().query(now_ms()).map_err(bad)?;
    let rows = RecordsReader::open(&store.store)?.dns(&q)?;
    if store.json {
        print_json(&rows)
    } else {
        print!("{}", dns_text(&rows));
        Ok(())
    }
}

/// What `dns` prints: one line a response.
pub fn dns_text(rows: &[Resolution]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24}  {:<36} {:<16} {:<40} {:>5} {:>5}  ANSWERS",
        "TIME", "CLIENT", "CLIENT IP", "NAME", "TYPE", "RCODE"
    );
    for r in rows {
        let client = r
            .identity
            .as_ref()
            .map_or_else(String::new, |i| who(&i.name, &i.mac));
        let answers: Vec<String> = r
            .answers
            .iter()
            .map(|a| match (&a.ip, &a.cname) {
                (Some(ip), _) => ip.to_string(),
                (_, Some(c)) => format!("{c}."),
                _ => String::new(),
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<24}  {:<36} {:<16} {:<40} {:>5} {:>5}  {}",
            r.time,
            client,
            r.client_ip,
            r.qname,
            r.qtype,
            r.rcode,
            answers.join(" ")
        );
    }
    out
}

fn who(name: &str, mac: &str) -> String {
    if name.is_empty() {
        mac.to_string()
    } else {
        format!("{name} ({mac})")
    }
}

/// What `traceback` prints: each workload, its resolutions and contacts.
pub fn traceback_text(t: &Traceback) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "traceback {}, {} .. {}: {} workload(s){}",
        t.target,
        t.since,
        t.until,
        t.total,
        if t.workloads.len() < t.total {
            format!(", {} listed here", t.workloads.len())
        } else {
            String::new()
        }
    );
    if !t.answers.is_empty() {
        let _ = writeln!(out, "resolved to: {}", t.answers.join(", "));
    }
    if !t.shared_answers.is_empty() {
        let _ = writeln!(
            out,
            "shared with many other names (contacts counted only for workloads that resolved it): {}",
            t.shared_answers.join(", ")
        );
    }
    for w in &t.workloads {
        let then = w.identity_then.as_ref().map_or("", |i| i.name.as_str());
        let now = w.identity_now.as_ref().map_or("", |i| i.name.as_str());
        let _ = writeln!(
            out,
            "\n{} {}{}",
            who(then, &w.mac),
            if w.resolved {
                "resolved it"
            } else {
                "contacted it (no resolution seen)"
            },
            if now != then && !now.is_empty() {
                format!("; now {now}")
            } else {
                String::new()
            }
        );
        if let Some(g) = w.identity_then.as_ref().filter(|i| !i.groups.is_empty()) {
            let _ = writeln!(out, "  groups then: {}", g.groups.join(", "));
        }
        for a in &w.addresses {
            let _ = writeln!(
                out,
                "  held {} from {} to {} ({})",
                a.ip,
                a.first,
                a.last,
                a.sources.join(", ")
            );
        }
        for r in &w.resolutions {
            let chain: Vec<String> = r
                .answers
                .iter()
                .map(|a| match (&a.ip, &a.cname) {
                    (Some(ip), _) => format!("{ip} (ttl {})", a.ttl),
                    (_, Some(c)) => format!("{} -> {c} (ttl {})", a.name, a.ttl),
                    _ => String::new(),
                })
                .collect();
            let _ = writeln!(
                out,
                "  {} {} asked {} (type {}) from {}: {}",
                r.time,
                r.client_ip,
                r.qname,
                r.qtype,
                r.server_ip,
                if r.rcode != 0 {
                    format!("rcode {}", r.rcode)
                } else if chain.is_empty() {
                    "no address".into()
                } else {
                    chain.join(", ")
                }
            );
        }
        if w.more_resolutions > 0 {
            let _ = writeln!(out, "  ... {} more resolutions", w.more_resolutions);
        }
        if w.resolutions.is_empty() {
            for p in &w.passive_dns {
                let _ = writeln!(
                    out,
                    "  {} .. {} {} x{}: {}",
                    p.first,
                    p.last,
                    p.qname,
                    p.count,
                    p.answer.as_deref().unwrap_or("no address")
                );
            }
        }
        for c in &w.contacts {
            let _ = writeln!(
                out,
                "  {} -> {} {} {}: {} flow(s), {} bytes, last {}",
                c.first,
                c.ip,
                c.service,
                if c.allowed { "allowed" } else { "DENIED" },
                c.flows,
                c.bytes,
                c.last
            );
        }
    }
    if let Some(next) = &t.next {
        let _ = writeln!(out, "\nmore: --cursor {next}");
    }
    out
}

/// What `blast-radius` prints: reached nodes in order, then attempts.
pub fn blast_text(b: &BlastRadius) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "blast radius of {}, {} .. {}, depth {}: {} reached, {} denied attempt(s){}",
        b.origin,
        b.since,
        b.until,
        b.depth,
        b.reached.len(),
        b.attempted.len(),
        if b.truncated { " (cut)" } else { "" }
    );
    let _ = writeln!(
        out,
        "{:>5}  {:<24}  {:<36} {:<20} {:>7} {:>11}  PATH",
        "DEPTH", "FIRST CONTACT", "REACHED", "SERVICES", "FLOWS", "BYTES"
    );
    for r in &b.reached {
        let node = match &r.mac {
            Some(mac) => who(&r.name, mac),
            None => r.ip.clone(),
        };
        let _ = writeln!(
            out,
            "{:>5}  {:<24}  {:<36} {:<20} {:>7} {:>11}  {}",
            r.depth,
            r.first_contact,
            node,
            r.services.join(","),
            r.flows,
            r.bytes,
            r.path.join(" > ")
        );
    }
    if !b.attempted.is_empty() {
        let _ = writeln!(out, "\ndenied attempts:");
        for a in &b.attempted {
            let _ = writeln!(
                out,
                "  {} {} -> {} {}: {} flow(s), last {}",
                a.first,
                a.from,
                a.to_mac.as_deref().unwrap_or(&a.to_ip),
                a.service,
                a.flows,
                a.last
            );
        }
    }
    out
}

/// What `addresses` prints.
pub fn addresses_text(h: &AddressHistory) -> String {
    let mut out = String::new();
    match &h.at {
        Some(at) if h.exact => {
            let _ = writeln!(out, "{} at {}:", h.ip, at);
        }
        Some(at) => {
            let _ = writeln!(
                out,
                "{} at {}: no holder seen then; the last one before:",
                h.ip, at
            );
        }
        None => {
            let _ = writeln!(out, "{}: holders over time", h.ip);
        }
    }
    if h.holders.is_empty() {
        let _ = writeln!(out, "  nobody seen holding it");
    }
    for s in &h.holders {
        let _ = writeln!(
            out,
            "  {:<36} {} .. {}  ({})",
            who(&s.name, &s.mac),
            s.first,
            s.last,
            s.sources.join(", ")
        );
    }
    out
}
