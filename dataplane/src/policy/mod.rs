//! The compiled, immutable policy the packet path executes.
//!
//! [`PolicySpec`] is the plain serde form (a YAML or TOML file, or what the control
//! plane compiles its model into); [`PolicySnapshot::compile`] turns it into lookup
//! structures whose cost does not grow linearly with the number of rules.
//! Precedence: quarantine > blocklist > ordered rules > the group mode's default.

use crate::wire::MacAddr;
use std::net::IpAddr;

/// A group's mode. Ordered by strictness: `Learn < Audit < Enforce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Mode {
    /// Allow everything; flows are recorded so rules can be proposed.
    Learn,
    /// Evaluate policy, allow, but flag every would-be deny.
    Audit,
    /// Deny what policy does not allow.
    #[default]
    Enforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
}

/// Why a verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The first matching rule, by its id.
    Rule(u32),
    /// One endpoint's MAC is quarantined.
    Quarantine,
    /// One endpoint is quarantined but the flow matches a management exception.
    Management,
    /// One endpoint's IP is in a blocked CIDR.
    Blocklist,
    /// No rule matched: the default of the effective mode.
    Default,
}

/// The decision for a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verdict {
    pub action: Action,
    pub reason: Reason,
    /// The effective mode: the strictest of both endpoints' groups' modes.
    pub mode: Mode,
    /// Audit (or learn) mode turned a deny into an allow: `action` is `Allow`.
    pub would_deny: bool,
}

/// What the classifier looks at for a new flow, in the direction of its first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowQuery {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub proto: u8,
    /// The responder's port (TCP/UDP); 0 for protocols without ports.
    pub dst_port: u16,
}
