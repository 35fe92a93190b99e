//! The DNS responses kept raw, newest first: by name (and the names under
//! it), by client, by response code (a burst of NXDOMAIN is how a domain
//! generation algorithm looks).

use super::traceback::{read_resolution, RESOLUTION_COLUMNS};
use super::traced::Resolution;
use crate::records::dns_rows::reversed;
use crate::records::filter::ParamError;
use crate::records::{mac_int, RecordsError, RecordsReader, WindowParams, MAX_LIMIT};
use dataplane::wire::MacAddr;
use serde::{Deserialize, Serialize};

/// `dns` as text.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct DnsParams {
    /// A name and the names under it (`=name`: that name only).
    pub domain: Option<String>,
    /// The client's MAC.
    #[cfg_attr(
        feature = "openapi",
        param(
            pattern = "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$|^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5}$"
        )
    )]
    pub client: Option<String>,
    /// `noerror`, `nxdomain`, `servfail`, `refused` or a number 0-4095.
    pub rcode: Option<String>,
    /// The window's start: RFC 3339 or an age (default 24h).
    pub since: Option<String>,
    /// The window's end (default now).
    pub until: Option<String>,
    /// Rows at most: default 100; more than 10000 is taken as 10000.
    #[cfg_attr(feature = "openapi", param(pattern = "^[0-9]+$"))]
    pub limit: Option<String>,
}

/// [`DnsParams`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuery {
    /// The name and whether only itself.
    pub name: Option<(String, bool)>,
    pub client: Option<MacAddr>,
    pub rcode: Option<u16>,
    pub since_ms: i64,
    pub until_ms: i64,
    pub limit: usize,
}

fn bad(field: &'static str, message: impl Into<String>) -> ParamError {
    ParamError {
        field,
        message: message.into(),
    }
}

impl DnsParams {
    pub fn query(&self, now_ms: i64) -> Result<DnsQuery, ParamError> {
        let name = match self.domain.as_deref() {
            None => None,
            Some(n) => match n.parse::<super::Target>() {
                Ok(super::Target::Domain { name, exact }) => Some((name, exact)),
                Ok(super::Target::Net(_)) => {
                    return Err(bad("domain", "a name, not an address (see traceback)"))
                }
                Err(e) => return Err(bad("domain", e)),
            },
        };
        let client = self
            .client
            .as_deref()
            .map(|m| m.parse::<MacAddr>())
            .transpose()
            .map_err(|e| bad("client", format!("not a MAC address: {e}")))?;
        let rcode =
            match self.rcode.as_deref().map(str::trim) {
                None => None,
                Some("noerror") => Some(0),
                Some("servfail") => Some(2),
                Some("nxdomain") => Some(3),
                Some("refused") => Some(5),
                Some(n) => Some(n.parse::<u16>().ok().filter(|n| *n < 4096).ok_or_else(|| {
                    bad("rcode", "noerror, nxdomain, servfail, refused or 0-4095")
                })?),
            };
        let (since_ms, until_ms) = WindowParams {
            since: self.since.clone(),
            until: self.until.clone(),
        }
        .window(now_ms, now_ms - 86_400_000)?;
        let limit = match self.limit.as_deref() {
            None => 100,
            Some(l) => l
                .trim()
                .parse::<usize>()
                .map_err(|_| bad("limit", "a number"))?
                .clamp(1, MAX_LIMIT),
        };
        Ok(DnsQuery {
            name,
            client,
            rcode,
            since_ms,
            until_ms,
            limit,
        })
    }
}

impl RecordsReader {
    /// The raw DNS responses matching `q`, newest first.
    pub fn dns(&self, q: &DnsQuery) -> Result<Vec<Resolution>, RecordsError> {
        let mut cond = String::from("time_ms BETWEEN ?1 AND ?2");
        let mut args: Vec<rusqlite::types::Value> = vec![q.since_ms.into(), q.until_ms.into()];
        let mut by_client = String::new();
        if let Some(mac) = q.client {
            args.push(mac_int(mac).into());
            cond += &format!(" AND client_mac = ?{}", args.len());
            by_client = format!(" AND client_mac = ?{}", args.len());
        }
        if let Some(rcode) = q.rcode {
            args.push(i64::from(rcode).into());
            cond += &format!(" AND rcode = ?{}", args.len());
        }
        if let Some((name, exact)) = &q.name {
            // The names asked that match, from passive DNS (an index range),
            // then their responses by the raw table's name index.
            let names = self.asked_names(name, *exact, q.since_ms, q.until_ms)?;
            if names.is_empty() {
                return Ok(Vec::new());
            }
            let first = args.len() + 1;
            let marks: Vec<String> = (first..first + names.len())
                .map(|i| format!("?{i}"))
                .collect();
            args.extend(names.into_iter().map(rusqlite::types::Value::from));
            cond += &format!(
                " AND id IN (SELECT id FROM dns_names WHERE name_id IN ({}){by_client}
                 AND time_ms BETWEEN ?1 AND ?2)",
                marks.join(", ")
            );
        }
        args.push(i64::try_from(q.limit).unwrap_or(i64::MAX).into());
        let mut stmt = self.conn().prepare(&format!(
            "SELECT {RESOLUTION_COLUMNS} FROM dns WHERE {cond}
             ORDER BY time_ms DESC, id DESC LIMIT ?{}",
            args.len()
        ))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), read_resolution)?
            .collect::<Result<Vec<_>, _>>()?;
        self.with_identities(rows)
    }

    /// The ids of the names asked in the window that are `name` or under it.
    fn asked_names(
        &self,
        name: &str,
        exact: bool,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<i64>, RecordsError> {
        let r = reversed(name);
        let under = format!("{r}.");
        let mut stmt = self.conn().prepare_cached(
            "SELECT DISTINCT n.rname, p.qname_id FROM names n CROSS JOIN pdns p ON p.name_id = n.id
             WHERE n.rname >= ?1 AND n.rname < ?2 AND p.last_ms >= ?3 AND p.first_ms <= ?4",
        )?;
        let rows = stmt.query_map(
            rusqlite::params![r, format!("{r}/"), since_ms, until_ms],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
        )?;
        let mut names = std::collections::BTreeSet::new();
        for row in rows {
            let (rname, qname) = row?;
            if rname == r || (!exact && rname.starts_with(&under)) {
                names.insert(qname);
            }
        }
        // SQLite's limit on host parameters is 32766: far above a name's.
        Ok(names.into_iter().take(10_000).collect())
    }
}
