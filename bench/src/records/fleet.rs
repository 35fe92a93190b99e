//! The synthetic fleet: workloads in groups with labels, who serves which
//! service, who usually talks to whom, whose addresses move when; and the
//! random draws the generator (`records.rs`, `dns.rs`) shares.

use crate::Rng;
use control::records::Identity;
use dataplane::wire::MacAddr;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Services: (protocol, port, share of the flows in percent, share of those
/// to the internet in percent, the role of the groups serving it).
pub(super) const SERVICES: [(u8, u16, u64, u64, &str); 7] = [
    (6, 443, 38, 20, "web"),
    (6, 5432, 20, 0, "db"),
    (17, 53, 16, 30, "dns"),
    (6, 22, 8, 2, "bastion"),
    (6, 445, 7, 0, "files"),
    (6, 3389, 6, 0, "desktops"),
    (1, 0, 5, 10, "any"),
];
pub(super) const ROLES: [&str; 6] = ["web", "db", "dns", "bastion", "files", "desktops"];
pub(super) const TEAMS: [&str; 5] = ["payments", "orders", "search", "billing", "identity"];
/// Internet addresses flows go to or come from.
pub(super) const EXTERNAL_IPS: u64 = 2_000;
/// The router: every internet address is behind its MAC.
pub(super) const GATEWAY: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 1]);

/// The workloads and how they talk.
pub struct Fleet {
    /// Workload `i`'s identity (one version each).
    /// Shared, as the recorder hands them out (one `Arc` an identity).
    pub workloads: Vec<Arc<Identity>>,
    pub(super) ips: Vec<IpAddr>,
    /// Cumulative source weights (Zipf over a shuffled rank).
    pub(super) talk: Vec<f64>,
    /// Per service (index into [`SERVICES`]): the workloads serving it.
    pub(super) servers: Vec<Vec<u32>>,
    /// Per workload and service (`i * SERVICES.len() + s`): the few servers
    /// it usually talks to.
    pub(super) peers: Vec<Vec<u32>>,
    /// Per workload: in a group in audit mode.
    pub(super) audit: Vec<bool>,
    pub(super) gateway: Arc<Identity>,
    /// Per workload: its cohort and place in it, if its address moves.
    pub(super) moves: Vec<Option<(usize, usize)>>,
    /// Per cohort: the addresses its workloads pass round.
    pub(super) pools: Vec<Vec<IpAddr>>,
    /// When the first period of every cohort begins.
    pub(super) origin_ms: i64,
}

/// A moving workload's address lasts this long (3 days)...
pub(super) const MOVE_PERIOD_MS: i64 = 3 * 86_400_000;
/// ...in one of this many cohorts, each a quarter period after the last.
pub(super) const COHORTS: usize = 4;

