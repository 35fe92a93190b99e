//! DNS responses for the synthetic stores (issue 20): a few thousand
//! registrable domains, each with a few names under it, resolved by the
//! fleet's workloads with a Zipf law of popularity (the busiest domain about
//! a tenth of the questions).
//!
//! - Half of a minute's responses (as far as there are flows for them)
//!   answer a flow of that minute: a workload resolves a name whose answer
//!   holds the internet address it connects to on 443 just after, so that a
//!   traceback finds contacts after resolutions. The rest are independent:
//!   names of popular domains (A, 15% AAAA with no address), 8% internal
//!   names (`<workload>.svc.corp.internal`, answering the workload's
//!   address then), 3% NXDOMAIN (random labels under a domain).
//! - A fifth of the domains are served by a CDN: a chain of one or two
//!   CNAMEs before the addresses.
//! - Answers are the flows' internet addresses: one to four a domain, drawn
//!   with the flows' own skew (so the busiest addresses are many domains',
//!   as a CDN's are), and every one of the 2,000 is some domain's.
//! - Planted ([`plant`]): three C2 domains ([`C2_DOMAINS`], at addresses of
//!   their own, [`C2_IPS`]) resolved by a handful of workloads each from
//!   the last third of the window on, every one to three hours, each
//!   resolution followed by a connection to the answer; one victim of each
//!   moves laterally (445 to three workloads, a denied 3389, then 22 from
//!   the first one reached). The first domain's first victim is a workload
//!   whose address moves, when there is one.

use super::{external_ip, plain_flow, skewed, unit, End, Fleet, EXTERNAL_IPS};
use crate::Rng;
use control::dns::{Answer, AnswerData, DnsResponse};
use control::records::{StoredDns, StoredFlow};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

/// Registrable domains.
const DOMAINS: usize = 3_000;
/// The planted C2 domains, as a traceback takes them.
pub const C2_DOMAINS: [&str; 3] = [
    "telemetry-sync.com",
    "dyn-update.org",
    "cdn-static-assets.net",
];
/// Their addresses (no other domain's, no other flow's).
pub const C2_IPS: [Ipv4Addr; 4] = [
    Ipv4Addr::new(91, 214, 124, 17),
    Ipv4Addr::new(91, 214, 124, 33),
    Ipv4Addr::new(45, 155, 205, 99),
    Ipv4Addr::new(45, 155, 205, 100),
];

const SYLLABLES: [&str; 32] = [
    "ka", "lo", "mi", "zen", "tra", "vel", "on", "ar", "qui", "do", "ne", "ta", "ro", "sy", "flux",
    "gri", "pa", "xo", "lum", "bit", "net", "sta", "cor", "vio", "ex", "pi", "mo", "lin", "dex",
    "hub", "ly", "fy",
];
const TLDS: [&str; 12] = [
    "com", "com", "com", "com", "com", "net", "net", "org", "io", "dev", "cloud", "de",
];
const SUBS: [&str; 20] = [
    "www",
    "api",
    "cdn",
    "static",
    "img",
    "login",
    "auth",
    "mail",
    "app",
    "m",
    "assets",
    "edge",
    "s3",
    "update",
    "telemetry",
    "ws",
    "graph",
    "docs",
    "eu-west-1.api",
    "us-east-1.api",
];

struct Domain {
    name: String,
    /// The names asked under it (the domain itself among them, as "").
    subs: Vec<&'static str>,
    /// Its addresses (indices of the flows' internet addresses).
    ips: Vec<u64>,
    /// The CNAME chain its names go through before the addresses.
    chain: Vec<String>,
}

/// The domains and who answers what.
pub struct Names {
    domains: Vec<Domain>,
    /// Cumulative popularity (1/(rank+1), rank = index).
    popular: Vec<f64>,
    /// Per internet address: the domains whose answers hold it.
    by_ip: Vec<Vec<u32>>,
}

fn label(rng: &mut Rng, len: u64) -> String {
    (0..len)
        .map(|_| {
            let c = rng.below(36) as u8;
            char::from(if c < 26 { b'a' + c } else { b'0' + c - 26 })
        })
        .collect()
}

