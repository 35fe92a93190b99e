//! `records-gen`: a synthetic flow-records store for the query benchmarks
//! (issue 17), written through the records writer: `--records` flow records
//! over the last `--days` days from `--workloads` workloads
//! ([`bulkhead_bench::records`] says what the traffic looks like); with
//! `--dns N` also N DNS responses and a planted incident, with `--moving
//! PCT` that share of the workloads changing addresses every few days
//! (issue 20, [`bulkhead_bench::records::dns`]).
//!
//! `cargo run --release -p bulkhead-bench --bin records-gen -- --out /tmp/records.db --days 30 --records 10000000 --workloads 1000`
//!
//! With `--policy-out FILE --draft-out FILE` it also writes the fleet's
//! policy (learn mode) and a draft of it (enforce mode) with `--rules`
//! rules, for the dry-run benchmark (issue 23).
//!
//! With `--records 0` the store gets DNS responses alone, and the report
//! line is the writer's DNS ingest rate.
#![deny(unsafe_code)]

use anyhow::Context;
use bulkhead_bench::records::policy::fleet_policy;
use bulkhead_bench::records::{generate, Fleet, GenConfig};
use clap::Parser;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(version)]
struct Args {
    /// The store to write (created; an existing store is added to).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 30)]
    days: u32,
    #[arg(long, default_value_t = 10_000_000)]
    records: u64,
    #[arg(long, default_value_t = 1_000)]
    workloads: u32,
    #[arg(long, default_value_t = 17)]
    seed: u64,
    /// The window's end, ms since the Unix epoch (default: now). With the
    /// same end and seed the store's contents are the same.
    #[arg(long)]
    end_ms: Option<i64>,
    /// DNS responses over the window (and the planted C2 incident).
    #[arg(long, default_value_t = 0)]
    dns: u64,
    /// Percent of the workloads whose addresses move every 3 days (with ARP
    /// and DHCP entries for every workload).
    #[arg(long, default_value_t = 0)]
    moving: u32,
    /// Also write the fleet's policy here, every group in learn mode (today's
    /// policy for the dry-run benchmark; [`fleet_policy`]).
    #[arg(long)]
    policy_out: Option<PathBuf>,
    /// Also write the same policy in enforce mode here (the draft).
    #[arg(long)]
    draft_out: Option<PathBuf>,
    /// Rules in those policies.
    #[arg(long, default_value_t = 1_000)]
    rules: u32,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_millis() as i64;
    let cfg = GenConfig {
        days: a.days,
        records: a.records,
        workloads: a.workloads,
        seed: a.seed,
        end_ms: a.end_ms.unwrap_or(now_ms),
        dns: a.dns,
        moving_pct: a.moving.min(100),
    };
    eprintln!(
        "records-gen: {} records, {} DNS responses over {} days from {} workloads ({}% moving) into {}",
        cfg.records,
        cfg.dns,
        cfg.days,
        cfg.workloads,
        cfg.moving_pct,
        a.out.display()
    );
    let fleet = Fleet::new(cfg.workloads.max(2), cfg.seed);
    for (path, mode) in [(&a.policy_out, "learn"), (&a.draft_out, "enforce")] {
        if let Some(path) = path {
            std::fs::write(path, fleet_policy(&fleet, a.rules, mode))
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let r = generate(&a.out, &cfg, |n| eprintln!("  {n} submitted"))
        .with_context(|| format!("writing {}", a.out.display()))?;
    let secs = r.elapsed.as_secs_f64();
    println!(
        "records-gen: {} records written ({} lost), {} DNS responses ({} lost), {} ARP/DHCP entries in {:.1} s = {:.0} records/s, {:.0} DNS responses/s; store {:.1} MiB ({:.1} MiB per million records and responses)",
        r.written,
        r.lost,
        r.dns_written,
        r.dns_lost,
        r.addresses,
        secs,
        r.written as f64 / secs.max(1e-9),
        r.dns_written as f64 / secs.max(1e-9),
        r.bytes as f64 / 1_048_576.0,
        r.bytes as f64 / 1_048_576.0 / ((r.written + r.dns_written).max(1) as f64 / 1e6)
    );
    Ok(())
}
