//! The recorder: the worker's flow events turned into stored records (the
//! identity of each end as the policy knows it then, the user rule's id,
//! wall-clock times), batched to the [`RecordsWriter`]. It runs where the
//! events are read: the control thread of `bulkhead run`, or a replay.

use super::addresses::{AddressSeen, AddressSource};
use super::{Batch, Identity, RecordKind, RecordsCounters, RecordsWriter, StoredDns, StoredFlow};
use crate::compile::user_rule_id;
use crate::dns::DnsDecoder;
use crate::model::Model;
use dataplane::event::{Event, FlowRecord};
use dataplane::intel::EntryId;
use dataplane::policy::{PolicySnapshot, Reason};
use dataplane::wire::MacAddr;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records handed to the writer at once.
const BATCH: usize = 1_000;
/// A batch is handed over at the latest this long after its first record.
const HOLD: Duration = Duration::from_secs(1);
/// Identities kept for reuse, at most (then they are made again).
const KNOWN_MAX: usize = 100_000;
/// Flows with interim records whose counters are kept, at most.
const RUNNING_MAX: usize = 1 << 20;
/// A running flow not reported for this long is forgotten (its end event was
/// lost): interim records come every minute or so.
const RUNNING_STALE: Duration = Duration::from_secs(15 * 60);

/// What the worker's times (nanoseconds) are.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// Nanoseconds since `epoch`, the instant the worker's clock started
    /// (`bulkhead run`).
    Since(Instant),
    /// Nanoseconds since the Unix epoch (a capture's timestamps).
    Unix,
}

/// Builds [`StoredFlow`]s from events and batches them to the writer, and
/// offers each to the IPFIX exporter if there is one.
pub struct Recorder {
    /// `None`: records are only exported (the store is off).
    writer: Option<RecordsWriter>,
    export: Option<crate::ipfix::Exporter>,
    /// Wall-clock milliseconds at the worker clock's zero.
    zero_ms: i64,
    /// Never drop a batch: wait for the writer (a replay has time).
    lossless: bool,
    /// The model the names below came from.
    model: Option<Arc<Model>>,
    names: HashMap<MacAddr, (String, BTreeMap<String, String>)>,
    /// Identities made under the model above and the snapshot generation
    /// `known_generation`: a flow's ends are looked up once, not per record.
    known: HashMap<(MacAddr, std::net::IpAddr), Arc<Identity>>,
    known_generation: u64,
    batch: Batch,
    since: Option<Instant>,
    /// DNS messages to responses (TCP reassembled).
    dns: DnsDecoder,
    /// Decode DNS even without a store (threat intel reads the answers).
    decode_dns: bool,
    /// Flows that had interim records: the counters recorded so far, so that
    /// each record carries only its own share.
    running: HashMap<FlowId, Counted>,
    last_prune: Instant,
    /// The last readings of threat intel, newest last, each with the
    /// generation that put it in force: a flow cut by intel is named by
    /// the reading its verdict came from (entry ids are positions in a
    /// reading), never by a later one.
    intel: VecDeque<(u64, Arc<crate::intel::Intel>)>,
    /// Entries in words, by reading and id (made once an entry).
    intel_words: HashMap<(u64, EntryId), Option<Arc<str>>>,
}

/// Intel entries kept in words, at most (then they are made again).
const INTEL_WORDS_MAX: usize = 4096;
/// Intel readings kept for naming (a flow decided under an older one is
/// recorded unnamed: its reason says intel, not which entry).
const INTEL_KEPT: usize = 4;

/// A flow, as its records name it (its start tells a reused 5-tuple apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowId {
    macs: [MacAddr; 2],
    ips: [std::net::IpAddr; 2],
    ports: [u16; 2],
    proto: u8,
    vlan: [u16; 2],
    first_seen: u64,
}

