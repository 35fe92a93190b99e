//! `bulkhead ctl`: the management API's client. Tables for people, `--json`
//! for scripts (the API's own JSON, unchanged).

mod alerts;
pub(crate) mod client;
mod detect;
mod intel;
mod policy;
mod proposals;
mod records;
mod show;

use anyhow::Context;
use clap::{Args, Subcommand};
use client::{Api, Settings};
use mgmt_api::routes::admin::{AuditView, NewToken, TokenRequest};
use mgmt_api::routes::inventory::{GroupView, RuleView, ServiceView, WorkloadView};
use mgmt_api::routes::quarantine::{
    QuarantineEventView, QuarantineRequest, QuarantineResult, QuarantineView, ReleaseResult,
};
use mgmt_api::routes::status::StatsView;
use mgmt_api::token::TokenView;
use reqwest::Method;
use serde_json::{json, Value};
use show::{fields, table};
use std::path::PathBuf;

#[derive(Args)]
pub struct CtlArgs {
    /// The appliance, `https://HOST:PORT` (env BULKHEAD_URL).
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// A bearer token, `bh_...` (env BULKHEAD_TOKEN).
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// Trust this CA (PEM) for the appliance's certificate (env BULKHEAD_CA).
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// Trust exactly the certificate with this SHA-256 (env BULKHEAD_FINGERPRINT).
    #[arg(long, global = true)]
    pub fingerprint: Option<String>,
    /// Do not verify the appliance's certificate at all.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Settings file (TOML: url, token, ca, fingerprint; env BULKHEAD_CTL_CONFIG,
    /// default ~/.config/bulkhead/ctl.toml).
    #[arg(long, global = true)]
    pub ctl_config: Option<PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand)]
pub enum CtlCommand {
    /// Liveness of the control thread and the worker (no token needed).
    Health,
    /// Dataplane counters and the control thread's status.
    Stats,
    /// The server certificate's SHA-256 (compare it with the appliance log).
    Fingerprint,
    /// Workloads, or one by MAC.
    Workloads { mac: Option<String> },
    /// Groups with their members and modes.
    Groups,
    /// Built-in and user services.
    Services,
    /// Rules with their hit counts.
    Rules,
    /// Draft, diff, commit, versions, rollback.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Quarantine by MAC.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// API tokens (admin).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// The audit log, newest first (admin).
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// The Prometheus metrics text.
    Metrics,
    /// Flow records, newest first (the filters of `bulkhead records flows`).
    Flows(crate::records_cmd::FlowFilterArgs),
    /// The access graph of a window (as `bulkhead records graph`).
    Graph(crate::records_cmd::GraphWindowArgs),
    /// Rule use from the flow records: flows per rule, would-deny, last hit,
    /// never-hit rules (window: since the live version's commit by default).
    RulesUsage(crate::records_cmd::WindowArgs),
    /// The workloads that resolved a domain or contacted an address (as
    /// `bulkhead records traceback`).
    Traceback(crate::forensics_cmd::TracebackArgs),
    /// What a workload reached from a time on (as `bulkhead records blast-radius`).
    BlastRadius(crate::forensics_cmd::BlastArgs),
    /// Which MACs held an address (as `bulkhead records addresses`).
    Addresses(crate::forensics_cmd::AddressArgs),
    /// DNS responses, newest first (as `bulkhead records dns`).
    Dns(crate::forensics_cmd::DnsArgs),
    /// Alerts: list, show, acknowledge, close.
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
    /// Threat-intel feeds: what is in force, lookup, reload.
    #[command(subcommand)]
    Intel(intel::IntelCommand),
    /// Rule proposals from the recorded traffic; accept them into the draft.
    #[command(subcommand)]
    Proposals(proposals::ProposalsCommand),
    /// Anomaly detection: the detectors and their baselines; reset them.
    #[command(subcommand)]
    Detect(detect::DetectCommand),
}

#[derive(Subcommand)]
pub enum QuarantineCommand {
    /// The quarantines in force.
    List,
    /// Quarantine a workload by MAC.
    Add {
        mac: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Release a workload.
    Release { mac: String },
    /// Quarantines and releases (of one MAC).
    History { mac: Option<String> },
}

#[derive(Subcommand)]
pub enum TokensCommand {
    List {
        #[arg(long)]
        all: bool,
    },
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
    },
    Revoke {
        name: String,
    },
}

