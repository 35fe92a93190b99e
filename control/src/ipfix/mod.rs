//! IPFIX export (RFC 7011, biflows per RFC 5103) of the flow records to the
//! collectors a network team runs (nfcapd, goflow2, ntopng ...).
//!
//! The recorder offers each record it makes to an [`ExportQueue`]: a bounded
//! channel that never blocks (a full queue drops the record and counts it).
//! The exporter's own thread encodes the records ([`encode`]) into messages
//! and sends them to every collector ([`transport`]); a collector that is down
//! or slow costs a counter, never a wait on the control thread or the packet
//! path.

pub mod encode;
pub(crate) mod transport;

use crate::records::StoredFlow;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use encode::Shape;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use transport::{Framing, Session};

/// The IPFIX port (RFC 7011 10.3.2).
pub const DEFAULT_PORT: u16 = 4739;
/// Smallest message size accepted: room for the largest record.
pub const MIN_MESSAGE: usize = 1200;

/// How records reach a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A collector: `udp://host:port`, `tcp://host:port` or `host:port` (UDP);
/// the port defaults to 4739. A host name is resolved at each (re)connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    pub transport: Transport,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpfixError {
    #[error("collector {0:?}: expected udp://HOST[:PORT], tcp://HOST[:PORT] or HOST[:PORT]")]
    Collector(String),
    #[error("ipfix: {0}")]
    Config(String),
    #[error("cannot start the IPFIX exporter thread: {0}")]
    Thread(String),
}

impl FromStr for Collector {
    type Err = IpfixError;

    fn from_str(s: &str) -> Result<Collector, IpfixError> {
        Collector::parse(s, DEFAULT_PORT)
    }
}

impl Collector {
    /// `udp://host:port`, `tcp://host:port` or `host:port` (UDP), the port
    /// `default_port` when absent (syslog targets are written the same way).
    pub fn parse(s: &str, default_port: u16) -> Result<Collector, IpfixError> {
        let bad = || IpfixError::Collector(s.to_string());
        let (transport, rest) = match s.split_once("://") {
            Some(("udp", r)) => (Transport::Udp, r),
            Some(("tcp", r)) => (Transport::Tcp, r),
            Some(_) => return Err(bad()),
            None => (Transport::Udp, s),
        };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            // [v6]:port or [v6]
            let (h, tail) = r.split_once(']').ok_or_else(bad)?;
            let port = match tail {
                "" => default_port,
                t => t
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(bad)?,
            };
            (h, port)
        } else if rest.matches(':').count() > 1 {
            // A bare IPv6 address, no port.
            (rest, default_port)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
                None => (rest, default_port),
            }
        };
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if !host_ok || port == 0 {
            return Err(bad());
        }
        Ok(Collector {
            transport,
            host: host.to_string(),
            port,
        })
    }
}

/// What the exporter sends, where, and how.
#[derive(Debug, Clone)]
pub struct IpfixConfig {
    pub collectors: Vec<Collector>,
    /// The observation domain id in every message header.
    pub observation_domain: u32,
    /// UDP: the templates are sent again this often.
    pub template_refresh: Duration,
    /// The workers report a flow whose packets stopped this long (the idle
    /// report): an interim record whose last packet is at least this old
    /// says "idle timeout"; zero: every interim record says "active timeout".
    pub idle_timeout: Duration,
    /// The enterprise number of bulkhead's own elements (workload names,
    /// groups, rule id, verdict reason, mode); `None`: not sent.
    pub enterprise: Option<u32>,
    /// Records waiting for the exporter, at most (then dropped, counted).
    pub queue: usize,
    /// Bytes of a message at most (a UDP datagram: keep it under the path MTU).
    pub max_message: usize,
    /// A record waits at most this long for others to share its message.
    pub flush_after: Duration,
}

impl Default for IpfixConfig {
    fn default() -> Self {
        IpfixConfig {
            collectors: Vec::new(),
            observation_domain: 1,
            template_refresh: Duration::from_secs(60),
            idle_timeout: Duration::ZERO,
            enterprise: None,
            queue: 65_536,
            max_message: 1400,
            flush_after: Duration::from_secs(1),
        }
    }
}

