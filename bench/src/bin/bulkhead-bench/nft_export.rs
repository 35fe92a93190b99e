//! `bulkhead-bench nft [--linear] [--conntrack] FILE`: a policy model file as an nftables
//! ruleset for a Linux bridge (see `bulkhead_bench::nft`), the policy the
//! benchmark's bridge + nftables DUTs carry.

use anyhow::{anyhow, Context};
use bulkhead_bench::nft::{render_at, Form, Hook};
use std::path::{Path, PathBuf};

// The help text is the subcommand's, in main.rs.
#[derive(clap::Args, Debug)]
pub struct NftArgs {
    /// The naive form: one nftables rule per compiled rule.
    #[arg(long)]
    pub linear: bool,
    /// Stateful: an `inet` table at the IP forward hook of a bridge with
    /// br_netfilter, connections conntrack knows accepted first (the
    /// default is a stateless `bridge` table).
    #[arg(long)]
    pub conntrack: bool,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// The policy model file (YAML for .yaml/.yml, TOML for .toml).
    pub file: PathBuf,
}

pub fn run(a: &NftArgs) -> anyhow::Result<()> {
    let form = if a.linear { Form::Linear } else { Form::Best };
    let hook = if a.conntrack {
        Hook::InetConntrack
    } else {
        Hook::Bridge
    };
    let text = export(&a.file, form, hook)?;
    match &a.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Loads and compiles `file` and renders it as an nftables ruleset.
fn export(file: &Path, form: Form, hook: Hook) -> anyhow::Result<String> {
    let model = control::load_model(file)?;
    let shown = file.display();
    let compiled = control::compile(&model).map_err(|p| anyhow!("{shown}:\n{p}"))?;
    Ok(render_at(&compiled, form, hook, &shown.to_string())?)
}
