//! The compiled, immutable policy the packet path executes.
//!
//! [`PolicySpec`] is the typed input the control plane compiles its model into
//! (MACs, networks, group indexes; no file format of its own);
//! [`PolicySnapshot::compile`] turns it into lookup structures whose cost does
//! not grow linearly with the number of rules.
//! Precedence: quarantine > intel > blocklist > ordered rules > the group mode's default.
//! Quarantines, bindings and intel live in the snapshot's overlay ([`overlay`]).

mod classify;
mod compile;
#[cfg(any(test, feature = "test-support"))]
pub mod named;
mod overlay;
mod proto;
mod spec;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_oracle;
#[cfg(test)]
mod tests_spec;

pub use classify::PolicySnapshot;
pub use compile::{Place, PolicyError};
pub use overlay::Resolved;
pub use proto::{PortRange, Proto};
pub use spec::{
    parse_mac, EndpointSpec, GroupIndex, GroupSpec, ManagementSpec, Member, PolicySpec, RuleSpec,
    Side,
};

use crate::wire::MacAddr;
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;

/// A group's mode. Ordered by strictness: `Learn < Audit < Enforce`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Allow everything; flows are recorded so rules can be proposed.
    Learn,
    /// Evaluate policy, allow, but flag every would-be deny.
    Audit,
    /// Deny what policy does not allow.
    #[default]
    Enforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

/// Why a verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The first matching rule, by its id.
    Rule(u32),
    /// One endpoint's MAC is quarantined.
    Quarantine,
    /// One endpoint is quarantined but the flow matches a management exception.
    Management,
    /// One endpoint's IP is in a blocked CIDR.
    Blocklist,
    /// One endpoint's IP is blocked by threat intel: the entry that lists
    /// it, or the domain DNS answered it for (an index into the control
    /// plane's intel entries).
    Intel(u32),
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

/// What must change together with the policy, run by the publisher: see
/// [`SnapshotCell::set_publish_fence`].
pub type PublishFence = Box<dyn Fn(u64) + Send + Sync>;

/// The published snapshot: workers `load` once per batch, the control plane `publish`es.
pub struct SnapshotCell {
    inner: ArcSwap<PolicySnapshot>,
    fence: std::sync::OnceLock<PublishFence>,
}

impl SnapshotCell {
    pub fn new(snapshot: PolicySnapshot) -> Self {
        SnapshotCell {
            inner: ArcSwap::from_pointee(snapshot),
            fence: std::sync::OnceLock::new(),
        }
    }

    /// Something that must follow every publication before the publisher
    /// goes on (and so before it answers whoever asked for the change): the
    /// kernel tier's generation, so that no flow offloaded under the old
    /// policy is forwarded once a commit or a quarantine has returned. Called
    /// with the new generation right after each swap, on the publisher's
    /// thread, and once now with the current one. Set once; a second call
    /// hands the fence back.
    pub fn set_publish_fence(&self, fence: PublishFence) -> Result<(), PublishFence> {
        self.fence.set(fence)?;
        self.fenced(self.generation());
        Ok(())
    }

    fn fenced(&self, generation: u64) {
        if let Some(f) = self.fence.get() {
            f(generation);
        }
    }

    /// The current snapshot; cheap, meant to be held for one batch.
    pub fn load(&self) -> arc_swap::Guard<Arc<PolicySnapshot>> {
        self.inner.load()
    }

    /// The current snapshot as an owned `Arc`.
    pub fn load_full(&self) -> Arc<PolicySnapshot> {
        self.inner.load_full()
    }

    /// Replaces the snapshot; workers see it at their next `load`.
    pub fn publish(&self, snapshot: PolicySnapshot) {
        let generation = snapshot.generation();
        self.inner.store(Arc::new(snapshot));
        self.fenced(generation);
    }

    /// Replaces the snapshot and hands back the one it replaced, so the caller
    /// chooses when the old one is freed (freeing a large snapshot takes time).
    pub fn replace(&self, snapshot: PolicySnapshot) -> Arc<PolicySnapshot> {
        let generation = snapshot.generation();
        let old = self.inner.swap(Arc::new(snapshot));
        self.fenced(generation);
        old
    }

    /// Replaces the snapshot with an already shared one.
    pub fn publish_arc(&self, snapshot: Arc<PolicySnapshot>) {
        let generation = snapshot.generation();
        self.inner.store(snapshot);
        self.fenced(generation);
    }

    /// The generation of the current snapshot.
    pub fn generation(&self) -> u64 {
        self.inner.load().generation()
    }
}

impl Default for SnapshotCell {
    /// An empty policy (everything denied), generation 0.
    fn default() -> Self {
        SnapshotCell::new(PolicySnapshot::empty(0))
    }
}

impl std::fmt::Debug for SnapshotCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SnapshotCell")
            .field(&**self.inner.load())
            .finish()
    }
}
