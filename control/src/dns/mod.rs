//! DNS responses seen on the wire, as typed answers: which client asked for
//! which name, what it was told (addresses, the CNAME chain, TTLs) and when.
//!
//! The workers copy every message from port 53 (UDP, or a TCP segment's
//! payload) up to a bound ([`dataplane::event::DnsMessage`]); the control
//! thread hands them to a [`DnsDecoder`], which reassembles TCP streams
//! ([`tcp`]) and parses each message with hickory-proto. DNS on the wire is
//! hostile (compression loops, names too long, counts that lie, length
//! prefixes that lie, responses without a question): a message that does not
//! parse, or is not a response, is counted by why ([`DnsCounters`]) and
//! dropped, never a panic, and nothing waits without a bound.

mod tcp;

#[cfg(test)]
mod tests;

use dataplane::event::DnsMessage;
use dataplane::wire::MacAddr;
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::{Name, RData};
use std::net::IpAddr;

pub use tcp::{MAX_STREAMS, STREAM_IDLE_NS};

/// One DNS response as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsResponse {
    /// The worker's clock (ns) when the response crossed.
    pub time: u64,
    pub client_mac: MacAddr,
    pub client_ip: IpAddr,
    pub server_ip: IpAddr,
    pub vlan: [u16; 2],
    /// The question's name: lower case, no trailing dot (`.` for the root).
    pub qname: String,
    /// The question's type (1 A, 28 AAAA, ...).
    pub qtype: u16,
    /// The response code (0 NOERROR, 3 NXDOMAIN, ...).
    pub rcode: u16,
    /// The answer section's addresses and aliases, in order; other record
    /// types are left out.
    pub answers: Vec<Answer>,
}

/// One record of the answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The record's owner: the name asked, or an alias on the chain.
    pub name: String,
    pub ttl: u32,
    pub data: AnswerData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerData {
    /// An A or AAAA record, or an address hint of an SVCB or HTTPS record.
    Addr(IpAddr),
    /// A CNAME: the owner is an alias of this name (or an SVCB or HTTPS
    /// record's target: where the owner's service is).
    Cname(String),
}

/// Why a message was dropped from the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DnsDrop {
    /// It does not parse (a compression loop, a name or label too long, a
    /// count that promises more records than there are bytes, ...).
    #[error("not a DNS message")]
    Malformed,
    /// A query (or another message that is not a response) from port 53.
    #[error("not a response")]
    NotResponse,
    /// A response without exactly one question: nothing to attribute.
    #[error("a response without one question")]
    NoQuestion,
    /// The copy was cut by the workers' bound (or an IP fragment held only
    /// its start).
    #[error("cut short")]
    Truncated,
    /// A TCP length prefix that is 0 or runs past what the stream carried
    /// before it went quiet.
    #[error("a TCP length prefix that lies")]
    BadLength,
    /// A TCP segment after a gap (a segment the appliance did not see): the
    /// stream's messages cannot be told apart any more.
    #[error("a TCP stream with a gap")]
    Gap,
    /// A TCP stream dropped to make room ([`MAX_STREAMS`]).
    #[error("too many TCP streams")]
    Overflow,
    /// From the end of the flow that started it: a response nobody asked
    /// for ([`DnsMessage::unsolicited`]).
    #[error("a response against the flow's direction")]
    Unsolicited,
}

/// Responses parsed, and messages dropped by why.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DnsCounters {
    pub responses: u64,
    pub malformed: u64,
    pub not_response: u64,
    pub no_question: u64,
    pub truncated: u64,
    pub bad_length: u64,
    pub gap: u64,
    pub overflow: u64,
    pub unsolicited: u64,
}

impl DnsCounters {
    fn count(&mut self, drop: DnsDrop) {
        let c = match drop {
            DnsDrop::Malformed => &mut self.malformed,
            DnsDrop::NotResponse => &mut self.not_response,
            DnsDrop::NoQuestion => &mut self.no_question,
            DnsDrop::Truncated => &mut self.truncated,
            DnsDrop::BadLength => &mut self.bad_length,
            DnsDrop::Gap => &mut self.gap,
            DnsDrop::Overflow => &mut self.overflow,
            DnsDrop::Unsolicited => &mut self.unsolicited,
        };
        *c += 1;
    }

    /// Messages dropped, by reason (the names `/metrics` labels them with).
    pub fn by_reason(&self) -> [(&'static str, u64); 8] {
        [
            ("malformed", self.malformed),
            ("not-response", self.not_response),
            ("no-question", self.no_question),
            ("truncated", self.truncated),
            ("bad-length", self.bad_length),
            ("gap", self.gap),
            ("overflow", self.overflow),
            ("unsolicited", self.unsolicited),
        ]
    }

    /// Messages dropped, all reasons.
    pub fn dropped(&self) -> u64 {
        self.malformed
            + self.not_response
            + self.no_question
            + self.truncated
            + self.bad_length
            + self.gap
            + self.overflow
            + self.unsolicited
    }
}

/// Turns the workers' DNS messages into responses: UDP ones at once, TCP
/// ones once their stream holds a whole message.
#[derive(Debug, Default)]
pub struct DnsDecoder {
    streams: tcp::Streams,
    counters: DnsCounters,
}

impl DnsDecoder {
    pub fn new() -> DnsDecoder {
        DnsDecoder::default()
    }

