//! The bulkhead packet path.
//!
//! - [`wire`]: bounds-checked zero-copy views over Ethernet, 802.1Q, ARP, IPv4,
//!   IPv6, TCP, UDP and ICMP, and [`wire::parse`], which summarises a frame into
//!   a [`wire::PacketInfo`].
//! - [`flow`]: the per-core flow table keyed by the direction-normalised 5-tuple.
//! - [`policy`]: the immutable, compiled [`policy::PolicySnapshot`] and its
//!   typed input [`policy::PolicySpec`].
//! - [`io`]: the [`io::PacketIo`] trait and its backends.
//! - [`worker`]: parse -> flow -> verdict -> forward or drop, between two ports.
//! - [`event`]: what the worker tells the control plane, over a lossy channel.
//! - [`offload`]: the kernel tier: decided flows carried by the XDP program.
//! - [`pipeline`] (Linux): the packet path assembled once: ports, workers,
//!   offloaders and the publish fence, for the appliance, the test beds and
//!   the benchmarks.
#![deny(unsafe_code)]

pub mod event;
pub mod flow;
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod fuzzing;
pub mod hint;
pub mod hostenv;
pub mod intel;
pub mod io;
pub mod offload;
#[cfg(target_os = "linux")]
pub mod pipeline;
pub mod policy;
pub mod wire;
pub mod worker;
