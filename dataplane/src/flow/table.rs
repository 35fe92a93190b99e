//! The per-core flow table: fixed capacity, open addressing, no allocation after
//! construction, no lock.
//!
//! Layout:
//! - `slots: Vec<u64>`: the hash index, a power of two >= 2 x capacity (load <= 1/2).
//!   A slot is `0` when empty, else `tag << 32 | (index + 1)` where `tag` is the high
//!   32 bits of the key's hash (its low bits also pick the home slot) and `index`
//!   points into `entries`. A probe reads 8 bytes per slot and touches an entry only
//!   when the 32-bit tag matches, so misses almost never compare 44-byte keys.
//! - `entries`: the live entries, dense (`0..len`), each aligned to a cache line;
//!   `slot_of[i]` is the slot that points at `entries[i]`. Removal swap-removes the
//!   entry (fixing the moved entry's slot through `slot_of`), so sweeping and
//!   eviction sampling walk live entries only.
//!
//! Linear probing with backward-shift deletion: no tombstones, probe sequences stay
//! as short as the load allows however many inserts and removals happen.

use super::tcp::TimeoutsNs;
use super::{FlowEntry, FlowKey, Timeouts};
use crate::policy::Action;
use ahash::RandomState;
use std::hash::{BuildHasher, Hasher};

/// How many entries eviction looks at (from a rotating hand) to pick a victim.
const EVICT_SAMPLE: usize = 32;
/// The largest capacity: indexes and slot numbers must fit in 32 bits.
const MAX_CAPACITY: usize = 1 << 30;

/// A `FlowEntry` on its own cache lines (128 bytes = two lines, never three).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Aligned(FlowEntry);

/// The result of [`FlowTable::lookup`].
#[derive(Debug)]
pub enum Lookup<'a> {
    /// A live entry.
    Hit(&'a mut FlowEntry),
    /// No entry for the key.
    Miss,
    /// There was an entry but it had been idle past its timeout: it has been removed
    /// (and counted in [`FlowStats::expirations`]); report its end, then treat the
    /// packet as a miss.
    Expired(FlowEntry),
}

/// What [`FlowTable::expire_with`] calls.
pub trait ExpireHook {
    /// `e` looks expired, or is due an interim report: update it
    /// (`last_seen`, counters) if the caller knows better. Do not change
    /// `e.key`.
    fn refresh(&mut self, e: &mut FlowEntry) {
        let _ = e;
    }

    /// `e` expired and was removed.
    fn ended(&mut self, e: &FlowEntry);

    /// `e` is alive and due an interim report ([`FlowTable::set_interim`]).
    fn interim(&mut self, e: &mut FlowEntry) {
        let _ = e;
    }
}

/// Counters of table events since construction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Entries inserted (new keys).
    pub inserts: u64,
    /// Inserts that overwrote an entry with the same key.
    pub replaced: u64,
    /// Live entries removed to make room for an insert into a full table.
    pub evictions: u64,
    /// Timed-out entries removed: by `lookup`, `expire`, or picked to make room.
    pub expirations: u64,
    /// Entries removed by [`FlowTable::remove`].
    pub removals: u64,
    /// Entries removed by [`FlowTable::drain`].
    pub drained: u64,
}

