//! Feeds managed through the API, beside the config's feed files: their
//! definitions in `intel/managed/feeds.json` and their entries in one CSV
//! file each (`intel/managed/NAME.csv`: indicator, category, severity and
//! when it was added, ms since the epoch, which the feed reader skips)
//! under the state directory, read by the [`Loader`] like any feed file.
//!
//! Only the feed watcher's thread changes them (the API's calls are handed
//! to it, one at a time), so nothing is locked; each file is written whole
//! (a temporary file renamed over it), entries first, definitions last, so
//! a crash leaves the old version or the new one.

use super::{FeedError, FeedSource, Loader, Origin};
use crate::intel::parse::{parse_feed, parse_indicator, Guard};
use crate::intel::{Action, Entry, Format, Severity};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Entries one call may add or remove at most.
pub const MAX_CALL: usize = 10_000;
/// Entries a managed feed holds at most (a bigger list is a feed file).
pub const MAX_MANAGED: usize = 1_000_000;
/// A category's length at most.
pub const MAX_CATEGORY: usize = 64;

/// A managed feed's entry and when it was added (`None`: a file written
/// before the time was kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedEntry {
    pub entry: Entry,
    pub added_ms: Option<i64>,
}

/// When each entry of a managed feed's file was added, by its indicator
/// as written: the fourth column.
pub(super) fn added_times(bytes: &[u8]) -> HashMap<String, i64> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    reader
        .records()
        .filter_map(Result::ok)
        .filter_map(|r| Some((r.get(0)?.to_string(), r.get(3)?.parse().ok()?)))
        .collect()
}

/// A feed the API made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedFeed {
    pub name: String,
    pub action: Action,
    pub severity: Severity,
    pub quarantine: bool,
    pub force: bool,
}

/// A feed as `feeds.json` keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct Def {
    name: String,
    action: String,
    severity: String,
    #[serde(default)]
    quarantine: bool,
    #[serde(default)]
    force: bool,
}

/// An entry to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInput {
    pub indicator: String,
    pub category: Option<String>,
    /// `None`: the feed's.
    pub severity: Option<Severity>,
}

/// A change to the managed feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedOp {
    Create(ManagedFeed),
    Delete(String),
    Add {
        feed: String,
        entries: Vec<EntryInput>,
    },
    Remove {
        feed: String,
        indicators: Vec<String>,
    },
}

/// What a change did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedDone {
    pub added: usize,
    /// Listed already (left as they were).
    pub already: usize,
    pub removed: usize,
    /// Entries refused, with why.
    pub refused: Vec<(String, String)>,
    /// Indicators to remove that the feed does not list.
    pub not_found: Vec<String>,
    /// The generation that put the feeds as changed in force (set by the
    /// watcher once it is published).
    pub generation: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    #[error("no feed {0:?}")]
    NoFeed(String),
    #[error("feed {0:?} is read from a file named in the config: edit that file")]
    NotManaged(String),
    #[error("feed {0:?} exists")]
    Exists(String),
    #[error("{0}")]
    Name(#[from] FeedError),
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the feed watcher is not running")]
    NotRunning,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ManagedError + '_ {
    move |source| ManagedError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the managed feeds live.
pub(super) fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("intel").join("managed")
}

fn defs_path(dir: &Path) -> PathBuf {
    dir.join("feeds.json")
}

/// The managed feeds' sources as kept; a file that does not read is
/// reported and taken as none (the config's feeds still load).
pub(super) fn read_defs(dir: &Path) -> Vec<FeedSource> {
    let path = defs_path(dir);
    let defs: Vec<Def> = match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(d) => d,
            Err(e) => {
                eprintln!(
                    "bulkhead: {}: not read ({e}): no API-managed feed",
                    path.display()
                );
                Vec::new()
            }
        },
        Err(_) => Vec::new(),
    };
    defs.into_iter()
        .filter_map(|d| {
            let feed = ManagedFeed {
                action: d.action.parse().ok()?,
                severity: d.severity.parse().ok()?,
                name: d.name,
                quarantine: d.quarantine,
                force: d.force,
            };
            Some(source(dir, feed))
        })
        .collect()
}

fn source(dir: &Path, d: ManagedFeed) -> FeedSource {
    FeedSource {
        path: dir.join(format!("{}.csv", d.name)),
        name: d.name,
        format: Format::Csv,
        action: d.action,
        severity: d.severity,
        quarantine: d.quarantine,
        force: d.force,
        managed: true,
    }
}

