//! `bulkhead records SUBCOMMAND --store FILE`: queries on a records store
//! file (one copied off an appliance, or written by `replay --records`),
//! with no appliance running. The same filters as the API's.

use anyhow::Context;
use clap::{Args, Subcommand};
use control::records::{
    rule_report, FlowFilter, FlowParams, FlowRow, Graph, GraphParams, RecordsReader, RuleReport,
    WindowParams,
};
use control::time::Timestamp;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Args)]
pub struct RecordsArgs {
    #[command(subcommand)]
    command: RecordsCommand,
}

#[derive(Subcommand)]
enum RecordsCommand {
    /// Flow records, newest first.
    Flows(FlowsArgs),
    /// The access graph of a window: who reached whom over what, allowed or not.
    Graph(GraphArgs),
    /// Per rule over a window: flows decided, would-deny, last hit; with
    /// --policy, the rules that matched nothing.
    Rules(RulesArgs),
    /// The workloads that resolved a domain or contacted an address, by
    /// identity then and now, with their resolutions and flows after.
    Traceback {
        #[command(flatten)]
        args: crate::forensics_cmd::TracebackArgs,
        #[command(flatten)]
        store: crate::forensics_cmd::StoreArgs,
    },
    /// What a workload reached from a time on, hop by hop, causally.
    BlastRadius {
        #[command(flatten)]
        args: crate::forensics_cmd::BlastArgs,
        #[command(flatten)]
        store: crate::forensics_cmd::StoreArgs,
    },
    /// DNS responses kept raw, newest first: by name, client, response code.
    Dns {
        #[command(flatten)]
        args: crate::forensics_cmd::DnsArgs,
        #[command(flatten)]
        store: crate::forensics_cmd::StoreArgs,
    },
    /// What a policy (a draft, with its modes) would change over the
    /// recorded traffic: flows it would break, open or flag, by group pair
    /// and service.
    DryRun(crate::learn_cmd::DryRunArgs),
    /// The group -> group rules a policy lacks for the recorded traffic
    /// (the fewest that allow every flow no rule allows), and the ends in
    /// no group; --write appends them to a copy of the policy.
    Proposals(crate::learn_cmd::ProposalsArgs),
    /// Which MACs held an address, or the one at a time.
    Addresses {
        #[command(flatten)]
        args: crate::forensics_cmd::AddressArgs,
        #[command(flatten)]
        store: crate::forensics_cmd::StoreArgs,
    },
}

#[derive(Args)]
pub struct RulesArgs {
    /// The records store (an SQLite file written by bulkhead).
    #[arg(long)]
    store: PathBuf,
    /// The policy model file whose rules to report on (never-hit rules
    /// included); without it, the rules the records name.
    #[arg(long)]
    policy: Option<PathBuf>,
    #[command(flatten)]
    window: WindowArgs,
    /// One JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

/// A window, as `records rules` and `ctl rules-usage` take it.
#[derive(Args, Debug, Clone, Default)]
pub struct WindowArgs {
    /// The window's start: RFC 3339 or an age (default 7d offline; the live
    /// version's commit through the API).
    #[arg(long)]
    pub since: Option<String>,
    /// The window's end: RFC 3339 or an age (default now).
    #[arg(long)]
    pub until: Option<String>,
}

impl WindowArgs {
    pub fn params(&self) -> WindowParams {
        WindowParams {
            since: self.since.clone(),
            until: self.until.clone(),
        }
    }
}

#[derive(Args)]
pub struct GraphArgs {
    /// The records store (an SQLite file written by bulkhead).
    #[arg(long)]
    store: PathBuf,
    #[command(flatten)]
    window: GraphWindowArgs,
    /// One JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

/// The graph's level and window, as `records graph` and `ctl graph` take them.
#[derive(Args, Debug, Clone, Default)]
pub struct GraphWindowArgs {
    /// workload (default) or group.
    #[arg(long)]
    pub level: Option<String>,
    /// The window's start: RFC 3339 or an age (default 24h).
    #[arg(long)]
    pub since: Option<String>,
    /// The window's end: RFC 3339 or an age (default now).
    #[arg(long)]
    pub until: Option<String>,
}

impl GraphWindowArgs {
    pub fn params(&self) -> GraphParams {
        GraphParams {
            level: self.level.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
        }
    }
}

#[derive(Args)]
pub struct FlowsArgs {
    /// The records store (an SQLite file written by bulkhead).
    #[arg(long)]
    store: PathBuf,
    #[command(flatten)]
    filter: FlowFilterArgs,
    /// One JSON array on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

/// The flow filters, as `bulkhead records flows` and `bulkhead ctl flows`
/// take them; checked by [`FlowParams::filter`], as the API checks its
/// query string.
#[derive(Args, Debug, Clone, Default)]
pub struct FlowFilterArgs {
    /// The initiator: a MAC, a workload name, group:NAME,
    /// label:KEY=VALUE[,KEY=VALUE...], an IP or a CIDR.
    #[arg(long)]
    pub from: Option<String>,
    /// The responder, as --from.
    #[arg(long)]
    pub to: Option<String>,
    /// allow, deny or would-deny.
    #[arg(long)]
    pub verdict: Option<String>,
    /// rule, rule:ID, default, quarantine, blocklist or management.
    #[arg(long)]
    pub reason: Option<String>,
    /// tcp, udp, icmp, icmpv6 or a number.
    #[arg(long)]
    pub proto: Option<String>,
    /// The responder's port.
    #[arg(long)]
    pub port: Option<String>,
    /// Records whose last packet is at or after: RFC 3339, or an age like
    /// 2h or 30m.
    #[arg(long)]
    pub since: Option<String>,
    /// Records whose last packet is at or before: RFC 3339, or an age.
    #[arg(long)]
    pub until: Option<String>,
    /// Rows at most (default 100; more than 10000 is taken as 10000).
    #[arg(long)]
    pub limit: Option<String>,
    /// Continue where a previous page ended.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Keep going: print records as they are written (from now on), until
    /// interrupted; with --json, one JSON object a line.
    #[arg(long, conflicts_with_all = ["limit", "cursor"])]
    pub follow: bool,
}

impl FlowFilterArgs {
    pub fn params(&self) -> FlowParams {
        FlowParams {
            from: self.from.clone(),
            to: self.to.clone(),
            verdict: self.verdict.clone(),
            reason: self.reason.clone(),
            proto: self.proto.clone(),
            port: self.port.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            limit: self.limit.clone(),
            cursor: self.cursor.clone(),
        }
    }

