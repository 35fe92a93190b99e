//! The bulkhead control plane: the policy model users write, its
//! validation, automatic membership and compilation into the dataplane's
//! [`dataplane::policy::PolicySnapshot`].
//!
//! - [`model`]: workloads, groups, services, rules, modes, management exceptions,
//!   quarantine, blocklist and assignment rules; its serde form is the policy file
//!   (YAML or TOML), loaded by [`load_model`].
//! - [`validate`]: [`Model::validate`] reports every problem with its path.
//! - [`services`]: the built-in service catalogue and protocol/port parsing.
//! - [`membership`]: MACs seen on the wire become workloads ([`Model::observe`]),
//!   labelled by assignment rules; selectors pick workloads.
//! - [`engine`]: the control thread: commands, publication, quarantine, events.
//! - [`diff`]: what a draft changes against the live policy.
//! - [`learn`]: what a policy would do with recorded traffic (the dry run).
//! - [`inventory`]: imports workloads from CSV or JSON inventories.
//! - [`mod@compile`]: model -> [`dataplane::policy::PolicySpec`] -> snapshot, with the
//!   map from compiled rule ids back to user rule ids.
#![deny(unsafe_code)]

pub mod alerts;
pub mod compile;
pub mod detect;
pub mod diff;
pub mod dns;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod intel;
pub mod inventory;
pub mod ipfix;
pub mod learn;
pub mod load;
pub mod mac_prefix;
pub mod membership;
pub mod model;
mod path;
pub mod records;
pub mod services;
pub mod store;
pub mod time;
pub mod tls;
pub mod validate;

pub use compile::{compile, compile_snapshot, CompileError, Compiled, RuleMap};
pub use load::{load_model, LoadError};
pub use model::Model;
pub use validate::{Problem, Problems};

#[cfg(test)]
mod tests_compile;
#[cfg(test)]
mod tests_inventory;
#[cfg(test)]
mod tests_membership;
#[cfg(test)]
mod tests_validate;
#[cfg(test)]
mod testutil;