/// Writes `bytes` whole or not at all.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), ManagedError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// A managed feed's entries as a CSV file; an entry without a time gets
/// `now`.
fn csv_bytes(entries: &[ManagedEntry], now: i64) -> Result<Vec<u8>, ManagedError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let bad = |e: csv::Error| ManagedError::Invalid(e.to_string());
    w.write_record(["indicator", "category", "severity", "added_ms"])
        .map_err(bad)?;
    for ManagedEntry { entry: e, added_ms } in entries {
        let severity = e.severity.map(|s| s.to_string()).unwrap_or_default();
        w.write_record([
            e.indicator.to_string().as_str(),
            e.category.as_deref().unwrap_or(""),
            severity.as_str(),
            added_ms.unwrap_or(now).to_string().as_str(),
        ])
        .map_err(bad)?;
    }
    w.into_inner()
        .map_err(|e| ManagedError::Invalid(e.to_string()))
}

/// A category as given: trimmed, printable, at most [`MAX_CATEGORY`].
fn category(c: Option<&str>) -> Result<Option<String>, String> {
    let Some(c) = c.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    if c.chars().count() > MAX_CATEGORY || c.chars().any(char::is_control) {
        return Err(format!(
            "category: at most {MAX_CATEGORY} printable characters"
        ));
    }
    Ok(Some(c.to_string()))
}

impl Loader {
    /// The feed named `name`, if the API manages it.
    fn managed_index(&self, name: &str) -> Result<usize, ManagedError> {
        match self.sources.iter().position(|s| s.name == name) {
            Some(i) if self.sources[i].managed => Ok(i),
            Some(_) => Err(ManagedError::NotManaged(name.to_string())),
            None => Err(ManagedError::NoFeed(name.to_string())),
        }
    }

    fn save_defs(&self) -> Result<(), ManagedError> {
        let defs: Vec<Def> = self
            .sources
            .iter()
            .filter(|s| s.managed)
            .map(|s| Def {
                name: s.name.clone(),
                action: s.action.name().to_string(),
                severity: s.severity.to_string(),
                quarantine: s.quarantine,
                force: s.force,
            })
            .collect();
        let bytes =
            serde_json::to_vec_pretty(&defs).map_err(|e| ManagedError::Invalid(e.to_string()))?;
        write_whole(&defs_path(&self.managed), &bytes)
    }

