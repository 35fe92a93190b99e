//! Alerts delivered to the tools a SOC runs: syslog (RFC 5424, over UDP as
//! RFC 5426 says, or over TCP with octet counting as RFC 6587 says), the
//! alert as JSON in the message; and webhooks (`super::webhook`, the JSON
//! POSTed over HTTPS).
//!
//! Each target has a thread of its own (nice 10) and a bounded queue: the
//! control thread offers an alert with `try_send`, a full queue drops it
//! and counts; a target that hangs, refuses or is gone costs its own thread
//! a timeout and a counter, never the control thread or another target.

use super::webhook::{Webhook, WebhookError};
use super::NewAlert;
use crate::intel::Severity;
use crate::ipfix::{Collector, Transport};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde_json::json;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The syslog port over UDP (RFC 5426) when a target names none.
pub const SYSLOG_PORT: u16 = 514;
/// Alerts waiting for a target at most.
pub const QUEUE: usize = 1024;
/// A connect or write that takes longer fails.
const TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed try, the next waits this long (doubling to 30 s): a
/// syslog connect, a webhook's POST.
pub(super) const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A syslog message at most (UDP: one datagram; longer JSON is cut and the
/// message says so).
pub const MAX_MESSAGE: usize = 8192;

/// Where alerts go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// `udp://host[:port]` (port 514) or `tcp://host:port`.
    pub syslog: Vec<Collector>,
    /// The syslog facility (0 to 23; 16 is local0).
    pub facility: u8,
    /// HOSTNAME of the messages (the appliance's name).
    pub hostname: String,
    pub webhooks: Vec<Webhook>,
}

impl DeliveryConfig {
    /// No target at all.
    pub fn is_empty(&self) -> bool {
        self.syslog.is_empty() && self.webhooks.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot start a delivery thread: {0}")]
    Thread(std::io::Error),
    #[error("alerts.webhook: {0}")]
    Webhook(#[from] WebhookError),
}

/// What one target did.
#[derive(Debug, Default)]
pub struct TargetCounters {
    pub name: String,
    pub sent: AtomicU64,
    /// Alerts it did not get: its queue was full, or the send failed.
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
    /// Sends tried again (webhooks).
    pub retries: AtomicU64,
    pub up: AtomicBool,
}

/// What a target is given: the syslog message, or the alert's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Syslog,
    Json,
}

/// The running delivery: one thread and queue per target.
pub struct Deliverer {
    targets: Vec<(Form, Sender<Arc<String>>, Arc<TargetCounters>)>,
    facility: u8,
    hostname: String,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("targets", &self.targets.len())
            .finish()
    }
}

/// The alert as delivered: JSON, one line.
pub fn alert_json(id: i64, a: &NewAlert, hostname: &str) -> serde_json::Value {
    json!({
        "id": id,
        "time": crate::time::Timestamp(u64::try_from(a.at_ms).unwrap_or(0).saturating_mul(1_000_000)).to_string(),
        "appliance": hostname,
        "kind": a.kind.name(),
        "severity": a.severity.to_string(),
        "mac": a.mac.to_string(),
        "workload": a.workload,
        "indicator": a.indicator,
        "summary": a.summary,
        "evidence": a.evidence,
    })
}

/// RFC 5424 severity of an alert's.
fn syslog_severity(s: Severity) -> u8 {
    match s {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
    }
}

/// An RFC 5424 header field: printable ASCII without spaces, at most
/// `max`, `-` when empty.
fn field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if f.is_empty() {
        "-".into()
    } else {
        f
    }
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME bulkhead - KIND
/// [bulkhead@32473 id=.. severity=..] JSON`.
pub fn syslog_message(facility: u8, hostname: &str, id: i64, a: &NewAlert) -> String {
    let pri = u16::from(facility.min(23)) * 8 + u16::from(syslog_severity(a.severity));
    let ts = crate::time::Timestamp(
        u64::try_from(a.at_ms)
            .unwrap_or(0)
            .saturating_mul(1_000_000),
    );
    // SD-PARAM values escape `"`, `\` and `]` (RFC 5424 6.3.3).
    let esc = |s: &str| {
        s.chars().fold(String::new(), |mut o, c| {
            if matches!(c, '"' | '\\' | ']') {
                o.push('\\');
            }
            o.push(c);
            o
        })
    };
    let mut json = alert_json(id, a, hostname).to_string();
    let head = format!(
        "<{pri}>1 {ts} {} bulkhead - {} [bulkhead@32473 id=\"{id}\" severity=\"{}\" mac=\"{}\" indicator=\"{}\"] ",
        field(hostname, 255),
        field(a.kind.name(), 32),
        a.severity,
        a.mac,
        esc(&a.indicator),
    );
    if head.len() + json.len() > MAX_MESSAGE {
        json = alert_json(
            id,
            &NewAlert {
                evidence: json!({"cut": true}),
                ..a.clone()
            },
            hostname,
        )
        .to_string();
    }
    head + &json
}