    pub fn filter(&self) -> anyhow::Result<FlowFilter> {
        let now_ms = i64::try_from(Timestamp::now().0 / 1_000_000).unwrap_or(i64::MAX);
        self.params()
            .filter(now_ms)
            .map_err(|e| anyhow::anyhow!("--{}: {}", e.field, e.message))
    }
}

pub fn run(args: &RecordsArgs) -> anyhow::Result<()> {
    match &args.command {
        RecordsCommand::Flows(a) => flows(a),
        RecordsCommand::Graph(a) => graph(a),
        RecordsCommand::Rules(a) => rules(a),
        RecordsCommand::Traceback { args, store } => crate::forensics_cmd::traceback(args, store),
        RecordsCommand::BlastRadius { args, store } => {
            crate::forensics_cmd::blast_radius(args, store)
        }
        RecordsCommand::Addresses { args, store } => crate::forensics_cmd::addresses(args, store),
        RecordsCommand::Dns { args, store } => crate::forensics_cmd::dns(args, store),
        RecordsCommand::DryRun(a) => crate::learn_cmd::run(a),
        RecordsCommand::Proposals(a) => crate::learn_cmd::proposals(a),
    }
}

fn rules(args: &RulesArgs) -> anyhow::Result<()> {
    let now = now_ms();
    let (since, until) = args
        .window
        .params()
        .window(now, now - 7 * 86_400_000)
        .map_err(|e| anyhow::anyhow!("--{}: {}", e.field, e.message))?;
    let model = args
        .policy
        .as_deref()
        .map(control::load_model)
        .transpose()?;
    let counts = RecordsReader::open(&args.store)?.rule_counts(since, until)?;
    let report = rule_report(model.as_ref(), &counts, since, until);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("rendering JSON")?
        );
    } else {
        print!("{}", rule_table(&report));
    }
    Ok(())
}

/// The table `records rules` and `ctl rules-usage` print.
pub fn rule_table(r: &RuleReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "rule use, {} .. {}", r.since, r.until);
    let _ = writeln!(
        out,
        "{:>8} {:<6} {:>9} {:>10}  {:<24}  NOTE",
        "RULE", "ACTION", "FLOWS", "WOULD-DENY", "LAST HIT"
    );
    for u in &r.rules {
        let note = if !u.in_policy {
            "not in the policy".to_string()
        } else if !u.enabled {
            "disabled".to_string()
        } else if u.never_hit {
            "NEVER HIT in the window".to_string()
        } else {
            u.comment.clone().unwrap_or_default()
        };
        let _ = writeln!(
            out,
            "{:>8} {:<6} {:>9} {:>10}  {:<24}  {note}",
            u.id,
            u.action.as_deref().unwrap_or("-"),
            u.flows,
            u.would_deny,
            u.last_hit.as_deref().unwrap_or("-"),
        );
    }
    out
}

fn now_ms() -> i64 {
    i64::try_from(Timestamp::now().0 / 1_000_000).unwrap_or(i64::MAX)
}

fn graph(args: &GraphArgs) -> anyhow::Result<()> {
    let q = args
        .window
        .params()
        .query(now_ms())
        .map_err(|e| anyhow::anyhow!("--{}: {}", e.field, e.message))?;
    let g = RecordsReader::open(&args.store)?.graph(&q)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&g).context("rendering JSON")?
        );
    } else {
        print!("{}", graph_table(&g));
    }
    Ok(())
}

