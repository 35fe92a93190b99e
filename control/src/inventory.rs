//! Importing workloads from an inventory, as exported from vCenter or OpenStack.
//!
//! - CSV: `mac,name,labels` with labels as `k=v;k=v`. A first row whose first
//!   field is `mac` is a header, and then columns are found by name (`mac`, `name`,
//!   `labels`; others are ignored). `#` starts a comment line.
//! - JSON: an array of `{"mac": ..., "name": ..., "labels": {"k": "v"}, "ips": [...]}`
//!   (label values may be strings, numbers or booleans; other fields are ignored).
//!
//! Every bad entry is reported with its line, not just the first.

use crate::load::line_col;
use crate::model::{Model, Origin, Workload};
use crate::validate::label_key_problem;
use dataplane::policy::parse_mac;
use dataplane::wire::MacAddr;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// One bad line of an inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// Why an inventory could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: unsupported inventory type (expected .csv or .json)", path.display())]
    UnknownFormat { path: PathBuf },
    /// Every bad line, displayed as `file:line: message`, one per line.
    #[error("{}", render(file, problems))]
    Invalid {
        file: String,
        problems: Vec<LineProblem>,
    },
}

fn render(file: &str, problems: &[LineProblem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{file}:{}: {}", p.line, p.message));
    }
    out
}

/// What an import did to a model's workloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} added, {} updated, {} unchanged",
            self.added, self.updated, self.unchanged
        )
    }
}

/// Loads an inventory file: CSV for `.csv`, JSON for `.json`.
pub fn load_inventory(path: &Path) -> Result<Vec<Workload>, ImportError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let parse: fn(&str, &str) -> Result<Vec<Workload>, ImportError> = match ext.as_deref() {
        Some("csv") => parse_csv,
        Some("json") => parse_json,
        _ => {
            return Err(ImportError::UnknownFormat {
                path: path.to_path_buf(),
            })
        }
    };
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Collects entries and problems; checks each entry and MACs across entries.
#[derive(Default)]
struct Collector {
    out: Vec<Workload>,
    problems: Vec<LineProblem>,
    seen: HashMap<MacAddr, usize>,
}

impl Collector {
    fn err(&mut self, line: usize, message: impl Into<String>) {
        self.problems.push(LineProblem {
            line,
            message: message.into(),
        });
    }

    fn entry(
        &mut self,
        line: usize,
        mac: &str,
        name: &str,
        labels: BTreeMap<String, String>,
        ips: Vec<String>,
    ) {
        let before = self.problems.len();
        let parsed = parse_mac(mac);
        match parsed {
            None => self.err(line, format!("invalid MAC {:?}", mac.trim())),
            Some(m) => {
                if let Some(prev) = self.seen.insert(m, line) {
                    self.err(
                        line,
                        format!("duplicate MAC {:?} (also line {prev})", mac.trim()),
                    );
                }
            }
        }
        for k in labels.keys() {
            if let Some(msg) = label_key_problem(k) {
                self.err(line, msg);
            }
        }
        for ip in &ips {
            if ip.trim().parse::<IpAddr>().is_err() {
                self.err(line, format!("invalid IP address {ip:?}"));
            }
        }
        if let (Some(m), true) = (parsed, self.problems.len() == before) {
            self.out.push(Workload {
                mac: m.to_string(),
                name: name.trim().to_string(),
                labels,
                ips,
                origin: Origin::Imported,
                ..Workload::default()
            });
        }
    }

    fn finish(self, file: &str) -> Result<Vec<Workload>, ImportError> {
        if self.problems.is_empty() {
            Ok(self.out)
        } else {
            Err(ImportError::Invalid {
                file: file.to_string(),
                problems: self.problems,
            })
        }
    }
}

/// Parses `k=v;k=v` (empty parts are skipped).
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("bad label {part:?} (expected key=value)"))?;
        let (k, v) = (k.trim(), v.trim());
        if let Some(m) = label_key_problem(k) {
            return Err(m);
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("label {k:?} given twice"));
        }
    }
    Ok(out)
}

