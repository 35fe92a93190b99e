//! `bulkhead ctl alerts`: list with filters, show one with its evidence,
//! acknowledge, close.

use super::client::Api;
use super::print;
use super::show::{self, fields, table};
use clap::{Args, Subcommand};
use mgmt_api::routes::alerts::AlertView;
use reqwest::Method;

#[derive(Subcommand)]
pub enum AlertsCommand {
    /// Alerts, newest first.
    List(ListArgs),
    /// One alert with its evidence.
    Show { id: u64 },
    /// Acknowledge an alert (operator).
    Ack { id: u64 },
    /// Close an alert (operator).
    Close { id: u64 },
}

#[derive(Args)]
pub struct ListArgs {
    /// open, acknowledged or closed.
    #[arg(long)]
    state: Option<String>,
    /// intel-ip, intel-dns, intel-retro, scan, first-seen-service, fan-out,
    /// deny-burst, dns-nxdomain or dns-new-names.
    #[arg(long)]
    kind: Option<String>,
    /// At least this severe: low, medium, high, critical.
    #[arg(long)]
    severity: Option<String>,
    /// The workload's MAC.
    #[arg(long)]
    mac: Option<String>,
    /// Raised last since: RFC 3339 or a duration back (24h, 7d).
    #[arg(long)]
    since: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

fn query(a: &ListArgs) -> String {
    let mut q = vec![format!("limit={}", a.limit)];
    for (k, v) in [
        ("state", &a.state),
        ("kind", &a.kind),
        ("severity", &a.severity),
        ("mac", &a.mac),
        ("since", &a.since),
    ] {
        if let Some(v) = v {
            q.push(format!("{k}={}", super::seg(v)));
        }
    }
    q.join("&")
}

pub(super) fn run(api: &Api, c: &AlertsCommand, as_json: bool) -> anyhow::Result<()> {
    let (path, method) = match c {
        AlertsCommand::List(a) => {
            let v = api.get_as::<Vec<AlertView>>(&format!("/api/v1/alerts?{}", query(a)))?;
            print(&v, as_json, |v| {
                table(
                    v,
                    &[
                        ("ID", "/id"),
                        ("LAST", "/last_at"),
                        ("SEVERITY", "/severity"),
                        ("KIND", "/kind"),
                        ("STATE", "/state"),
                        ("COUNT", "/count"),
                        ("WORKLOAD", "/workload"),
                        ("MAC", "/mac"),
                        ("SUMMARY", "/summary"),
                    ],
                )
            });
            return Ok(());
        }
        AlertsCommand::Show { id } => (format!("/api/v1/alerts/{id}"), Method::GET),
        AlertsCommand::Ack { id } => (format!("/api/v1/alerts/{id}/ack"), Method::POST),
        AlertsCommand::Close { id } => (format!("/api/v1/alerts/{id}/close"), Method::POST),
    };
    let v = api.call_as::<AlertView>(method, &path)?;
    print(&v, as_json, |v| {
        let mut head = v.clone();
        if let Some(m) = head.as_object_mut() {
            m.remove("evidence");
        }
        fields(&head);
        println!(
            "evidence: {}",
            serde_json::to_string_pretty(&v["evidence"]).unwrap_or_default()
        );
        if v["state"] != "open" {
            println!(
                "{} by {} at {}",
                show::cell(&v["state"]),
                show::cell(&v["state_by"]),
                show::cell(&v["state_at"])
            );
        }
    });
    Ok(())
}
