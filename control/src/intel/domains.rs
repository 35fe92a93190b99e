//! Listed domains, matched as traceback matches them: a listed domain
//! matches itself and every name under it.
//!
//! A million names in a hash map of strings cost ~60 bytes each; here they
//! are one sorted run of reversed names (`com.example.c2`) with an offset
//! and an entry id each (~8 bytes plus the name), and a name is looked up
//! by bisection once per label boundary (a handful of searches).

use dataplane::intel::EntryId;

/// Listed domains, each with the entry that listed it.
#[derive(Debug, Default)]
pub struct DomainSet {
    /// The reversed names, sorted, concatenated.
    names: String,
    /// Where each name starts in `names` (it ends where the next starts).
    starts: Vec<u32>,
    ids: Vec<EntryId>,
}

/// `c2.example.com` as `com.example.c2`: names under one domain sort
/// together, after it.
pub fn reversed(name: &str) -> String {
    let mut labels: Vec<&str> = name.split('.').collect();
    labels.reverse();
    labels.join(".")
}

impl DomainSet {
    /// The set of `entries` (names as [`super::parse::domain`] gives them).
    /// A name listed twice keeps the first entry that listed it.
    pub fn new(entries: impl IntoIterator<Item = (String, EntryId)>) -> DomainSet {
        let mut all: Vec<(String, EntryId)> = entries
            .into_iter()
            .map(|(name, id)| (reversed(&name), id))
            .collect();
        // Stable: of equal names the first entry comes first, and stays.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.dedup_by(|b, a| a.0 == b.0);
        let total: usize = all.iter().map(|(n, _)| n.len()).sum();
        let mut set = DomainSet {
            names: String::with_capacity(total),
            starts: Vec::with_capacity(all.len() + 1),
            ids: Vec::with_capacity(all.len()),
        };
        for (name, id) in all {
            set.starts.push(set.names.len() as u32);
            set.names.push_str(&name);
            set.ids.push(id);
        }
        set.starts.push(set.names.len() as u32);
        set
    }

    fn name(&self, i: usize) -> &str {
        let (a, b) = (self.starts[i] as usize, self.starts[i + 1] as usize);
        &self.names[a..b]
    }

    fn find(&self, reversed: &str) -> Option<EntryId> {
        let (mut lo, mut hi) = (0, self.ids.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.name(mid).cmp(reversed) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.ids[mid]),
            }
        }
        None
    }

    /// The entry that lists `name` (any case, a trailing dot or not): the
    /// most specific listed domain it is or is under.
    pub fn lookup(&self, name: &str) -> Option<EntryId> {
        if self.ids.is_empty() {
            return None;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let rev = reversed(&name);
        // Longest first: `com.example.c2`, then `com.example`, then `com`.
        let mut end = rev.len();
        loop {
            if let Some(id) = self.find(&rev[..end]) {
                return Some(id);
            }
            match rev[..end].rfind('.') {
                Some(dot) => end = dot,
                None => return None,
            }
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        self.names.capacity() + self.starts.capacity() * 4 + self.ids.capacity() * 4
    }
}