/// Parses a CSV inventory; errors name `file` and the line.
pub fn parse_csv(text: &str, file: &str) -> Result<Vec<Workload>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut c = Collector::default();
    // Column of mac, name, labels; positional unless a header names them.
    let mut cols: (usize, Option<usize>, Option<usize>) = (0, Some(1), Some(2));
    let mut header = false;
    let mut first = true;
    for rec in reader.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                c.err(line, format!("unreadable CSV: {e}"));
                if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    continue;
                }
                break;
            }
        };
        let line = rec.position().map_or(0, |p| p.line() as usize);
        if rec.iter().all(str::is_empty) {
            continue;
        }
        if std::mem::take(&mut first) && rec.get(0).is_some_and(|f| f.eq_ignore_ascii_case("mac")) {
            let find = |n: &str| rec.iter().position(|f| f.eq_ignore_ascii_case(n));
            cols = (0, find("name"), find("labels"));
            header = true;
            continue;
        }
        if !header && rec.len() > 3 {
            c.err(
                line,
                format!("{} fields: expected mac,name,labels", rec.len()),
            );
            continue;
        }
        let field = |i: Option<usize>| i.and_then(|i| rec.get(i)).unwrap_or("");
        let labels = match parse_labels(field(cols.2)) {
            Ok(l) => l,
            Err(m) => {
                c.err(line, m);
                continue;
            }
        };
        c.entry(line, field(Some(cols.0)), field(cols.1), labels, Vec::new());
    }
    c.finish(file)
}

#[derive(Deserialize)]
struct JsonEntry {
    mac: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    ips: Vec<String>,
}

/// Parses a JSON inventory (an array of entries); errors name `file` and the line
/// where the bad entry starts.
pub fn parse_json(text: &str, file: &str) -> Result<Vec<Workload>, ImportError> {
    let mut c = Collector::default();
    let bytes = text.as_bytes();
    let skip_ws = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let line = |at: usize| line_col(text, at).0;
    let mut pos = skip_ws(0);
    if bytes.get(pos) != Some(&b'[') {
        c.err(line(pos), "expected a JSON array of {mac, name, labels}");
        return c.finish(file);
    }
    pos = skip_ws(pos + 1);
    if bytes.get(pos) == Some(&b']') {
        pos = skip_ws(pos + 1);
    } else {
        loop {
            let at = line(pos);
            let rest = text.get(pos..).unwrap_or("");
            let mut stream =
                serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
            match stream.next() {
                Some(Ok(v)) => {
                    pos = skip_ws(pos + stream.byte_offset());
                    json_entry(&mut c, at, v);
                }
                Some(Err(e)) => {
                    c.err(
                        at + e.line().saturating_sub(1),
                        format!("invalid JSON: {e}"),
                    );
                    return c.finish(file);
                }
                None => {
                    c.err(at, "unexpected end of file: the array is not closed");
                    return c.finish(file);
                }
            }
            match bytes.get(pos) {
                Some(b',') => pos = skip_ws(pos + 1),
                Some(b']') => {
                    pos = skip_ws(pos + 1);
                    break;
                }
                _ => {
                    c.err(line(pos), "expected ',' or ']' after an entry");
                    return c.finish(file);
                }
            }
        }
    }
    if pos < bytes.len() {
        c.err(line(pos), "trailing characters after the array");
    }
    c.finish(file)
}

fn json_entry(c: &mut Collector, line: usize, v: serde_json::Value) {
    let e: JsonEntry = match serde_json::from_value(v) {
        Ok(e) => e,
        Err(e) => return c.err(line, format!("bad entry: {e}")),
    };
    let mut labels = BTreeMap::new();
    for (k, v) in e.labels {
        let v = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            other => return c.err(line, format!("label {k:?}: value {other} is not a string")),
        };
        labels.insert(k, v);
    }
    c.entry(line, &e.mac, &e.name, labels, e.ips);
}

impl Model {
    /// Adds or updates workloads from an inventory. An entry for a known MAC replaces
    /// its name (when given) and labels and adds its addresses; an observed workload
    /// becomes imported (the assignment rules no longer relabel it).
    pub fn import_workloads(&mut self, entries: Vec<Workload>) -> ImportSummary {
        let mut s = ImportSummary::default();
        for e in entries {
            let Some(mac) = parse_mac(&e.mac) else {
                continue;
            };
            match self.workloads.by_mac_mut(mac) {
                None => {
                    self.workloads.push(e);
                    s.added += 1;
                }
                Some(w) => {
                    let before = w.clone();
                    if !e.name.is_empty() {
                        w.name = e.name;
                    }
                    w.labels = e.labels;
                    for ip in e.ips {
                        if !w.ips.contains(&ip) {
                            w.ips.push(ip);
                        }
                    }
                    if w.origin == Origin::Observed {
                        w.origin = Origin::Imported;
                    }
                    if *w == before {
                        s.unchanged += 1;
                    } else {
                        s.updated += 1;
                    }
                }
            }
        }
        s
    }
}
