//! `bulkhead ctl intel`: the threat-intel feeds in force, a lookup, a
//! reload; feeds managed through the API: create, add, remove, entries,
//! delete.

use super::client::Api;
use super::show::{self, fields, table};
use super::{print, seg};
use clap::Subcommand;
use mgmt_api::routes::intel::{IntelStatusView, LookupResult, ReloadResult};
use mgmt_api::routes::intel_feeds::{
    EntriesPage, EntriesRequest, EntryRequest, FeedChange, FeedRequest,
};
use reqwest::Method;
use std::path::PathBuf;

/// Entries a call carries at most (the API's limit).
const BATCH: usize = 10_000;

#[derive(Subcommand)]
pub enum IntelCommand {
    /// The feeds in force: entries, where they came from, problems.
    Feeds,
    /// Whether an address or a name is listed, and by what.
    Lookup { query: String },
    /// Read every feed again now (admin).
    Reload,
    /// Make a feed managed through the API (admin).
    Create {
        name: String,
        /// alert or block.
        #[arg(long, default_value = "alert")]
        action: String,
        /// Of entries that name none: low, medium, high, critical.
        #[arg(long, default_value = "high")]
        severity: String,
        /// Quarantine a workload that resolves or contacts an entry.
        #[arg(long)]
        quarantine: bool,
        /// Accept absurd entries (0.0.0.0/0, com, the appliance's networks).
        #[arg(long)]
        force: bool,
    },
    /// Add entries to a managed feed (admin); in force when it returns,
    /// then hunted in the records.
    Add {
        feed: String,
        /// Addresses, networks or domains.
        indicators: Vec<String>,
        /// One indicator a line (`#` comments), `-` for stdin.
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long)]
        category: Option<String>,
        /// low, medium, high, critical (default: the feed's).
        #[arg(long)]
        severity: Option<String>,
    },
    /// Remove entries from a managed feed (admin).
    Remove {
        feed: String,
        #[arg(required = true)]
        indicators: Vec<String>,
    },
    /// A managed feed's entries.
    Entries {
        feed: String,
        #[arg(long, default_value_t = 0)]
        offset: u32,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Delete a managed feed (admin): its entries are lifted.
    Delete { name: String },
}

/// The indicators of the command line and of `file`.
fn indicators(args: &[String], file: Option<&PathBuf>) -> anyhow::Result<Vec<String>> {
    use anyhow::Context;
    let mut out = args.to_vec();
    if let Some(f) = file {
        let text = if f.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("stdin")?
        } else {
            std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?
        };
        out.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    if out.is_empty() {
        anyhow::bail!("no indicator: give some, or --file");
    }
    Ok(out)
}

/// What a change did, one line, then what was refused.
fn change_lines(v: &serde_json::Value) {
    let mut parts = Vec::new();
    for (key, what) in [
        ("added", "added"),
        ("already", "listed already"),
        ("removed", "removed"),
    ] {
        if v[key].as_u64().unwrap_or(0) > 0 {
            parts.push(format!("{} {what}", v[key]));
        }
    }
    if parts.is_empty() {
        parts.push("nothing changed".into());
    }
    println!(
        "{}: {} (generation {})",
        show::cell(&v["feed"]),
        parts.join(", "),
        v["generation"]
    );
    for r in v["refused"].as_array().into_iter().flatten() {
        println!(
            "refused {}: {}",
            show::cell(&r["indicator"]),
            show::cell(&r["why"])
        );
    }
    for n in v["not_found"].as_array().into_iter().flatten() {
        println!("not listed: {}", show::cell(n));
    }
}

