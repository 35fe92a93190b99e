//! `[intel]`: threat-intel feed files, read at start (before the first
//! packet) and again when they change; `[alerts]`: how alerts are
//! deduplicated and where they are delivered.
//!
//! ```toml
//! [intel]
//! reload_secs = 10                  # how often the files are looked at
//! [[intel.feeds]]
//! name = "c2"                       # letters, digits, - _ .
//! path = "/etc/bulkhead/feeds/c2.txt"
//! format = "list"                   # list, hosts or csv
//! action = "block"                  # alert or block
//! severity = "high"                 # of entries that name none
//! quarantine = false                # quarantine who reaches an entry
//! force = false                     # accept absurd entries (0.0.0.0/0, com)
//!
//! [alerts]
//! window_secs = 3600                # a repeat within it raises a count
//! per_minute = 60                   # new alerts a minute at most
//! syslog = ["udp://10.0.0.5", "tcp://siem.example:601"]
//! syslog_facility = 16              # local0
//! hostname = "bulkhead-1"           # default: the system's
//! [[alerts.webhook]]                # each alert POSTed as JSON over HTTPS
//! url = "https://soar.example/hooks/bulkhead"
//! ca = "/etc/bulkhead/soar-ca.pem"  # default: the system's public CAs
//! token = "..."                     # sent as Authorization: Bearer
//! timeout_secs = 5                  # a request that takes longer fails
//! retry_secs = 600                  # how long an alert is tried again
//! ```

use anyhow::Context;
use control::engine::{ControlHandle, IntelWatch};
use control::intel::feeds::{FeedSource, Loader};
use control::intel::{Action, Format, Severity};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntelSection {
    pub reload_secs: u64,
    pub feeds: Vec<FeedSection>,
}

