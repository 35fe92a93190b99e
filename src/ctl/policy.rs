//! `bulkhead ctl policy`: the draft, its diff, commit, versions, rollback
//! and the dry run over the recorded traffic.

use super::client::Api;
use super::print;
use super::show::{self, table};
use anyhow::Context;
use clap::Subcommand;
use mgmt_api::routes::policy::{
    CommitRequest, CommitView, DiffView, DryRunRequest, RollbackRequest, VersionView,
};
use reqwest::Method;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// The draft (or the live policy when there is none), as JSON.
    Draft,
    /// Replace the draft with a policy file (YAML, TOML or JSON).
    Put { file: PathBuf },
    /// Discard the draft.
    Discard,
    /// What the draft changes.
    Diff,
    /// Commit the draft.
    Commit {
        #[arg(long, short, default_value = "")]
        message: String,
    },
    /// The version history.
    Versions,
    /// One version's policy, as JSON.
    Show {
        #[arg(value_name = "VERSION")]
        number: u64,
    },
    /// Make an earlier version live again (as a new version).
    Rollback {
        #[arg(value_name = "VERSION")]
        number: u64,
    },
    /// What the draft would change over the recorded traffic (against the
    /// live policy): flows it would break, open or flag.
    DryRun {
        /// The window's start: RFC 3339 or an age (default 14d).
        #[arg(long)]
        since: Option<String>,
        /// The window's end: RFC 3339 or an age (default now).
        #[arg(long)]
        until: Option<String>,
    },
}

fn diff_lines(v: &Value) {
    let changes = v["changes"].as_array().cloned().unwrap_or_default();
    if changes.is_empty() {
        println!("no changes");
    }
    for c in changes {
        let sign = match c["kind"].as_str() {
            Some("added") => '+',
            Some("removed") => '-',
            _ => '~',
        };
        println!(
            "{sign} {} {}",
            show::cell(&c["section"]),
            show::cell(&c["key"])
        );
    }
}

pub(super) fn run(api: &Api, p: &PolicyCommand, as_json: bool) -> anyhow::Result<()> {
    match p {
        PolicyCommand::Draft => {
            let v = api.get_as::<control::Model>("/api/v1/policy/draft")?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        PolicyCommand::Put { file } => {
            let model = control::load_model(file)?;
            let body = serde_json::to_value(&model).context("the model does not render as JSON")?;
            let v = api.send::<_, DiffView>(Method::PUT, "/api/v1/policy/draft", &body)?;
            print(&v, as_json, diff_lines);
        }
        PolicyCommand::Discard => {
            api.call(Method::DELETE, "/api/v1/policy/draft", None)?;
            if !as_json {
                println!("draft discarded");
            }
        }
        PolicyCommand::Diff => print(
            &api.get_as::<DiffView>("/api/v1/policy/diff")?,
            as_json,
            diff_lines,
        ),
        PolicyCommand::Commit { message } => {
            let body = CommitRequest {
                comment: message.clone(),
            };
            let v = api.send::<_, CommitView>(Method::POST, "/api/v1/policy/commit", &body)?;
            print(&v, as_json, |v| {
                println!(
                    "version {} is live (generation {}, {} compiled rules)",
                    v["version"], v["generation"], v["compiled_rules"]
                )
            });
        }
        PolicyCommand::Versions => print(
            &api.get_as::<Vec<VersionView>>("/api/v1/policy/versions")?,
            as_json,
            |v| {
                table(
                    v,
                    &[
                        ("VERSION", "/version"),
                        ("LIVE", "/live"),
                        ("CREATED", "/created_at"),
                        ("ACTOR", "/actor"),
                        ("RULES", "/compiled_rules"),
                        ("ROLLBACK OF", "/rollback_of"),
                        ("COMMENT", "/comment"),
                    ],
                )
            },
        ),
        PolicyCommand::DryRun { since, until } => {
            let body = DryRunRequest {
                since: since.clone(),
                until: until.clone(),
            };
            let v = api.send::<_, control::learn::DryRun>(
                Method::POST,
                "/api/v1/policy/draft/dry-run",
                &body,
            )?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let run: control::learn::DryRun = serde_json::from_value(v)?;
                print!("{}", crate::learn_cmd::dry_run_text(&run));
            }
        }
        PolicyCommand::Show { number } => {
            let v = api.get_as::<control::Model>(&format!("/api/v1/policy/versions/{number}"))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        PolicyCommand::Rollback { number } => {
            let body = RollbackRequest { version: *number };
            let v = api.send::<_, CommitView>(Method::POST, "/api/v1/policy/rollback", &body)?;
            print(&v, as_json, |v| {
                println!(
                    "version {} is live (version {number}'s policy, generation {})",
                    v["version"], v["generation"]
                )
            });
        }
    }
    Ok(())
}