impl Names {
    pub fn new(seed: u64) -> Names {
        let mut rng = Rng::new(seed ^ 0x0d0d_a1a5);
        let mut seen = HashSet::new();
        let mut domains = Vec::with_capacity(DOMAINS);
        while domains.len() < DOMAINS {
            let mut name: String = (0..2 + rng.below(2))
                .map(|_| SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize])
                .collect();
            if rng.below(5) == 0 {
                name.push('-');
                name.push_str(SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize]);
                name.push_str(SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize]);
            }
            let name = format!("{name}.{}", TLDS[rng.below(TLDS.len() as u64) as usize]);
            if C2_DOMAINS.contains(&name.as_str()) || !seen.insert(name.clone()) {
                continue;
            }
            let mut subs = vec!["", "www"];
            for _ in 0..rng.below(6) {
                let s = SUBS[rng.below(SUBS.len() as u64) as usize];
                if !subs.contains(&s) {
                    subs.push(s);
                }
            }
            let ips = (0..1 + rng.below(4))
                .map(|_| 2 + skewed(&mut rng, EXTERNAL_IPS - 2))
                .collect();
            let chain = match rng.below(10) {
                0 => vec![
                    format!("{}.edgekey.net", name.replace('.', "-")),
                    format!("e{}.a.akamaiedge.net", rng.below(10_000)),
                ],
                1 => vec![format!("d{}.cloudfront.net", label(&mut rng, 12))],
                _ => Vec::new(),
            };
            domains.push(Domain {
                name,
                subs,
                ips,
                chain,
            });
        }
        // Every internet address is some domain's.
        let mut by_ip = vec![Vec::new(); EXTERNAL_IPS as usize];
        for (d, dom) in domains.iter().enumerate() {
            for &k in &dom.ips {
                by_ip[k as usize].push(d as u32);
            }
        }
        for (k, list) in by_ip.iter_mut().enumerate().skip(2) {
            if list.is_empty() {
                let d = rng.below(DOMAINS as u64) as usize;
                domains[d].ips.push(k as u64);
                list.push(d as u32);
            }
        }
        let mut acc = 0.0;
        let popular = (0..DOMAINS)
            .map(|r| {
                acc += 1.0 / (r as f64 + 1.0);
                acc
            })
            .collect();
        Names {
            domains,
            popular,
            by_ip,
        }
    }

    /// The registrable domains, most popular first.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.iter().map(|d| d.name.as_str())
    }

    fn pick(&self, rng: &mut Rng) -> usize {
        let total = self.popular.last().copied().unwrap_or(0.0);
        let x = unit(rng) * total;
        self.popular
            .partition_point(|&c| c < x)
            .min(self.popular.len() - 1)
    }

    /// `n` responses of the minute from `t0`: half of them (at most one a
    /// flow) answering `outbound` flows (workload, internet address, start),
    /// just before the flow began; the rest drawn independently.
    pub fn minute(
        &self,
        fleet: &Fleet,
        rng: &mut Rng,
        t0: i64,
        n: u64,
        outbound: &[(usize, u64, i64)],
    ) -> Vec<StoredDns> {
        let coupled = (n / 2).min(outbound.len() as u64);
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..coupled {
            let (w, k, start) = outbound[rng.below(outbound.len() as u64) as usize];
            // (No domain's: the public resolvers, 8.8.8.8 and 1.1.1.1.)
            let list = &self.by_ip[k as usize];
            if list.is_empty() {
                continue;
            }
            let d = list[rng.below(list.len() as u64) as usize] as usize;
            let t = start - 5 - rng.below(500) as i64;
            out.push(self.resolve(fleet, rng, w, t, d, 1));
        }
        for _ in out.len() as u64..n {
            let t = t0 + rng.below(60_000) as i64;
            let w = fleet.source(rng);
            let roll = rng.below(100);
            let r = if roll < 3 {
                let d = self.pick(rng);
                let len = 8 + rng.below(7);
                let qname = format!("{}.{}", label(rng, len), self.domains[d].name);
                response(fleet, w, t, qname, 1, 3, Vec::new())
            } else if roll < 11 {
                let target = rng.below(fleet.workloads.len() as u64) as usize;
                let qname = format!("{}.svc.corp.internal", fleet.workloads[target].name);
                let answers = vec![Answer {
                    name: qname.clone(),
                    ttl: 30,
                    data: AnswerData::Addr(fleet.ip_at(target, t).0),
                }];
                response(fleet, w, t, qname, 1, 0, answers)
            } else {
                let qtype = if roll < 26 { 28 } else { 1 };
                let d = self.pick(rng);
                self.resolve(fleet, rng, w, t, d, qtype)
            };
            out.push(r);
        }
        out
    }

    /// Workload `w` resolves a name of domain `d` at `t` (A: the chain and
    /// the addresses; AAAA: the chain alone).
    fn resolve(
        &self,
        fleet: &Fleet,
        rng: &mut Rng,
        w: usize,
        t: i64,
        d: usize,
        qtype: u16,
    ) -> StoredDns {
        let dom = &self.domains[d];
        let sub = dom.subs[rng.below(dom.subs.len() as u64) as usize];
        let qname = if sub.is_empty() {
            dom.name.clone()
        } else {
            format!("{sub}.{}", dom.name)
        };
        let mut answers = Vec::new();
        let mut owner = qname.clone();
        for alias in &dom.chain {
            answers.push(Answer {
                name: owner,
                ttl: 300 + rng.below(3_300) as u32,
                data: AnswerData::Cname(alias.clone()),
            });
            owner = alias.clone();
        }
        if qtype == 1 {
            let ttl = 60 + rng.below(240) as u32;
            for &k in &dom.ips {
                answers.push(Answer {
                    name: owner.clone(),
                    ttl,
                    data: AnswerData::Addr(external_ip(k)),
                });
            }
        }
        response(fleet, w, t, qname, qtype, 0, answers)
    }
}