impl FlowId {
    fn of(f: &FlowRecord) -> FlowId {
        FlowId {
            macs: [f.src_mac, f.dst_mac],
            ips: [f.src_ip, f.dst_ip],
            ports: [f.src_port, f.dst_port],
            proto: f.proto,
            vlan: f.vlan,
            first_seen: f.first_seen,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Counted {
    packets: [u64; 2],
    bytes: [u64; 2],
    at: Instant,
}

impl Recorder {
    /// A recorder that drops (and counts) a batch the writer has no room for:
    /// the control thread never waits.
    pub fn new(writer: RecordsWriter, clock: Clock) -> Recorder {
        Recorder::with_writer(Some(writer), clock)
    }

    /// A recorder that keeps nothing: it makes records for the IPFIX
    /// exporter only ([`Recorder::export_to`]).
    pub fn export_only(exporter: crate::ipfix::Exporter, clock: Clock) -> Recorder {
        let mut r = Recorder::with_writer(None, clock);
        r.export = Some(exporter);
        r
    }

    /// [`Recorder::export_only`] that waits for the exporter's queue rather
    /// than drop a record (a replay).
    pub fn lossless_export_only(exporter: crate::ipfix::Exporter, clock: Clock) -> Recorder {
        let mut r = Recorder::export_only(exporter, clock);
        r.lossless = true;
        r
    }

    /// Threat intel put in force as `generation`: a flow a verdict of that
    /// generation or later cut names the feed and entry from it.
    pub fn set_intel(&mut self, intel: Arc<crate::intel::Intel>, generation: u64) {
        if self.intel.len() >= INTEL_KEPT {
            self.intel.pop_front();
        }
        self.intel.push_back((generation, intel));
        let oldest = self.intel.front().map_or(0, |(g, _)| *g);
        self.intel_words.retain(|(g, _), _| *g >= oldest);
    }

    /// Entry `id` of the reading `flow`'s verdict came from, in words (`c2
    /// 203.0.113.66`); `None` if that reading is no longer kept.
    fn intel_words(&mut self, id: EntryId, flow: &FlowRecord) -> Option<Arc<str>> {
        let (from, intel) = self
            .intel
            .iter()
            .rev()
            .find(|(g, _)| *g <= flow.generation)?;
        if self.intel_words.len() >= INTEL_WORDS_MAX {
            self.intel_words.clear();
        }
        self.intel_words
            .entry((*from, id))
            .or_insert_with(|| {
                intel
                    .describe(id, &[flow.dst_ip, flow.src_ip])
                    .map(Arc::from)
            })
            .clone()
    }

    /// A recorder that keeps and exports nothing: it decodes the DNS
    /// responses for [`Recorder::record`]'s caller (threat intel).
    pub fn dns_only(clock: Clock) -> Recorder {
        let mut r = Recorder::with_writer(None, clock);
        r.decode_dns = true;
        r
    }

    /// Decodes DNS responses even without a store, for the caller.
    pub fn decode_dns(&mut self) {
        self.decode_dns = true;
    }

    /// Offers every flow record to `exporter` as well.
    pub fn export_to(&mut self, exporter: crate::ipfix::Exporter) {
        self.export = Some(exporter);
    }

    fn with_writer(writer: Option<RecordsWriter>, clock: Clock) -> Recorder {
        let zero_ms = match clock {
            Clock::Since(epoch) => {
                super::writer::now_ms().saturating_sub(epoch.elapsed().as_millis() as i64)
            }
            Clock::Unix => 0,
        };
        Recorder {
            export: None,
            zero_ms,
            lossless: false,
            model: None,
            names: HashMap::new(),
            known: HashMap::new(),
            known_generation: 0,
            batch: Batch::default(),
            since: None,
            decode_dns: writer.is_some(),
            writer,
            dns: DnsDecoder::new(),
            running: HashMap::new(),
            last_prune: Instant::now(),
            intel: VecDeque::new(),
            intel_words: HashMap::new(),
        }
    }

    /// A recorder that waits for the writer rather than drop a batch (a replay).
    pub fn lossless(writer: RecordsWriter, clock: Clock) -> Recorder {
        let mut r = Recorder::new(writer, clock);
        r.lossless = true;
        r
    }

    /// The store's counters (`None` without a store).
    pub fn counters(&self) -> Option<Arc<RecordsCounters>> {
        self.writer.as_ref().map(RecordsWriter::counters)
    }

    /// The exporter's counters, if it exports.
    pub fn export_counters(&self) -> Option<Arc<crate::ipfix::IpfixCounters>> {
        self.export.as_ref().map(crate::ipfix::Exporter::counters)
    }

    /// Records `event` if it ends a flow or reports a running one, is a DNS
    /// response (or completes one, over TCP), or says a MAC holds an address
    /// (ARP, DHCP). Identities come from `model` (names and labels by MAC)
    /// and `snapshot` (the groups each end is in). Returns the DNS responses
    /// `event` completed (decoded with or without a store, see
    /// [`Recorder::decode_dns`]).
    pub fn record(
        &mut self,
        event: &Event,
        model: &Arc<Model>,
        snapshot: &PolicySnapshot,
    ) -> &[StoredDns] {
        let (flow, kind) = match event {
            Event::FlowEnd(flow, why) => (flow, RecordKind::Ended(*why)),
            Event::FlowActive(flow) => (flow, RecordKind::Interim),
            // DNS and addresses go to the store only (DNS to intel too).
            Event::Dns(_) if !self.decode_dns => return &[],
            Event::Arp(_) | Event::DhcpLease(_) if self.writer.is_none() => return &[],
            Event::Dns(msg) => {
                // A full batch goes first: what this message adds is
                // handed back from the batch.
                if self.batch.len() >= BATCH {
                    self.flush();
                }
                self.refresh(model, snapshot);
                let before = self.batch.dns.len();
                for response in self.dns.feed(msg) {
                    let client = self.identity(response.client_mac, response.client_ip, snapshot);
                    let time_ms = self.wall_ms(response.time);
                    self.batch.dns.push(StoredDns {
                        response,
                        time_ms,
                        client,
                    });
                }
                self.dns.expire(msg.time);
                if !self.batch.is_empty() {
                    self.since.get_or_insert_with(Instant::now);
                }
                return self.batch.dns.get(before..).unwrap_or(&[]);
            }
            Event::Arp(a) => {
                self.address(a.mac, IpAddr::V4(a.ip), a.time, AddressSource::Arp);
                return &[];
            }
            Event::DhcpLease(l) => {
                self.address(l.mac, IpAddr::V4(l.ip), l.time, AddressSource::Dhcp);
                return &[];
            }
            _ => return &[],
        };
        self.refresh(model, snapshot);
        let (opens, packets, bytes) = self.share(flow, kind);
        let stored = StoredFlow {
            flow: FlowRecord {
                verdict: dataplane::policy::Verdict {
                    reason: match flow.verdict.reason {
                        Reason::Rule(id) => Reason::Rule(user_rule_id(id)),
                        other => other,
                    },
                    ..flow.verdict
                },
                packets,
                bytes,
                ..*flow
            },
            opens,
            first_ms: self.wall_ms(flow.first_seen),
            last_ms: self.wall_ms(flow.last_seen),
            src: self.identity(flow.src_mac, flow.src_ip, snapshot),
            dst: self.identity(flow.dst_mac, flow.dst_ip, snapshot),
            kind,
            intel: match flow.verdict.reason {
                Reason::Intel(id) => self.intel_words(id, flow),
                _ => None,
            },
        };
        if let Some(x) = &self.export {
            if self.lossless {
                x.offer_waiting(&stored);
            } else {
                x.offer(&stored);
            }
        }
        if self.writer.is_some() {
            self.batch.flows.push(stored);
            self.added();
        }
        &[]
    }

    /// Names and identities as `model` and `snapshot` give them.
    fn refresh(&mut self, model: &Arc<Model>, snapshot: &PolicySnapshot) {
        self.learn_names(model);
        if snapshot.generation() != self.known_generation || self.known.len() >= KNOWN_MAX {
            self.known.clear();
            self.known_generation = snapshot.generation();
        }
    }

    fn address(&mut self, mac: MacAddr, ip: IpAddr, worker_ns: u64, source: AddressSource) {
        if !mac.is_station() || ip.is_unspecified() {
            return;
        }
        self.batch.addresses.push(AddressSeen {
            mac,
            ip,
            time_ms: self.wall_ms(worker_ns),
            source,
        });
        self.added();
    }

    /// A record joined the batch: hand it over when full.
    fn added(&mut self) {
        if !self.batch.is_empty() {
            self.since.get_or_insert_with(Instant::now);
        }
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    /// Whether this record opens its flow, and its share of the counters:
    /// what the flow carried since its previous record.
    fn share(&mut self, flow: &FlowRecord, kind: RecordKind) -> (bool, [u64; 2], [u64; 2]) {
        let id = FlowId::of(flow);
        let before = match kind {
            RecordKind::Interim => {
                let now = Counted {
                    packets: flow.packets,
                    bytes: flow.bytes,
                    at: Instant::now(),
                };
                if self.running.len() < RUNNING_MAX || self.running.contains_key(&id) {
                    self.running.insert(id, now)
                } else {
                    None
                }
            }
            RecordKind::Ended(_) => self.running.remove(&id),
        };
        let less =
            |a: [u64; 2], b: [u64; 2]| [a[0].saturating_sub(b[0]), a[1].saturating_sub(b[1])];
        match before {
            Some(b) => (
                false,
                less(flow.packets, b.packets),
                less(flow.bytes, b.bytes),
            ),
            None => (true, flow.packets, flow.bytes),
        }
    }

    /// Hands the batch over if it has waited long enough; forgets running
    /// flows whose end never came.
    pub fn tick(&mut self) {
        if self.since.is_some_and(|t| t.elapsed() >= HOLD) {
            self.flush();
        }
        self.publish_dns_counters();
        if self.last_prune.elapsed() >= RUNNING_STALE / 4 {
            self.last_prune = Instant::now();
            self.running.retain(|_, c| c.at.elapsed() < RUNNING_STALE);
        }
    }

    /// Hands the batch over now.
    pub fn flush(&mut self) {
        self.since = None;
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let Some(writer) = &self.writer else { return };
        if !self.lossless {
            writer.submit_batch(batch);
            return;
        }
        let mut batch = batch;
        while let Err(back) = writer.try_submit_batch(batch) {
            batch = back;
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Flushes, lets the writer write everything, and stops it (what
    /// dropping the recorder does).
    pub fn finish(self) {
        drop(self);
    }

    fn publish_dns_counters(&self) {
        if let Some(w) = &self.writer {
            if let Ok(mut c) = w.counters().dns_decoder.lock() {
                *c = self.dns.counters();
            }
        }
    }

    /// Wall-clock milliseconds of a worker time.
    fn wall_ms(&self, worker_ns: u64) -> i64 {
        self.zero_ms
            .saturating_add(i64::try_from(worker_ns / 1_000_000).unwrap_or(i64::MAX))
    }

    fn learn_names(&mut self, model: &Arc<Model>) {
        if self.model.as_ref().is_some_and(|m| Arc::ptr_eq(m, model)) {
            return;
        }
        self.known.clear();
        self.names = model
            .workloads
            .iter()
            .filter_map(|w| {
                let mac = w.mac.parse::<MacAddr>().ok()?;
                Some((mac, (w.name.clone(), w.labels.clone())))
            })
            .collect();
        self.model = Some(model.clone());
    }

    fn identity(
        &mut self,
        mac: MacAddr,
        ip: std::net::IpAddr,
        snap: &PolicySnapshot,
    ) -> Arc<Identity> {
        if let Some(known) = self.known.get(&(mac, ip)) {
            return known.clone();
        }
        let (name, labels) = self.names.get(&mac).cloned().unwrap_or_default();
        let identity = Arc::new(Identity {
            mac,
            name,
            labels,
            groups: snap
                .endpoint_groups(mac, ip)
                .into_iter()
                .map(str::to_string)
                .collect(),
        });
        self.known.insert((mac, ip), identity.clone());
        identity
    }
}

impl Drop for Recorder {
    /// The batch goes to the writer; the writer, dropped next, writes what it
    /// was given and stops.
    fn drop(&mut self) {
        self.publish_dns_counters();
        self.flush();
    }
}
