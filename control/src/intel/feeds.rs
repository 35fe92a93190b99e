//! Feed files named in the config, read into one [`Intel`] and read again
//! when one of them changes.
//!
//! A file is foreign input and can be caught half-written, emptied by a
//! failed download or removed: each good version read is copied into the
//! state directory, and a file that cannot be read, or holds no entry at
//! all, is replaced by that copy (its status says so), so that a broken
//! download never lifts a block. A restart with a broken file also finds
//! the copy.
//!
//! Changes are noticed by polling each file's metadata (size, modification
//! time, inode): it works for files replaced by a rename, edited in place or
//! on a network filesystem, and costs a `stat` a feed every interval.

mod managed;
pub use managed::{
    EntryInput, ManagedDone, ManagedEntry, ManagedError, ManagedFeed, ManagedOp, MAX_CALL,
    MAX_CATEGORY, MAX_MANAGED,
};

use super::parse::{read_feed, Guard, Problems};
use super::{Action, Feed, Format, Indicator, Intel, IntelBuilder, Layer, Severity};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A feed file named in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSource {
    /// Unique; letters, digits, `-`, `_` and `.`.
    pub name: String,
    pub path: PathBuf,
    pub format: Format,
    pub action: Action,
    pub severity: Severity,
    /// Quarantine a workload that resolves or contacts one of its entries.
    pub quarantine: bool,
    /// Accept absurd entries (see [`Guard`]).
    pub force: bool,
    /// Made through the API (`managed`), not named in the config.
    pub managed: bool,
}

/// Why a feed source is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeedError {
    #[error("feed name {0:?}: use 1 to 64 letters, digits, '-', '_' or '.'")]
    Name(String),
    #[error("feed {0:?} is named twice")]
    Duplicate(String),
    #[error("{0} feeds: at most {max}", max = MAX_FEEDS)]
    TooMany(usize),
}

/// Feeds at most (a feed is an index of 16 bits in each entry).
pub const MAX_FEEDS: usize = 1024;

/// Checks the sources' names: unique, and usable as a file name for the
/// last good copy.
pub fn check_sources(sources: &[FeedSource]) -> Result<(), FeedError> {
    if sources.len() > MAX_FEEDS {
        return Err(FeedError::TooMany(sources.len()));
    }
    let mut seen = std::collections::HashSet::new();
    for s in sources {
        let ok = (1..=64).contains(&s.name.len())
            && !s.name.starts_with('.')
            && s.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            return Err(FeedError::Name(s.name.clone()));
        }
        if !seen.insert(s.name.as_str()) {
            return Err(FeedError::Duplicate(s.name.clone()));
        }
    }
    Ok(())
}

/// The networks no feed may list unless forced: the management
/// exceptions' networks of `model` and the appliance's own addresses
/// (`own`; unspecified ones are skipped).
pub fn protected(model: &crate::model::Model, own: &[std::net::IpAddr]) -> Vec<ipnet::IpNet> {
    let mut nets: Vec<ipnet::IpNet> = model
        .management
        .iter()
        .filter_map(|m| {
            let net = m.cidr.parse::<ipnet::IpNet>().ok();
            net.or_else(|| m.cidr.parse::<std::net::IpAddr>().ok().map(Into::into))
        })
        .map(|n| n.trunc())
        .collect();
    nets.extend(
        own.iter()
            .filter(|ip| !ip.is_unspecified())
            .map(|&ip| ipnet::IpNet::from(ip)),
    );
    nets
}

/// Where a feed's entries in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The file, as it is now.
    File,
    /// The last good copy: the file could not be read or held nothing.
    LastGood,
    /// Nothing: the file could not be read and no good copy exists.
    Nothing,
    /// A feed managed through the API: its entries as the API left them.
    Managed,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::File => "file",
            Origin::LastGood => "last-good",
            Origin::Nothing => "none",
            Origin::Managed => "api",
        }
    }
}

/// What the last load of a feed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedStatus {
    pub source: FeedSource,
    pub origin: Origin,
    /// Entries in force.
    pub entries: usize,
    /// Lines skipped in the version in force.
    pub problems: Problems,
    /// Why the file as it is now is not in force, if it is not.
    pub error: Option<String>,
    /// When the version in force was read, ms since the epoch.
    pub loaded_ms: Option<i64>,
}

/// One load of every feed.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub intel: Arc<Intel>,
    pub feeds: Vec<FeedStatus>,
    /// How long reading and building took.
    pub took_ms: f64,
    /// Entries this reading added to a feed read before (in this process,
    /// or as its last good copy before a restart), for retro-hunt: at most
    /// [`MAX_ADDED`], first read first.
    pub added: Vec<Indicator>,
    /// Added entries past [`MAX_ADDED`], not listed.
    pub added_over: usize,
}

/// Added entries listed per reading at most.
pub const MAX_ADDED: usize = 1000;

/// A file's identity and version, as `stat` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Fingerprint {
        len: m.len(),
        modified: m.modified().ok(),
        inode,
    })
}

