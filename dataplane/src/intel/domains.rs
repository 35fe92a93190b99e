//! Listed domains, matched as traceback matches them: a listed domain
//! matches itself and every name under it.
//!
//! A million names in a hash map of strings cost ~60 bytes each; here they
//! are one sorted run of reversed names (`com.example.c2`) with an offset
//! and an entry id each (~8 bytes plus the name), and a name is looked up
//! by bisection once per label boundary (a handful of searches), without
//! allocating.

use super::EntryId;

/// Longest name looked up (DNS's limit); a longer one matches nothing.
const MAX_NAME: usize = 253;

/// Listed domains, each with the entry that listed it.
#[derive(Debug, Default)]
pub struct DomainSet {
    /// The reversed names, sorted, concatenated.
    names: Vec<u8>,
    /// Where each name starts in `names` (it ends where the next starts).
    starts: Vec<u32>,
    ids: Vec<EntryId>,
}

/// Writes `name`'s labels in reverse order (`c2.example.com` as
/// `com.example.c2`) into `out`, lowercased.
fn push_reversed(name: &[u8], out: &mut Vec<u8>) {
    let mut first = true;
    for label in name.rsplit(|&b| b == b'.') {
        if !first {
            out.push(b'.');
        }
        first = false;
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
}

/// Names added one by one into one buffer, sorted once at the end.
#[derive(Debug, Default)]
pub struct DomainSetBuilder {
    names: Vec<u8>,
    /// (start, length, entry) of each added name.
    index: Vec<(u32, u16, EntryId)>,
}

impl DomainSetBuilder {
    /// Adds `name` (lower case, no trailing dot, as the control plane's
    /// feed parser gives it) for entry `id`.
    pub fn add(&mut self, name: &str, id: EntryId) {
        let name = name.as_bytes();
        if name.is_empty() || name.len() > MAX_NAME {
            return;
        }
        let start = self.names.len();
        push_reversed(name, &mut self.names);
        self.index
            .push((start as u32, (self.names.len() - start) as u16, id));
    }

    /// The set. A name added twice keeps the first entry that listed it.
    pub fn build(self) -> DomainSet {
        let DomainSetBuilder { names, mut index } = self;
        let name = |&(s, l, _): &(u32, u16, EntryId)| &names[s as usize..s as usize + l as usize];
        // Stable: of equal names the first entry comes first, and stays.
        index.sort_by(|a, b| name(a).cmp(name(b)));
        index.dedup_by(|b, a| name(a) == name(b));
        let mut set = DomainSet {
            names: Vec::with_capacity(names.len()),
            starts: Vec::with_capacity(index.len() + 1),
            ids: Vec::with_capacity(index.len()),
        };
        for e in &index {
            set.starts.push(set.names.len() as u32);
            set.names.extend_from_slice(name(e));
            set.ids.push(e.2);
        }
        set.starts.push(set.names.len() as u32);
        set.names.shrink_to_fit();
        set
    }
}

impl DomainSet {
    /// The set of `entries`.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, EntryId)>) -> DomainSet {
        let mut b = DomainSetBuilder::default();
        for (name, id) in entries {
            b.add(name, id);
        }
        b.build()
    }

    fn name(&self, i: usize) -> &[u8] {
        let (a, b) = (self.starts[i] as usize, self.starts[i + 1] as usize);
        &self.names[a..b]
    }

    fn find(&self, reversed: &[u8]) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.ids.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.name(mid).cmp(reversed) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The entry that lists `name` (any case, a trailing dot or not), and
    /// the listed domain: the most specific one `name` is or is under.
    pub fn lookup(&self, name: &str) -> Option<(String, EntryId)> {
        let i = self.position(name)?;
        let mut listed = Vec::with_capacity(self.name(i).len());
        push_reversed(self.name(i), &mut listed);
        Some((String::from_utf8_lossy(&listed).into_owned(), self.ids[i]))
    }

    /// The entry that lists `name`, without the listed domain's text.
    pub fn lookup_id(&self, name: &str) -> Option<EntryId> {
        self.position(name).map(|i| self.ids[i])
    }

    /// The domain entry `id` lists, found by a scan of the ids (a log
    /// line's or a record's words, not the packet path's).
    pub fn name_of(&self, id: EntryId) -> Option<String> {
        let i = self.ids.iter().position(|&e| e == id)?;
        let mut listed = Vec::with_capacity(self.name(i).len());
        push_reversed(self.name(i), &mut listed);
        Some(String::from_utf8_lossy(&listed).into_owned())
    }

    fn position(&self, name: &str) -> Option<usize> {
        let name = name.trim_end_matches('.').as_bytes();
        if self.ids.is_empty() || name.is_empty() || name.len() > MAX_NAME {
            return None;
        }
        // Reversed into a stack buffer: no allocation per look-up.
        let mut buf = [0u8; MAX_NAME];
        let mut n = 0;
        for (k, label) in name.rsplit(|&b| b == b'.').enumerate() {
            if k > 0 {
                buf[n] = b'.';
                n += 1;
            }
            for &b in label {
                buf[n] = b.to_ascii_lowercase();
                n += 1;
            }
        }
        let rev = &buf[..n];
        // Longest first: `com.example.c2`, then `com.example`, then `com`.
        let mut end = rev.len();
        loop {
            if let Some(i) = self.find(&rev[..end]) {
                return Some(i);
            }
            end = rev[..end].iter().rposition(|&b| b == b'.')?;
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
