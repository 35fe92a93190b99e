//! Fixtures for the bulkhead benchmarks: policies of any size whose rules are
//! spread over many group pairs, queries that hit rules across the whole set, and
//! 64-byte UDP frames for distinct flows; and [`nft`], the nftables renderer of
//! the end-to-end comparison (bridge + nftables carrying the same policy as
//! bulkhead), which the `bulkhead-bench` binary (`src/bin/bulkhead-bench/`)
//! and the `policy` fuzz target use.
#![deny(unsafe_code)]

#[doc(hidden)]
pub mod fuzzing;
pub mod model;
pub mod nft;
pub mod records;

use dataplane::policy::{
    Action, EndpointSpec, FlowQuery, GroupIndex, Member, Mode, PolicySpec, PortRange, Proto,
    RuleSpec, Side,
};
use dataplane::wire::emit::{Checksums, Frame, Ipv4Repr, L4Repr, UdpRepr};
use dataplane::wire::MacAddr;
use std::net::{IpAddr, Ipv4Addr};

/// A small deterministic generator (xorshift64*), so every run benchmarks the same data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Application groups in the generated policies; every workload is also in one of
/// [`ENV_GROUPS`] environment groups, so endpoints have two groups each.
pub const APP_GROUPS: usize = 200;
pub const ENV_GROUPS: usize = 4;
/// Workloads per application group.
pub const WORKLOADS_PER_GROUP: usize = 4;

pub fn workload_mac(group: usize, i: usize) -> MacAddr {
    MacAddr([0x02, 0, 0, group as u8, (group >> 8) as u8, i as u8])
}

pub fn workload_ip(group: usize, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, (group >> 8) as u8, group as u8, i as u8 + 1)
}

/// A policy of `rules` rules between random pairs of application groups (about a
/// tenth deny), each on one TCP or UDP port or a small range, all groups
/// enforcing. Application group `g` is group index `g`.
pub fn policy(rules: usize, seed: u64) -> PolicySpec {
    let mut rng = Rng::new(seed);
    let mut spec = PolicySpec::default();
    for g in 0..APP_GROUPS {
        spec.add_group(format!("app{g}"), Mode::Enforce);
    }
    let env: Vec<GroupIndex> = (0..ENV_GROUPS)
        .map(|e| spec.add_group(format!("env{e}"), Mode::Enforce))
        .collect();
    for g in 0..APP_GROUPS {
        for i in 0..WORKLOADS_PER_GROUP {
            spec.endpoints.push(EndpointSpec {
                member: Member::Mac(workload_mac(g, i)),
                groups: vec![g as GroupIndex, env[(g + i) % ENV_GROUPS]],
            });
        }
    }
    let app = |rng: &mut Rng| Side::Groups(vec![rng.below(APP_GROUPS as u64) as GroupIndex]);
    for id in 0..rules {
        let port = 1024 + rng.below(60_000) as u16;
        let ports = if rng.below(4) == 0 {
            vec![PortRange::new(
                port,
                port.saturating_add(rng.below(32) as u16),
            )]
        } else {
            vec![PortRange::single(port)]
        };
        spec.rules.push(RuleSpec {
            id: id as u32 + 1,
            order: id as i64,
            src: app(&mut rng),
            dst: app(&mut rng),
            proto: if rng.below(3) == 0 {
                Proto::Udp
            } else {
                Proto::Tcp
            },
            ports,
            action: if rng.below(10) == 0 {
                Action::Deny
            } else {
                Action::Allow
            },
            comment: None,
        });
    }
    spec
}

/// `n` queries, each aimed at a random rule of `spec` (a workload of its source
/// group to one of its destination group, on one of its ports), so lookups hit
/// rules spread over the whole set.
pub fn queries(spec: &PolicySpec, n: usize, seed: u64) -> Vec<FlowQuery> {
    let mut rng = Rng::new(seed);
    let group_index = |side: &Side| match side {
        Side::Groups(ids) => ids.first().map_or(0, |&g| g as usize),
        Side::Any => 0,
    };
    (0..n)
        .map(|_| {
            let rule = &spec.rules[rng.below(spec.rules.len() as u64) as usize];
            let (sg, dg) = (group_index(&rule.src), group_index(&rule.dst));
            let (si, di) = (rng.below(4) as usize, rng.below(4) as usize);
            let range = rule.ports[0];
            FlowQuery {
                src_mac: workload_mac(sg, si),
                dst_mac: workload_mac(dg, di),
                src_ip: IpAddr::V4(workload_ip(sg, si)),
                dst_ip: IpAddr::V4(workload_ip(dg, di)),
                proto: rule.proto.number().unwrap_or(6),
                dst_port: range.lo + (rng.below(u64::from(range.hi - range.lo) + 1) as u16),
            }
        })
        .collect()
}

/// A minimal 60-byte Ethernet + IPv4 + UDP frame (64 bytes on the wire with the FCS):
/// 18 bytes of zeros, no UDP checksum.
pub fn udp_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: sport,
        dst_port: dport,
    };
    let frame = Frame {
        checksums: Checksums::IpOnly,
        ..Frame::new(
            dst_mac,
            src_mac,
            Ipv4Repr::new(src, dst),
            L4Repr::Udp(udp),
            &[0; 18],
        )
    };
    // 60 bytes: every length fits its field, emit cannot fail.
    frame.to_vec().unwrap_or_default()
}

/// The policy of the fast-path benchmark: group `a` may send anything over UDP to group `b`.
pub fn allow_udp_policy() -> PolicySpec {
    let mut spec = PolicySpec::default();
    let a = spec.add_group("a", Mode::Enforce);
    let b = spec.add_group("b", Mode::Enforce);
    for (group, last) in [(a, 0x0a), (b, 0x0b)] {
        spec.endpoints.push(EndpointSpec {
            member: Member::Mac(MacAddr([2, 0, 0, 0, 0, last])),
            groups: vec![group],
        });
    }
    spec.rules.push(RuleSpec {
        id: 1,
        order: 0,
        src: Side::Groups(vec![a]),
        dst: Side::Groups(vec![b]),
        proto: Proto::Udp,
        ports: Vec::new(),
        action: Action::Allow,
        comment: None,
    });
    spec
}

/// Frames for `flows` distinct UDP flows from group `a`'s workload to group `b`'s,
/// in a shuffled order.
pub fn flow_frames(flows: usize, seed: u64) -> Vec<Vec<u8>> {
    let a = MacAddr([2, 0, 0, 0, 0, 0x0a]);
    let b = MacAddr([2, 0, 0, 0, 0, 0x0b]);
    let mut frames: Vec<Vec<u8>> = (0..flows)
        .map(|i| {
            let src = Ipv4Addr::from(0x0a00_0000 | (i as u32 >> 14));
            let sport = 1024 + (i as u16 & 0x3fff);
            udp_frame(a, b, src, Ipv4Addr::new(10, 255, 0, 1), sport, 9000)
        })
        .collect();
    let mut rng = Rng::new(seed);
    for i in (1..frames.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        frames.swap(i, j);
    }
    frames
}
