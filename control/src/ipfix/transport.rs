//! One collector's transport session: UDP (templates re-sent on an
//! interval, RFC 7011 8.4) or TCP (templates at each connection, reconnect
//! with backoff). Each session has its own sequence number.

use super::{Collector, CollectorCounters, Transport};
use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a TCP connect or write may take before the collector is
/// counted as down (the exporter thread waits that long at most).
const TCP_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnect backoff: doubles from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub(super) struct Session {
    pub(super) collector: Collector,
    pub(super) counters: Arc<CollectorCounters>,
    /// Data records sent so far (the next message's sequence number).
    sequence: u32,
    link: Link,
}

enum Link {
    Udp {
        socket: Option<UdpSocket>,
        /// When the templates last went out.
        templates_at: Option<Instant>,
        retry_at: Instant,
    },
    Tcp {
        stream: Option<TcpStream>,
        retry_at: Instant,
        backoff: Duration,
    },
}

/// What a session needs to frame a message.
pub(super) struct Framing<'a> {
    pub(super) domain: u32,
    /// The template set of every template in use.
    pub(super) templates: &'a [u8],
    /// With enterprise elements, their RFC 5610 type records (an options
    /// template and its data set, sent in a message before the templates
    /// so that a collector knows the elements when it reads them).
    pub(super) type_info: &'a [u8],
    pub(super) template_refresh: Duration,
}

impl Session {
    pub(super) fn new(collector: Collector, counters: Arc<CollectorCounters>) -> Session {
        let now = Instant::now();
        let link = match collector.transport {
            Transport::Udp => Link::Udp {
                socket: None,
                templates_at: None,
                retry_at: now,
            },
            Transport::Tcp => Link::Tcp {
                stream: None,
                retry_at: now,
                backoff: BACKOFF_FIRST,
            },
        };
        Session {
            collector,
            counters,
            sequence: 0,
            link,
        }
    }

    /// Connects (TCP, when its backoff allows) or re-sends the templates
    /// (UDP, when due): what a session does with nothing to send.
    pub(super) fn maintain(&mut self, framing: &Framing<'_>) {
        if let Link::Tcp {
            stream, retry_at, ..
        } = &mut self.link
        {
            if stream.as_ref().is_some_and(closed_by_peer) {
                *stream = None;
                *retry_at = Instant::now();
                self.counters.up.store(false, Ordering::Relaxed);
            }
        }
        self.ready(framing);
    }

    /// Sends one message holding `sets` (data sets of `records` records).
    /// A collector that is down or slow loses the message: counted, never
    /// waited for past [`TCP_TIMEOUT`].
    pub(super) fn send(&mut self, sets: &[u8], records: u32, framing: &Framing<'_>) {
        if !self.ready(framing) {
            self.lost(records);
            return;
        }
        let message = self.message(sets, framing.domain);
        if self.transmit(&message) {
            self.sequence = self.sequence.wrapping_add(records);
            let c = &self.counters;
            c.messages.fetch_add(1, Ordering::Relaxed);
            c.records.fetch_add(u64::from(records), Ordering::Relaxed);
            c.bytes.fetch_add(message.len() as u64, Ordering::Relaxed);
        } else {
            self.lost(records);
        }
    }

    fn lost(&self, records: u32) {
        self.counters
            .lost_records
            .fetch_add(u64::from(records), Ordering::Relaxed);
    }

    fn message(&self, sets: &[u8], domain: u32) -> Vec<u8> {
        let total = super::encode::MESSAGE_HEADER + sets.len();
        let mut m = Vec::with_capacity(total);
        m.extend_from_slice(&super::encode::message_header(
            total,
            export_secs(),
            self.sequence,
            domain,
        ));
        m.extend_from_slice(sets);
        m
    }

    /// Whether the session can send now: connected, templates sent.
    fn ready(&mut self, framing: &Framing<'_>) -> bool {
        let now = Instant::now();
        let due = match &self.link {
            Link::Udp {
                socket,
                templates_at,
                retry_at,
            } => match socket {
                None => now >= *retry_at,
                Some(_) => templates_at.is_none_or(|t| t.elapsed() >= framing.template_refresh),
            },
            Link::Tcp {
                stream, retry_at, ..
            } => stream.is_none() && now >= *retry_at,
        };
        if due {
            self.open(framing);
        }
        match &self.link {
            Link::Udp { socket, .. } => socket.is_some(),
            Link::Tcp { stream, .. } => stream.is_some(),
        }
    }