/// The fleet's resolver at `t`: the first DNS server's address then.
fn resolver(fleet: &Fleet, t: i64) -> IpAddr {
    match fleet.servers[2].first() {
        Some(&s) => fleet.ip_at(s as usize, t).0,
        None => IpAddr::V4(Ipv4Addr::new(10, 20, 255, 53)),
    }
}

fn response(
    fleet: &Fleet,
    w: usize,
    t: i64,
    qname: String,
    qtype: u16,
    rcode: u16,
    answers: Vec<Answer>,
) -> StoredDns {
    let client = fleet.workloads[w].clone();
    StoredDns {
        response: DnsResponse {
            time: 0,
            client_mac: client.mac,
            client_ip: fleet.ip_at(w, t).0,
            server_ip: resolver(fleet, t),
            vlan: [0, 0],
            qname,
            qtype,
            rcode,
            answers,
        },
        time_ms: t,
        client,
    }
}

/// A planted record.
pub enum Planted {
    Flow(StoredFlow),
    Dns(StoredDns),
}

impl Planted {
    /// Its time in the generator's order (a flow's last packet).
    pub fn time_ms(&self) -> i64 {
        match self {
            Planted::Flow(f) => f.last_ms,
            Planted::Dns(d) => d.time_ms,
        }
    }
}