    /// A managed feed's entries as its file holds them.
    fn managed_entries(&self, i: usize) -> Result<Vec<ManagedEntry>, ManagedError> {
        let s = &self.sources[i];
        let bytes = match std::fs::read(&s.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&s.path)(e)),
        };
        // Entries were checked when added: read them back as they are.
        let guard = Guard {
            protected: Vec::new(),
            force: true,
        };
        let added = added_times(&bytes);
        Ok(parse_feed(&bytes, Format::Csv, &guard)
            .entries
            .into_iter()
            .map(|entry| ManagedEntry {
                added_ms: added.get(&entry.indicator.to_string()).copied(),
                entry,
            })
            .collect())
    }

    /// Applies a change to the managed feeds' files; the caller reads the
    /// feeds again ([`Loader::load`]) to put it in force.
    pub fn manage(&mut self, op: ManagedOp) -> Result<ManagedDone, ManagedError> {
        let mut done = ManagedDone::default();
        let now = crate::time::Timestamp::now().millis();
        match op {
            ManagedOp::Create(feed) => {
                if self.sources.iter().any(|s| s.name == feed.name) {
                    return Err(ManagedError::Exists(feed.name));
                }
                let s = source(&self.managed, feed);
                let mut all = self.sources.clone();
                all.push(s.clone());
                super::check_sources(&all)?;
                write_whole(&s.path, &csv_bytes(&[], now)?)?;
                self.sources.push(s);
                self.seen.push(None);
                // A new feed is known from the start: what is added to it
                // later is hunted.
                self.known.push(true);
                if let Err(e) = self.save_defs() {
                    self.drop_source(self.sources.len() - 1);
                    return Err(e);
                }
            }
            ManagedOp::Delete(name) => {
                let i = self.managed_index(&name)?;
                let path = self.sources[i].path.clone();
                let removed = self.drop_source(i);
                if let Err(e) = self.save_defs() {
                    self.restore_source(i, removed);
                    return Err(e);
                }
                let _ = std::fs::remove_file(&path);
            }
            ManagedOp::Add { feed, entries } => {
                let i = self.managed_index(&feed)?;
                if entries.len() > MAX_CALL {
                    return Err(ManagedError::Invalid(format!(
                        "{} entries: at most {MAX_CALL} a call",
                        entries.len()
                    )));
                }
                let guard = Guard {
                    protected: self.protected.clone(),
                    force: self.sources[i].force,
                };
                let mut held = self.managed_entries(i)?;
                let mut listed: HashSet<String> =
                    held.iter().map(|e| e.entry.indicator.to_string()).collect();
                for input in entries {
                    let parsed = parse_indicator(&input.indicator, &guard)
                        .and_then(|ind| Ok((ind, category(input.category.as_deref())?)));
                    match parsed {
                        Err(why) => done.refused.push((input.indicator, why)),
                        Ok((indicator, category)) => {
                            if !listed.insert(indicator.to_string()) {
                                done.already += 1;
                            } else if held.len() >= MAX_MANAGED {
                                done.refused.push((
                                    input.indicator,
                                    format!(
                                        "the feed holds {MAX_MANAGED} entries: use a feed file"
                                    ),
                                ));
                            } else {
                                held.push(ManagedEntry {
                                    entry: Entry {
                                        indicator,
                                        category,
                                        severity: input.severity,
                                    },
                                    added_ms: Some(now),
                                });
                                done.added += 1;
                            }
                        }
                    }
                }
                if done.added > 0 {
                    write_whole(&self.sources[i].path, &csv_bytes(&held, now)?)?;
                }
            }
            ManagedOp::Remove { feed, indicators } => {
                let i = self.managed_index(&feed)?;
                if indicators.len() > MAX_CALL {
                    return Err(ManagedError::Invalid(format!(
                        "{} entries: at most {MAX_CALL} a call",
                        indicators.len()
                    )));
                }
                let any = Guard {
                    protected: Vec::new(),
                    force: true,
                };
                let mut gone = HashSet::new();
                for text in indicators {
                    match parse_indicator(&text, &any) {
                        Ok(ind) => {
                            gone.insert(ind.to_string());
                        }
                        Err(why) => done.refused.push((text, why)),
                    }
                }
                let mut held = self.managed_entries(i)?;
                let before = held.len();
                let mut found = HashSet::new();
                held.retain(|e| {
                    let key = e.entry.indicator.to_string();
                    let drop = gone.contains(&key);
                    if drop {
                        found.insert(key);
                    }
                    !drop
                });
                done.removed = before - held.len();
                let mut not_found: Vec<String> = gone.difference(&found).cloned().collect();
                not_found.sort();
                done.not_found = not_found;
                if done.removed > 0 {
                    write_whole(&self.sources[i].path, &csv_bytes(&held, now)?)?;
                }
            }
        }
        Ok(done)
    }

    /// Takes the source at `i` out of the loader's lists.
    fn drop_source(&mut self, i: usize) -> (FeedSource, bool) {
        self.seen.remove(i);
        self.status
            .retain(|s| s.source.name != self.sources[i].name);
        (self.sources.remove(i), self.known.remove(i))
    }

    fn restore_source(&mut self, i: usize, (source, known): (FeedSource, bool)) {
        self.sources.insert(i, source);
        self.seen.insert(i, None);
        self.known.insert(i, known);
    }

    /// A managed feed's entries, `offset` on, `limit` of them, and how
    /// many it holds.
    pub fn managed_list(
        &self,
        name: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<ManagedEntry>, usize), ManagedError> {
        let i = self.managed_index(name)?;
        let all = self.managed_entries(i)?;
        let total = all.len();
        Ok((all.into_iter().skip(offset).take(limit).collect(), total))
    }
}

/// Reads a managed feed's file: an empty feed is a feed (no error, no last
/// good copy: the file is the appliance's own).
pub(super) fn read_managed(
    source: &FeedSource,
    guard: &Guard,
    now: i64,
    add: &mut impl FnMut(Entry, Option<i64>),
) -> super::FeedStatus {
    let (bytes, error) = match std::fs::read(&source.path) {
        Ok(b) => (b, None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), None),
        Err(e) => (Vec::new(), Some(format!("{}: {e}", source.path.display()))),
    };
    let times = added_times(&bytes);
    let mut n = 0;
    let problems = crate::intel::parse::read_feed(&bytes, Format::Csv, guard, |e| {
        n += 1;
        let at = times.get(&e.indicator.to_string()).copied();
        add(e, at);
    });
    super::FeedStatus {
        source: source.clone(),
        origin: if error.is_some() {
            Origin::Nothing
        } else {
            Origin::Managed
        },
        entries: n,
        problems,
        error,
        loaded_ms: Some(now),
    }
}
