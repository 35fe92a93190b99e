//! `bulkhead maintenance`: when the appliance cannot run (its day-0
//! configuration is bad, or `bulkhead run` keeps failing), serve the
//! management API's health alone, answering 503 `misconfigured` with the
//! reasons, until SIGTERM. The image's `bulkhead-maintenance.service` starts
//! it in place of `bulkhead run`; see [`mgmt_api::maintenance`].

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct MaintenanceArgs {
    /// Where to listen: the management address and the API's port.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// A file with the reasons, one a line (blank lines skipped).
    #[arg(long)]
    pub problems: Option<PathBuf>,
    /// A reason (repeatable), after those of --problems.
    #[arg(long = "problem")]
    pub problem: Vec<String>,
    /// The API certificate (PEM chain); with --key. Without them, or when
    /// they cannot be loaded, the self-signed one in --cert-dir.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Where `bulkhead run` keeps its self-signed certificate (the store's
    /// directory), so the fingerprint is the one clients pinned.
    #[arg(long, default_value = "/var/lib/bulkhead")]
    pub cert_dir: PathBuf,
}

/// The reasons: the file's lines, then the --problem ones; never none.
fn problems(args: &MaintenanceArgs) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    if let Some(path) = &args.problems {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--problems {}", path.display()))?;
        out.extend(
            text.lines()
                .map(str::trim_end)
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    out.extend(args.problem.iter().cloned());
    if out.is_empty() {
        out.push("no reason was given (see the console or the journal)".to_string());
    }
    Ok(out)
}

pub fn run(args: &MaintenanceArgs) -> anyhow::Result<()> {
    let problems = problems(args)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handler")?;
    }
    std::fs::create_dir_all(&args.cert_dir)
        .with_context(|| format!("--cert-dir {}", args.cert_dir.display()))?;
    let server = mgmt_api::maintenance::start(mgmt_api::maintenance::MaintenanceConfig {
        listen: args.listen,
        cert: args.cert.clone(),
        key: args.key.clone(),
        cert_dir: args.cert_dir.clone(),
        problems: problems.clone(),
    })?;
    println!(
        "maintenance: https://{} answers /api/v1/health with 503 misconfigured \
         (certificate {}, SHA-256 fingerprint {}); bulkhead is not running:",
        server.addr,
        server.cert_path.display(),
        server.fingerprint
    );
    for p in &problems {
        println!("  {p}");
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
    }
    server.shutdown();
    println!("maintenance: stopped");
    Ok(())
}
