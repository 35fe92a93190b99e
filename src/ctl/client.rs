//! The API client: where the appliance is, how its certificate is trusted
//! (a CA file, a pinned SHA-256 fingerprint, or `--insecure` only when asked),
//! the token, and one-line errors.

use anyhow::{anyhow, bail, Context};
use reqwest::blocking::{Client, Response};
use reqwest::Method;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the settings come from, strongest first: flags, environment
/// (`BULKHEAD_URL`, `BULKHEAD_TOKEN`, `BULKHEAD_CA`, `BULKHEAD_FINGERPRINT`),
/// the config file (`--ctl-config`, `BULKHEAD_CTL_CONFIG`, else
/// `~/.config/bulkhead/ctl.toml` if it exists).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub url: Option<String>,
    pub token: Option<String>,
    pub ca: Option<PathBuf>,
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub insecure: bool,
}

impl Settings {
    /// Fills what `self` lacks from `other`.
    pub fn or(self, other: Settings) -> Settings {
        Settings {
            url: self.url.or(other.url),
            token: self.token.or(other.token),
            ca: self.ca.or(other.ca),
            fingerprint: self.fingerprint.or(other.fingerprint),
            insecure: self.insecure || other.insecure,
        }
    }

    pub fn from_env() -> Settings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Settings {
            url: var("BULKHEAD_URL"),
            token: var("BULKHEAD_TOKEN"),
            ca: var("BULKHEAD_CA").map(PathBuf::from),
            fingerprint: var("BULKHEAD_FINGERPRINT"),
            insecure: false,
        }
    }

    pub fn from_file(explicit: Option<&Path>) -> anyhow::Result<Settings> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os("BULKHEAD_CTL_CONFIG") {
                Some(p) => PathBuf::from(p),
                None => {
                    let Some(home) = std::env::var_os("HOME") else {
                        return Ok(Settings::default());
                    };
                    let p = PathBuf::from(home).join(".config/bulkhead/ctl.toml");
                    if !p.exists() {
                        return Ok(Settings::default());
                    }
                    p
                }
            },
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        Ok(control::load::parse_toml(
            &text,
            &path.display().to_string(),
        )?)
    }
}

/// A fingerprint as people write it: hex, any case, `:` or none.
pub fn normalize_fingerprint(s: &str) -> anyhow::Result<String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect::<String>()
        .to_ascii_uppercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("fingerprint {s:?}: expected 64 hex digits (SHA-256), e.g. AB:CD:...");
    }
    Ok(hex
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect::<Vec<_>>()
        .join(":"))
}

/// Accepts exactly one certificate (by SHA-256), or any with `pinned: None`
/// (`--insecure`, and `ctl fingerprint`), recording what the server showed.
/// Handshake signatures are still verified against that certificate.
#[derive(Debug)]
struct Pinned {
    pinned: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = mgmt_api::tls::fingerprint(end_entity.as_ref());
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fp.clone());
        }
        match &self.pinned {
            Some(p) if *p != fp => Err(rustls::Error::General(format!(
                "the server's certificate fingerprint is {fp}, not the pinned {p}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A connected client.
pub struct Api {
    client: Client,
    base: String,
    token: Option<String>,
    /// The fingerprint the server showed on the last connection.
    pub seen: Arc<Mutex<Option<String>>>,
}

impl Api {
    /// `tofu`: accept any certificate and record it (for `ctl fingerprint`).
    pub fn new(s: &Settings, tofu: bool) -> anyhow::Result<Api> {
        let url = s
            .url
            .clone()
            .context("no appliance URL: --url, BULKHEAD_URL or `url` in the ctl config")?;
        if !url.starts_with("https://") {
            bail!("{url}: the API is served over HTTPS only (https://HOST:PORT)");
        }
        let provider = control::tls::provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let seen = Arc::new(Mutex::new(None));
        let pinned = |pinned| Pinned {
            pinned,
            seen: seen.clone(),
            provider: provider.clone(),
        };
        let tls = if tofu || s.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(pinned(None)))
                .with_no_client_auth()
        } else if let Some(fp) = &s.fingerprint {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(pinned(Some(normalize_fingerprint(
                    fp,
                )?))))
                .with_no_client_auth()
        } else if let Some(ca) = &s.ca {
            builder
                .with_root_certificates(control::tls::roots(ca)?)
                .with_no_client_auth()
        } else if Path::new(control::tls::SYSTEM_CAS).exists() {
            builder
                .with_root_certificates(control::tls::roots(Path::new(control::tls::SYSTEM_CAS))?)
                .with_no_client_auth()
        } else {
            bail!(
                "cannot verify the appliance: give --ca FILE or --fingerprint SHA256 \
                 (printed in the appliance log; `bulkhead ctl fingerprint` shows the server's)"
            );
        };
        let client = Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot set up the HTTPS client")?;
        Ok(Api {
            client,
            base: url.trim_end_matches('/').to_string(),
            token: s.token.clone(),
            seen,
        })
    }

    /// One call; a JSON answer (or `Null` for 204), or a one-line error.
    pub fn call(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().map_err(|e| transport_error(&self.base, &e))?;
        answer(resp)
    }

    /// A text answer (metrics).
    pub fn text(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().map_err(|e| transport_error(&self.base, &e))?;
        if !resp.status().is_success() {
            answer(resp)?;
            bail!("unexpected answer");
        }
        Ok(resp.text()?)
    }

    /// A GET whose answer is a stream (server-sent events) read for up to
    /// `lasts`: the response to read from, or the one-line error.
    pub fn stream(&self, path: &str, lasts: Duration) -> anyhow::Result<Response> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.get(&url).timeout(lasts);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().map_err(|e| transport_error(&self.base, &e))?;
        if !resp.status().is_success() {
            answer(resp)?;
            bail!("unexpected answer");
        }
        Ok(resp)
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None)
    }

    /// `GET /api/v1/health`: the health (the server's `HealthView`) and
    /// whether it is good (200); a 503 carries the same shape, saying why.
    pub fn health(&self) -> anyhow::Result<(bool, Value)> {
        let url = format!("{}/api/v1/health", self.base);
        let resp = self
            .client
            .get(&url)
            .send()
            .map_err(|e| transport_error(&self.base, &e))?;
        let status = resp.status();
        if status != reqwest::StatusCode::SERVICE_UNAVAILABLE {
            let v = answer(resp)?;
            return Ok((
                true,
                shaped::<mgmt_api::routes::status::HealthView>("/api/v1/health", v)?,
            ));
        }
        let text = resp.text().unwrap_or_default();
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("server error (503): {}", text.trim()))?;
        Ok((
            false,
            shaped::<mgmt_api::routes::status::HealthView>("/api/v1/health", v)?,
        ))
    }

    /// A GET whose answer must have the shape of the server's own type `T`
    /// (the view types of `mgmt_api`): a different version of the appliance
    /// is an error that says so, not a table of blanks.
    pub fn get_as<T: DeserializeOwned + Serialize>(&self, path: &str) -> anyhow::Result<Value> {
        shaped::<T>(path, self.get(path)?)
    }

    /// A call without a body whose answer has the server's type `T`.
    pub fn call_as<T: DeserializeOwned + Serialize>(
        &self,
        method: Method,
        path: &str,
    ) -> anyhow::Result<Value> {
        shaped::<T>(path, self.call(method, path, None)?)
    }

    /// A call with the server's request type `B` as its body and its answer
    /// type `T`.
    pub fn send<B: Serialize, T: DeserializeOwned + Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> anyhow::Result<Value> {
        let body = serde_json::to_value(body).context("the request does not render as JSON")?;
        shaped::<T>(path, self.call(method, path, Some(&body))?)
    }
}

