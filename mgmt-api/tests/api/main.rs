//! The management API over real HTTPS on loopback, against a real control
//! thread and store: every resource, each role's limits, bad input, token
//! revocation, the audit log, metrics and the OpenAPI document.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod alerts;
mod auth;
mod common;
mod detect;
mod follow;
mod intel;
mod learn;
mod maintenance;
mod openapi;
mod records;
mod resources;
mod robustness;