impl IpfixConfig {
    pub fn check(&self) -> Result<(), IpfixError> {
        if self.collectors.is_empty() {
            return Err(IpfixError::Config("no collector".into()));
        }
        if !(MIN_MESSAGE..=65_535).contains(&self.max_message) {
            return Err(IpfixError::Config(format!(
                "max_message must be {MIN_MESSAGE} to 65535 bytes"
            )));
        }
        if self.queue == 0 {
            return Err(IpfixError::Config("queue must be at least 1".into()));
        }
        if self.template_refresh.is_zero() {
            return Err(IpfixError::Config(
                "template_refresh must be at least 1 second".into(),
            ));
        }
        if self.enterprise == Some(0) || self.enterprise == Some(encode::REVERSE_PEN) {
            return Err(IpfixError::Config(
                "enterprise_number must be an enterprise's own number (not 0 or 29305)".into(),
            ));
        }
        Ok(())
    }
}

/// What one collector got.
#[derive(Debug, Default)]
pub struct CollectorCounters {
    pub name: String,
    pub messages: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub templates: AtomicU64,
    /// Records this collector did not get (down, refused, slow).
    pub lost_records: AtomicU64,
    pub errors: AtomicU64,
    /// TCP connections made.
    pub connects: AtomicU64,
    /// The last send or connect worked.
    pub up: AtomicBool,
}

/// The exporter's counters.
#[derive(Debug, Default)]
pub struct IpfixCounters {
    /// Records taken from the queue and encoded.
    pub exported: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped: AtomicU64,
    pub collectors: Vec<Arc<CollectorCounters>>,
}

/// The exporter: its queue and its thread. The recorder owns it; dropping
/// it sends what is queued, then stops the thread.
pub struct Exporter {
    tx: Option<Sender<StoredFlow>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<IpfixCounters>,
}

impl Exporter {
    pub fn start(config: IpfixConfig) -> Result<Exporter, IpfixError> {
        config.check()?;
        let collectors: Vec<Arc<CollectorCounters>> = config
            .collectors
            .iter()
            .map(|c| {
                Arc::new(CollectorCounters {
                    name: c.to_string(),
                    ..CollectorCounters::default()
                })
            })
            .collect();
        let counters = Arc::new(IpfixCounters {
            collectors: collectors.clone(),
            ..IpfixCounters::default()
        });
        let (tx, rx) = crossbeam_channel::bounded(config.queue);
        let sessions = config
            .collectors
            .iter()
            .cloned()
            .zip(collectors)
            .map(|(c, n)| Session::new(c, n))
            .collect();
        let worker = Worker::new(config, sessions, counters.clone());
        let thread = std::thread::Builder::new()
            .name("bulkhead-ipfix".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| IpfixError::Thread(e.to_string()))?;
        Ok(Exporter {
            tx: Some(tx),
            thread: Some(thread),
            counters,
        })
    }

