//! The input of [`PolicySnapshot::compile`]: typed and indexed, with no file
//! format of its own.
//!
//! The control plane reads the operator's model file, validates it (every
//! problem, with its path) and builds a [`PolicySpec`]: MACs as [`MacAddr`],
//! networks as [`IpNet`], group memberships and rule sides as indexes into
//! [`PolicySpec::groups`]. Compile checks only what these types cannot say (an
//! index in range, a rule id used once, a port range in order) and reports the
//! first breach as a [`PolicyError`]: a bug in whoever built the spec, not an
//! operator's mistake.
//!
//! [`PolicySnapshot::compile`]: super::PolicySnapshot::compile
//! [`PolicyError`]: super::PolicyError

use super::proto::{PortRange, Proto};
use super::{Action, Mode};
use crate::wire::MacAddr;
use ipnet::IpNet;

/// A group's position in [`PolicySpec::groups`].
pub type GroupIndex = u32;

/// A whole policy, as the control plane compiles its model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySpec {
    /// The mode of an endpoint that is in no group.
    pub default_mode: Mode,
    pub groups: Vec<GroupSpec>,
    pub endpoints: Vec<EndpointSpec>,
    pub rules: Vec<RuleSpec>,
    pub quarantine: Vec<MacAddr>,
    /// Flows a quarantined MAC may still have.
    pub management: Vec<ManagementSpec>,
    /// Blocked networks.
    pub blocklist: Vec<IpNet>,
}

impl PolicySpec {
    /// Appends a group and returns its index.
    pub fn add_group(&mut self, name: impl Into<String>, mode: Mode) -> GroupIndex {
        self.groups.push(GroupSpec {
            name: name.into(),
            mode,
        });
        (self.groups.len() - 1) as GroupIndex
    }
}

/// A named group and its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub name: String,
    pub mode: Mode,
}

/// Who an endpoint is: a workload by MAC, or every address in a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Member {
    Mac(MacAddr),
    Net(IpNet),
}

/// Group membership. A MAC given twice is in the union of its groups; an
/// endpoint with no group is the same as none (the default mode applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub member: Member,
    pub groups: Vec<GroupIndex>,
}

/// One side of a rule: every endpoint, or the members of some groups (an
/// empty list matches nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    Any,
    Groups(Vec<GroupIndex>),
}

/// One ordered rule: `src` to `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub id: u32,
    /// Lower is evaluated first; ties go by position in [`PolicySpec::rules`].
    pub order: i64,
    pub src: Side,
    pub dst: Side,
    pub proto: Proto,
    /// Destination ports; empty = every port. Only with TCP or UDP.
    pub ports: Vec<PortRange>,
    pub action: Action,
    pub comment: Option<String>,
}

/// A management exception: while quarantined, a MAC may still talk to the
/// management hosts (`macs`, at addresses in `net`) over `proto` to the given
/// destination ports. Bound to the hosts' MACs: a host that takes a management
/// address is not one, and an exception with no MAC lets nothing through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementSpec {
    pub net: IpNet,
    pub macs: Vec<MacAddr>,
    pub proto: Proto,
    pub ports: Vec<PortRange>,
}

/// Parses `02:00:00:00:01:0a` or `02-00-00-00-01-0A` (case-insensitive): `MacAddr`'s
/// [`FromStr`](std::str::FromStr), for callers that only need an `Option`.
pub fn parse_mac(s: &str) -> Option<MacAddr> {
    s.parse().ok()
}