    /// The responses `msg` completes (none, one, or several for a TCP
    /// segment that ends several messages).
    pub fn feed(&mut self, msg: &DnsMessage) -> Vec<DnsResponse> {
        let mut out = Vec::new();
        let bodies = match msg.proto {
            _ if msg.unsolicited => Err(DnsDrop::Unsolicited),
            17 if msg.truncated => Err(DnsDrop::Truncated),
            17 => Ok(vec![msg.payload.to_vec()]),
            6 => {
                let (bodies, drops) = self.streams.feed(msg);
                for d in drops {
                    self.counters.count(d);
                }
                Ok(bodies)
            }
            _ => Err(DnsDrop::Malformed),
        };
        match bodies {
            Ok(bodies) => {
                for body in bodies {
                    match parse(&body) {
                        Ok(p) => {
                            self.counters.responses += 1;
                            out.push(p.response(msg));
                        }
                        Err(d) => self.counters.count(d),
                    }
                }
            }
            Err(d) => self.counters.count(d),
        }
        out
    }

    /// Forget TCP streams quiet since `now - STREAM_IDLE_NS` (worker clock);
    /// what they held is counted as [`DnsDrop::BadLength`].
    pub fn expire(&mut self, now: u64) {
        for d in self.streams.expire(now) {
            self.counters.count(d);
        }
    }

    pub fn counters(&self) -> DnsCounters {
        self.counters
    }

    /// TCP streams waiting for the rest of a message, and their bytes.
    pub fn waiting(&self) -> (usize, usize) {
        self.streams.waiting()
    }
}

/// A message's question and answers, before the flow's ends are attached.
#[derive(Debug)]
struct Parsed {
    qname: String,
    qtype: u16,
    rcode: u16,
    answers: Vec<Answer>,
}

impl Parsed {
    fn response(self, msg: &DnsMessage) -> DnsResponse {
        DnsResponse {
            time: msg.time,
            client_mac: msg.client_mac,
            client_ip: msg.client_ip,
            server_ip: msg.server_ip,
            vlan: msg.vlan,
            qname: self.qname,
            qtype: self.qtype,
            rcode: self.rcode,
            answers: self.answers,
        }
    }
}

/// One DNS message (no TCP length prefix).
fn parse(bytes: &[u8]) -> Result<Parsed, DnsDrop> {
    let m = Message::from_vec(bytes).map_err(|_| DnsDrop::Malformed)?;
    if m.message_type() != MessageType::Response {
        return Err(DnsDrop::NotResponse);
    }
    let [q] = m.queries() else {
        return Err(DnsDrop::NoQuestion);
    };
    let mut answers = Vec::new();
    for r in m.answers() {
        let mut add = |data| {
            answers.push(Answer {
                name: name_text(r.name()),
                ttl: r.ttl(),
                data,
            })
        };
        match r.data() {
            RData::A(a) => add(AnswerData::Addr(IpAddr::V4(a.0))),
            RData::AAAA(a) => add(AnswerData::Addr(IpAddr::V6(a.0))),
            RData::CNAME(c) => add(AnswerData::Cname(name_text(&c.0))),
            RData::HTTPS(h) => svcb(&h.0, add),
            RData::SVCB(v) => svcb(v, add),
            _ => {}
        }
    }
    Ok(Parsed {
        qname: name_text(q.name()),
        qtype: u16::from(q.query_type()),
        rcode: u16::from(m.response_code()),
        answers,
    })
}

/// An SVCB or HTTPS record as answers: its target (unless `.`, the owner
/// itself) as an alias, as the packet path reads it, and its `ipv4hint` and
/// `ipv6hint` addresses, which a client may connect to without asking for
/// A or AAAA (so DNS-aware blocking blocks them too).
fn svcb(v: &hickory_proto::rr::rdata::svcb::SVCB, mut add: impl FnMut(AnswerData)) {
    use hickory_proto::rr::rdata::svcb::SvcParamValue;
    if !v.target_name().is_root() {
        add(AnswerData::Cname(name_text(v.target_name())));
    }
    for (_, value) in v.svc_params() {
        match value {
            SvcParamValue::Ipv4Hint(h) => {
                h.0.iter()
                    .for_each(|a| add(AnswerData::Addr(IpAddr::V4(a.0))))
            }
            SvcParamValue::Ipv6Hint(h) => {
                h.0.iter()
                    .for_each(|a| add(AnswerData::Addr(IpAddr::V6(a.0))))
            }
            _ => {}
        }
    }
}

/// A name as stored and matched: lower case, no trailing dot.
pub fn name_text(n: &Name) -> String {
    let text = n.to_ascii().to_ascii_lowercase();
    match text.strip_suffix('.') {
        Some("") | None => text,
        Some(t) => t.to_string(),
    }
}