    /// Queues a record without waiting; a full queue drops it (counted).
    pub fn offer(&self, flow: &StoredFlow) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(flow.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Queues a record, waiting for room (a replay: nothing is dropped).
    pub fn offer_waiting(&self, flow: &StoredFlow) {
        let Some(tx) = &self.tx else { return };
        if tx.send(flow.clone()).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn counters(&self) -> Arc<IpfixCounters> {
        self.counters.clone()
    }
}

impl Drop for Exporter {
    /// Sends what is queued, then stops the thread.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The exporter thread's state.
struct Worker {
    config: IpfixConfig,
    sessions: Vec<Session>,
    counters: Arc<IpfixCounters>,
    /// The template sets.
    templates: Vec<u8>,
    /// With enterprise elements, their RFC 5610 type records.
    type_info: Vec<u8>,
    shapes: [Shape; 2],
    /// Records waiting, by shape (IPv4, IPv6).
    pending: [Vec<StoredFlow>; 2],
    since: Option<Instant>,
}

/// How often the thread looks at its sessions with nothing to send.
const TICK: Duration = Duration::from_millis(200);

impl Worker {
    fn new(config: IpfixConfig, sessions: Vec<Session>, counters: Arc<IpfixCounters>) -> Worker {
        let enterprise = config.enterprise.is_some();
        let shapes = [
            Shape {
                v6: false,
                enterprise,
            },
            Shape {
                v6: true,
                enterprise,
            },
        ];
        let mut templates = Vec::new();
        encode::template_set(&shapes, config.enterprise.unwrap_or(0), &mut templates);
        let mut type_info = Vec::new();
        if let Some(pen) = config.enterprise {
            encode::type_records(pen, &mut type_info);
        }
        Worker {
            config,
            sessions,
            counters,
            templates,
            type_info,
            shapes,
            pending: [Vec::new(), Vec::new()],
            since: None,
        }
    }

    fn run(mut self, rx: Receiver<StoredFlow>) {
        // Nice 10, as the records writer: a worker that needs the core gets
        // it, and the export falls behind (dropped, counted) instead.
        crate::records::below_the_packet_path();
        let mut last_tick = Instant::now();
        loop {
            let wait = self
                .since
                .map(|t| self.config.flush_after.saturating_sub(t.elapsed()))
                .unwrap_or(TICK)
                .min(TICK);
            match rx.recv_timeout(wait) {
                Ok(flow) => {
                    self.add(flow);
                    for flow in rx.try_iter().take(4096) {
                        self.add(flow);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
            if self
                .since
                .is_some_and(|t| t.elapsed() >= self.config.flush_after)
            {
                self.flush();
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                let framing = framing(&self.config, &self.templates, &self.type_info);
                for s in &mut self.sessions {
                    s.maintain(&framing);
                }
            }
        }
    }

    fn add(&mut self, flow: StoredFlow) {
        let i = usize::from(Shape::of(&flow, false).v6);
        self.pending[i].push(flow);
        self.since.get_or_insert_with(Instant::now);
        // Enough for several full messages: send them now.
        if self.pending[i].len() >= 1024 {
            self.flush();
        }
    }

    /// Encodes what waits into messages and sends each to every collector.
    fn flush(&mut self) {
        self.since = None;
        let payload = self.config.max_message - encode::MESSAGE_HEADER;
        let now_ms = crate::records::now_ms();
        let idle_ms = i64::try_from(self.config.idle_timeout.as_millis()).unwrap_or(i64::MAX);
        let idle = |f: &StoredFlow| {
            matches!(f.kind, crate::records::RecordKind::Interim)
                && idle_ms > 0
                && now_ms.saturating_sub(f.last_ms) >= idle_ms
        };
        let mut messages: Vec<(Vec<u8>, u32)> = Vec::new();
        for (i, shape) in self.shapes.into_iter().enumerate() {
            let flows = std::mem::take(&mut self.pending[i]);
            if flows.is_empty() {
                continue;
            }
            self.counters
                .exported
                .fetch_add(flows.len() as u64, Ordering::Relaxed);
            let mut sets = Vec::with_capacity(payload);
            let mut set = encode::open_data_set(shape, &mut sets);
            let mut count = 0u32;
            let mut record = Vec::with_capacity(256);
            for flow in &flows {
                record.clear();
                encode::record(flow, shape, idle(flow), &mut record);
                if sets.len() + record.len() > payload && count > 0 {
                    encode::close_set(&mut sets, set);
                    messages.push((std::mem::take(&mut sets), count));
                    set = encode::open_data_set(shape, &mut sets);
                    count = 0;
                }
                sets.extend_from_slice(&record);
                count += 1;
            }
            encode::close_set(&mut sets, set);
            messages.push((sets, count));
        }
        let framing = framing(&self.config, &self.templates, &self.type_info);
        for s in &mut self.sessions {
            for (sets, count) in &messages {
                s.send(sets, *count, &framing);
            }
        }
    }
}

fn framing<'a>(config: &IpfixConfig, templates: &'a [u8], type_info: &'a [u8]) -> Framing<'a> {
    Framing {
        domain: config.observation_domain,
        templates,
        type_info,
        template_refresh: config.template_refresh,
    }
}

#[cfg(test)]
mod tests;