/// The flow table. See the module documentation for the layout.
pub struct FlowTable {
    slots: Vec<u64>,
    mask: usize,
    entries: Vec<Aligned>,
    slot_of: Vec<u32>,
    capacity: usize,
    hasher: RandomState,
    timeouts: Timeouts,
    ns: TimeoutsNs,
    sweep_hand: usize,
    evict_hand: usize,
    /// Interim reports every this many ns of a flow's life; 0: none.
    interim_every: u64,
    /// An interim report when a flow with unreported packets has been idle
    /// this many ns; 0: none.
    idle_report: u64,
    stats: FlowStats,
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("len", &self.entries.len())
            .field("capacity", &self.capacity)
            .field("slots", &self.slots.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[inline]
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

#[inline]
fn slot_index(s: u64) -> usize {
    (s as u32).wrapping_sub(1) as usize
}

impl FlowTable {
    /// A table for at most `capacity` live flows (clamped to `1..=2^30`), hashing with
    /// randomly seeded keys. All memory is allocated and faulted in here, once.
    pub fn new(capacity: usize, timeouts: Timeouts) -> FlowTable {
        Self::with_hasher(capacity, timeouts, RandomState::new())
    }

    /// Like [`FlowTable::new`] with fixed hash seeds (reproducible benchmarks and tests;
    /// not for production: crafted keys could then collide).
    pub fn with_seeds(capacity: usize, timeouts: Timeouts, seeds: [u64; 4]) -> FlowTable {
        let [a, b, c, d] = seeds;
        Self::with_hasher(capacity, timeouts, RandomState::with_seeds(a, b, c, d))
    }

    fn with_hasher(capacity: usize, timeouts: Timeouts, hasher: RandomState) -> FlowTable {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let n_slots = (capacity * 2).next_power_of_two().max(16);
        let mut slots = vec![0; n_slots];
        let mut entries = Vec::with_capacity(capacity);
        let mut slot_of = Vec::with_capacity(capacity);
        // At a million flows the table spans ~150 MB: huge pages spare a TLB miss
        // on nearly every lookup. Faulted in here, not by the first packets: a
        // worker faulting (and compacting) huge pages in on its first flows
        // stalled long enough for the kernel to drop frames after a start.
        crate::hint::advise_huge_pages(&slots);
        crate::hint::advise_huge_pages(entries.spare_capacity_mut());
        crate::hint::populate(&mut slots);
        crate::hint::populate(entries.spare_capacity_mut());
        crate::hint::populate(slot_of.spare_capacity_mut());
        FlowTable {
            slots,
            mask: n_slots - 1,
            entries,
            slot_of,
            capacity,
            hasher,
            ns: TimeoutsNs::new(&timeouts),
            timeouts,
            sweep_hand: 0,
            evict_hand: 0,
            interim_every: 0,
            idle_report: 0,
            stats: FlowStats::default(),
        }
    }

    /// The hash of `key` under this table's seeds (for the `*_hashed` methods).
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u128(u128::from_ne_bytes(key.addr_lo));
        h.write_u128(u128::from_ne_bytes(key.addr_hi));
        h.write_u64(
            u64::from(key.port_lo)
                | u64::from(key.port_hi) << 16
                | u64::from(key.vlan[0]) << 32
                | u64::from(key.vlan[1]) << 48,
        );
        h.write_u16(u16::from(key.proto) | u16::from(key.family) << 8);
        h.finish()
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask
    }

    /// The slot and entry index of `key`, live or not.
    #[inline]
    fn find(&self, key: &FlowKey, hash: u64) -> Option<(usize, usize)> {
        let tag = tag_of(hash);
        let mut pos = self.home(tag);
        // Terminates: the load is at most 1/2, so there is always an empty slot.
        loop {
            let s = self.slots[pos];
            if s == 0 {
                return None;
            }
            if (s >> 32) as u32 == tag {
                let idx = slot_index(s);
                if self.entries[idx].0.key == *key {
                    return Some((pos, idx));
                }
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// First half of a batched lookup: start loading the home slot of `hash`.
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        crate::hint::prefetch(&self.slots[self.home(tag_of(hash))]);
    }

    /// Second half, after [`FlowTable::prefetch_slot`] for the whole batch: start
    /// loading the entry the home slot points at, when its tag matches. Lookups of a
    /// batch then wait for memory once, in parallel, instead of once per packet.
    #[inline]
    pub fn prefetch_entry(&self, hash: u64) {
        let tag = tag_of(hash);
        let s = self.slots[self.home(tag)];
        if s != 0 && (s >> 32) as u32 == tag {
            if let Some(e) = self.entries.get(slot_index(s)) {
                crate::hint::prefetch(e);
                crate::hint::prefetch(&e.0.packets);
            }
        }
    }

    /// The live entry for `key`. An entry idle past its timeout is removed and returned
    /// as [`Lookup::Expired`].
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, now: u64) -> Lookup<'_> {
        let hash = self.hash(key);
        self.lookup_hashed(key, hash, now)
    }

    /// [`FlowTable::lookup`] with `hash == self.hash(key)` computed beforehand.
    #[inline]
    pub fn lookup_hashed(&mut self, key: &FlowKey, hash: u64, now: u64) -> Lookup<'_> {
        match self.find(key, hash) {
            None => Lookup::Miss,
            Some((slot, idx)) => {
                if self.ns.expired(&self.entries[idx].0, now) {
                    self.stats.expirations += 1;
                    Lookup::Expired(self.remove_at(slot, idx))
                } else {
                    Lookup::Hit(&mut self.entries[idx].0)
                }
            }
        }
    }

    /// The entry for `key`, without expiry (visibility, tests).
    pub fn get(&self, key: &FlowKey) -> Option<&FlowEntry> {
        self.find(key, self.hash(key))
            .map(|(_, idx)| &self.entries[idx].0)
    }

    /// The entry for `key`, without expiry (e.g. to add counts kept elsewhere).
    /// Do not change `key`: the entry would no longer be found.
    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut FlowEntry> {
        self.find(key, self.hash(key))
            .map(|(_, idx)| &mut self.entries[idx].0)
    }