/// Percent-encodes a path segment (MACs and token names are plain, but a
/// user may type anything).
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn run(args: &CtlArgs) -> anyhow::Result<()> {
    let flags = Settings {
        url: args.url.clone(),
        token: args.token.clone(),
        ca: args.ca.clone(),
        fingerprint: args.fingerprint.clone(),
        insecure: args.insecure,
    };
    let settings = flags
        .or(Settings::from_env())
        .or(Settings::from_file(args.ctl_config.as_deref())?);
    let tofu = matches!(args.command, CtlCommand::Fingerprint);
    let api = Api::new(&settings, tofu)?;
    let out = |v: &Value, people: &dyn Fn(&Value)| {
        if args.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            people(v);
        }
    };
    match &args.command {
        CtlCommand::Health => {
            // 503 carries the same body: show it, then fail.
            let (good, v) = api.health()?;
            out(&v, &fields);
            if !good {
                anyhow::bail!(
                    "the appliance is not healthy ({})",
                    v["status"].as_str().unwrap_or("no status")
                );
            }
        }
        CtlCommand::Fingerprint => {
            let _ = api.get("/api/v1/health");
            let fp = api
                .seen
                .lock()
                .ok()
                .and_then(|s| s.clone())
                .context("no certificate seen (is the URL right?)")?;
            if args.json {
                println!("{}", json!({ "fingerprint": fp }));
            } else {
                println!("{fp}");
            }
        }
        CtlCommand::Stats => {
            let v = api.get_as::<StatsView>("/api/v1/stats")?;
            out(&v, &|v| {
                println!("control:");
                fields(&v["control"]);
                for (i, w) in v["workers"].as_array().into_iter().flatten().enumerate() {
                    println!("\nworker {i}:");
                    fields(w);
                }
            });
        }
        CtlCommand::Workloads { mac: None } => {
            let v = api.get_as::<Vec<WorkloadView>>("/api/v1/workloads")?;
            out(&v, &|v| {
                table(
                    v,
                    &[
                        ("MAC", "/mac"),
                        ("NAME", "/name"),
                        ("LABELS", "/labels"),
                        ("GROUPS", "/groups"),
                        ("IPS", "/ips"),
                        ("ORIGIN", "/origin"),
                        ("QUARANTINED", "/quarantined"),
                    ],
                )
            });
        }
        CtlCommand::Workloads { mac: Some(m) } => {
            let v = api.get_as::<WorkloadView>(&format!("/api/v1/workloads/{}", seg(m)))?;
            out(&v, &fields);
        }
        CtlCommand::Groups => {
            let v = api.get_as::<Vec<GroupView>>("/api/v1/groups")?;
            out(&v, &|v| {
                table(
                    v,
                    &[
                        ("NAME", "/name"),
                        ("MODE", "/mode"),
                        ("KIND", "/kind"),
                        ("MATCH", "/match"),
                        ("MEMBERS", "/members"),
                    ],
                )
            });
        }
        CtlCommand::Services => {
            let v = api.get_as::<Vec<ServiceView>>("/api/v1/services")?;
            out(&v, &|v| {
                let rows: Vec<Value> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        let entries: Vec<String> = s["entries"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|e| {
                                format!("{}/{}", show::cell(&e["proto"]), show::cell(&e["ports"]))
                            })
                            .collect();
                        json!({ "name": s["name"], "builtin": s["builtin"], "entries": entries })
                    })
                    .collect();
                table(
                    &Value::Array(rows),
                    &[
                        ("NAME", "/name"),
                        ("BUILTIN", "/builtin"),
                        ("ENTRIES", "/entries"),
                    ],
                )
            });
        }
        CtlCommand::Rules => {
            let v = api.get_as::<Vec<RuleView>>("/api/v1/rules")?;
            out(&v, &|v| {
                table(
                    v,
                    &[
                        ("ID", "/id"),
                        ("SRC", "/src"),
                        ("DST", "/dst"),
                        ("SERVICES", "/services"),
                        ("ACTION", "/action"),
                        ("ENABLED", "/enabled"),
                        ("FLOWS", "/hits/flows"),
                        ("WOULD-DENY", "/hits/would_deny"),
                        ("LAST HIT", "/hits/last_hit"),
                    ],
                )
            });
        }
        CtlCommand::Policy(p) => policy::run(&api, p, args.json)?,
        CtlCommand::Quarantine(q) => quarantine(&api, q, args.json)?,
        CtlCommand::Intel(c) => intel::run(&api, c, args.json)?,
        CtlCommand::Alerts(c) => alerts::run(&api, c, args.json)?,
        CtlCommand::Proposals(c) => proposals::run(&api, c, args.json)?,
        CtlCommand::Detect(c) => detect::run(&api, c, args.json)?,
        CtlCommand::Tokens(t) => tokens(&api, t, args.json)?,
        CtlCommand::Audit { limit } => {
            let v = api.get_as::<Vec<AuditView>>(&format!("/api/v1/audit?limit={limit}"))?;
            out(&v, &|v| {
                table(
                    v,
                    &[
                        ("AT", "/at"),
                        ("ACTOR", "/actor"),
                        ("ROLE", "/role"),
                        ("ACTION", "/action"),
                        ("STATUS", "/status"),
                        ("RESULT", "/result"),
                        ("DETAIL", "/detail"),
                    ],
                )
            });
        }
        CtlCommand::Metrics => print!("{}", api.text("/metrics")?),
        CtlCommand::Flows(f) => records::flows(&api, f, args.json)?,
        CtlCommand::Graph(g) => records::graph(&api, g, args.json)?,
        CtlCommand::Traceback(t) => records::traceback(&api, t, args.json)?,
        CtlCommand::BlastRadius(b) => records::blast_radius(&api, b, args.json)?,
        CtlCommand::Addresses(a) => records::addresses(&api, a, args.json)?,
        CtlCommand::Dns(d) => records::dns(&api, d, args.json)?,
        CtlCommand::RulesUsage(w) => records::rules_usage(&api, w, args.json)?,
    }
    Ok(())
}

