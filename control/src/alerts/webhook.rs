//! Alerts POSTed as JSON to an HTTPS receiver (a SOAR, a chat bridge, a
//! SIEM's HTTP collector): one alert a request, `Content-Type:
//! application/json`, the body `deliver::alert_json`, an optional bearer
//! token.
//!
//! Retries: a failed connect, a timeout, an answer that is not HTTP, 408,
//! 429 (its `Retry-After` seconds heeded, up to the backoff's cap) and 5xx
//! are tried again, waiting 1 s doubling to 30 s, for `retry_for` (10 min by
//! default); the alerts behind wait in the target's bounded queue. Any
//! other answer (a 4xx, a redirect) refuses the alert: it is counted and
//! the next one goes. Each target has its own thread, so a receiver that
//! hangs costs its thread the timeout, never the control thread or another
//! target.

use super::deliver::{TargetCounters, BACKOFF_FIRST, BACKOFF_MAX};
use crossbeam_channel::Receiver;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request that takes longer (connect, send, answer) fails.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How long an alert is tried again before it is dropped.
pub const RETRY_FOR: Duration = Duration::from_secs(600);

/// One webhook target.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `https://host[:port]/path`.
    pub url: String,
    /// A PEM file of the CA (or the certificate) the receiver is checked
    /// against; the system's public CAs without it.
    pub ca: Option<PathBuf>,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    pub timeout: Duration,
    pub retry_for: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.name())
            .field("ca", &self.ca)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{url}: not a URL ({reason})")]
    Url { url: String, reason: String },
    #[error("{0}: alerts are posted over HTTPS only (https://host[:port]/path)")]
    NotHttps(String),
    #[error("the token is not a valid HTTP header value")]
    Token,
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl Webhook {
    /// A target with the default timeout and retry time.
    pub fn new(url: &str) -> Webhook {
        Webhook {
            url: url.to_string(),
            ca: None,
            token: None,
            timeout: TIMEOUT,
            retry_for: RETRY_FOR,
        }
    }

    /// The URL is HTTPS with a host; the token fits a header; the CA file
    /// reads. The TLS settings to post with.
    pub fn check(&self) -> Result<rustls::ClientConfig, WebhookError> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| WebhookError::Url {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        if url.scheme() != "https" || url.host_str().is_none_or(str::is_empty) {
            return Err(WebhookError::NotHttps(self.url.clone()));
        }
        if let Some(t) = &self.token {
            reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| WebhookError::Token)?;
        }
        Ok(crate::tls::client_config(self.ca.as_deref())?)
    }

    /// Its name in counters and metrics: the URL without user, query or
    /// fragment (they may hold secrets).
    pub fn name(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(mut u) => {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.set_query(None);
                u.set_fragment(None);
                format!("webhook+{u}")
            }
            Err(_) => "webhook+(bad url)".into(),
        }
    }
}

/// What one POST came to.
enum Outcome {
    Sent,
    /// Worth another try, after the receiver's `Retry-After` if it said.
    Again(Option<Duration>),
    Refused,
}

fn post(client: &reqwest::blocking::Client, w: &Webhook, body: &str) -> Outcome {
    let mut req = client
        .post(&w.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(t) = &w.token {
        req = req.bearer_auth(t);
    }
    let Ok(answer) = req.send() else {
        return Outcome::Again(None);
    };
    let status = answer.status();
    if status.is_success() {
        Outcome::Sent
    } else if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        let after = answer
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Outcome::Again(after)
    } else {
        Outcome::Refused
    }
}

/// Starts the target's thread; alerts (their JSON) come from `rx` until the
/// deliverer is gone.
pub(super) fn start(
    w: &Webhook,
    rx: Receiver<Arc<String>>,
    c: Arc<TargetCounters>,
) -> Result<(), super::deliver::DeliveryError> {
    let tls = w.check()?;
    let w = w.clone();
    std::thread::Builder::new()
        .name("bulkhead-webhook".into())
        .spawn(move || {
            crate::records::below_the_packet_path();
            // Made on its own thread: reqwest's blocking client runs a
            // runtime of its own, which must not live inside another's.
            let client = reqwest::blocking::Client::builder()
                .use_preconfigured_tls(tls)
                .timeout(w.timeout)
                .connect_timeout(w.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("bulkhead/", env!("CARGO_PKG_VERSION")))
                .build();
            let client = match client {
                Ok(client) => client,
                Err(e) => {
                    eprintln!("bulkhead: alerts to {}: cannot start: {e}", w.name());
                    for _ in rx.iter() {
                        c.errors.fetch_add(1, Ordering::Relaxed);
                        c.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
            };
            for body in rx.iter() {
                deliver(&client, &w, &body, &c);
            }
        })
        .map_err(super::deliver::DeliveryError::Thread)?;
    Ok(())
}

/// One alert: posted, tried again while the receiver may still take it.
fn deliver(client: &reqwest::blocking::Client, w: &Webhook, body: &str, c: &TargetCounters) {
    let first = Instant::now();
    let mut wait = BACKOFF_FIRST;
    loop {
        match post(client, w, body) {
            Outcome::Sent => {
                c.sent.fetch_add(1, Ordering::Relaxed);
                c.up.store(true, Ordering::Relaxed);
                return;
            }
            Outcome::Refused => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                c.dropped.fetch_add(1, Ordering::Relaxed);
                c.up.store(false, Ordering::Relaxed);
                return;
            }
            Outcome::Again(after) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                c.up.store(false, Ordering::Relaxed);
                // A receiver's Retry-After longer than the backoff is
                // heeded; a shorter one (0) does not make a busy loop.
                let pause = after.map_or(wait, |a| a.max(wait)).min(BACKOFF_MAX);
                if first.elapsed() + pause > w.retry_for {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                c.retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(pause);
                wait = (wait * 2).min(BACKOFF_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests;
