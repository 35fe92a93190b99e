//! The plain serde form of a policy, and loading it from a YAML or TOML file.
//!
//! Addresses are kept as the text the operator wrote; [`PolicySnapshot::compile`]
//! parses and validates them, so one pass reports every problem with its path.
//! Syntax and type errors are reported by [`load_spec`] with the file, line and column.
//!
//! A small policy, in YAML:
//!
//! ```yaml
//! default_mode: audit            # mode of an endpoint in no group (learn | audit | enforce)
//! groups:
//!   - name: web
//!     mode: enforce
//!   - name: db                   # mode defaults to enforce
//!   - name: legacy
//!     mode: learn
//! endpoints:
//!   - mac: "02:00:00:00:01:0a"   # a workload by MAC (":" or "-" separators)
//!     groups: [web]
//!   - cidr: 10.0.2.0/24          # every address in a prefix
//!     groups: [db]
//!   - cidr: 10.0.9.7             # a bare address is a /32 (or /128)
//!     groups: [legacy, db]
//! rules:
//!   - id: 1
//!     src: [web]
//!     dst: [db]
//!     proto: tcp                 # tcp | udp | icmp | icmpv6 | any | 0..255 (default any)
//!     ports: [5432, "6000-6010"] # only with tcp or udp; empty or absent = every port
//!     action: allow
//!     comment: web tier reaches postgres
//!   - id: 2
//!     order: -10                 # evaluated first; default order = position in the list
//!     src: [any]
//!     dst: [db]
//!     proto: udp
//!     ports: [161]
//!     action: deny
//! quarantine: ["02:00:00:00:0f:01"]
//! management:                    # what may still reach (or be reached by) a quarantined MAC
//!   - cidr: 10.0.100.0/24
//!     macs: ["02:00:00:00:64:01"]  # the management hosts, by MAC
//!     proto: tcp
//!     ports: [22]
//! blocklist: [198.51.100.0/24, "2001:db8:bad::/48"]
//! ```
//!
//! [`PolicySnapshot::compile`]: super::PolicySnapshot::compile

use super::{Action, Mode};
use crate::wire::MacAddr;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};

/// A whole policy, as written in a file or built by the control plane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySpec {
    /// The mode of an endpoint that is in no group.
    pub default_mode: Mode,
    pub groups: Vec<GroupSpec>,
    pub endpoints: Vec<EndpointSpec>,
    pub rules: Vec<RuleSpec>,
    /// Quarantined MACs, e.g. `"02:00:00:00:01:0a"`.
    pub quarantine: Vec<String>,
    /// Flows a quarantined MAC may still have.
    pub management: Vec<ManagementSpec>,
    /// Blocked CIDRs (or bare addresses).
    pub blocklist: Vec<String>,
}

/// A named group of endpoints and its mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    #[serde(default)]
    pub mode: Mode,
}

/// Group membership, either by MAC or by CIDR: exactly one of `mac` and `cidr` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// A prefix (`10.0.1.0/24`) or a bare address (a /32 or /128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    pub groups: Vec<String>,
}

/// One ordered rule: `src` groups to `dst` groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: u32,
    /// Lower is evaluated first; ties (and absent orders) go by list position.
    /// Absent = the rule's position in the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<i64>,
    /// Group names, or `["any"]`.
    pub src: Vec<String>,
    /// Group names, or `["any"]`.
    pub dst: Vec<String>,
    #[serde(default)]
    pub proto: Proto,
    /// Destination ports; empty = every port. Only with `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A management exception: while quarantined, a MAC may still talk to the
/// management hosts (`macs`, at addresses in `cidr`) over `proto` to the
/// given destination ports. Bound to the hosts' MACs: a host that takes a
/// management address is not one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementSpec {
    pub cidr: String,
    /// The management hosts' MACs (at least one).
    pub macs: Vec<String>,
    #[serde(default)]
    pub proto: Proto,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
}

/// An IP protocol: a name, or a number `0..=255`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Proto {
    #[default]
    Any,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Any other protocol number (a number of a named protocol is the same as its name).
    Number(u8),
}

impl Proto {
    /// The protocol number, or `None` for [`Proto::Any`].
    pub fn number(self) -> Option<u8> {
        match self {
            Proto::Any => None,
            Proto::Tcp => Some(6),
            Proto::Udp => Some(17),
            Proto::Icmp => Some(1),
            Proto::Icmpv6 => Some(58),
            Proto::Number(n) => Some(n),
        }
    }

    /// Whether ports may be given: TCP or UDP (by name or number).
    pub fn has_ports(self) -> bool {
        matches!(self.number(), Some(6 | 17))
    }

    /// Whether a packet of protocol `p` matches.
    pub fn matches(self, p: u8) -> bool {
        self.number().is_none_or(|n| n == p)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Any => f.write_str("any"),
            Proto::Tcp => f.write_str("tcp"),
            Proto::Udp => f.write_str("udp"),
            Proto::Icmp => f.write_str("icmp"),
            Proto::Icmpv6 => f.write_str("icmpv6"),
            Proto::Number(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "any" => Ok(Proto::Any),
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "icmp" => Ok(Proto::Icmp),
            "icmpv6" => Ok(Proto::Icmpv6),
            _ => t.parse::<u8>().map(Proto::Number).map_err(|_| {
                format!("invalid protocol {s:?}: expected tcp, udp, icmp, icmpv6, any or 0..=255")
            }),
        }
    }
}

