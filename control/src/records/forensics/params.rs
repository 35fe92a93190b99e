//! The forensic queries' parameters as text (a query string, a command
//! line), checked here once for the API and the command line alike.

use super::traceback::{DEFAULT_WORKLOADS, MAX_WORKLOADS};
use super::{Target, TracebackCursor, TracebackPage};
use crate::records::filter::{parse_time, ParamError};
use crate::records::WindowParams;
use dataplane::wire::MacAddr;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A default window: the last 7 days.
const DEFAULT_DAYS: i64 = 7;
const DAY_MS: i64 = 86_400_000;

fn window(
    since: &Option<String>,
    until: &Option<String>,
    now_ms: i64,
) -> Result<(i64, i64), ParamError> {
    WindowParams {
        since: since.clone(),
        until: until.clone(),
    }
    .window(now_ms, now_ms - DEFAULT_DAYS * DAY_MS)
}

fn required<'a>(v: &'a Option<String>, field: &'static str) -> Result<&'a str, ParamError> {
    v.as_deref().ok_or(ParamError {
        field,
        message: format!("{field} is required"),
    })
}

/// `traceback` as text.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct TracebackParams {
    /// A domain (matches itself and every name under it; `=name` itself
    /// only), an IP address or a CIDR.
    #[cfg_attr(feature = "openapi", param(required = true))]
    pub target: Option<String>,
    /// The window's start: RFC 3339, or an age like `7d` (default 7d).
    pub since: Option<String>,
    /// The window's end: RFC 3339, or an age (default now).
    pub until: Option<String>,
    /// Workloads listed at most, 1 to 1000 (default 25), first seen first.
    #[cfg_attr(feature = "openapi", param(pattern = "^[0-9]{1,4}$"))]
    pub limit: Option<String>,
    /// Continue after this workload: the `next` of a previous answer.
    pub cursor: Option<String>,
}

impl TracebackParams {
    pub fn query(&self, now_ms: i64) -> Result<(Target, i64, i64, TracebackPage), ParamError> {
        let target = required(&self.target, "target")?
            .parse::<Target>()
            .map_err(|message| ParamError {
                field: "target",
                message,
            })?;
        let (since, until) = window(&self.since, &self.until, now_ms)?;
        let limit = match self.limit.as_deref() {
            None => DEFAULT_WORKLOADS,
            Some(l) => l
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_WORKLOADS).contains(n))
                .ok_or(ParamError {
                    field: "limit",
                    message: format!("a number of workloads from 1 to {MAX_WORKLOADS}"),
                })?,
        };
        let after = self
            .cursor
            .as_deref()
            .map(str::parse::<TracebackCursor>)
            .transpose()
            .map_err(|message| ParamError {
                field: "cursor",
                message,
            })?;
        Ok((target, since, until, TracebackPage { limit, after }))
    }
}

/// `blast-radius` as text.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct BlastParams {
    /// The workload's MAC.
    #[cfg_attr(
        feature = "openapi",
        param(
            required = true,
            pattern = "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$|^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5}$"
        )
    )]
    pub mac: Option<String>,
    /// From when its reach counts: RFC 3339, or an age (default 7d).
    pub since: Option<String>,
    /// The window's end (default now).
    pub until: Option<String>,
    /// Hops at most, 1 to 10 (default 3).
    #[cfg_attr(feature = "openapi", param(pattern = "^[0-9]{1,2}$"))]
    pub depth: Option<String>,
}

impl BlastParams {
    pub fn query(&self, now_ms: i64) -> Result<(MacAddr, i64, i64, u32), ParamError> {
        let mac = required(&self.mac, "mac")?
            .parse::<MacAddr>()
            .map_err(|e| ParamError {
                field: "mac",
                message: format!("not a MAC address: {e}"),
            })?;
        let depth = match self.depth.as_deref() {
            None => 3,
            Some(d) => d
                .parse::<u32>()
                .ok()
                .filter(|d| (1..=super::MAX_DEPTH).contains(d))
                .ok_or(ParamError {
                    field: "depth",
                    message: format!("a depth from 1 to {}", super::MAX_DEPTH),
                })?,
        };
        let (since, until) = window(&self.since, &self.until, now_ms)?;
        Ok((mac, since, until, depth))
    }
}

/// `addresses` as text.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct AddressParams {
    /// The address.
    #[cfg_attr(feature = "openapi", param(required = true))]
    pub ip: Option<String>,
    /// The holder at this time (RFC 3339 or an age) instead of all of them.
    pub at: Option<String>,
    /// The window's start (default 7d; with `at`, 400 days before it).
    pub since: Option<String>,
    /// The window's end (default now; with `at`, a day after it).
    pub until: Option<String>,
}

impl AddressParams {
    pub fn query(&self, now_ms: i64) -> Result<(IpAddr, Option<i64>, i64, i64), ParamError> {
        let ip = required(&self.ip, "ip")?
            .trim()
            .parse::<IpAddr>()
            .map_err(|_| ParamError {
                field: "ip",
                message: "not an IP address".into(),
            })?;
        let at = self
            .at
            .as_deref()
            .map(|t| parse_time(t, now_ms))
            .transpose()
            .map_err(|message| ParamError {
                field: "at",
                message,
            })?;
        let (since, until) = match (at, &self.since, &self.until) {
            (Some(at), None, None) => (
                at.saturating_sub(crate::records::MAX_WINDOW_DAYS * DAY_MS - DAY_MS),
                at.saturating_add(DAY_MS),
            ),
            _ => window(&self.since, &self.until, now_ms)?,
        };
        Ok((ip, at, since, until))
    }
}