/// The planted incident (see the module's text), in time order.
pub fn plant(fleet: &Fleet, from_ms: i64, to_ms: i64, seed: u64) -> Vec<Planted> {
    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    let mut rng = Rng::new(seed ^ 0x00c2_c2c2);
    let n = fleet.workloads.len() as u64;
    let span = to_ms - from_ms;
    let movers = fleet.movers();
    let mut out = Vec::new();
    for (c, domain) in C2_DOMAINS.iter().enumerate() {
        let start = to_ms - span / 3 + c as i64 * span / 12;
        let mut victims: Vec<usize> = Vec::new();
        if c == 0 && !movers.is_empty() {
            victims.push(movers[rng.below(movers.len() as u64) as usize]);
        }
        let want = 3 + rng.below(3) as usize;
        while victims.len() < want.min(n as usize) {
            let v = rng.below(n) as usize;
            if !victims.contains(&v) {
                victims.push(v);
            }
        }
        for &v in &victims {
            let mut t = start + rng.below(6 * HOUR as u64) as i64;
            while t < to_ms {
                let (qname, chain, ips) = match c {
                    0 => (
                        format!("api.{domain}"),
                        vec!["edge.telemetry-sync-cdn.net".to_string()],
                        vec![C2_IPS[0]],
                    ),
                    1 => (
                        format!("{}.{domain}", label(&mut rng, 6)),
                        Vec::new(),
                        vec![C2_IPS[1]],
                    ),
                    _ => (domain.to_string(), Vec::new(), vec![C2_IPS[2], C2_IPS[3]]),
                };
                let mut answers = Vec::new();
                let mut owner = qname.clone();
                for alias in chain {
                    answers.push(Answer {
                        name: owner,
                        ttl: 300,
                        data: AnswerData::Cname(alias.clone()),
                    });
                    owner = alias;
                }
                for ip in &ips {
                    answers.push(Answer {
                        name: owner.clone(),
                        ttl: 60,
                        data: AnswerData::Addr(IpAddr::V4(*ip)),
                    });
                }
                out.push(Planted::Dns(response(fleet, v, t, qname, 1, 0, answers)));
                let ip = ips[rng.below(ips.len() as u64) as usize];
                let first = t + 100 + rng.below(2_000) as i64;
                let last = (first + 1_000 + rng.below(60_000) as i64).min(to_ms - 1);
                if first <= last {
                    out.push(Planted::Flow(plain_flow(
                        fleet,
                        (End::Workload(v), End::Addr(IpAddr::V4(ip))),
                        443,
                        true,
                        first,
                        last,
                    )));
                }
                t += HOUR + rng.below(2 * HOUR as u64) as i64;
            }
        }
        // Lateral movement from the first victim, ten minutes in.
        let v = victims[0];
        let mut reached = Vec::new();
        for k in 0..4 {
            let dst = loop {
                let d = rng.below(n) as usize;
                if !victims.contains(&d) && !reached.contains(&d) {
                    break d;
                }
            };
            let t = start + 10 * MIN + k * MIN;
            let (port, allowed) = if k < 3 { (445, true) } else { (3389, false) };
            out.push(Planted::Flow(plain_flow(
                fleet,
                (End::Workload(v), End::Workload(dst)),
                port,
                allowed,
                t,
                t + 2_000,
            )));
            reached.push(dst);
        }
        let next = loop {
            let d = rng.below(n) as usize;
            if !reached.contains(&d) && d != v {
                break d;
            }
        };
        let t = start + 40 * MIN;
        out.push(Planted::Flow(plain_flow(
            fleet,
            (End::Workload(reached[0]), End::Workload(next)),
            22,
            true,
            t,
            t + 30_000,
        )));
    }
    out.sort_by_key(Planted::time_ms);
    out
}

/// `n` DNS responses of the generator's kind (independent ones: no flows
/// to answer) from `workloads` workloads, over the hour before `end_ms`,
/// in time order: what the DNS ingest bench writes.
pub fn sample(workloads: u32, n: u64, seed: u64, end_ms: i64) -> Vec<StoredDns> {
    let fleet = Fleet::new(workloads.max(2), seed);
    let names = Names::new(seed);
    let mut rng = Rng::new(seed ^ 0x5a5a);
    let mut out = Vec::with_capacity(n as usize);
    for m in 0..60u64 {
        let here = n * (m + 1) / 60 - n * m / 60;
        let t0 = end_ms - 3_600_000 + m as i64 * 60_000;
        let mut minute = names.minute(&fleet, &mut rng, t0, here, &[]);
        minute.sort_by_key(|d| d.time_ms);
        out.extend(minute);
    }
    out
}