impl Deliverer {
    /// Starts a thread per target.
    pub fn start(cfg: &DeliveryConfig) -> Result<Deliverer, DeliveryError> {
        let mut targets = Vec::new();
        for target in &cfg.syslog {
            let (tx, rx) = crossbeam_channel::bounded(QUEUE);
            let counters = Arc::new(TargetCounters {
                name: format!("syslog+{target}"),
                ..TargetCounters::default()
            });
            let (t, c) = (target.clone(), counters.clone());
            std::thread::Builder::new()
                .name("bulkhead-syslog".into())
                .spawn(move || syslog_thread(t, rx, c))
                .map_err(DeliveryError::Thread)?;
            targets.push((Form::Syslog, tx, counters));
        }
        for w in &cfg.webhooks {
            let (tx, rx) = crossbeam_channel::bounded(QUEUE);
            let counters = Arc::new(TargetCounters {
                name: w.name(),
                ..TargetCounters::default()
            });
            super::webhook::start(w, rx, counters.clone())?;
            targets.push((Form::Json, tx, counters));
        }
        Ok(Deliverer {
            targets,
            facility: cfg.facility,
            hostname: cfg.hostname.clone(),
        })
    }

    /// Offers a new alert to every target; never waits.
    pub fn offer(&self, id: i64, a: &NewAlert) {
        if self.targets.is_empty() {
            return;
        }
        let wants = |form| self.targets.iter().any(|(f, ..)| *f == form);
        let syslog = wants(Form::Syslog)
            .then(|| Arc::new(syslog_message(self.facility, &self.hostname, id, a)));
        let json =
            wants(Form::Json).then(|| Arc::new(alert_json(id, a, &self.hostname).to_string()));
        for (form, tx, c) in &self.targets {
            let msg = match form {
                Form::Syslog => &syslog,
                Form::Json => &json,
            };
            let Some(msg) = msg else { continue };
            match tx.try_send(msg.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    pub fn counters(&self) -> Vec<Arc<TargetCounters>> {
        self.targets.iter().map(|(.., c)| c.clone()).collect()
    }
}

fn resolve(t: &Collector) -> Option<std::net::SocketAddr> {
    (t.host.as_str(), t.port).to_socket_addrs().ok()?.next()
}

/// One syslog target: messages from the queue until the deliverer is gone.
fn syslog_thread(target: Collector, rx: Receiver<Arc<String>>, c: Arc<TargetCounters>) {
    crate::records::below_the_packet_path();
    let mut tcp: Option<TcpStream> = None;
    let mut udp: Option<UdpSocket> = None;
    let mut retry_at = Instant::now();
    let mut backoff = BACKOFF_FIRST;
    let fail = |c: &TargetCounters| {
        c.errors.fetch_add(1, Ordering::Relaxed);
        c.dropped.fetch_add(1, Ordering::Relaxed);
        c.up.store(false, Ordering::Relaxed);
    };
    for msg in rx.iter() {
        let sent = match target.transport {
            Transport::Udp => {
                if udp.is_none() {
                    udp = resolve(&target).and_then(|addr| {
                        let bind = if addr.is_ipv4() {
                            "0.0.0.0:0"
                        } else {
                            "[::]:0"
                        };
                        let s = UdpSocket::bind(bind).ok()?;
                        s.connect(addr).ok()?;
                        Some(s)
                    });
                }
                let ok = udp.as_ref().is_some_and(|s| s.send(msg.as_bytes()).is_ok());
                if !ok {
                    // Re-resolve next time (a refused datagram, a new address).
                    udp = None;
                }
                ok
            }
            Transport::Tcp => {
                // A syslog server sends nothing: a readable socket is a
                // closed one (noticed before the write that would vanish).
                if tcp
                    .as_ref()
                    .is_some_and(crate::ipfix::transport::closed_by_peer)
                {
                    tcp = None;
                }
                if tcp.is_none() && Instant::now() >= retry_at {
                    tcp = resolve(&target).and_then(|addr| {
                        let s = TcpStream::connect_timeout(&addr, TIMEOUT).ok()?;
                        s.set_write_timeout(Some(TIMEOUT)).ok()?;
                        Some(s)
                    });
                    if tcp.is_none() {
                        retry_at = Instant::now() + backoff;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    } else {
                        backoff = BACKOFF_FIRST;
                    }
                }
                // Octet counting: the length, a space, the message.
                let framed = format!("{} {}", msg.len(), msg);
                let ok = tcp
                    .as_mut()
                    .is_some_and(|s| s.write_all(framed.as_bytes()).is_ok());
                if !ok {
                    tcp = None;
                }
                ok
            }
        };
        if sent {
            c.sent.fetch_add(1, Ordering::Relaxed);
            c.up.store(true, Ordering::Relaxed);
        } else {
            fail(&c);
        }
    }
}

#[cfg(test)]
mod tests;