impl Default for IntelSection {
    fn default() -> Self {
        IntelSection {
            reload_secs: 10,
            feeds: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSection {
    pub name: String,
    pub path: PathBuf,
    #[serde(default = "default_format")]
    pub format: String,
    #[serde(default = "default_action")]
    pub action: String,
    #[serde(default = "default_severity")]
    pub severity: String,
    #[serde(default)]
    pub quarantine: bool,
    #[serde(default)]
    pub force: bool,
}

fn default_format() -> String {
    "list".into()
}
fn default_action() -> String {
    "alert".into()
}
fn default_severity() -> String {
    "high".into()
}

impl IntelSection {
    /// The feed sources, checked; `None` without feeds.
    pub fn sources(&self) -> anyhow::Result<Vec<FeedSource>> {
        let mut out = Vec::with_capacity(self.feeds.len());
        for (i, f) in self.feeds.iter().enumerate() {
            let at = || format!("intel.feeds[{i}] ({})", f.name);
            out.push(FeedSource {
                name: f.name.clone(),
                path: f.path.clone(),
                format: f
                    .format
                    .parse::<Format>()
                    .map_err(anyhow::Error::msg)
                    .with_context(at)?,
                action: f
                    .action
                    .parse::<Action>()
                    .map_err(anyhow::Error::msg)
                    .with_context(at)?,
                severity: f
                    .severity
                    .parse::<Severity>()
                    .map_err(anyhow::Error::msg)
                    .with_context(at)?,
                quarantine: f.quarantine,
                force: f.force,
                managed: false,
            });
        }
        control::intel::feeds::check_sources(&out).context("intel.feeds")?;
        if self.reload_secs == 0 {
            anyhow::bail!("intel.reload_secs: at least 1");
        }
        Ok(out)
    }
}

/// Reads the feeds (the config's files and those managed through the API)
/// into force and starts watching them. With `records` (the store and its
/// retention), entries added by a reading are hunted in the records.
pub fn start(
    section: &IntelSection,
    state_dir: &Path,
    control: &ControlHandle,
    api: SocketAddr,
    records: Option<control::engine::HuntPlan>,
) -> anyhow::Result<IntelWatch> {
    let sources = section.sources()?;
    let protected = control::intel::feeds::protected(&control.view().model, &[api.ip()]);
    let loader = Loader::new(sources, state_dir, protected)?;
    let watch = IntelWatch::start(
        loader,
        control.clone(),
        Duration::from_secs(section.reload_secs),
        records,
    )?;
    Ok(watch)
}

/// The log line of the intel in force.
pub fn line(control: &ControlHandle) -> String {
    let view = control.intel();
    let feeds: Vec<String> = view
        .feeds
        .iter()
        .map(|f| {
            let mut s = format!("{} {} ({})", f.source.name, f.entries, f.origin.name());
            if f.problems.count > 0 {
                s.push_str(&format!(", {} lines refused", f.problems.count));
            }
            if let Some(e) = &f.error {
                s.push_str(&format!(": {e}"));
            }
            s
        })
        .collect();
    let mut line = format!(
        "intel: {} entries in {:.0} ms, generation {}: {}",
        view.intel.len(),
        view.took_ms,
        view.generation,
        feeds.join("; ")
    );
    if let Some(h) = view.hunt.as_ref().filter(|h| h.at_ms >= view.published_ms) {
        line += &format!(
            "; retro-hunt of {} added entries: {} alerts in {:.0} ms{}",
            h.searched,
            h.alerts,
            h.took_ms,
            h.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    line
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSection {
    pub window_secs: u64,
    pub per_minute: u32,
    pub syslog: Vec<String>,
    pub syslog_facility: u8,
    pub hostname: Option<String>,
    pub webhook: Vec<WebhookSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub url: String,
    pub ca: Option<PathBuf>,
    pub token: Option<String>,
    pub timeout_secs: Option<u64>,
    pub retry_secs: Option<u64>,
}

impl Default for AlertsSection {
    fn default() -> Self {
        let d = control::alerts::AlertConfig::default();
        AlertsSection {
            window_secs: u64::try_from(d.window_ms / 1000).unwrap_or(3600),
            per_minute: d.per_minute,
            syslog: Vec::new(),
            syslog_facility: 16,
            hostname: None,
            webhook: Vec::new(),
        }
    }
}

impl AlertsSection {
    /// The alerter's settings and the delivery targets, checked.
    pub fn plan(
        &self,
    ) -> anyhow::Result<(
        control::alerts::AlertConfig,
        control::alerts::deliver::DeliveryConfig,
    )> {
        if self.per_minute == 0 {
            anyhow::bail!("alerts.per_minute: at least 1");
        }
        if self.syslog_facility > 23 {
            anyhow::bail!("alerts.syslog_facility: 0 to 23 (16 is local0)");
        }
        let syslog = self
            .syslog
            .iter()
            .map(|t| {
                control::ipfix::Collector::parse(t, control::alerts::deliver::SYSLOG_PORT)
                    .with_context(|| "alerts.syslog".to_string())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut webhooks = Vec::new();
        for (i, w) in self.webhook.iter().enumerate() {
            use control::alerts::webhook::Webhook;
            if w.timeout_secs == Some(0) {
                anyhow::bail!("alerts.webhook[{i}].timeout_secs: at least 1");
            }
            let hook = Webhook {
                ca: w.ca.clone(),
                token: w.token.clone(),
                timeout: w
                    .timeout_secs
                    .map_or(control::alerts::webhook::TIMEOUT, Duration::from_secs),
                retry_for: w
                    .retry_secs
                    .map_or(control::alerts::webhook::RETRY_FOR, Duration::from_secs),
                ..Webhook::new(&w.url)
            };
            hook.check()
                .with_context(|| format!("alerts.webhook[{i}]"))?;
            webhooks.push(hook);
        }
        let hostname = self.hostname.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "bulkhead".into())
        });
        Ok((
            control::alerts::AlertConfig {
                window_ms: i64::try_from(self.window_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
                per_minute: self.per_minute,
            },
            control::alerts::deliver::DeliveryConfig {
                syslog,
                facility: self.syslog_facility,
                hostname,
                webhooks,
            },
        ))
    }
}
