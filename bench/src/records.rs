//! Synthetic flow-records stores for the query benchmarks (issue 17): a fleet
//! of workloads in groups with labels, and their flows over the last N days,
//! written through [`RecordsWriter`] (the real write path, so whatever the
//! writer maintains beside the raw records comes with them).
//!
//! The traffic: wall-clock times over the window with a daily rhythm (busy
//! working hours, quiet nights and weekends); sources picked by a Zipf law
//! (a few busy workloads, most quiet), each talking mostly to a few usual
//! servers per service (a sparse graph); services 443, 5432, 22, 445, 3389,
//! 53/udp and ICMP, each served by the groups of one role; some flows to and
//! from internet addresses (no workload behind them); about 5% denied, and
//! would-denies to the groups in audit mode. Deterministic given the seed
//! (and the end time).
//!
//! With [`GenConfig::dns`] the store also holds DNS responses over the same
//! days, and with [`GenConfig::moving_pct`] a share of the workloads change
//! addresses every few days (another workload taking the old one), seen in
//! the flows, the DNS clients and ARP and DHCP entries alike ([`dns`] says
//! what the names look like, and what is planted for the forensic queries).
//!
//! Used by `records-gen` (the binary) and `benches/records_query.rs`,
//! `benches/forensics.rs`.

pub mod dns;

use crate::Rng;
use control::records::{
    AddressSeen, AddressSource, Batch, RecordKind, RecordsConfig, RecordsWriter, StoredFlow,
};
use dataplane::event::{EndReason, FlowRecord};
use dataplane::flow::FlowState;
use dataplane::policy::{Action, Mode, Reason, Verdict};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct GenConfig {
    pub days: u32,
    pub records: u64,
    pub workloads: u32,
    pub seed: u64,
    /// The window's end (ms since the Unix epoch), usually now.
    pub end_ms: i64,
    /// DNS responses over the same window (0: none, and nothing planted).
    pub dns: u64,
    /// Percent of the workloads whose addresses change every few days (0:
    /// every workload keeps its address, and no ARP or DHCP entries).
    pub moving_pct: u32,
}

/// What a generation did.
#[derive(Debug, Clone, Copy)]
pub struct GenReport {
    /// Records committed by the writer.
    pub written: u64,
    /// Records the writer lost (should be 0: batches are retried).
    pub lost: u64,
    /// DNS responses committed and lost.
    pub dns_written: u64,
    pub dns_lost: u64,
    /// ARP and DHCP entries handed over.
    pub addresses: u64,
    pub elapsed: Duration,
    /// The store's files (database, WAL, shared memory) after the writer stopped.
    pub bytes: u64,
}

mod fleet;
pub mod policy;

pub use fleet::Fleet;
use fleet::{external_ip, skewed, unit, EXTERNAL_IPS, SERVICES};

/// One end of a drawn flow: a workload, or an internet address.
#[derive(Clone, Copy)]
enum End {
    Workload(usize),
    External(u64),
    /// An internet address of its own (a planted C2 server).
    Addr(IpAddr),
}

/// Everything that varies between records, drawn by [`draw`].
struct Draw {
    src: End,
    dst: End,
    proto: u8,
    src_port: u16,
    dst_port: u16,
    action: Action,
    reason: Reason,
    mode: Mode,
    would_deny: bool,
    state: FlowState,
    kind: RecordKind,
    packets: [u64; 2],
    bytes: [u64; 2],
    first_ms: i64,
    last_ms: i64,
}

