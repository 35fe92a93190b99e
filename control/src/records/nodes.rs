//! What an end of a flow stands for in the access graph, in one place for
//! the graph's reads (raw records, hourly rollups) and the writer's group
//! rollups, so that every source says the same.
//!
//! At workload level an end is its workload (MAC and name), or its address
//! when no workload has the MAC. At group level an end is each of its groups
//! (a network's members too), a named workload in none is `ungrouped`, and
//! any other end is one of two networks: `internet` (a globally reachable
//! address) or `private` (RFC 1918, CGNAT, link-local, ULA, loopback,
//! multicast and the other special-purpose ranges). The
//! addresses themselves are in the workload-level graph and in the flows;
//! a group-level graph of months would otherwise be a node per address the
//! internet ever sent (docs/decisions.md, "Group-level rollups").

use super::graph::{Level, Node};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::LazyLock;

/// The special-purpose ranges (IANA's IPv4 and IPv6 registries, the ones
/// not globally reachable, with multicast and the reserved class E): an end
/// in none of them is on the internet. The documentation ranges (192.0.2.0/24,
/// 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are left out: labs and
/// examples use them for the internet.
const LOCAL_NETS_TEXT: [&str; 16] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/127",
    "64:ff9b:1::/48",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// [`LOCAL_NETS_TEXT`] parsed (a test holds that every entry parses).
pub(super) fn local_nets() -> &'static [IpNet] {
    static NETS: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
        LOCAL_NETS_TEXT
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect()
    });
    &NETS
}

/// The network an address no workload has stands for at group level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    Internet,
    Private,
}

impl Network {
    pub(super) fn of(ip: IpAddr) -> Network {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if local_nets().iter().any(|n| n.contains(&ip)) {
            Network::Private
        } else {
            Network::Internet
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Network::Internet => "internet",
            Network::Private => "private",
        }
    }

    pub(super) fn node(self) -> Node {
        Node {
            kind: "external".into(),
            id: self.name().into(),
            name: String::new(),
        }
    }
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "internet" => Ok(Network::Internet),
            "private" => Ok(Network::Private),
            other => Err(format!(
                "invalid network {other:?}: expected external:internet or external:private"
            )),
        }
    }
}

/// One end of a flow as the store has it: the identity's MAC, name and
/// groups, and the address.
pub(super) struct End<'a> {
    pub mac: i64,
    pub name: &'a str,
    pub groups: &'a [String],
    /// 16 bytes (IPv4 mapped), or empty where a rollup keeps no address.
    pub ip: &'a [u8],
}

/// The node(s) an end stands for at `level`.
pub(super) fn node_of(e: &End<'_>, level: Level) -> Vec<Node> {
    let named = |kind: &str| Node {
        kind: kind.into(),
        id: super::query::mac_text(e.mac),
        name: e.name.to_string(),
    };
    match level {
        Level::Workload if e.name.is_empty() => vec![Node {
            kind: "external".into(),
            id: ip_of(e.ip).to_string(),
            name: String::new(),
        }],
        Level::Workload => vec![named("workload")],
        Level::Group if !e.groups.is_empty() => e
            .groups
            .iter()
            .map(|g| Node {
                kind: "group".into(),
                id: g.clone(),
                name: String::new(),
            })
            .collect(),
        Level::Group if !e.name.is_empty() => vec![named("ungrouped")],
        Level::Group => vec![Network::of(ip_of(e.ip)).node()],
    }
}

/// An address as stored (16 bytes, IPv4 mapped) as an address.
pub(super) fn ip_of(bytes: &[u8]) -> IpAddr {
    let mut b = [0u8; 16];
    if let Some(src) = bytes.get(..16) {
        b.copy_from_slice(src);
    }
    let v6 = Ipv6Addr::from(b);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(ip: &str) -> Network {
        Network::of(ip.parse().unwrap_or(IpAddr::V4([0, 0, 0, 0].into())))
    }

    #[test]
    fn every_local_range_parses() {
        assert_eq!(local_nets().len(), LOCAL_NETS_TEXT.len());
    }

    #[test]
    fn addresses_fall_in_the_internet_or_a_private_network() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2a00:1450::1",
            "::ffff:8.8.4.4",
            "203.0.113.7",
        ] {
            assert_eq!(net(ip), Network::Internet, "{ip}");
        }
        for ip in [
            "10.1.2.3",
            "172.31.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.1.1",
            "224.0.0.251",
            "255.255.255.255",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "::1",
            "ff02::fb",
        ] {
            assert_eq!(net(ip), Network::Private, "{ip}");
        }
    }
}