    /// Insert `entry` (normally after a [`Lookup::Miss`]). Returns the stored entry and
    /// the entry it displaced, if any, for the caller to report as ended:
    /// - the table was full: one entry was evicted (see [`FlowTable`] eviction order);
    /// - an entry with the same key was there: it was overwritten (`old.key == entry.key`).
    #[inline]
    pub fn insert(&mut self, entry: FlowEntry, now: u64) -> (&mut FlowEntry, Option<FlowEntry>) {
        let hash = self.hash(&entry.key);
        self.insert_hashed(entry, hash, now)
    }

    /// [`FlowTable::insert`] with `hash == self.hash(&entry.key)` computed beforehand.
    ///
    /// When full, eviction looks at up to 32 entries from a rotating hand and removes,
    /// in this order of preference: an entry past its timeout (counted as an
    /// expiration), a closing/closed TCP entry ([`super::FlowState::is_closing`]) or a
    /// denied flow, and otherwise the one with the oldest `last_seen` (counted as an eviction).
    pub fn insert_hashed(
        &mut self,
        entry: FlowEntry,
        hash: u64,
        now: u64,
    ) -> (&mut FlowEntry, Option<FlowEntry>) {
        if let Some((_, idx)) = self.find(&entry.key, hash) {
            self.stats.replaced += 1;
            let old = std::mem::replace(&mut self.entries[idx].0, entry);
            return (&mut self.entries[idx].0, Some(old));
        }
        let displaced = if self.entries.len() >= self.capacity {
            self.evict(now)
        } else {
            None
        };
        let tag = tag_of(hash);
        let mut pos = self.home(tag);
        while self.slots[pos] != 0 {
            pos = (pos + 1) & self.mask;
        }
        let idx = self.entries.len();
        // Never reallocates: len < capacity == the reserved capacity.
        self.entries.push(Aligned(entry));
        self.slot_of.push(pos as u32);
        self.slots[pos] = (u64::from(tag) << 32) | (idx as u64 + 1);
        self.stats.inserts += 1;
        (&mut self.entries[idx].0, displaced)
    }

    /// Remove one entry to make room: bounded work (`EVICT_SAMPLE` entries).
    fn evict(&mut self, now: u64) -> Option<FlowEntry> {
        let n = self.entries.len();
        if n == 0 {
            return None;
        }
        let mut hand = if self.evict_hand < n {
            self.evict_hand
        } else {
            0
        };
        let mut best = hand;
        let mut best_rank = (u8::MAX, u64::MAX);
        let mut expired = false;
        for _ in 0..EVICT_SAMPLE.min(n) {
            let e = &self.entries[hand].0;
            if self.ns.expired(e, now) {
                best = hand;
                expired = true;
                break;
            }
            // Denied flows go first with closing ones: under a scan or a SYN flood
            // of denied traffic, the table keeps the flows that carry traffic.
            let disposable = e.state.is_closing() || e.verdict.action == Action::Deny;
            let rank = (u8::from(!disposable), e.last_seen);
            if rank < best_rank {
                best = hand;
                best_rank = rank;
            }
            hand += 1;
            if hand == n {
                hand = 0;
            }
        }
        self.evict_hand = hand;
        if expired {
            self.stats.expirations += 1;
        } else {
            self.stats.evictions += 1;
        }
        let slot = self.slot_of[best] as usize;
        Some(self.remove_at(slot, best))
    }

    /// Remove the entry for `key`, live or timed out.
    pub fn remove(&mut self, key: &FlowKey) -> Option<FlowEntry> {
        let (slot, idx) = self.find(key, self.hash(key))?;
        self.stats.removals += 1;
        Some(self.remove_at(slot, idx))
    }

    /// Remove `entries[idx]`, which `slots[slot]` points at: backward-shift the probe
    /// run after `slot`, then swap-remove the entry.
    fn remove_at(&mut self, slot: usize, idx: usize) -> FlowEntry {
        let mask = self.mask;
        let mut hole = slot;
        let mut pos = (slot + 1) & mask;
        loop {
            let s = self.slots[pos];
            if s == 0 {
                break;
            }
            let home = self.home((s >> 32) as u32);
            // `s` may fill the hole if the hole lies between its home and `pos`.
            if (pos.wrapping_sub(home) & mask) >= (pos.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                self.slot_of[slot_index(s)] = hole as u32;
                hole = pos;
            }
            pos = (pos + 1) & mask;
        }
        self.slots[hole] = 0;

        let last = self.entries.len() - 1;
        let old = self.entries.swap_remove(idx).0;
        self.slot_of.swap_remove(idx);
        if idx != last {
            // entries[last] moved to idx: repoint its slot.
            let s = self.slot_of[idx] as usize;
            self.slots[s] = (self.slots[s] & !0xffff_ffff) | (idx as u64 + 1);
        }
        old
    }

