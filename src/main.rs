use clap::Parser;

/// bulkhead: an inline east-west micro-segmentation firewall.
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
