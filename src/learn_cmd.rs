//! `bulkhead records dry-run --store FILE --policy FILE`: what a policy
//! (a draft) would change over the traffic a records store saw, and
//! `bulkhead records proposals --store FILE --policy FILE`: the rules it
//! lacks for that traffic, with no appliance running; and the text they
//! and `bulkhead ctl policy dry-run` / `ctl proposals list` print.

use anyhow::Context;
use clap::Args;
use control::learn::{dry_run, propose, rules_of, Change, DryRun, Judge, Proposals, Today};
use control::records::RecordsReader;
use control::time::Timestamp;
use control::Model;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Args)]
pub struct DryRunArgs {
    /// The records store (an SQLite file written by bulkhead).
    #[arg(long)]
    store: PathBuf,
    /// The draft: a policy model file (YAML, TOML or JSON), modes included.
    #[arg(long)]
    policy: PathBuf,
    /// Today's policy, to judge the draft against; without it, the
    /// verdicts the records hold.
    #[arg(long)]
    against: Option<PathBuf>,
    /// The window's start: RFC 3339 or an age (default 14d).
    #[arg(long)]
    since: Option<String>,
    /// The window's end: RFC 3339 or an age (default now).
    #[arg(long)]
    until: Option<String>,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &DryRunArgs) -> anyhow::Result<()> {
    let window = cli_window(&args.since, &args.until)?;
    let traffic = RecordsReader::open(&args.store)?.observed(window.0, window.1)?;
    let judge = |path: &PathBuf| -> anyhow::Result<Judge> {
        let mut model = control::load_model(path)?;
        learn_ends(&mut model, &traffic);
        Judge::new(&model).with_context(|| format!("{}", path.display()))
    };
    let draft = judge(&args.policy)?;
    let against = args.against.as_ref().map(judge).transpose()?;
    let (today, name) = match (&against, &args.against) {
        (Some(j), Some(path)) => (Today::Policy(j), format!("policy in {}", path.display())),
        _ => (Today::Recorded, "recorded verdicts".to_string()),
    };
    let run = dry_run(&traffic, today, &name, &draft, window);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&run).context("rendering JSON")?
        );
    } else {
        print!("{}", dry_run_text(&run));
    }
    Ok(())
}

#[derive(Args)]
pub struct ProposalsArgs {
    /// The records store (an SQLite file written by bulkhead).
    #[arg(long)]
    store: PathBuf,
    /// Today's policy: a policy model file (YAML, TOML or JSON).
    #[arg(long)]
    policy: PathBuf,
    /// The window's start: RFC 3339 or an age (default 14d).
    #[arg(long)]
    since: Option<String>,
    /// The window's end: RFC 3339 or an age (default now).
    #[arg(long)]
    until: Option<String>,
    /// Comma-separated groups: only traffic with an end in one of them.
    #[arg(long)]
    groups: Option<String>,
    /// Write the policy with every proposal's rule appended here (YAML): a
    /// draft to dry-run, edit and load.
    #[arg(long)]
    write: Option<PathBuf>,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

pub fn proposals(args: &ProposalsArgs) -> anyhow::Result<()> {
    let window = cli_window(&args.since, &args.until)?;
    let traffic = RecordsReader::open(&args.store)?.observed(window.0, window.1)?;
    let declared = control::load_model(&args.policy)?;
    let mut model = declared.clone();
    learn_ends(&mut model, &traffic);
    let judge = Judge::new(&model).with_context(|| format!("{}", args.policy.display()))?;
    let scope = control::learn::scope(args.groups.as_deref());
    if let Some(g) = scope
        .iter()
        .find(|g| !model.groups.iter().any(|x| &x.name == *g))
    {
        anyhow::bail!("--groups: no group {g:?} in {}", args.policy.display());
    }
    let p = propose(&traffic, &judge, &scope, window);
    if let Some(path) = &args.write {
        let mut draft = declared;
        let after = draft.rules.iter().map(|r| r.id).max().unwrap_or(0);
        let all: Vec<_> = p.proposals.iter().collect();
        draft.rules.extend(rules_of(
            &all,
            after,
            &format!("{} .. {}", p.since, p.until),
        ));
        let yaml = draft.to_yaml_string().context("rendering the draft")?;
        std::fs::write(path, yaml).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&p).context("rendering JSON")?
        );
    } else {
        print!("{}", proposals_text(&p));
    }
    Ok(())
}

