//! An in-memory [`OffloadMap`] that plays the kernel: for tests of the worker's
//! offload decisions without root, and for benchmarks.

use super::{EntryCounters, OffloadAction, OffloadError, OffloadMap, SideMacs, TierCounters};
use crate::flow::{FlowKey, Side};
use crate::wire::MacAddr;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    entries: HashMap<FlowKey, (OffloadAction, u64, EntryCounters, SideMacs)>,
    tier: TierCounters,
    clock: u64,
    capacity: usize,
}

/// A shared handle: clone it, give one clone to the worker's offloader and keep
/// the other to act as the kernel ([`MemOffloadMap::carry`]) and to look inside.
#[derive(Debug, Clone)]
pub struct MemOffloadMap {
    inner: Arc<Mutex<Inner>>,
}

impl MemOffloadMap {
    pub fn new(capacity: usize) -> Self {
        MemOffloadMap {
            inner: Arc::new(Mutex::new(Inner {
                capacity,
                ..Inner::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock has failed already.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the XDP program would do with a frame of `key` sent by `side`
    /// from MAC `src` to MAC `dst`: `Some(action)` if a fresh entry carried it
    /// (and counted it), `None` if it goes to userspace.
    pub fn carry(
        &self,
        key: &FlowKey,
        side: Side,
        (src, dst): (MacAddr, MacAddr),
        bytes: u64,
    ) -> Option<OffloadAction> {
        let mut g = self.lock();
        let generation = g.generation;
        let clock = g.clock;
        if generation == 0 {
            return None;
        }
        let Some((action, gen, c, macs)) = g.entries.get_mut(key) else {
            g.tier.punted_packets += 1;
            return None;
        };
        if *gen != generation {
            g.tier.stale_packets += 1;
            g.tier.punted_packets += 1;
            return None;
        }
        let i = if side == Side::Lo { 0 } else { 1 };
        if macs[i] != src || macs[1 - i] != dst {
            g.tier.punted_packets += 1;
            return None;
        }
        c.packets[i] += 1;
        c.bytes[i] += bytes;
        c.last_seen_ns = clock.max(1);
        let action = *action;
        match action {
            OffloadAction::Forward => {
                g.tier.forwarded_packets += 1;
                g.tier.forwarded_bytes += bytes;
            }
            OffloadAction::Drop => {
                g.tier.dropped_packets += 1;
                g.tier.dropped_bytes += bytes;
            }
        }
        Some(action)
    }

    /// Set the kernel clock (ns).
    pub fn set_clock(&self, ns: u64) {
        self.lock().clock = ns;
    }

    /// Forget an entry, as an LRU eviction would.
    pub fn evict(&self, key: &FlowKey) {
        self.lock().entries.remove(key);
    }

    /// The entry for `key`: its action and generation.
    pub fn entry(&self, key: &FlowKey) -> Option<(OffloadAction, u64)> {
        self.lock().entries.get(key).map(|(a, g, _, _)| (*a, *g))
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn generation(&self) -> u64 {
        self.lock().generation
    }
}

impl OffloadMap for MemOffloadMap {
    fn set_generation(&mut self, generation: u64) -> Result<(), OffloadError> {
        self.lock().generation = generation;
        Ok(())
    }

    fn insert(
        &mut self,
        key: &FlowKey,
        action: OffloadAction,
        macs: SideMacs,
        generation: u64,
    ) -> Result<(), OffloadError> {
        self.lock()
            .entries
            .insert(*key, (action, generation, EntryCounters::default(), macs));
        Ok(())
    }

    fn lookup(&self, key: &FlowKey) -> Result<Option<EntryCounters>, OffloadError> {
        Ok(self.lock().entries.get(key).map(|(_, _, c, _)| *c))
    }

    fn delete(&mut self, key: &FlowKey) -> Result<(), OffloadError> {
        self.lock().entries.remove(key);
        Ok(())
    }

    fn clock_ns(&self) -> u64 {
        self.lock().clock
    }

    fn tier(&self) -> Result<TierCounters, OffloadError> {
        Ok(self.lock().tier)
    }

    fn capacity(&self) -> usize {
        self.lock().capacity
    }
}