/// Reads the feeds, and reads them again when one changed.
#[derive(Debug)]
pub struct Loader {
    sources: Vec<FeedSource>,
    /// Where the last good copies go (created when first needed).
    copies: PathBuf,
    /// Where the API-managed feeds are kept.
    managed: PathBuf,
    protected: Vec<ipnet::IpNet>,
    seen: Vec<Option<Fingerprint>>,
    status: Vec<FeedStatus>,
    /// The intel of the last load, for the entries' "added" times and
    /// what is new.
    last: Arc<Intel>,
    /// Feeds `last` holds a reading of (a feed never read has nothing
    /// "added": its first reading is its baseline).
    known: Vec<bool>,
}

impl Loader {
    /// A loader of `sources` (the config's feed files) and of the feeds
    /// managed through the API, that keeps its copies under
    /// `state_dir/intel`; `protected` are the appliance's own networks (see
    /// [`Guard`]).
    pub fn new(
        mut sources: Vec<FeedSource>,
        state_dir: &Path,
        protected: Vec<ipnet::IpNet>,
    ) -> Result<Loader, FeedError> {
        check_sources(&sources)?;
        let managed = managed::dir(state_dir);
        for m in managed::read_defs(&managed) {
            if sources.iter().any(|s| s.name == m.name) {
                eprintln!(
                    "bulkhead: intel: the API-managed feed {:?} is not loaded: the config names a feed file so",
                    m.name
                );
            } else if sources.len() < MAX_FEEDS {
                sources.push(m);
            }
        }
        let known = sources.iter().map(|s| s.managed).collect();
        let mut loader = Loader {
            seen: vec![None; sources.len()],
            status: Vec::new(),
            known,
            copies: state_dir.join("intel"),
            managed,
            protected,
            sources,
            last: Arc::default(),
        };
        loader.seed();
        Ok(loader)
    }

    /// What the feeds held before a restart: their last good copies, so
    /// that entries added while the appliance was down count as added.
    fn seed(&mut self) {
        let mut builders = self.builders();
        let mut next = [0u16; 2];
        for (i, source) in self.sources.iter().enumerate() {
            let layer = usize::from(source.managed);
            let feed = next[layer];
            next[layer] += 1;
            let copy = if source.managed {
                source.path.clone()
            } else {
                copy_path(&self.copies, &source.name)
            };
            let Ok(bytes) = std::fs::read(&copy) else {
                continue;
            };
            let guard = Guard {
                protected: self.protected.clone(),
                force: source.force,
            };
            // A managed feed's file says when each entry was added; a feed
            // file's copy, when it was saved.
            let saved = modified_ms(&copy).unwrap_or(0);
            let times = if source.managed {
                managed::added_times(&bytes)
            } else {
                Default::default()
            };
            read_feed(&bytes, source.format, &guard, |e| {
                let added = times.get(&e.indicator.to_string()).copied();
                builders[layer].add(e, feed, added.unwrap_or(saved));
            });
            if let Some(k) = self.known.get_mut(i) {
                *k = true;
            }
        }
        let [files, api] = builders.map(|b| Arc::new(b.layer()));
        self.last = Arc::new(Intel::layered(files, api));
    }

    /// Empty builders of the two layers: the feed files', the API's.
    fn builders(&self) -> [IntelBuilder; 2] {
        let feeds = |managed: bool| {
            self.sources
                .iter()
                .filter(|s| s.managed == managed)
                .map(|s| Feed {
                    name: s.name.clone(),
                    action: s.action,
                    severity: s.severity,
                    quarantine: s.quarantine,
                })
                .collect()
        };
        [
            IntelBuilder::new(feeds(false)),
            IntelBuilder::api(feeds(true)),
        ]
    }

    /// The networks no feed may list unless forced.
    pub fn set_protected(&mut self, protected: Vec<ipnet::IpNet>) {
        self.protected = protected;
    }

    /// Whether a feed file changed since it was last read (a file still
    /// missing has not): of the config's files, and of the API's.
    fn changed(&self) -> [bool; 2] {
        let mut changed = [false; 2];
        for (s, seen) in self.sources.iter().zip(&self.seen) {
            if fingerprint(&s.path) != *seen {
                changed[usize::from(s.managed)] = true;
            }
        }
        changed
    }

    /// Reads again the layers whose feeds changed (every feed if `always`,
    /// or before a first reading); `None` if none did.
    pub fn poll(&mut self, always: bool) -> Option<Loaded> {
        if always || self.status.is_empty() {
            return Some(self.load());
        }
        let [files, api] = self.changed();
        (files || api).then(|| self.read([files, api]))
    }

    /// Reads every feed into a new [`Intel`]. An entry listed by the last
    /// load too (same feed, same indicator) keeps its "added" time.
    pub fn load(&mut self) -> Loaded {
        self.read([true, true])
    }

    /// Reads the API-managed feeds again; the feed files' layer is kept as
    /// it is (however large, it costs nothing).
    pub fn load_managed(&mut self) -> Loaded {
        self.read([false, true])
    }

