//! `bulkhead ctl intel`: the threat-intel feeds in force, a lookup, a reload.

use super::client::Api;
use super::show::{self, fields, table};
use super::{print, seg};
use clap::Subcommand;
use mgmt_api::routes::intel::{IntelStatusView, LookupResult, ReloadResult};
use reqwest::Method;

#[derive(Subcommand)]
pub enum IntelCommand {
    /// The feeds in force: entries, where they came from, problems.
    Feeds,
    /// Whether an address or a name is listed, and by what.
    Lookup { query: String },
    /// Read every feed again now (admin).
    Reload,
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
                    println!("no feed is configured");
                }
            });
        }
    }
    Ok(())
}
