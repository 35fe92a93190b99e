//! When learned workloads were last seen, in order: the cap on learned
//! workloads makes room by forgetting the one seen least recently (if it has
//! been idle a while), and learned workloads idle longer than a day are
//! forgotten altogether. A MAC flood therefore fills the cap only for as long
//! as its MACs keep talking; a legitimate new MAC gets in once the flood's
//! MACs have gone quiet, and after a restart too.

use dataplane::wire::MacAddr;
use std::collections::{BTreeSet, HashMap};

/// Learned MACs by last-seen time ([`crate::model::Timestamp`] nanoseconds).
#[derive(Debug, Default)]
pub(super) struct Ages {
    last: HashMap<MacAddr, u64>,
    order: BTreeSet<(u64, MacAddr)>,
}

impl Ages {
    /// `mac` was seen at `at`.
    pub(super) fn touch(&mut self, mac: MacAddr, at: u64) {
        match self.last.insert(mac, at) {
            Some(old) if old == at => return,
            Some(old) => {
                self.order.remove(&(old, mac));
            }
            None => {}
        }
        self.order.insert((at, mac));
    }

    pub(super) fn forget(&mut self, mac: MacAddr) {
        if let Some(old) = self.last.remove(&mac) {
            self.order.remove(&(old, mac));
        }
    }

    /// The MAC seen least recently, if that was before `before`.
    pub(super) fn oldest_before(&self, before: u64) -> Option<MacAddr> {
        self.order
            .first()
            .filter(|(at, _)| *at < before)
            .map(|&(_, mac)| mac)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_seen_comes_first_and_only_once_idle() {
        let m = |b| MacAddr([2, 0, 0, 0, 0, b]);
        let mut a = Ages::default();
        a.touch(m(1), 100);
        a.touch(m(2), 50);
        a.touch(m(3), 70);
        assert_eq!(a.oldest_before(60), Some(m(2)));
        assert_eq!(a.oldest_before(50), None);
        a.touch(m(2), 200);
        assert_eq!(a.oldest_before(1000), Some(m(3)));
        a.forget(m(3));
        assert_eq!(a.oldest_before(1000), Some(m(1)));
        assert_eq!(a.len(), 2);
    }
}