pub(super) fn run(api: &Api, c: &IntelCommand, as_json: bool) -> anyhow::Result<()> {
    match c {
        IntelCommand::Feeds => {
            let v = api.get_as::<IntelStatusView>("/api/v1/intel")?;
            print(&v, as_json, |v| {
                println!(
                    "{} entries, generation {}, read in {:.0} ms at {}",
                    v["entries"],
                    v["generation"],
                    v["took_ms"].as_f64().unwrap_or(0.0),
                    show::cell(&v["published_at"])
                );
                table(
                    &v["feeds"],
                    &[
                        ("FEED", "/name"),
                        ("ACTION", "/action"),
                        ("ENTRIES", "/entries"),
                        ("FROM", "/origin"),
                        ("REFUSED", "/problems"),
                        ("LOADED", "/loaded_at"),
                        ("ERROR", "/error"),
                    ],
                );
                for f in v["feeds"].as_array().into_iter().flatten() {
                    for p in f["problem_lines"].as_array().into_iter().flatten() {
                        println!(
                            "{} line {}: {} ({})",
                            show::cell(&f["name"]),
                            p["line"],
                            show::cell(&p["why"]),
                            show::cell(&p["text"])
                        );
                    }
                }
            });
        }
        IntelCommand::Lookup { query } => {
            let v =
                api.get_as::<LookupResult>(&format!("/api/v1/intel/lookup?q={}", seg(query)))?;
            print(&v, as_json, |v| {
                if v["match"].is_null() {
                    println!("{} is not listed", show::cell(&v["query"]));
                } else {
                    fields(&v["match"]);
                }
            });
        }
        IntelCommand::Reload => {
            let v = api.call_as::<ReloadResult>(Method::POST, "/api/v1/intel/reload")?;
            print(&v, as_json, |v| {
                if v["reloading"] == true {
                    println!("reading the feeds again (see `bulkhead ctl intel feeds`)");
                } else {
                    println!("no feed watcher runs");
                }
            });
        }
        IntelCommand::Create {
            name,
            action,
            severity,
            quarantine,
            force,
        } => {
            let body = FeedRequest {
                name: name.clone(),
                action: Some(action.clone()),
                severity: Some(severity.clone()),
                quarantine: *quarantine,
                force: *force,
            };
            let v = api.send::<_, FeedChange>(Method::POST, "/api/v1/intel/feeds", &body)?;
            print(&v, as_json, |v| {
                println!(
                    "feed {} made (generation {})",
                    show::cell(&v["feed"]),
                    v["generation"]
                );
            });
        }
        IntelCommand::Add {
            feed,
            indicators: args,
            file,
            category,
            severity,
        } => {
            let all = indicators(args, file.as_ref())?;
            let path = format!("/api/v1/intel/feeds/{}/entries", seg(feed));
            for chunk in all.chunks(BATCH) {
                let body = EntriesRequest {
                    entries: chunk
                        .iter()
                        .map(|i| EntryRequest {
                            indicator: i.clone(),
                            category: category.clone(),
                            severity: severity.clone(),
                        })
                        .collect(),
                };
                let v = api.send::<_, FeedChange>(Method::POST, &path, &body)?;
                print(&v, as_json, change_lines);
            }
        }
        IntelCommand::Remove { feed, indicators } => {
            for i in indicators {
                let path = format!("/api/v1/intel/feeds/{}/entries/{}", seg(feed), seg(i));
                let v = api.call_as::<FeedChange>(Method::DELETE, &path)?;
                print(&v, as_json, change_lines);
            }
        }
        IntelCommand::Entries {
            feed,
            offset,
            limit,
        } => {
            let v = api.get_as::<EntriesPage>(&format!(
                "/api/v1/intel/feeds/{}/entries?offset={offset}&limit={limit}",
                seg(feed)
            ))?;
            print(&v, as_json, |v| {
                let n = v["entries"].as_array().map_or(0, Vec::len);
                println!(
                    "{}: {} entries, {} from {}",
                    show::cell(&v["feed"]),
                    v["total"],
                    n,
                    v["offset"]
                );
                table(
                    &v["entries"],
                    &[
                        ("INDICATOR", "/indicator"),
                        ("CATEGORY", "/category"),
                        ("SEVERITY", "/severity"),
                        ("ADDED", "/added_at"),
                    ],
                );
            });
        }
        IntelCommand::Delete { name } => {
            let path = format!("/api/v1/intel/feeds/{}", seg(name));
            let v = api.call_as::<FeedChange>(Method::DELETE, &path)?;
            print(&v, as_json, |v| {
                println!(
                    "feed {} deleted (generation {})",
                    show::cell(&v["feed"]),
                    v["generation"]
                );
            });
        }
    }
    Ok(())
}
