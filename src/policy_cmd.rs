//! `bulkhead policy check FILE`: validate a policy model file and summarise it.
//! (Its nftables rendering, for the benchmark's bridge + nftables comparison,
//! is `bulkhead-bench nft` in the bench/ crate.)

use anyhow::anyhow;
use control::compile::{Compiled, GroupKind};
use control::Model;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy model file (YAML for .yaml/.yml, TOML for .toml): print
    /// every problem with its path and exit 1, or print a summary.
    Check {
        /// The policy model file.
        file: PathBuf,
    },
}

pub fn run(args: &PolicyArgs) -> anyhow::Result<()> {
    match &args.command {
        PolicyCommand::Check { file } => {
            let summary = check(file)?;
            println!("{summary}");
            Ok(())
        }
    }
}

/// Loads, validates and compiles `file` (down to the dataplane snapshot); the
/// summary on success, every problem (one per line, `FILE: path: message`) otherwise.
pub fn check(file: &Path) -> anyhow::Result<String> {
    let model = control::load_model(file)?;
    let shown = file.display();
    let compiled = match control::compile(&model) {
        Ok(c) => c,
        Err(problems) => {
            let n = problems.0.len();
            let mut msg = format!("{shown}: {n} problem{}", if n == 1 { "" } else { "s" });
            for p in &problems.0 {
                let _ = write!(msg, "\n{shown}: {p}");
            }
            return Err(anyhow!(msg));
        }
    };
    compiled.snapshot(1).map_err(|e| anyhow!("{shown}: {e}"))?;
    Ok(summary(file, &model, &compiled))
}

fn summary(file: &Path, model: &Model, compiled: &Compiled) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut out = format!(
        "{}: valid. {}",
        file.display(),
        plural(model.workloads.len(), "workload", "workloads")
    );
    let _ = write!(
        out,
        "; {}",
        plural(compiled.groups.len(), "group", "groups")
    );
    if !compiled.groups.is_empty() {
        let groups: Vec<String> = compiled
            .groups
            .iter()
            .map(|g| {
                let members = match g.kind {
                    GroupKind::Ips => plural(g.members, "CIDR", "CIDRs"),
                    _ => plural(g.members, "member", "members"),
                };
                format!("{} ({}, {members})", g.name, mode(g.mode))
            })
            .collect();
        let _ = write!(out, ": {}", groups.join(", "));
    }
    let enabled = model.rules.iter().filter(|r| r.enabled).count();
    let _ = write!(
        out,
        "; {} ({enabled} enabled), compiled to {}",
        plural(model.rules.len(), "rule", "rules"),
        plural(
            compiled.rules.compiled_len(),
            "dataplane rule",
            "dataplane rules"
        )
    );
    let _ = write!(
        out,
        "; {} quarantined, {}, {}; default mode {}.",
        model.quarantine.len(),
        plural(
            model.management.len(),
            "management exception",
            "management exceptions"
        ),
        plural(
            model.blocklist.len(),
            "blocklist entry",
            "blocklist entries"
        ),
        mode(model.default_mode)
    );
    let empty: Vec<&str> = compiled
        .groups
        .iter()
        .filter(|g| g.members == 0)
        .map(|g| g.name.as_str())
        .collect();
    if !empty.is_empty() {
        let _ = write!(out, " Empty groups: {}.", empty.join(", "));
    }
    out
}

fn mode(m: dataplane::policy::Mode) -> &'static str {
    match m {
        dataplane::policy::Mode::Learn => "learn",
        dataplane::policy::Mode::Audit => "audit",
        dataplane::policy::Mode::Enforce => "enforce",
    }
}