    /// Reads the feeds of the layers `reread` says (the files', the
    /// API's); the other layer and its feeds' status are kept.
    fn read(&mut self, reread: [bool; 2]) -> Loaded {
        let started = Instant::now();
        let now = crate::time::Timestamp::now().millis();
        let mut builders = self.builders();
        let mut next = [0u16; 2];
        let (mut added, mut added_over) = (Vec::new(), 0);
        let mut status = Vec::with_capacity(self.sources.len());
        for (i, source) in self.sources.iter().enumerate() {
            let layer = usize::from(source.managed);
            let feed = next[layer];
            next[layer] += 1;
            let previous = self.status.iter().find(|s| s.source.name == source.name);
            if !reread[layer] {
                status.extend(previous.cloned());
                continue;
            }
            let seen = fingerprint(&source.path);
            let guard = Guard {
                protected: self.protected.clone(),
                force: source.force,
            };
            let last = &self.last;
            let known = self.known.get(i).copied().unwrap_or(false);
            let builder = &mut builders[layer];
            let mut add = |entry: super::Entry, known_at: Option<i64>| {
                let since = match last.listed_exactly(&entry.indicator, &source.name) {
                    Some(t) => t,
                    None if known && added.len() < MAX_ADDED => {
                        added.push(entry.indicator.clone());
                        known_at.unwrap_or(now)
                    }
                    None if known => {
                        added_over += 1;
                        known_at.unwrap_or(now)
                    }
                    None => known_at.unwrap_or(now),
                };
                builder.add(entry, feed, since);
            };
            let st = if source.managed {
                managed::read_managed(source, &guard, now, &mut add)
            } else {
                read_one(source, &self.copies, &guard, previous, now, &mut add)
            };
            if let Some(slot) = self.seen.get_mut(i) {
                *slot = seen;
            }
            if let Some(k) = self.known.get_mut(i) {
                *k |= st.origin != Origin::Nothing;
            }
            status.push(st);
        }
        let [files, api] = builders;
        let layer = |b: IntelBuilder, again: bool, kept: &Arc<Layer>| {
            if again {
                Arc::new(b.layer())
            } else {
                kept.clone()
            }
        };
        let intel = Arc::new(Intel::layered(
            layer(files, reread[0], self.last.files()),
            layer(api, reread[1], self.last.api()),
        ));
        self.last = intel.clone();
        self.status = status.clone();
        Loaded {
            intel,
            feeds: status,
            took_ms: started.elapsed().as_secs_f64() * 1e3,
            added,
            added_over,
        }
    }
}

/// The last good copy of a feed.
fn copy_path(copies: &Path, name: &str) -> PathBuf {
    copies.join(format!("{name}.last-good"))
}

/// Reads one feed: the file, else its last good copy.
fn read_one(
    source: &FeedSource,
    copies: &Path,
    guard: &Guard,
    previous: Option<&FeedStatus>,
    now: i64,
    add: &mut impl FnMut(super::Entry, Option<i64>),
) -> FeedStatus {
    let copy = copy_path(copies, &source.name);
    let mut error = None;
    match std::fs::read(&source.path) {
        Ok(bytes) => {
            // A file of nothing but problems (a captive portal's HTML page,
            // a truncated download) is not a feed: nothing of it was added.
            let mut n = 0;
            let problems = read_feed(&bytes, source.format, guard, |e| {
                n += 1;
                add(e, None);
            });
            if n == 0 {
                error = Some(if problems.count > 0 {
                    format!(
                        "{}: no entry in it ({} lines refused)",
                        source.path.display(),
                        problems.count
                    )
                } else {
                    format!("{}: empty", source.path.display())
                });
            } else {
                let unchanged = std::fs::read(&copy).is_ok_and(|c| c == bytes);
                if !unchanged {
                    if let Err(e) = save_copy(copies, &copy, &bytes) {
                        error = Some(format!("last good copy {}: {e}", copy.display()));
                    }
                }
                return FeedStatus {
                    source: source.clone(),
                    origin: Origin::File,
                    entries: n,
                    problems,
                    error,
                    loaded_ms: Some(now),
                };
            }
        }
        Err(e) => error = Some(format!("{}: {e}", source.path.display())),
    }
    match std::fs::read(&copy) {
        Ok(bytes) => {
            let mut n = 0;
            let problems = read_feed(&bytes, source.format, guard, |e| {
                n += 1;
                add(e, None);
            });
            let loaded_ms = previous
                .filter(|p| p.origin != Origin::Nothing)
                .and_then(|p| p.loaded_ms)
                .or_else(|| modified_ms(&copy));
            FeedStatus {
                source: source.clone(),
                origin: Origin::LastGood,
                entries: n,
                problems,
                error,
                loaded_ms,
            }
        }
        Err(_) => FeedStatus {
            source: source.clone(),
            origin: Origin::Nothing,
            entries: 0,
            problems: Problems::default(),
            error,
            loaded_ms: None,
        },
    }
}

fn modified_ms(path: &Path) -> Option<i64> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// Writes the copy whole or not at all (a temporary file renamed over it).
fn save_copy(dir: &Path, copy: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = copy.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, copy)
}
