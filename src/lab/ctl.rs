//! The lab drives its quarantine the way a network team does: `bulkhead ctl`
//! against the appliance's HTTPS API (on loopback in the appliance's
//! namespace), with an operator token made for the run and the certificate's
//! fingerprint from the appliance log, kept in a ctl config file.

use anyhow::{bail, Context};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::topology::DUT;

pub struct LabCtl {
    exe: String,
    config: PathBuf,
}

/// The API's URL and certificate fingerprint, from the appliance's
/// "api: https://ADDR (... certificate PATH), SHA-256 fingerprint FP" line.
fn api_line(log: &str) -> Option<(String, String)> {
    let line = log.lines().find(|l| l.starts_with("api: https://"))?;
    let url = line.strip_prefix("api: ")?.split_whitespace().next()?;
    let fp = line.rsplit("SHA-256 fingerprint ").next()?.trim();
    (!fp.is_empty() && fp != line).then(|| (url.to_string(), fp.to_string()))
}

impl LabCtl {
    /// Waits (up to `within`) for the appliance to serve its API, makes an
    /// operator token in its store and writes `dir/ctl.toml`.
    pub fn setup(
        exe: &str,
        dir: &Path,
        store: &Path,
        log: impl Fn() -> String,
        within: Duration,
    ) -> anyhow::Result<LabCtl> {
        let started = Instant::now();
        let (url, fingerprint) = loop {
            if let Some(found) = api_line(&log()) {
                break found;
            }
            if started.elapsed() > within {
                bail!("the appliance did not start its API within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let out = Command::new(exe)
            .args(["token", "create", "--role", "operator", "--name"])
            .arg(format!("lab-{}", std::process::id()))
            .arg("--store")
            .arg(store)
            .stdin(Stdio::null())
            .output()
            .context("run `bulkhead token create`")?;
        if !out.status.success() {
            bail!(
                "bulkhead token create: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let config = dir.join("ctl.toml");
        std::fs::write(
            &config,
            format!("url = \"{url}\"\ntoken = \"{token}\"\nfingerprint = \"{fingerprint}\"\n"),
        )
        .with_context(|| format!("write {}", config.display()))?;
        // It holds a token.
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))?;
        Ok(LabCtl {
            exe: exe.to_string(),
            config,
        })
    }

    /// `bulkhead ctl ARGS` in the appliance's namespace, echoed as a user
    /// would type it, with its answer; whether it succeeded, and the answer.
    pub fn run(&self, args: &[&str]) -> (bool, String) {
        let shown: Vec<String> = args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.to_string()
                }
            })
            .collect();
        println!("  $ bulkhead ctl {}", shown.join(" "));
        let out = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{DUT}"))
            .arg(&self.exe)
            .arg("ctl")
            .arg("--ctl-config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output();
        let (ok, text) = match out {
            Ok(o) => {
                let mut text = String::from_utf8_lossy(&o.stdout).trim().to_string();
                let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
                if !err.is_empty() {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&err);
                }
                (o.status.success(), text)
            }
            Err(e) => (false, format!("cannot run bulkhead ctl: {e}")),
        };
        for line in text.lines() {
            println!("    {line}");
        }
        (ok, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_line_gives_url_and_fingerprint() {
        let log = "policy: ...\napi: https://127.0.0.1:8443 (generated self-signed certificate /tmp/x/api.pem), SHA-256 fingerprint AB:CD:EF\nforwarding ...";
        assert_eq!(
            api_line(log),
            Some(("https://127.0.0.1:8443".into(), "AB:CD:EF".into()))
        );
        assert_eq!(api_line("api: disabled ([api] enabled = false)"), None);
        assert_eq!(api_line(""), None);
    }
}