fn draw(fleet: &Fleet, rng: &mut Rng, last_ms: i64) -> Draw {
    // The service, by share.
    let mut x = rng.below(100);
    let s = SERVICES
        .iter()
        .position(|svc| {
            let hit = x < svc.2;
            x = x.saturating_sub(svc.2);
            hit
        })
        .unwrap_or(0);
    let (proto, port, _, ext_pct, _) = SERVICES[s];
    let servers = &fleet.servers[s];
    let pick_server = |rng: &mut Rng| {
        servers
            .get(skewed(rng, servers.len() as u64) as usize)
            .map_or(0, |&w| w as usize)
    };
    // 2% come in from the internet (to web servers, or scans of 22/3389).
    let inbound = rng.below(50) == 0 && matches!(port, 443 | 22 | 3389);
    let (src, dst) = if inbound {
        (
            End::External(skewed(rng, EXTERNAL_IPS)),
            End::Workload(pick_server(rng)),
        )
    } else if rng.below(100) < ext_pct {
        (
            End::Workload(fleet.source(rng)),
            End::External(if port == 53 {
                rng.below(2)
            } else {
                skewed(rng, EXTERNAL_IPS)
            }),
        )
    } else {
        let src = fleet.source(rng);
        // 95% to its usual peers, the rest to any server.
        let usual = &fleet.peers[src * SERVICES.len() + s];
        let mut dst = if rng.below(20) == 0 || usual.is_empty() {
            pick_server(rng)
        } else {
            usual[rng.below(usual.len() as u64) as usize] as usize
        };
        if dst == src {
            dst = (dst + 1) % fleet.workloads.len();
        }
        (End::Workload(src), End::Workload(dst))
    };
    let audit = match dst {
        End::Workload(d) => fleet.audit[d],
        End::External(_) | End::Addr(_) => false,
    };
    let scan = inbound && port != 443;
    let deny = scan || (!audit && rng.below(1000) < 55);
    let would_deny = audit && rng.below(100) < 12;
    let (action, reason) = if deny {
        let r = if rng.below(10) < 7 {
            Reason::Default
        } else {
            Reason::Rule(900 + rng.below(20) as u32)
        };
        (Action::Deny, r)
    } else if would_deny {
        (Action::Allow, Reason::Default)
    } else {
        (Action::Allow, Reason::Rule(10 * (s as u32 + 1)))
    };
    let mode = if audit { Mode::Audit } else { Mode::Enforce };
    // Length: most short, some minutes, a few hours (reported by interim
    // records while they run).
    let d = rng.below(100);
    let (dur_ms, kind) = if deny {
        (rng.below(3_000) as i64, RecordKind::Ended(EndReason::Idle))
    } else if d < 70 {
        (rng.below(5_000) as i64, RecordKind::Ended(EndReason::Idle))
    } else if d < 96 {
        (
            rng.below(300_000) as i64,
            if rng.below(20) == 0 {
                RecordKind::Ended(EndReason::Reused)
            } else {
                RecordKind::Ended(EndReason::Idle)
            },
        )
    } else if d < 99 {
        (rng.below(7_200_000) as i64, RecordKind::Interim)
    } else {
        (
            rng.below(7_200_000) as i64,
            RecordKind::Ended(EndReason::Evicted),
        )
    };
    let state = match (proto, deny, kind) {
        (6, true, _) => FlowState::SynSent,
        (6, false, RecordKind::Interim) => FlowState::Established,
        (6, false, _) if rng.below(10) == 0 => FlowState::Closed,
        (6, false, _) => FlowState::TimeWait,
        (_, true, _) => FlowState::Unreplied,
        _ => FlowState::Replied,
    };
    let (packets, bytes) = if deny {
        let p = 1 + rng.below(3);
        ([p, 0], [p * 60, 0])
    } else {
        let p = 2 + skewed(rng, 2_000);
        let q = p + rng.below(p + 1);
        (
            [p, q],
            [p * (60 + rng.below(400)), q * (60 + rng.below(1_400))],
        )
    };
    Draw {
        src,
        dst,
        proto,
        src_port: if proto == 1 {
            rng.below(65_536) as u16
        } else {
            32_768 + rng.below(28_232) as u16
        },
        dst_port: port,
        action,
        reason,
        mode,
        would_deny,
        state,
        kind,
        packets,
        bytes,
        first_ms: last_ms - dur_ms,
        last_ms,
    }
}

/// The one place a [`StoredFlow`] is built (a field added to it is one line
/// here).
fn stored_flow(fleet: &Fleet, d: &Draw) -> StoredFlow {
    // A workload's address as of the flow's last packet; a flow that began
    // before it took that address is cut to begin then (a new address ends
    // the old connections).
    let mut first_ms = d.first_ms;
    let mut end = |e: End| match e {
        End::Workload(w) => {
            let (ip, since) = fleet.ip_at(w, d.last_ms);
            first_ms = first_ms.max(since);
            (fleet.workloads[w].clone(), ip)
        }
        End::External(k) => (fleet.gateway.clone(), external_ip(k)),
        End::Addr(ip) => (fleet.gateway.clone(), ip),
    };
    let ((src, src_ip), (dst, dst_ip)) = (end(d.src), end(d.dst));
    StoredFlow {
        flow: FlowRecord {
            src_mac: src.mac,
            dst_mac: dst.mac,
            src_ip,
            dst_ip,
            proto: d.proto,
            src_port: d.src_port,
            dst_port: d.dst_port,
            vlan: [0, 0],
            verdict: Verdict {
                action: d.action,
                reason: d.reason,
                mode: d.mode,
                would_deny: d.would_deny,
            },
            generation: 1,
            state: d.state,
            first_seen: 0,
            last_seen: 0,
            packets: d.packets,
            bytes: d.bytes,
            tcp_flags: 0,
            orig_port: dataplane::io::Port::A,
        },
        first_ms,
        last_ms: d.last_ms,
        src,
        dst,
        kind: d.kind,
        // An interim record continues a flow: only the others open one.
        opens: d.kind != RecordKind::Interim,
        intel: None,
    }
}