/// `v` read as `T` and written back: the answer as the shared type has it.
fn shaped<T: DeserializeOwned + Serialize>(path: &str, v: Value) -> anyhow::Result<Value> {
    let typed: T = serde_json::from_value(v).with_context(|| {
        format!("{path}: the appliance's answer is not what this bulkhead ctl expects (another version?)")
    })?;
    Ok(serde_json::to_value(typed)?)
}

/// The innermost useful message of a transport error, on one line.
fn transport_error(base: &str, e: &reqwest::Error) -> anyhow::Error {
    let mut msgs = Vec::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        msgs.push(s.to_string());
        src = s.source();
    }
    let inner = msgs.last().cloned().unwrap_or_default();
    if e.is_timeout() {
        anyhow!("{base}: no answer in time ({inner})")
    } else if msgs.iter().any(|m| {
        m.contains("certificate")
            || m.contains("fingerprint")
            || m.contains("Tls")
            || m.contains("TLS")
    }) {
        anyhow!("{base}: TLS: {inner}")
    } else if e.is_connect() {
        anyhow!("cannot reach {base}: {inner}")
    } else {
        anyhow!("{base}: {inner}")
    }
}

fn answer(resp: Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    if status.is_success() {
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_str(&text).context("the answer is not JSON");
    }
    let body: Option<mgmt_api::ErrorBody> = serde_json::from_str(&text).ok();
    let (code, message, field) = match body {
        Some(b) => (b.code.to_string(), b.message.replace('\n', "; "), b.field),
        None => (String::new(), text.trim().to_string(), None),
    };
    let what = match status.as_u16() {
        401 => "bad token".to_string(),
        403 => "forbidden".to_string(),
        404 => "not found".to_string(),
        429 => "rate limited".to_string(),
        s if (400..500).contains(&s) => format!("refused ({s} {code})"),
        s => format!("server error ({s} {code})"),
    };
    match field {
        Some(f) => bail!("{what}: {message} [field {f}]"),
        None => bail!("{what}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalised() {
        let hex = "ab".repeat(32);
        let fp = normalize_fingerprint(&hex).expect("plain hex");
        assert_eq!(fp.len(), 95);
        assert!(fp.starts_with("AB:AB"));
        assert_eq!(normalize_fingerprint(&fp).expect("colons"), fp);
        assert!(normalize_fingerprint("abc").is_err());
    }

    #[test]
    fn flags_win_over_env_over_file() {
        let flags = Settings {
            url: Some("https://a".into()),
            ..Settings::default()
        };
        let env = Settings {
            url: Some("https://b".into()),
            token: Some("bh_env".into()),
            ..Settings::default()
        };
        let s = flags.or(env);
        assert_eq!(s.url.as_deref(), Some("https://a"));
        assert_eq!(s.token.as_deref(), Some("bh_env"));
    }
}
