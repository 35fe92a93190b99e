//! The `bulkhead` binary: clap subcommands over the dataplane (and, later, the
//! control plane and the management API).

mod api_run;
mod capture;
mod ctl;
mod forensics_cmd;
mod lab;
mod learn_cmd;
mod maintenance_cmd;
mod policy_cmd;
mod records_cmd;
mod replay;
mod run;
mod token_cmd;

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
    /// The demo: two segments of workloads in network namespaces, the appliance
    /// inline between them, real traffic, a quarantine mid-stream (needs root).
    Lab(lab::LabArgs),
    /// Run the appliance: forward between two ports under a policy (needs root).
    Run(run::RunArgs),
    /// Run a pcap/pcapng capture through the packet path with a policy file and
    /// report what the policy would do to that traffic.
    Replay(replay::ReplayArgs),
    /// Work with policy model files (`policy check FILE`).
    Policy(policy_cmd::PolicyArgs),
    /// Query a records store file, offline (`records flows --store FILE`).
    Records(records_cmd::RecordsArgs),
    /// The management API's client (`ctl workloads`, `ctl quarantine add MAC` ...).
    Ctl(ctl::CtlArgs),
    /// Serve only the API's health, answering why the appliance is not
    /// running (the image starts it when the day-0 configuration is bad).
    Maintenance(maintenance_cmd::MaintenanceArgs),
    /// Management API tokens, in the store (`token create --role admin --name NAME`).
    Token(token_cmd::TokenArgs),
    /// The lab's traffic probes (run inside a lab namespace by `bulkhead lab`).
    #[command(hide = true)]
    LabProbe(lab::ProbeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Replay(args) => replay::run(args),
        Command::Policy(args) => policy_cmd::run(args),
        Command::Records(args) => records_cmd::run(args),
        Command::Lab(args) => lab::run(args),
        Command::Run(args) => run::run(args),
        Command::Token(args) => token_cmd::run(args),
        Command::Maintenance(args) => maintenance_cmd::run(args),
        Command::Ctl(args) => ctl::run(args),
        Command::LabProbe(args) => lab::probe(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulkhead: {e:#}");
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
