//! `bulkhead-bench`: the end-to-end benchmark's tools, kept out of the
//! appliance's `bulkhead` binary (docs/decisions.md). `bench/e2e.sh` builds the
//! namespaces and drives them:
//!
//! - `gen`: the packet generator (BPF_PROG_RUN live frames, [`gen`]);
//! - `policy`: the benchmark policy model with N rules ([`model`]);
//! - `nft`: a policy model as an nftables bridge ruleset (best or linear form),
//!   for the bridge + nftables DUTs ([`bulkhead_bench::nft`]);
//! - `sink`: the XDP counter and latency histogram on the sink's port;
//! - `xdp-fwd`, `afxdp-fwd`: the bare forwarders (kernel and AF_XDP ceilings);
//! - `quarantine`: how long an existing flow lives on after the API's answer
//!   to a quarantine of its source MAC, and how fast a release restores it;
//! - `report`: medians, ratios, the `bench/RESULTS.md` section and the plot;
//! - `plot-new-flows`: the new-flow flood's plot.
#![deny(unsafe_code)]

// The appliance's API client (`bulkhead ctl`), shared as a source file so that
// the quarantine timing calls the API exactly as an operator's client does;
// this binary uses only `Api::new` and `Api::call`.
#[allow(dead_code)]
#[path = "../../../../src/ctl/client.rs"]
mod client;
mod fwd;
mod gen;
mod incident;
mod model;
mod nft_export;
mod notes;
mod plot;
mod plot_new_flows;
mod quarantine;
mod report;
mod sink;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// bulkhead-bench: the end-to-end benchmark's generator, sink, bare forwarders,
/// policy, nftables export and report; `bench/e2e.sh` runs the whole comparison.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Packet generator: N flows of 64-1518 byte UDP or TCP SYN frames, flat
    /// out or at a fixed rate, for a bounded time, sent by an XDP program in
    /// BPF_PROG_RUN live-frames mode (needs root).
    Gen(gen::GenArgs),
    /// Write the benchmark policy model (YAML) with this many rules.
    Policy {
        #[arg(long)]
        rules: u32,
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Render a policy model file as an nftables ruleset for a Linux bridge
    /// (`nft -f` it in the bridge's namespace), to compare a bridge + nftables
    /// with bulkhead carrying the same policy.
    ///
    /// The default renders the best form nftables offers: each endpoint's group
    /// membership becomes a class looked up once per packet (a MAC map, refined by
    /// address maps for IP-set groups), and each destination class has one
    /// concatenated interval verdict map (class . protocol . port) with the rules'
    /// first-match order resolved ahead of time. `--linear` renders one nftables
    /// rule per compiled rule, in order, over per-group sets.
    ///
    /// What the ruleset does not do like bulkhead: it is stateless (this kernel's
    /// bridge family has no conntrack), so every packet is judged in its own
    /// direction and replies need rules of their own; audit would-denies pass
    /// without an event; VLAN-tagged frames are treated as non-IP (quarantine by
    /// MAC, then pass); selector groups are frozen to the workloads known now. The
    /// strictest-mode rule (enforce drops, audit/learn accept) is rendered exactly.
    /// The best form uses the packet mark as scratch.
    Nft(nft_export::NftArgs),
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
    /// The new-flow flood's plot (PNG) from `bench/e2e.sh --new-flows` lines.
    PlotNewFlows(plot_new_flows::PlotNewFlowsArgs),
}

fn run(command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Gen(a) => gen::run(a),
        Command::Policy { rules, output } => std::fs::write(output, model::policy_yaml(*rules))
            .with_context(|| format!("writing {}", output.display())),
        Command::Nft(a) => nft_export::run(a),
        Command::Sink(a) => sink::run(a),
        Command::XdpFwd(a) => fwd::xdp_fwd(a),
        Command::AfxdpFwd(a) => fwd::afxdp_fwd(a),
        Command::Quarantine(a) => quarantine::run(a),
        Command::Report(a) => report::run(a),
        Command::PlotNewFlows(a) => plot_new_flows::run(a),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulkhead-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