fn print(v: &Value, as_json: bool, people: impl Fn(&Value)) {
    if as_json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        people(v);
    }
}

fn quarantine(api: &Api, q: &QuarantineCommand, as_json: bool) -> anyhow::Result<()> {
    match q {
        QuarantineCommand::List => print(
            &api.get_as::<Vec<QuarantineView>>("/api/v1/quarantine")?,
            as_json,
            |v| {
                table(
                    v,
                    &[
                        ("MAC", "/mac"),
                        ("NAME", "/name"),
                        ("SINCE", "/at"),
                        ("BY", "/actor"),
                        ("SOURCE", "/source"),
                        ("REASON", "/reason"),
                    ],
                )
            },
        ),
        QuarantineCommand::Add { mac, reason } => {
            let body = QuarantineRequest {
                mac: mac.clone(),
                reason: reason.clone(),
            };
            let v = api.send::<_, QuarantineResult>(Method::POST, "/api/v1/quarantine", &body)?;
            print(&v, as_json, |v| {
                let mut line = format!(
                    "{} quarantined (generation {})",
                    show::cell(&v["mac"]),
                    v["generation"]
                );
                if v["already"] == true {
                    line = format!("{} was already quarantined", show::cell(&v["mac"]));
                }
                if v["unknown_workload"] == true {
                    line += "; no workload with this MAC is known yet";
                }
                println!("{line}");
            });
        }
        QuarantineCommand::Release { mac } => {
            let path = format!("/api/v1/quarantine/{}", seg(mac));
            let v = api.call_as::<ReleaseResult>(Method::DELETE, &path)?;
            print(&v, as_json, |v| {
                if v["released"] == true {
                    println!(
                        "{} released (generation {})",
                        show::cell(&v["mac"]),
                        v["generation"]
                    );
                } else {
                    println!("{} was not quarantined", show::cell(&v["mac"]));
                }
            });
        }
        QuarantineCommand::History { mac } => {
            let path = match mac {
                Some(m) => format!("/api/v1/quarantine/history?mac={}", seg(m)),
                None => "/api/v1/quarantine/history".to_string(),
            };
            print(
                &api.get_as::<Vec<QuarantineEventView>>(&path)?,
                as_json,
                |v| {
                    table(
                        v,
                        &[
                            ("AT", "/at"),
                            ("MAC", "/mac"),
                            ("ACTION", "/action"),
                            ("BY", "/actor"),
                            ("REASON", "/reason"),
                        ],
                    )
                },
            );
        }
    }
    Ok(())
}

fn tokens(api: &Api, t: &TokensCommand, as_json: bool) -> anyhow::Result<()> {
    match t {
        TokensCommand::List { all } => {
            let v = api.get_as::<Vec<TokenView>>(&format!("/api/v1/tokens?revoked={all}"))?;
            print(&v, as_json, |v| {
                table(
                    v,
                    &[
                        ("NAME", "/name"),
                        ("ROLE", "/role"),
                        ("CREATED", "/created_at"),
                        ("BY", "/created_by"),
                        ("REVOKED", "/revoked_at"),
                    ],
                )
            });
        }
        TokensCommand::Create { name, role } => {
            let role = mgmt_api::Role::parse(role).with_context(|| {
                format!("unknown role {role:?}: expected viewer, operator or admin")
            })?;
            let body = TokenRequest {
                name: name.clone(),
                role,
            };
            let v = api.send::<_, NewToken>(Method::POST, "/api/v1/tokens", &body)?;
            print(&v, as_json, |v| {
                println!("{}", show::cell(&v["token"]));
                eprintln!("token {name:?} ({role}) created; it is shown only this once");
            });
        }
        TokensCommand::Revoke { name } => {
            api.call(
                Method::DELETE,
                &format!("/api/v1/tokens/{}", seg(name)),
                None,
            )?;
            if !as_json {
                println!("token {name:?} revoked");
            }
        }
    }
    Ok(())
}
