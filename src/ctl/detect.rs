//! `bulkhead ctl detect`: what anomaly detection runs, each baseline's
//! state, and forgetting the baselines.

use super::client::Api;
use clap::Subcommand;
use control::detect::DetectStatus;
use reqwest::Method;
use std::fmt::Write as _;

#[derive(Subcommand)]
pub enum DetectCommand {
    /// The detectors, their thresholds, each group's baseline.
    Status,
    /// Forget every baseline (admin): all learn again from their next
    /// flow, for their window; nothing is new until then.
    Reset,
}

pub(super) fn run(api: &Api, c: &DetectCommand, as_json: bool) -> anyhow::Result<()> {
    let v = match c {
        DetectCommand::Status => api.get_as::<DetectStatus>("/api/v1/detect")?,
        DetectCommand::Reset => api.call(Method::POST, "/api/v1/detect/baseline/reset", None)?,
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", text(&serde_json::from_value(v)?));
    }
    Ok(())
}

fn on_off<T>(name: &str, d: Option<&T>, what: impl FnOnce(&T) -> String) -> String {
    match d {
        Some(d) => format!("{name:<12} on   {}\n", what(d)),
        None => format!("{name:<12} off\n"),
    }
}

/// The status as the terminal shows it.
pub fn text(s: &DetectStatus) -> String {
    let mut t = format!("baseline: {} s by default\n", s.baseline_secs);
    t += &on_off("scan", s.scan.as_ref(), |d| {
        format!(
            "{} ports or {} hosts in {} s; {} sources in a window, {} untracked",
            d.ports, d.hosts, d.window_secs, d.sources, d.untracked
        )
    });
    t += &on_off("first-seen", s.first_seen.as_ref(), |d| {
        format!(
            "{} services in the baseline, {} groups; {} suppressed (scans), {} not learned (full)",
            d.services,
            d.groups.len(),
            d.suppressed,
            d.full
        )
    });
    t += &on_off("fan-out", s.fanout.as_ref(), |d| {
        format!(
            "over {} peers an hour and {}x the busiest; {} workloads baselined, {} untracked",
            d.peers, d.factor, d.workloads, d.untracked
        )
    });
    t += &on_off("deny-burst", s.deny_burst.as_ref(), |d| {
        format!(
            "{} denied flows in {} s; {} untracked",
            d.flows, d.window_secs, d.untracked
        )
    });
    t += &on_off("dns", s.dns.as_ref(), |d| {
        let state = match (&d.learns_until, d.learning) {
            (None, _) => "no answer yet".to_string(),
            (Some(u), true) => format!("learning until {u}"),
            (Some(u), false) => format!("in force since {u}"),
        };
        format!(
            "{} NXDOMAIN or {} new names in {} s; {} names known, {state}",
            d.nxdomain, d.new_names, d.window_secs, d.names
        )
    });
    let respond = if s.respond.is_empty() {
        "none".to_string()
    } else {
        s.respond.join(", ")
    };
    let _ = writeln!(t, "automatic quarantine: {respond}");
    if let Some(f) = s.first_seen.as_ref().filter(|f| !f.groups.is_empty()) {
        let _ = writeln!(
            t,
            "\n{:<24} {:<10} {:<26} STARTED",
            "GROUP", "BASELINE", "UNTIL"
        );
        for g in &f.groups {
            let state = if g.learning { "learning" } else { "in force" };
            let _ = writeln!(
                t,
                "{:<24} {:<10} {:<26} {}",
                g.group, state, g.learns_until, g.started
            );
        }
    }
    t
}
