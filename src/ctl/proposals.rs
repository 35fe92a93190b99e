//! `bulkhead ctl proposals`: rule proposals from the flow records, and
//! accepting them into the draft.

use super::client::Api;
use clap::{Args, Subcommand};
use control::learn::Proposals;
use mgmt_api::routes::proposals::{AcceptRequest, AcceptView};
use reqwest::Method;

#[derive(Subcommand)]
pub enum ProposalsCommand {
    /// The proposals of a window (against the live policy).
    List(WindowArgs),
    /// Accept proposals into the draft (admin): by id, or --all.
    Accept {
        /// Proposal ids, as `list` gives them.
        ids: Vec<String>,
        /// Every proposal of the window.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        window: WindowArgs,
    },
}

/// The window and groups, as `list` and `accept` take them (give `accept`
/// the ones `list` was given: ids are of a window's proposals).
#[derive(Args, Clone, Default)]
pub struct WindowArgs {
    /// The window's start: RFC 3339 or an age (default 14d).
    #[arg(long)]
    since: Option<String>,
    /// The window's end: RFC 3339 or an age (default now).
    #[arg(long)]
    until: Option<String>,
    /// Comma-separated groups: only traffic with an end in one of them.
    #[arg(long)]
    groups: Option<String>,
}

pub(super) fn run(api: &Api, c: &ProposalsCommand, as_json: bool) -> anyhow::Result<()> {
    match c {
        ProposalsCommand::List(w) => {
            let mut q = Vec::new();
            for (k, v) in [
                ("since", &w.since),
                ("until", &w.until),
                ("groups", &w.groups),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", super::seg(v)));
                }
            }
            let v = api.get_as::<Proposals>(&format!("/api/v1/proposals?{}", q.join("&")))?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let p: Proposals = serde_json::from_value(v)?;
                print!("{}", crate::learn_cmd::proposals_text(&p));
            }
        }
        ProposalsCommand::Accept { ids, all, window } => {
            let body = AcceptRequest {
                ids: ids.clone(),
                all: *all,
                since: window.since.clone(),
                until: window.until.clone(),
                groups: window.groups.clone(),
            };
            let v = api.send::<_, AcceptView>(Method::POST, "/api/v1/proposals/accept", &body)?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let a: AcceptView = serde_json::from_value(v)?;
                for r in &a.accepted {
                    println!("{} -> rule {} in the draft", r.proposal, r.rule);
                }
                println!(
                    "draft: {} changes against the live policy; `bulkhead ctl policy dry-run`, then `bulkhead ctl policy commit`",
                    a.diff.changes.len()
                );
            }
        }
    }
    Ok(())
}