impl Serialize for Proto {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Proto::Number(n) => s.serialize_u8(*n),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Proto {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Proto;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protocol: tcp, udp, icmp, icmpv6, any or a number 0..=255")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Proto, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Proto, E> {
                u8::try_from(v)
                    .map(Proto::Number)
                    .map_err(|_| E::custom(format!("protocol number {v} is not in 0..=255")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Proto, E> {
                u8::try_from(v)
                    .map(Proto::Number)
                    .map_err(|_| E::custom(format!("protocol number {v} is not in 0..=255")))
            }
        }
        d.deserialize_any(V)
    }
}

/// An inclusive port range, written `445` or `"8000-8080"`. A reversed range
/// deserializes and is rejected by compile, with its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        PortRange { lo: port, hi: port }
    }
    pub fn new(lo: u16, hi: u16) -> Self {
        PortRange { lo, hi }
    }
    pub fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid port range {s:?}: expected a port or \"lo-hi\" in 0..=65535");
        let port = |t: &str| t.trim().parse::<u16>().map_err(|_| bad());
        match s.split_once('-') {
            Some((a, b)) => Ok(PortRange::new(port(a)?, port(b)?)),
            None => port(s).map(PortRange::single),
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.lo == self.hi {
            s.serialize_u16(self.lo)
        } else {
            s.serialize_str(&self.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port 0..=65535 or a range \"lo-hi\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRange, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRange, E> {
                u16::try_from(v)
                    .map(PortRange::single)
                    .map_err(|_| E::custom(format!("port {v} is not in 0..=65535")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRange, E> {
                u16::try_from(v)
                    .map(PortRange::single)
                    .map_err(|_| E::custom(format!("port {v} is not in 0..=65535")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses `02:00:00:00:01:0a` or `02-00-00-00-01-0A` (case-insensitive): `MacAddr`'s
/// [`FromStr`](std::str::FromStr), for callers that only need an `Option`.
pub fn parse_mac(s: &str) -> Option<MacAddr> {
    s.parse().ok()
}

/// Why a policy file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: unsupported policy file type (expected .yaml, .yml or .toml)", path.display())]
    UnknownFormat { path: PathBuf },
    /// A syntax or type error; `line` and `column` are 1-based when the parser knows them.
    #[error("{file}{}: {message}", location(*line, *column))]
    Parse {
        file: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

impl SpecError {
    /// The 1-based line of a parse error, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            SpecError::Parse { line, .. } => *line,
            _ => None,
        }
    }
}

impl PolicySpec {
    /// Parses YAML. Errors name the source as `<yaml>`.
    pub fn from_yaml_str(text: &str) -> Result<Self, SpecError> {
        parse_yaml(text, "<yaml>")
    }

    /// Parses TOML. Errors name the source as `<toml>`.
    pub fn from_toml_str(text: &str) -> Result<Self, SpecError> {
        parse_toml(text, "<toml>")
    }

    /// Renders YAML (what [`PolicySpec::from_yaml_str`] reads back).
    pub fn to_yaml_string(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }
}

/// Loads a policy file: YAML for `.yaml`/`.yml`, TOML for `.toml`.
pub fn load_spec(path: &Path) -> Result<PolicySpec, SpecError> {
    load_file(path)
}

/// Loads any serde document from a YAML (`.yaml`/`.yml`) or TOML (`.toml`) file,
/// with syntax and type errors located by file, line and column. An empty YAML
/// document is `T::default()`. The policy file and the control plane's model
/// file are both read through it.
pub fn load_file<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, SpecError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let parse: fn(&str, &str) -> Result<T, SpecError> = match ext.as_deref() {
        Some("yaml" | "yml") => parse_yaml,
        Some("toml") => parse_toml,
        _ => {
            return Err(SpecError::UnknownFormat {
                path: path.to_path_buf(),
            })
        }
    };
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parse YAML; errors name the source `file`.
pub fn parse_yaml<T: serde::de::DeserializeOwned + Default>(
    text: &str,
    file: &str,
) -> Result<T, SpecError> {
    // An empty (or comment-only) document is an empty policy.
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(T::default());
    }
    serde_yaml::from_str(text).map_err(|e| {
        let loc = e.location();
        let mut message = e.to_string();
        // serde_yaml appends " at line L column C"; the location is reported separately.
        if loc.is_some() {
            if let Some(i) = message.rfind(" at line ") {
                message.truncate(i);
            }
        }
        SpecError::Parse {
            file: file.to_string(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message,
        }
    })
}

/// Parse TOML; errors name the source `file`.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, SpecError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = match e.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        SpecError::Parse {
            file: file.to_string(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })
}

/// 1-based line and column (in characters) of byte offset `at`.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
