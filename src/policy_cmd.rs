//! `bulkhead policy check FILE`: validate a policy model file and summarise it.
//! `bulkhead policy export --nft [--linear] FILE`: the same policy as an
//! nftables ruleset for a Linux bridge (see `control::nft`).

use anyhow::{anyhow, Context};
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
    /// Render a policy model file as an nftables ruleset for a Linux bridge
    /// (`nft -f` it in the bridge's namespace), to compare a bridge + nftables
    /// with bulkhead carrying the same policy.
    ///
    /// `--nft` renders the best form nftables offers: each endpoint's group
    /// membership becomes a class looked up once per packet (a MAC map, refined
    /// by address maps for IP-set groups), and each destination class has one
    /// concatenated interval verdict map (class . protocol . port) with the
    /// rules' first-match order resolved ahead of time. `--nft --linear` renders
    /// one nftables rule per compiled rule, in order, over per-group sets.
    ///
    /// What the ruleset does not do like bulkhead: it is stateless (this
    /// kernel's bridge family has no conntrack), so every packet is judged in its
    /// own direction and replies need rules of their own; audit would-denies pass
    /// without an event; VLAN-tagged frames are treated as non-IP (quarantine by
    /// MAC, then pass); selector groups are frozen to the workloads known now.
    /// The strictest-mode rule (enforce drops, audit/learn accept) is rendered
    /// exactly. The best form uses the packet mark as scratch.
    Export {
        /// Render nftables (the only export format for now).
        #[arg(long, required = true)]
        nft: bool,
        /// The naive form: one nftables rule per compiled rule.
        #[arg(long)]
        linear: bool,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
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
        PolicyCommand::Export {
            nft: _,
            linear,
            output,
            file,
        } => {
            let form = if *linear {
                control::nft::Form::Linear
            } else {
                control::nft::Form::Best
            };
            let text = export_nft(file, form)?;
            match output {
                Some(path) => std::fs::write(path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
    }
}

/// Loads and compiles `file` and renders it as an nftables ruleset.
pub fn export_nft(file: &Path, form: control::nft::Form) -> anyhow::Result<String> {
    let model = control::load_model(file)?;
    let shown = file.display();
    let compiled = control::compile(&model).map_err(|p| anyhow!("{shown}:\n{p}"))?;
    Ok(control::nft::render(&compiled, form, &shown.to_string())?)
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