    /// Opens the transport if needed and sends the templates.
    fn open(&mut self, framing: &Framing<'_>) {
        let addrs = self.resolve();
        match &mut self.link {
            Link::Udp {
                socket, retry_at, ..
            } => {
                if socket.is_none() {
                    *socket = addrs.and_then(|a| udp_connect(&a));
                    if socket.is_none() {
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        *retry_at = Instant::now() + BACKOFF_MAX;
                        return;
                    }
                }
            }
            Link::Tcp {
                stream,
                retry_at,
                backoff,
            } => {
                *stream = addrs.and_then(|a| tcp_connect(&a));
                if stream.is_none() {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    self.counters.up.store(false, Ordering::Relaxed);
                    *retry_at = Instant::now() + *backoff;
                    *backoff = (*backoff * 2).min(BACKOFF_MAX);
                    return;
                }
                *backoff = BACKOFF_FIRST;
                self.counters.connects.fetch_add(1, Ordering::Relaxed);
                // A new transport session starts a new sequence (RFC 7011 10.4.2).
                self.sequence = 0;
            }
        }
        if !framing.type_info.is_empty() {
            let message = self.message(framing.type_info, framing.domain);
            if self.transmit(&message) {
                let records = super::encode::TYPE_RECORDS;
                self.sequence = self.sequence.wrapping_add(records);
            }
        }
        let message = self.message(framing.templates, framing.domain);
        if self.transmit(&message) {
            self.counters.templates.fetch_add(1, Ordering::Relaxed);
            if let Link::Udp { templates_at, .. } = &mut self.link {
                *templates_at = Some(Instant::now());
            }
        }
    }

    fn resolve(&self) -> Option<Vec<SocketAddr>> {
        let c = &self.collector;
        match (c.host.as_str(), c.port).to_socket_addrs() {
            Ok(a) => Some(a.collect()),
            Err(_) => None,
        }
    }

    /// Writes a whole message; false (and the TCP session closed) if it did
    /// not go out.
    fn transmit(&mut self, message: &[u8]) -> bool {
        let ok = match &mut self.link {
            Link::Udp { socket, .. } => match socket {
                // An earlier datagram refused (the collector's port closed,
                // reported by ICMP) fails the next send without sending it:
                // that one is tried once more.
                Some(s) => match s.send(message) {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        s.send(message).is_ok_and(|n| n == message.len())
                    }
                    r => r.is_ok_and(|n| n == message.len()),
                },
                None => false,
            },
            Link::Tcp {
                stream, retry_at, ..
            } => match stream {
                Some(s) => {
                    if s.write_all(message).is_ok() {
                        true
                    } else {
                        // A partial message cannot be taken back: the stream is
                        // closed and opened again later, templates first.
                        *stream = None;
                        *retry_at = Instant::now() + BACKOFF_FIRST;
                        false
                    }
                }
                None => false,
            },
        };
        self.counters.up.store(ok, Ordering::Relaxed);
        if !ok {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }
}

fn udp_connect(addrs: &[SocketAddr]) -> Option<UdpSocket> {
    addrs.iter().find_map(|a| {
        let local: SocketAddr = if a.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let s = UdpSocket::bind(local).ok()?;
        s.connect(a).ok()?;
        Some(s)
    })
}

fn tcp_connect(addrs: &[SocketAddr]) -> Option<TcpStream> {
    addrs.iter().find_map(|a| {
        let s = TcpStream::connect_timeout(a, TCP_TIMEOUT).ok()?;
        s.set_write_timeout(Some(TCP_TIMEOUT)).ok()?;
        s.set_nodelay(true).ok()?;
        Some(s)
    })
}

/// Whether the collector closed the connection (or reset it): a collector
/// never sends anything, so a readable socket means its end is gone.
pub(crate) fn closed_by_peer(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let gone = match s.peek(&mut [0u8; 1]) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    gone || s.set_nonblocking(false).is_err()
}

fn export_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}
