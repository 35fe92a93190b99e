//! Services: the built-in catalogue, and turning service text into protocol/port entries.

use crate::model::{PortSpec, Scalar};
use crate::path::Sub;
use dataplane::policy::{PortRange, Proto};

/// One protocol and its destination ports (empty = every port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub proto: Proto,
    pub ports: Vec<PortRange>,
}

impl ServiceEntry {
    pub fn new(proto: Proto, ports: &[(u16, u16)]) -> Self {
        ServiceEntry {
            proto: canonical(proto),
            ports: ports
                .iter()
                .map(|&(lo, hi)| PortRange::new(lo, hi))
                .collect(),
        }
    }
}

/// One protocol with one port, one range or none.
type Builtin = (&'static str, &'static [(Proto, &'static [(u16, u16)])]);

const TCP: Proto = Proto::Tcp;
const UDP: Proto = Proto::Udp;

/// The built-in catalogue: usable in rules by name without a definition.
/// A user-defined service of the same name replaces the built-in one.
pub const BUILTIN: &[Builtin] = &[
    ("any", &[(Proto::Any, &[])]),
    ("ssh", &[(TCP, &[(22, 22)])]),
    ("rdp", &[(TCP, &[(3389, 3389)]), (UDP, &[(3389, 3389)])]),
    ("smb", &[(TCP, &[(445, 445), (139, 139)])]),
    ("http", &[(TCP, &[(80, 80)])]),
    ("https", &[(TCP, &[(443, 443)])]),
    ("dns", &[(UDP, &[(53, 53)]), (TCP, &[(53, 53)])]),
    ("postgresql", &[(TCP, &[(5432, 5432)])]),
    ("mysql", &[(TCP, &[(3306, 3306)])]),
    ("mssql", &[(TCP, &[(1433, 1433)])]),
    ("redis", &[(TCP, &[(6379, 6379)])]),
    ("ldap", &[(TCP, &[(389, 389)])]),
    ("kerberos", &[(TCP, &[(88, 88)]), (UDP, &[(88, 88)])]),
    ("ntp", &[(UDP, &[(123, 123)])]),
    ("snmp", &[(UDP, &[(161, 161)])]),
    // Ping is ping: `icmp` covers ICMPv6 too (echo, errors); `icmpv6` alone
    // stays for rules that want IPv6 only.
    ("icmp", &[(Proto::Icmp, &[]), (Proto::Icmpv6, &[])]),
    ("icmpv6", &[(Proto::Icmpv6, &[])]),
    ("winrm", &[(TCP, &[(5985, 5986)])]),
    ("nfs", &[(TCP, &[(2049, 2049)])]),
];

/// The entries of a built-in service, by name (case-insensitive).
pub fn builtin(name: &str) -> Option<Vec<ServiceEntry>> {
    BUILTIN
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
        .map(|(_, entries)| {
            entries
                .iter()
                .map(|&(proto, ports)| ServiceEntry::new(proto, ports))
                .collect()
        })
}

/// The built-in service that holds a protocol and port (`tcp/443` is
/// `https`, `udp/53` is `dns`, ICMP is `icmp`), if one does: the name a
/// report or a proposal gives it. `port` is 0 for protocols without ports.
pub fn builtin_for(proto: u8, port: u16) -> Option<&'static str> {
    BUILTIN.iter().find_map(|&(name, entries)| {
        let holds = entries.iter().any(|&(p, ports)| {
            p.number() == Some(proto)
                && (ports.is_empty() || ports.iter().any(|&(lo, hi)| (lo..=hi).contains(&port)))
        });
        (name != "any" && holds).then_some(name)
    })
}

/// The names of the built-in services.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(n, _)| *n)
}

/// A protocol by its name where it has one (`Number(6)` -> `Tcp`), so equal
/// protocols compare equal.
pub fn canonical(p: Proto) -> Proto {
    match p {
        Proto::Number(6) => Proto::Tcp,
        Proto::Number(17) => Proto::Udp,
        Proto::Number(1) => Proto::Icmp,
        Proto::Number(58) => Proto::Icmpv6,
        other => other,
    }
}

/// Parses a protocol: a name or a number `0..=255`.
pub fn parse_proto(s: &Scalar) -> Result<Proto, String> {
    match s {
        Scalar::Int(n) => u8::try_from(*n)
            .map(|n| canonical(Proto::Number(n)))
            .map_err(|_| format!("protocol number {n} is not in 0..=255")),
        Scalar::Text(t) => t.parse::<Proto>().map(canonical),
    }
}

/// Parses a port (`445`) or a range (`"8000-8080"`).
pub fn parse_port(s: &Scalar) -> Result<PortRange, String> {
    let r = match s {
        Scalar::Int(n) => u16::try_from(*n)
            .map(PortRange::single)
            .map_err(|_| format!("port {n} out of range (0..=65535)"))?,
        Scalar::Text(t) => t.parse::<PortRange>()?,
    };
    if r.lo > r.hi {
        return Err(format!("port range reversed: {}-{}", r.lo, r.hi));
    }
    Ok(r)
}

/// Parses a `{proto, ports}` pair; every problem goes to `err` with its path under `path`.
pub(crate) fn parse_port_spec(
    spec: &PortSpec,
    path: &dyn std::fmt::Display,
    err: &mut dyn FnMut(String, String),
) -> Option<ServiceEntry> {
    let proto = parse_proto(&spec.proto)
        .map_err(|m| err(format!("{path}.proto"), m))
        .ok();
    let ports = parse_ports(proto, &spec.ports, &Sub::field(path, "ports"), err);
    Some(ServiceEntry {
        proto: proto?,
        ports: ports?,
    })
}

/// Parses a port list for `proto` (`None` if the protocol itself was bad).
pub(crate) fn parse_ports(
    proto: Option<Proto>,
    ports: &[Scalar],
    path: &dyn std::fmt::Display,
    err: &mut dyn FnMut(String, String),
) -> Option<Vec<PortRange>> {
    let mut ok = true;
    if let Some(p) = proto {
        if !ports.is_empty() && !p.has_ports() {
            err(
                path.to_string(),
                format!("ports are only allowed with proto tcp or udp (proto is {p})"),
            );
            ok = false;
        }
    }
    let mut out = Vec::with_capacity(ports.len());
    for (k, s) in ports.iter().enumerate() {
        match parse_port(s) {
            Ok(r) => out.push(r),
            Err(m) => {
                err(format!("{path}[{k}]"), m);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// Folds service entries into one entry per protocol: an entry without ports
/// covers its whole protocol; an `any`-protocol entry covers everything.
/// Sorted by protocol number (`any` alone when present).
pub fn fold(entries: impl IntoIterator<Item = ServiceEntry>) -> Vec<ServiceEntry> {
    use std::collections::BTreeMap;
    let mut by_proto: BTreeMap<u8, Option<Vec<PortRange>>> = BTreeMap::new();
    for e in entries {
        let Some(n) = e.proto.number() else {
            return vec![ServiceEntry {
                proto: Proto::Any,
                ports: Vec::new(),
            }];
        };
        let slot = by_proto.entry(n).or_insert_with(|| Some(Vec::new()));
        match (slot.as_mut(), e.ports.is_empty()) {
            (Some(_), true) => *slot = None,
            (Some(v), false) => v.extend(e.ports),
            (None, _) => {}
        }
    }
    by_proto
        .into_iter()
        .map(|(n, ports)| {
            let mut ports = ports.unwrap_or_default();
            ports.sort_unstable_by_key(|r| (r.lo, r.hi));
            ports.dedup();
            ServiceEntry {
                proto: canonical(Proto::Number(n)),
                ports,
            }
        })
        .collect()
}

/// A protocol as text: `tcp`, `udp`, `sctp`, `icmp`, `icmpv6`, or its
/// number.
pub fn proto_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

/// A protocol and port as text, as every listing and alert shows them:
/// `tcp/443`, `udp/53`, `sctp/2905`, `icmp`, `proto 47` (a port only for
/// the protocols that have ports).
pub fn service_text(proto: u8, port: u16) -> String {
    match proto {
        6 | 17 | 132 => format!("{}/{port}", proto_name(proto)),
        1 | 58 => proto_name(proto),
        p => format!("proto {p}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_has_the_listed_services() {
        let smb = builtin("smb").expect("smb");
        assert_eq!(smb, vec![ServiceEntry::new(TCP, &[(445, 445), (139, 139)])]);
        let rdp = builtin("RDP").expect("rdp");
        assert_eq!(rdp.len(), 2);
        assert_eq!(rdp[1].proto, Proto::Udp);
        assert_eq!(
            builtin("winrm").expect("winrm")[0].ports,
            vec![PortRange::new(5985, 5986)]
        );
        let icmp = builtin("icmp").expect("icmp");
        let protos: Vec<Proto> = icmp.iter().map(|e| e.proto).collect();
        assert_eq!(protos, [Proto::Icmp, Proto::Icmpv6], "ping6 is ping");
        for name in [
            "ssh",
            "http",
            "https",
            "dns",
            "postgresql",
            "mysql",
            "mssql",
            "redis",
            "ldap",
            "kerberos",
            "ntp",
            "snmp",
            "icmpv6",
            "nfs",
        ] {
            assert!(builtin(name).is_some(), "{name}");
        }
        assert!(builtin("smbb").is_none());
    }

    #[test]
    fn fold_merges_ports_per_protocol_and_any_covers_everything() {
        let f = fold([
            ServiceEntry::new(TCP, &[(445, 445)]),
            ServiceEntry::new(UDP, &[(53, 53)]),
            ServiceEntry::new(Proto::Number(6), &[(139, 139), (445, 445)]),
        ]);
        assert_eq!(
            f,
            vec![
                ServiceEntry::new(TCP, &[(139, 139), (445, 445)]),
                ServiceEntry::new(UDP, &[(53, 53)]),
            ]
        );
        let f = fold([
            ServiceEntry::new(TCP, &[(22, 22)]),
            ServiceEntry::new(TCP, &[]),
        ]);
        assert_eq!(f, vec![ServiceEntry::new(TCP, &[])]);
        let f = fold([
            ServiceEntry::new(TCP, &[(22, 22)]),
            ServiceEntry::new(Proto::Any, &[]),
        ]);
        assert_eq!(f, vec![ServiceEntry::new(Proto::Any, &[])]);
    }

    #[test]
    fn ports_and_protocols_parse_with_range_errors() {
        assert_eq!(parse_port(&Scalar::Int(443)), Ok(PortRange::single(443)));
        assert_eq!(
            parse_port(&"8000-8080".into()),
            Ok(PortRange::new(8000, 8080))
        );
        assert!(parse_port(&Scalar::Int(70000))
            .unwrap_err()
            .contains("out of range"));
        assert!(parse_port(&"90-80".into())
            .unwrap_err()
            .contains("reversed"));
        assert_eq!(parse_proto(&Scalar::Int(17)), Ok(Proto::Udp));
        assert!(parse_proto(&"tcpp".into()).is_err());
    }
}
