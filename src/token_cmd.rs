//! `bulkhead token create|list|revoke`: API tokens, straight in the store
//! (the first admin token has to come from somewhere). The token is printed
//! once; the store keeps only its SHA-256.

use anyhow::Context;
use clap::{Args, Subcommand};
use control::store::Store;
use mgmt_api::token::{self, Role};
use std::path::PathBuf;

#[derive(Args)]
pub struct TokenArgs {
    /// The store file (default: the config's `control.store`, else the default store).
    #[arg(long, global = true, conflicts_with = "config")]
    pub store: Option<PathBuf>,
    /// The appliance config whose store to use.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (once).
    Create {
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        name: String,
    },
    /// List tokens (never their text).
    List {
        /// Revoked tokens too.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a token by name: it stops working at once.
    Revoke { name: String },
    /// Install a token known only by its SHA-256 (the appliance image's
    /// day-0 `admin_token_sha256`): active as NAME, replacing an active
    /// token of that name; nothing changes if it is active already.
    Import {
        /// The token's SHA-256, 64 hex digits (`printf %s "$TOKEN" | sha256sum`).
        #[arg(long)]
        sha256: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        name: String,
        /// Who installs it, as the token list and the audit show it
        /// (default `cli:$USER`; the image's day-0 service says `day0`).
        #[arg(long)]
        by: Option<String>,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("{s:?}: expected viewer, operator or admin"))
}

fn store_path(args: &TokenArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.store {
        return Ok(p.clone());
    }
    if let Some(c) = &args.config {
        return Ok(crate::run::load_config(c)?.control.store);
    }
    Ok(PathBuf::from(crate::run::DEFAULT_STORE))
}

pub fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let path = store_path(args)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut store = Store::open(&path)?;
    match &args.command {
        TokenCommand::Create { role, name } => {
            let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let t = token::create(&mut store, name, *role, &format!("cli:{user}"))?;
            println!("{t}");
            eprintln!("token {name:?} ({role}) created; it is shown only this once");
        }
        TokenCommand::List { all } => {
            let list = token::list(&store, *all)?;
            println!(
                "{:<24} {:<9} {:<25} {:<20} REVOKED",
                "NAME", "ROLE", "CREATED", "BY"
            );
            for t in list {
                println!(
                    "{:<24} {:<9} {:<25} {:<20} {}",
                    t.name,
                    t.role,
                    t.created_at,
                    t.created_by,
                    t.revoked_at.as_deref().unwrap_or("-")
                );
            }
        }
        TokenCommand::Import {
            sha256,
            role,
            name,
            by,
        } => {
            let digest = token::parse_sha256(sha256)
                .with_context(|| format!("--sha256 {sha256:?}: expected 64 hex digits"))?;
            let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let by = by.clone().unwrap_or_else(|| format!("cli:{user}"));
            match token::import(&mut store, name, *role, &digest, &by)? {
                Some(active) => println!("token: already active as {active:?}"),
                None => println!("token {name:?} ({role}) installed from its SHA-256"),
            }
        }
        TokenCommand::Revoke { name } => {
            let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            if !store.revoke_token(name, &format!("cli:{user}"))? {
                anyhow::bail!("no active token named {name:?}");
            }
            println!("token {name:?} revoked");
        }
    }
    Ok(())
}