/// The text `records proposals` and `ctl proposals list` print.
pub fn proposals_text(p: &Proposals) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "proposals, {} .. {}{}: {} flows judged; {} allowed by a rule, {} denied by a rule or the blocklist (never proposed), {} behind {} proposals, {} with an end in no group{}",
        p.since,
        p.until,
        if p.scope.is_empty() { String::new() } else { format!(" for {}", p.scope.join(",")) },
        p.flows,
        p.allowed_by_rule_flows,
        p.denied_by_rule_flows + p.blocked_flows,
        p.proposed_flows,
        p.proposals.len(),
        p.gap_flows,
        if p.truncated { " (cut: see --json)" } else { "" }
    );
    for r in &p.proposals {
        let services: Vec<String> = r.services.iter().map(service_text).collect();
        let _ = writeln!(
            out,
            "\n{}  allow {} -> {} over {}\n    {} flows, {} pairs, {} bytes, {} .. {}; seen {}",
            r.id,
            r.src,
            r.dst,
            services.join(", "),
            r.flows,
            r.pairs,
            r.bytes,
            r.first_seen,
            r.last_seen,
            r.seen.join(" ")
        );
        for e in &r.examples {
            let _ = writeln!(
                out,
                "    e.g. {} -> {}: {} flows",
                end_text(&e.src),
                end_text(&e.dst),
                e.flows
            );
        }
    }
    if !p.gaps.is_empty() {
        let _ = writeln!(
            out,
            "\nlabelling gaps (in no group: label them, or no group rule can allow their traffic):"
        );
        for g in &p.gaps {
            let _ = writeln!(
                out,
                "  {}: {} flows, {} peers, last {}",
                end_text(&g.end),
                g.flows,
                g.peers,
                g.last_seen
            );
        }
    }
    out
}

/// `https`, `tcp/8000-8002,9000`, `proto 47`.
fn service_text(s: &control::model::ServiceRef) -> String {
    use control::model::{Scalar, ServiceRef};
    let scalar = |v: &Scalar| match v {
        Scalar::Int(n) => n.to_string(),
        Scalar::Text(t) => t.clone(),
    };
    match s {
        ServiceRef::Name(n) => n.clone(),
        ServiceRef::Inline(p) if p.ports.is_empty() => scalar(&p.proto),
        ServiceRef::Inline(p) => format!(
            "{}/{}",
            scalar(&p.proto),
            p.ports.iter().map(scalar).collect::<Vec<_>>().join(",")
        ),
    }
}

fn end_text(x: &control::learn::ExampleEnd) -> String {
    match (&x.ip, x.name.as_str()) {
        (Some(ip), _) => format!("{ip} ({})", x.mac),
        (None, "") => x.mac.clone(),
        (None, name) => format!("{name} ({})", x.mac),
    }
}

/// The window `--since`/`--until` give (default the last 14 days).
fn cli_window(since: &Option<String>, until: &Option<String>) -> anyhow::Result<(i64, i64)> {
    let now = i64::try_from(Timestamp::now().0 / 1_000_000).unwrap_or(i64::MAX);
    control::learn::window(since.clone(), until.clone(), now)
        .map_err(|e| anyhow::anyhow!("--{}: {}", e.field, e.message))
}

/// The MACs the records saw that the model does not declare become
/// workloads labelled by its assignment rules, as the appliance learns them.
fn learn_ends(model: &mut Model, traffic: &control::records::ObservedTraffic) {
    let now = Timestamp::now();
    for o in &traffic.keys {
        for end in [&o.src, &o.dst] {
            if model.workloads.by_mac(end.mac).is_none() {
                model.observe(end.mac, None, None, now);
            }
        }
    }
}

/// The text `records dry-run` and `ctl policy dry-run` print.
pub fn dry_run_text(r: &DryRun) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dry run against the {}, {} .. {}: {} flows judged, {} unchanged{}",
        r.today,
        r.since,
        r.until,
        r.flows,
        r.unchanged_flows,
        if r.truncated {
            " (cut: see --json)"
        } else {
            ""
        }
    );
    let lists = [
        ("would break (pass today, denied by the draft)", &r.breaks),
        (
            "would open (denied today, let through by the draft)",
            &r.opens,
        ),
        (
            "would be flagged (allowed today, would-deny under the draft)",
            &r.flagged,
        ),
    ];
    for (title, list) in lists {
        let flows: u64 = list.iter().map(|c| c.flows).sum();
        let _ = writeln!(out, "\n{title}: {} flows in {} changes", flows, list.len());
        for c in list {
            change_lines(&mut out, c);
        }
    }
    out
}

fn change_lines(out: &mut String, c: &Change) {
    let groups = |g: &[String]| {
        if g.is_empty() {
            "(no group)".to_string()
        } else {
            g.join(",")
        }
    };
    let service = match &c.service {
        Some(s) => format!("{} {s}", control::services::service_text(c.proto, c.port)),
        None => control::services::service_text(c.proto, c.port),
    };
    let decision = |d: &control::learn::Decision| match d.rule {
        Some(id) => format!("{} (rule {id})", d.verdict.name()),
        None => format!("{} ({})", d.verdict.name(), d.reason),
    };
    let _ = writeln!(
        out,
        "  {} -> {}  {}  {} flows, {} pairs, last {}  {} -> {}",
        groups(&c.src_groups),
        groups(&c.dst_groups),
        service,
        c.flows,
        c.pairs,
        c.last_seen,
        decision(&c.today),
        decision(&c.draft)
    );
    for e in &c.examples {
        let _ = writeln!(
            out,
            "      e.g. {} -> {}: {} flows, last {}",
            end_text(&e.src),
            end_text(&e.dst),
            e.flows,
            e.last_seen
        );
    }
}