    /// Incremental sweep: look at up to `budget` entries from a rotating hand, remove
    /// those past their timeout and call `f` on each. Returns how many were removed.
    pub fn expire(&mut self, now: u64, budget: usize, f: impl FnMut(&FlowEntry)) -> usize {
        struct Ended<F>(F);
        impl<F: FnMut(&FlowEntry)> ExpireHook for Ended<F> {
            fn ended(&mut self, e: &FlowEntry) {
                (self.0)(e)
            }
        }
        self.expire_with(now, budget, &mut Ended(f))
    }

    /// [`FlowTable::expire`] with a chance to bring an entry up to date before it is
    /// removed: `hook.refresh` sees each entry that looks expired (e.g. to read the
    /// counters of a flow the kernel carries), and the entry is removed only if it is
    /// still expired afterwards.
    pub fn expire_with(&mut self, now: u64, budget: usize, hook: &mut impl ExpireHook) -> usize {
        let mut removed = 0;
        for _ in 0..budget {
            let n = self.entries.len();
            if n == 0 {
                break;
            }
            if self.sweep_hand >= n {
                self.sweep_hand = 0;
            }
            let i = self.sweep_hand;
            let expired = self.ns.expired(&self.entries[i].0, now) && {
                hook.refresh(&mut self.entries[i].0);
                self.ns.expired(&self.entries[i].0, now)
            };
            if expired {
                let slot = self.slot_of[i] as usize;
                let old = self.remove_at(slot, i);
                self.stats.expirations += 1;
                removed += 1;
                hook.ended(&old);
                // The last entry moved into `i`: look at it next.
            } else {
                let e = &mut self.entries[i].0;
                // A period boundary crossed, or packets idle past the idle
                // report: reported if packets came since the last report.
                let boundary = e.interim_boundary(now, self.interim_every);
                let idle = self.idle_report > 0
                    && e.unreported()
                    && now.saturating_sub(e.last_seen) >= self.idle_report;
                if boundary || idle {
                    hook.refresh(e);
                    if e.unreported() {
                        hook.interim(e);
                        e.mark_reported();
                    }
                }
                self.sweep_hand += 1;
            }
        }
        removed
    }

    /// Have the sweep ([`FlowTable::expire_with`]) report live flows every
    /// `every` of their life (`ExpireHook::interim`); zero: never. The sweep
    /// must come round the table at least that often for every report to be
    /// made (a flow it misses is reported one period later).
    pub fn set_interim(&mut self, every: std::time::Duration) {
        self.interim_every = u64::try_from(every.as_nanos()).unwrap_or(u64::MAX);
    }

    /// Also report a live flow (`ExpireHook::interim`) once its packets
    /// stopped for `idle` (IPFIX's idle timeout), so a burst is reported
    /// soon after it ends rather than at the next period; zero: never.
    pub fn set_idle_report(&mut self, idle: std::time::Duration) {
        self.idle_report = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
    }

    /// Remove every entry, calling `f` on each (end of a replay, shutdown).
    pub fn drain(&mut self, mut f: impl FnMut(&FlowEntry)) {
        for e in &self.entries {
            f(&e.0);
        }
        self.stats.drained += self.entries.len() as u64;
        self.entries.clear();
        self.slot_of.clear();
        self.slots.fill(0);
        self.sweep_hand = 0;
        self.evict_hand = 0;
    }

    /// Live entries (including timed-out ones not yet swept), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &FlowEntry> + '_ {
        self.entries.iter().map(|e| &e.0)
    }

    /// Mutable access to every entry (e.g. to re-stamp verdicts after a policy change).
    /// Do not change `key`: the entry would no longer be found.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut FlowEntry> + '_ {
        self.entries.iter_mut().map(|e| &mut e.0)
    }

    /// Number of entries held.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The maximum number of live entries.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The number of hash slots (fixed at construction).
    #[inline]
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Change the timeouts; they apply to every entry from now on.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.ns = TimeoutsNs::new(&timeouts);
        self.timeouts = timeouts;
    }

    /// The idle timeout (ns) that applies to `e` now.
    #[inline]
    pub fn timeout_of(&self, e: &FlowEntry) -> u64 {
        self.ns.get(e.key.proto, e.state)
    }

    /// Check every structural invariant (tests).
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        assert_eq!(self.entries.len(), self.slot_of.len());
        assert!(self.entries.len() <= self.capacity);
        let occupied = self.slots.iter().filter(|&&s| s != 0).count();
        assert_eq!(occupied, self.entries.len());
        for (i, e) in self.entries.iter().enumerate() {
            let s = self.slots[self.slot_of[i] as usize];
            assert_eq!(slot_index(s), i);
            assert_eq!((s >> 32) as u32, tag_of(self.hash(&e.0.key)));
        }
        for (pos, &s) in self.slots.iter().enumerate() {
            if s == 0 {
                continue;
            }
            let mut p = self.home((s >> 32) as u32);
            while p != pos {
                assert_ne!(self.slots[p], 0, "gap in the probe run of slot {pos}");
                p = (p + 1) & self.mask;
            }
        }
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