/// The share of the traffic at minute `m` of the window (any unit): busy
/// working hours (UTC), quiet nights, weekends at half.
fn rhythm(minute_ms: i64) -> f64 {
    let hour = (minute_ms.rem_euclid(86_400_000)) as f64 / 3_600_000.0;
    let day = minute_ms.div_euclid(86_400_000);
    // 1970-01-01 was a Thursday: days 2 and 3 (mod 7) are Saturday, Sunday.
    let weekend = matches!(day.rem_euclid(7), 2 | 3);
    let work = if (7.0..19.0).contains(&hour) {
        (std::f64::consts::PI * (hour - 7.0) / 12.0).sin()
    } else {
        0.0
    };
    (0.2 + 0.8 * work) * if weekend { 0.5 } else { 1.0 }
}

/// Records (flows and DNS responses) in batches of this many, as the
/// control thread hands them over.
const BATCH: usize = 1_000;

/// Writes `cfg.records` records over `cfg.days` days ending at `cfg.end_ms`
/// into the store at `path` (created; an existing one is added to), oldest
/// first, with `cfg.dns` DNS responses, the ARP and DHCP entries of moving
/// addresses and the planted incident ([`dns`]) merged in minute by minute,
/// and waits until the writer has committed them all. `progress` is called
/// with the flow records submitted so far, every million.
pub fn generate(
    path: &Path,
    cfg: &GenConfig,
    mut progress: impl FnMut(u64),
) -> Result<GenReport, control::records::RecordsError> {
    let mut fleet = Fleet::new(cfg.workloads.max(2), cfg.seed);
    let mut rng = Rng::new(cfg.seed);
    // No retention: the history is the point.
    let writer = RecordsWriter::start(
        path,
        RecordsConfig {
            max_bytes: u64::MAX,
            ..RecordsConfig::for_import()
        },
    )?;
    let counters = writer.counters();
    let start = Instant::now();
    let minutes = i64::from(cfg.days.max(1)) * 1_440;
    let first_minute = cfg.end_ms - minutes * 60_000;
    if cfg.moving_pct > 0 {
        fleet.set_moving(cfg.moving_pct, first_minute, cfg.seed);
    }
    // What is not drawn minute by minute, in time order: ARP and DHCP
    // entries, the planted incident.
    let addresses = if cfg.moving_pct > 0 {
        address_entries(&fleet, cfg.seed, first_minute, cfg.end_ms)
    } else {
        Vec::new()
    };
    let names = (cfg.dns > 0).then(|| dns::Names::new(cfg.seed));
    let planted = if cfg.dns > 0 {
        dns::plant(&fleet, first_minute, cfg.end_ms, cfg.seed)
    } else {
        Vec::new()
    };
    let mut dns_rng = Rng::new(cfg.seed ^ 0x00d4_5d45);
    let weights: Vec<f64> = (0..minutes)
        .map(|m| rhythm(first_minute + m * 60_000))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    let (mut done, mut dns_done) = (0u64, 0u64);
    let (mut next_address, mut next_planted) = (0, 0);
    let mut batch = Batch::default();
    let mut times = Vec::new();
    // This minute's allowed flows from a workload to the internet on 443:
    // what the DNS responses of the minute answered, in part.
    let mut outbound: Vec<(usize, u64, i64)> = Vec::new();
    let full = |b: &Batch| b.flows.len() + b.dns.len() >= BATCH;
    for (m, w) in weights.iter().enumerate() {
        acc += w;
        let upto = ((cfg.records as f64 * acc / total).round() as u64).min(cfg.records);
        let here = upto.saturating_sub(done);
        let dns_upto = ((cfg.dns as f64 * acc / total).round() as u64).min(cfg.dns);
        let dns_here = dns_upto.saturating_sub(dns_done);
        let t0 = first_minute + m as i64 * 60_000;
        times.clear();
        times.extend((0..here).map(|_| t0 + rng.below(60_000) as i64));
        times.sort_unstable();
        outbound.clear();
        for &t in &times {
            let d = draw(&fleet, &mut rng, t);
            if let (End::Workload(src), End::External(k), 443, Action::Allow) =
                (d.src, d.dst, d.dst_port, d.action)
            {
                outbound.push((src, k, d.first_ms.max(fleet.ip_at(src, d.last_ms).1)));
            }
            batch.flows.push(stored_flow(&fleet, &d));
            if full(&batch) {
                submit(&writer, std::mem::take(&mut batch));
            }
            done += 1;
            if done.is_multiple_of(1_000_000) {
                progress(done);
            }
        }
        if let Some(names) = &names {
            for r in names.minute(&fleet, &mut dns_rng, t0, dns_here, &outbound) {
                batch.dns.push(r);
                if full(&batch) {
                    submit(&writer, std::mem::take(&mut batch));
                }
            }
            dns_done += dns_here;
        }
        let t1 = t0 + 60_000;
        while let Some(p) = planted.get(next_planted).filter(|p| p.time_ms() < t1) {
            match p {
                dns::Planted::Flow(f) => batch.flows.push(f.clone()),
                dns::Planted::Dns(d) => batch.dns.push(d.clone()),
            }
            next_planted += 1;
        }
        while let Some(a) = addresses.get(next_address).filter(|a| a.time_ms < t1) {
            batch.addresses.push(*a);
            next_address += 1;
        }
    }
    submit(&writer, batch);
    writer.finish();
    let elapsed = start.elapsed();
    Ok(GenReport {
        written: counters.written.load(Ordering::Relaxed),
        lost: counters.lost.load(Ordering::Relaxed),
        dns_written: counters.dns_written.load(Ordering::Relaxed),
        dns_lost: counters.dns_lost.load(Ordering::Relaxed),
        addresses: addresses.len() as u64,
        elapsed,
        bytes: store_bytes(path),
    })
}

