//! `bulkhead bench ...`: the pieces of the end-to-end benchmark that need BPF,
//! timing or statistics; `bench/e2e.sh` builds the namespaces and drives them.
//!
//! - `policy`: the benchmark policy model with N rules ([`model`]);
//! - `sink`: the XDP counter and latency histogram on the sink's port;
//! - `xdp-fwd`, `afxdp-fwd`: the bare forwarders (kernel and AF_XDP ceilings);
//! - `quarantine`: how long an existing flow lives on after the API's answer
//!   to a quarantine of its source MAC, and how fast a release restores it;
//! - `report`: medians, ratios, the `bench/RESULTS.md` section and the plot.

mod fwd;
mod incident;
pub mod model;
mod notes;
mod plot;
mod quarantine;
mod report;
mod sink;

use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Write the benchmark policy model (YAML) with this many rules.
    Policy {
        #[arg(long)]
        rules: u32,
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Count (and time-stamp-check) frames arriving on an interface with XDP;
    /// commands on stdin: reset, read, lat.
    Sink(sink::SinkArgs),
    /// Bare XDP devmap redirect between two ports, until SIGTERM.
    XdpFwd(fwd::FwdArgs),
    /// Bare AF_XDP forwarder between two ports (no parsing, no policy), until SIGTERM.
    AfxdpFwd(fwd::FwdArgs),
    /// Quarantine timing through the API while traffic flows (needs a sink
    /// started with --pin).
    Quarantine(quarantine::QuarantineArgs),
    /// Turn the harness's result lines into a RESULTS.md section and a plot.
    Report(report::ReportArgs),
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    match &args.command {
        BenchCommand::Policy { rules, output } => {
            std::fs::write(output, model::policy_yaml(*rules))
                .with_context(|| format!("writing {}", output.display()))
        }
        BenchCommand::Sink(a) => sink::run(a),
        BenchCommand::XdpFwd(a) => fwd::xdp_fwd(a),
        BenchCommand::AfxdpFwd(a) => fwd::afxdp_fwd(a),
        BenchCommand::Quarantine(a) => quarantine::run(a),
        BenchCommand::Report(a) => report::run(a),
    }
}