impl Fleet {
    /// `n` workloads in 30 groups (6 roles x 5 teams), about 10% in a second
    /// group, 2% in none; groups 3, 10, 17 and 24 audit.
    pub fn new(n: u32, seed: u64) -> Fleet {
        let mut rng = Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15);
        let groups = ROLES.len() * TEAMS.len();
        let group_name = |g: usize| {
            format!(
                "{}-{}",
                ROLES[g % ROLES.len()],
                TEAMS[(g / ROLES.len()) % TEAMS.len()]
            )
        };
        let audit_group = |g: usize| g % 7 == 3;
        let mut workloads = Vec::with_capacity(n as usize);
        let mut ips = Vec::with_capacity(n as usize);
        let mut servers = vec![Vec::new(); SERVICES.len()];
        let mut audit = Vec::with_capacity(n as usize);
        for i in 0..n {
            let g = rng.below(groups as u64) as usize;
            let mut member = vec![g];
            if rng.below(10) == 0 {
                member.push((g + 1 + rng.below(groups as u64 - 1) as usize) % groups);
            }
            if rng.below(50) == 0 {
                member.clear();
            }
            let role = ROLES[g % ROLES.len()];
            let team = TEAMS[(g / ROLES.len()) % TEAMS.len()];
            let env = ["prod", "prod", "prod", "staging", "dev"][rng.below(5) as usize];
            for (s, svc) in SERVICES.iter().enumerate() {
                if svc.4 == "any" || member.iter().any(|&m| ROLES[m % ROLES.len()] == svc.4) {
                    servers[s].push(i);
                }
            }
            audit.push(member.iter().any(|&m| audit_group(m)));
            workloads.push(Arc::new(Identity {
                mac: MacAddr([0x02, 0x42, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
                name: format!("{role}-{team}-{i:04}"),
                labels: [
                    ("app".to_string(), team.to_string()),
                    ("role".to_string(), role.to_string()),
                    ("env".to_string(), env.to_string()),
                ]
                .into(),
                groups: member.into_iter().map(group_name).collect(),
            }));
            ips.push(IpAddr::V4(Ipv4Addr::new(
                10,
                20 + (i >> 16) as u8,
                (i >> 8) as u8,
                i as u8,
            )));
        }
        // Busy-ness: a shuffled rank, weight 1/(rank+1).
        let mut rank: Vec<u32> = (0..n).collect();
        for k in (1..rank.len()).rev() {
            rank.swap(k, rng.below(k as u64 + 1) as usize);
        }
        let mut acc = 0.0;
        let talk = rank
            .iter()
            .map(|&r| {
                acc += 1.0 / (f64::from(r) + 1.0);
                acc
            })
            .collect();
        // Each workload's usual peers: 1-4 servers per service, the popular
        // servers more often; a sparse graph, as real fleets have.
        let peers = (0..n as usize * SERVICES.len())
            .map(|k| {
                let list = &servers[k % SERVICES.len()];
                (0..1 + rng.below(4))
                    .filter_map(|_| list.get(skewed(&mut rng, list.len() as u64) as usize))
                    .copied()
                    .collect()
            })
            .collect();
        Fleet {
            workloads,
            ips,
            talk,
            servers,
            peers,
            audit,
            gateway: Arc::new(Identity::unknown(GATEWAY)),
            moves: vec![None; n as usize],
            pools: Vec::new(),
            origin_ms: 0,
        }
    }

    /// Make `pct` percent of the workloads (picked by `seed`) change
    /// addresses every [`MOVE_PERIOD_MS`] from `origin_ms` on: in each of
    /// [`COHORTS`] cohorts the workloads pass their addresses round, so a
    /// workload's old address is the next one's new (no two hold one at
    /// once); the cohorts move a quarter period apart.
    pub fn set_moving(&mut self, pct: u32, origin_ms: i64, seed: u64) {
        let mut rng = Rng::new(seed ^ 0x6d6f_7665);
        self.origin_ms = origin_ms;
        self.pools = vec![Vec::new(); COHORTS];
        for w in 0..self.workloads.len() {
            self.moves[w] = None;
            if rng.below(100) < u64::from(pct) {
                let c = rng.below(COHORTS as u64) as usize;
                self.moves[w] = Some((c, self.pools[c].len()));
                self.pools[c].push(self.ips[w]);
            }
        }
    }

    /// Workload `w`'s address at `t_ms`, and since when it has held it (the
    /// start of its period; `i64::MIN` for one that never moves).
    pub fn ip_at(&self, w: usize, t_ms: i64) -> (IpAddr, i64) {
        match self.moves[w] {
            Some((c, j)) => {
                let pool = &self.pools[c];
                let shift = c as i64 * MOVE_PERIOD_MS / COHORTS as i64;
                let e = (t_ms - self.origin_ms + shift).div_euclid(MOVE_PERIOD_MS);
                let since = self.origin_ms - shift + e * MOVE_PERIOD_MS;
                let at = (j as i64 + e).rem_euclid(pool.len() as i64) as usize;
                (pool[at], since)
            }
            None => (self.ips[w], i64::MIN),
        }
    }

    /// The times in `[from_ms, to_ms)` at which `w` takes a new address.
    pub(super) fn moves_of(&self, w: usize, from_ms: i64, to_ms: i64) -> Vec<i64> {
        let mut out = Vec::new();
        if let Some((c, _)) = self.moves[w] {
            if self.pools[c].len() < 2 {
                return out;
            }
            let (_, mut since) = self.ip_at(w, from_ms);
            loop {
                since += MOVE_PERIOD_MS;
                if since >= to_ms {
                    return out;
                }
                out.push(since);
            }
        }
        out
    }

    /// The workloads whose addresses move.
    pub fn movers(&self) -> Vec<usize> {
        (0..self.moves.len())
            .filter(|&w| self.moves[w].is_some())
            .collect()
    }

    pub(super) fn source(&self, rng: &mut Rng) -> usize {
        let total = self.talk.last().copied().unwrap_or(0.0);
        let x = unit(rng) * total;
        self.talk
            .partition_point(|&c| c < x)
            .min(self.talk.len() - 1)
    }
}

/// A uniform draw in [0, 1).
pub(super) fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A draw in [0, n) biased to the low end (about a Zipf law).
pub(super) fn skewed(rng: &mut Rng, n: u64) -> u64 {
    let u = unit(rng);
    (((n as f64 + 1.0).powf(u) - 1.0) as u64).min(n.saturating_sub(1))
}

pub(super) fn external_ip(k: u64) -> IpAddr {
    // Spread over public ranges; 8.8.8.8 and 1.1.1.1 first (the busiest).
    match k {
        0 => IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
        1 => IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)),
        _ => {
            let h = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
            IpAddr::V4(Ipv4Addr::new(
                [23, 34, 52, 104, 142, 151, 185, 199][(h % 8) as usize],
                (h >> 8) as u8,
                (h >> 16) as u8,
                (h >> 24) as u8 | 1,
            ))
        }
    }
}