/// ARP and DHCP entries, in time order: every workload's ARP once a day (at
/// a random time, with the address it held then), and a moving workload's
/// DHCP ACK and ARP just after each move.
fn address_entries(fleet: &Fleet, seed: u64, from_ms: i64, to_ms: i64) -> Vec<AddressSeen> {
    const DAY_MS: i64 = 86_400_000;
    let mut rng = Rng::new(seed ^ 0x00a7_9a7b);
    let mut out = Vec::new();
    for w in 0..fleet.workloads.len() {
        let mac = fleet.workloads[w].mac;
        let mut day = from_ms;
        while day < to_ms {
            let t = (day + rng.below(DAY_MS as u64) as i64).min(to_ms - 1);
            out.push(AddressSeen {
                mac,
                ip: fleet.ip_at(w, t).0,
                time_ms: t,
                source: AddressSource::Arp,
            });
            day += DAY_MS;
        }
        for moved in fleet.moves_of(w, from_ms, to_ms) {
            for (k, source) in [(0, AddressSource::Dhcp), (500, AddressSource::Arp)] {
                let t = moved + k + 1 + rng.below(500) as i64;
                out.push(AddressSeen {
                    mac,
                    ip: fleet.ip_at(w, t).0,
                    time_ms: t,
                    source,
                });
            }
        }
    }
    out.sort_by_key(|a| a.time_ms);
    out
}

/// A planted flow: TCP from `src` to `dst` on `port`, allowed or denied.
fn plain_flow(
    fleet: &Fleet,
    (src, dst): (End, End),
    port: u16,
    allowed: bool,
    first_ms: i64,
    last_ms: i64,
) -> StoredFlow {
    let d = Draw {
        src,
        dst,
        proto: 6,
        src_port: 40_000 + first_ms.rem_euclid(20_000) as u16,
        dst_port: port,
        action: if allowed { Action::Allow } else { Action::Deny },
        reason: if allowed {
            Reason::Rule(10)
        } else {
            Reason::Default
        },
        mode: Mode::Enforce,
        would_deny: false,
        state: if allowed {
            FlowState::TimeWait
        } else {
            FlowState::SynSent
        },
        kind: RecordKind::Ended(EndReason::Idle),
        packets: if allowed { [24, 20] } else { [1, 0] },
        bytes: if allowed { [3_800, 12_400] } else { [60, 0] },
        first_ms,
        last_ms,
    };
    stored_flow(fleet, &d)
}

/// Hand a batch over, waiting for room (a dropped batch would leave holes).
pub fn submit(writer: &RecordsWriter, mut batch: Batch) {
    while let Err(back) = writer.try_submit_batch(batch) {
        batch = back;
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The bytes of the store at `path` with its `-wal` and `-shm` files.
pub fn store_bytes(path: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| {
            let mut p = path.as_os_str().to_owned();
            p.push(s);
            std::fs::metadata(p).ok().map(|m| m.len())
        })
        .sum()
}