/// The table `records graph` and `ctl graph` print: one line an edge,
/// busiest first.
pub fn graph_table(g: &Graph) -> String {
    let label = |i: usize| {
        g.nodes
            .get(i)
            .map_or_else(String::new, |n| match n.kind.as_str() {
                "external" => n.id.clone(),
                "group" => n.id.clone(),
                _ if !n.name.is_empty() => n.name.clone(),
                _ => n.id.clone(),
            })
    };
    let mut edges: Vec<_> = g.edges.iter().collect();
    edges.sort_by(|a, b| b.flows.cmp(&a.flows).then(a.src.cmp(&b.src)));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "access graph, {} level, {} .. {}: {} nodes, {} edges{}",
        match g.level {
            control::records::Level::Workload => "workload",
            control::records::Level::Group => "group",
        },
        g.since,
        g.until,
        g.nodes.len(),
        g.edges.len(),
        if g.truncated {
            " (cut to the busiest)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "{:<24} {:<24} {:<12} {:<10} {:>7} {:>9} {:>11}  LAST SEEN",
        "SOURCE", "DESTINATION", "SERVICE", "VERDICT", "FLOWS", "PACKETS", "BYTES"
    );
    for e in edges {
        let service = control::services::service_text(e.proto, e.port);
        let _ = writeln!(
            out,
            "{:<24} {:<24} {:<12} {:<10} {:>7} {:>9} {:>11}  {}",
            label(e.src),
            label(e.dst),
            service,
            e.verdict,
            e.flows,
            e.packets,
            e.bytes,
            e.last_seen
        );
    }
    out
}

fn flows(args: &FlowsArgs) -> anyhow::Result<()> {
    let filter = args.filter.filter()?;
    let reader = RecordsReader::open(&args.store)?;
    if args.filter.follow {
        let mut out = FollowOut::new(args.json);
        let mut after = reader.last_id()?;
        loop {
            let rows = reader.tail(&filter, after, 1000)?;
            let full = rows.len() == 1000;
            for (id, row) in rows {
                after = id;
                out.row(&row)?;
            }
            if !full {
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        }
    }
    let page = reader.flows(&filter)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&page.flows).context("rendering JSON")?
        );
    } else {
        print!("{}", flow_table(&page.flows));
    }
    if let Some(next) = page.next {
        eprintln!("more flows: add --cursor {next}");
    }
    Ok(())
}

/// `name` (or the MAC) and `ip:port`.
fn end(e: &control::records::EndView, proto: u8) -> String {
    let who = if e.name.is_empty() { &e.mac } else { &e.name };
    let addr = match (proto, e.ip) {
        (6 | 17, std::net::IpAddr::V6(ip)) => format!("[{ip}]:{}", e.port),
        (6 | 17, ip) => format!("{ip}:{}", e.port),
        (_, ip) => ip.to_string(),
    };
    format!("{who} {addr}")
}

/// The header of the table `records flows` and `ctl flows` print.
fn flow_header() -> String {
    format!(
        "{:<24} {:<6} {:<40} {:<40} {:>8} {:>10}  VERDICT",
        "LAST SEEN", "PROTO", "SOURCE", "DESTINATION", "PACKETS", "BYTES"
    )
}

/// One row of that table.
fn flow_line(f: &FlowRow) -> String {
    let reason = match (f.rule, &f.intel) {
        (Some(id), _) => format!("rule {id}"),
        (None, Some(entry)) => format!("intel {entry}"),
        (None, None) => f.reason.clone(),
    };
    let verdict = match (f.verdict.as_str(), f.would_deny) {
        ("deny", _) => format!("deny: {reason}"),
        (_, true) => format!("would deny: {reason}"),
        _ => format!("allow: {reason}"),
    };
    let interim = if f.end == "interim" { " (running)" } else { "" };
    format!(
        "{:<24} {:<6} {:<40} {:<40} {:>8} {:>10}  {verdict}{interim}",
        f.last_seen,
        control::services::proto_name(f.proto),
        end(&f.src, f.proto),
        end(&f.dst, f.proto),
        f.packets[0] + f.packets[1],
        f.bytes[0] + f.bytes[1],
    )
}

/// The table `records flows` and `ctl flows` print.
pub fn flow_table(flows: &[FlowRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", flow_header());
    for f in flows {
        let _ = writeln!(out, "{}", flow_line(f));
    }
    let n = flows.len();
    let _ = writeln!(out, "{n} flow{}", if n == 1 { "" } else { "s" });
    out
}

/// Where `--follow` prints: table rows under one header, or JSON lines;
/// each flushed as it comes.
pub struct FollowOut {
    json: bool,
    header: bool,
}

impl FollowOut {
    pub fn new(json: bool) -> FollowOut {
        FollowOut {
            json,
            header: false,
        }
    }

    pub fn row(&mut self, f: &FlowRow) -> anyhow::Result<()> {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{}", serde_json::to_string(f)?)?;
        } else {
            if !self.header {
                self.header = true;
                writeln!(stdout, "{}", flow_header())?;
            }
            writeln!(stdout, "{}", flow_line(f))?;
        }
        stdout.flush()?;
        Ok(())
    }
}
