//! The `bulkhead` binary: clap subcommands over the dataplane (and, later, the
//! control plane and the management API).

mod capture;
mod policy_cmd;
mod replay;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// bulkhead: an inline east-west micro-segmentation firewall.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pcap/pcapng capture through the packet path with a policy file and
    /// report what the policy would do to that traffic.
    Replay(replay::ReplayArgs),
    /// Work with policy model files (`policy check FILE`).
    Policy(policy_cmd::PolicyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Replay(args) => replay::run(args),
        Command::Policy(args) => policy_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulkhead: {e:#}");
            ExitCode::FAILURE
        }
    }
}
