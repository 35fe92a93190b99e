//! The kernel tier: flows the worker has decided, carried by the XDP program.
//!
//! The worker's flow table is the truth; the kernel's offload map is a cache of
//! some of its flows that may lose entries at any time (LRU, a restart). The
//! worker holds an [`Offloader`]: it installs and removes entries through an
//! [`OffloadMap`] (the AF_XDP backend implements it over the BPF maps; tests use
//! an in-memory one), keeps the counters it has already read of each entry, and
//! hands the worker only what the kernel counted since.
//!
//! Every entry carries the offloader's generation (an epoch, bumped whenever the
//! policy generation changes: [`Offloader::sync_generation`]); the XDP program
//! only acts on entries of the current one, so a commit or a quarantine sends
//! every offloaded flow back to userspace on its next packet, to be re-decided.
//! The epoch is not the policy generation itself: 0 means "offload off" in the
//! map, and a generation the offloader counts itself can never make an old
//! entry fresh again. In `bulkhead run` the publisher writes the map's
//! generation as it publishes, before the change is answered
//! ([`Offloader::with_publish_fence`]); the workers only follow it.

mod mem;

pub use mem::MemOffloadMap;

use crate::flow::{FlowKey, Side};
use crate::policy::SnapshotCell;
use crate::wire::MacAddr;
use std::collections::HashMap;

/// The MACs an offloaded flow is bound to, by side of its key: `[lo, hi]`
/// ([`crate::flow::FlowEntry::side_macs`]). The kernel carries a frame only
/// if it travels between them.
pub type SideMacs = [MacAddr; 2];

/// What the kernel does with an offloaded flow's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffloadAction {
    /// Redirect to the peer port.
    Forward,
    /// Drop.
    Drop,
}

/// The counters of one kernel entry, by the side of the flow key that sent the
/// packets (`[lo, hi]`, see [`Side`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryCounters {
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// When the kernel counted the entry's last packet, on [`OffloadMap::clock_ns`]'s
    /// clock; 0 if it counted none.
    pub last_seen_ns: u64,
}

/// What the kernel counted for a flow since the offloader last read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelDelta {
    /// By the side that sent the packets: `[lo, hi]`.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// How long ago (ns) the kernel counted the last of these packets; `None`
    /// when there are none.
    pub idle_ns: Option<u64>,
}

impl KernelDelta {
    /// Packets sent by `side`.
    pub fn packets_of(&self, side: Side) -> u64 {
        self.packets[side_index(side)]
    }

    pub fn bytes_of(&self, side: Side) -> u64 {
        self.bytes[side_index(side)]
    }

    pub fn is_empty(&self) -> bool {
        self.packets == [0, 0]
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Lo => 0,
        Side::Hi => 1,
    }
}

/// The kernel tier's own counters (all ports, all CPUs), since the maps were made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierCounters {
    /// Frames forwarded to the peer port in the kernel.
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    /// Frames dropped in the kernel (flows offloaded as denied).
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    /// Frames whose entry was of an older generation: handed to userspace.
    pub stale_packets: u64,
    /// Frames with no entry, or not offloadable: handed to userspace.
    pub punted_packets: u64,
}

/// Why a map operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("offload map {map}: {op}: {reason}")]
    Map {
        map: &'static str,
        op: &'static str,
        reason: String,
    },
}

/// The kernel's maps, as the offloader uses them.
pub trait OffloadMap: Send {
    /// Write the current generation (never 0 here; 0 turns the fast path off).
    fn set_generation(&mut self, generation: u64) -> Result<(), OffloadError>;
    /// Create or overwrite the entry for `key`, with zero counters, bound to
    /// `macs`.
    fn insert(
        &mut self,
        key: &FlowKey,
        action: OffloadAction,
        macs: SideMacs,
        generation: u64,
    ) -> Result<(), OffloadError>;
    /// The entry's counters; `None` if the map does not hold `key`.
    fn lookup(&self, key: &FlowKey) -> Result<Option<EntryCounters>, OffloadError>;
    /// Delete the entry (absent is not an error).
    fn delete(&mut self, key: &FlowKey) -> Result<(), OffloadError>;
    /// The clock of [`EntryCounters::last_seen_ns`], now.
    fn clock_ns(&self) -> u64;
    /// The tier counters.
    fn tier(&self) -> Result<TierCounters, OffloadError>;
    /// The most entries the map holds.
    fn capacity(&self) -> usize;
}

/// The offloader's bookkeeping, plus the tier counters: what `bulkhead run`
/// reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadStats {
    /// Entries the offloader believes are in the map now.
    pub live: u64,
    /// Entries written (new flows and re-installs after a generation change).
    pub installed: u64,
    /// Entries removed because their flow ended, left the offloadable states, or
    /// was evicted from the flow table.
    pub removed: u64,
    /// Entries the map lost on its own (LRU eviction when full), found missing.
    pub evicted: u64,
    /// Installs refused because the map was full as far as the offloader counts
    /// (those flows stay in userspace).
    pub full: u64,
    /// Entries made stale by a generation change (each counted once per change).
    pub invalidated: u64,
    /// Map operations that failed (the flow stays or goes back to userspace).
    pub errors: u64,
    pub tier: TierCounters,
}

impl OffloadStats {
    /// Adds another worker's counters to these.
    pub fn merge(&mut self, o: &OffloadStats) {
        self.live += o.live;
        self.installed += o.installed;
        self.removed += o.removed;
        self.evicted += o.evicted;
        self.full += o.full;
        self.invalidated += o.invalidated;
        self.errors += o.errors;
        let (t, u) = (&mut self.tier, &o.tier);
        t.forwarded_packets += u.forwarded_packets;
        t.forwarded_bytes += u.forwarded_bytes;
        t.dropped_packets += u.dropped_packets;
        t.dropped_bytes += u.dropped_bytes;
        t.stale_packets += u.stale_packets;
        t.punted_packets += u.punted_packets;
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: FlowKey,
    /// The counters as last read.
    seen: EntryCounters,
    generation: u64,
    action: OffloadAction,
    /// The worker's clock when the entry was last written or read.
    checked_at: u64,
}

/// Probing an installed entry (one syscall) is skipped if it was written or read
/// this recently: frames queued before an install still reach userspace after it.
const RECHECK_NS: u64 = 10_000_000;

/// What moves the kernel tier's generation with each policy publication (the
/// XDP backend's handle on its generation map).
pub trait GenerationFence: Send + Sync {
    /// Make `kernel_generation(policy_generation)` the kernel's generation;
    /// never move it back.
    fn advance_to(&self, policy_generation: u64) -> Result<(), OffloadError>;
}

/// Make every publication on `cell` move the kernel generation through
/// `fence` before the publisher goes on
/// ([`SnapshotCell::set_publish_fence`]): an offloaded flow is never forwarded
/// on the old policy once a commit or a quarantine has returned. The workers'
/// offloaders must be [`Offloader::with_publish_fence`]. A write that fails is
/// handed to `on_error` with the policy generation (the publisher cannot be
/// refused its swap).
pub fn fence_publications(
    cell: &SnapshotCell,
    fence: std::sync::Arc<dyn GenerationFence>,
    on_error: impl Fn(u64, OffloadError) + Send + Sync + 'static,
) -> Result<(), OffloadError> {
    cell.set_publish_fence(Box::new(move |g| {
        if let Err(e) = fence.advance_to(g) {
            on_error(g, e);
        }
    }))
    .map_err(|_| OffloadError::Map {
        map: "generation",
        op: "fence publications",
        reason: "the policy cell has a publish fence already".into(),
    })
}

/// The kernel generation that stands for policy generation `g`: never 0 (0
/// turns the fast path off).
pub fn kernel_generation(policy_generation: u64) -> u64 {
    policy_generation.saturating_add(1)
}

/// The worker's side of the kernel tier. See the module documentation.
pub struct Offloader {
    map: Box<dyn OffloadMap>,
    /// The publisher writes the kernel generation, not this worker
    /// ([`Offloader::with_publish_fence`]).
    fenced: bool,
    generation: u64,
    policy_generation: Option<u64>,
    /// Installed entries, dense; `index` maps a key to its slot. Both are
    /// allocated once for the map's capacity.
    slots: Vec<Slot>,
    index: HashMap<FlowKey, u32, ahash::RandomState>,
    hand: usize,
    stats: OffloadStats,
}

impl std::fmt::Debug for Offloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offloader")
            .field("generation", &self.generation)
            .field("live", &self.slots.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// What [`Offloader::sweep`] found for one installed flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The entry is there; the kernel counted this since the last read.
    Present(KernelDelta),
    /// The map no longer holds the entry (evicted): the flow is back in userspace.
    Gone,
}

impl Offloader {
    pub fn new(map: Box<dyn OffloadMap>) -> Offloader {
        let capacity = map.capacity().max(1);
        Offloader {
            map,
            fenced: false,
            generation: 0,
            policy_generation: None,
            slots: Vec::with_capacity(capacity),
            index: HashMap::with_capacity_and_hasher(capacity, ahash::RandomState::new()),
            hand: 0,
            stats: OffloadStats::default(),
        }
    }

    /// The kernel's generation is written by whoever publishes the policy (a
    /// fence on the [`crate::policy::SnapshotCell`] writing
    /// [`kernel_generation`] of each published generation, before the
    /// publisher answers), not by this worker, which would only see the new
    /// policy at its next poll: an idle worker (every frame carried by the
    /// kernel) would leave offloaded flows running on the old policy for up
    /// to its poll timeout after a quarantine had returned. Entries are then
    /// written with `kernel_generation(policy generation)`; an entry decided
    /// under a policy older than the fence's is stale from the start.
    pub fn with_publish_fence(mut self) -> Offloader {
        self.fenced = true;
        self
    }

    /// Follow the policy generation: when it changed, start a new offload
    /// generation, so every installed entry is stale in the kernel. Returns
    /// whether it changed.
    pub fn sync_generation(&mut self, policy_generation: u64) -> Result<bool, OffloadError> {
        if self.policy_generation == Some(policy_generation) {
            return Ok(false);
        }
        let next = if self.fenced {
            kernel_generation(policy_generation)
        } else {
            // Derived from the policy generation where it can be, so that
            // several workers writing the one generation map agree on its value.
            let next = (self.generation + 1).max(kernel_generation(policy_generation));
            if let Err(e) = self.map.set_generation(next) {
                self.stats.errors += 1;
                return Err(e);
            }
            next
        };
        if self.policy_generation.is_some() {
            self.stats.invalidated += self.slots.len() as u64;
        }
        self.generation = next;
        self.policy_generation = Some(policy_generation);
        Ok(true)
    }

    /// The offload generation entries are written with now.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `key` has an entry of the current generation with `action`.
    pub fn is_fresh(&self, key: &FlowKey, action: OffloadAction) -> bool {
        self.index.get(key).is_some_and(|&i| {
            let s = &self.slots[i as usize];
            s.generation == self.generation && s.action == action
        })
    }

    pub fn is_installed(&self, key: &FlowKey) -> bool {
        self.index.contains_key(key)
    }

    /// Write the entry for `key` (new, or overwriting a stale one). Returns what the
    /// kernel counted on the old entry since the last read, if there was one, and
    /// `Ok(None)` too when the map is full (the flow stays in userspace; see
    /// [`Offloader::is_installed`]).
    pub fn install(
        &mut self,
        key: &FlowKey,
        action: OffloadAction,
        macs: SideMacs,
        now: u64,
    ) -> Result<Option<KernelDelta>, OffloadError> {
        let existing = self.index.get(key).map(|&i| i as usize);
        let delta = match existing {
            Some(i) => self.read_slot(i)?,
            None if self.slots.len() >= self.slots.capacity() => {
                self.stats.full += 1;
                return Ok(None);
            }
            None => None,
        };
        if self.generation == 0 {
            // No generation written yet: an entry could never be fresh.
            return Ok(delta);
        }
        if let Err(e) = self.map.insert(key, action, macs, self.generation) {
            self.stats.errors += 1;
            if let Some(i) = existing {
                self.forget(i);
            }
            return Err(e);
        }
        let slot = Slot {
            key: *key,
            seen: EntryCounters::default(),
            generation: self.generation,
            action,
            checked_at: now,
        };
        match existing {
            Some(i) => self.slots[i] = slot,
            None => {
                self.index.insert(*key, self.slots.len() as u32);
                self.slots.push(slot);
            }
        }
        self.stats.installed += 1;
        Ok(delta)
    }

    /// A frame of an installed flow reached userspace: find out whether the
    /// kernel still holds its entry (rate-limited per entry). `Ok(None)` when it
    /// was not checked; `Gone` when it must be installed again.
    pub fn recheck(&mut self, key: &FlowKey, now: u64) -> Result<Option<Probe>, OffloadError> {
        let Some(&i) = self.index.get(key) else {
            return Ok(Some(Probe::Gone));
        };
        let i = i as usize;
        if now.saturating_sub(self.slots[i].checked_at) < RECHECK_NS {
            return Ok(None);
        }
        self.slots[i].checked_at = now;
        Ok(Some(self.probe_slot(i)?))
    }

    /// What the kernel counted for `key` since the last read.
    pub fn read(&mut self, key: &FlowKey) -> Result<Probe, OffloadError> {
        match self.index.get(key) {
            Some(&i) => self.probe_slot(i as usize),
            None => Ok(Probe::Gone),
        }
    }

    /// Remove the entry for `key`; returns what the kernel counted since the
    /// last read, if the entry was installed and still there.
    pub fn remove(&mut self, key: &FlowKey) -> Result<Option<KernelDelta>, OffloadError> {
        let Some(&i) = self.index.get(key) else {
            return Ok(None);
        };
        let i = i as usize;
        let delta = self.read_slot(i);
        self.forget(i);
        self.stats.removed += 1;
        if let Err(e) = self.map.delete(key) {
            self.stats.errors += 1;
            return Err(e);
        }
        delta
    }

    /// Read up to `budget` installed entries from a rotating hand and report each
    /// to `f`, which returns whether the caller still tracks the flow (if not,
    /// the entry is removed). Entries found gone are forgotten (and counted as
    /// evicted).
    pub fn sweep(&mut self, budget: usize, mut f: impl FnMut(&FlowKey, Probe) -> bool) {
        for _ in 0..budget.min(self.slots.len()) {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let i = self.hand;
            let key = self.slots[i].key;
            match self.probe_slot(i) {
                Ok(Probe::Gone) => {
                    // The last slot moved into `i`: look at it next.
                    f(&key, Probe::Gone);
                }
                Ok(p) => {
                    if f(&key, p) {
                        self.hand += 1;
                    } else {
                        let _ = self.remove(&key);
                    }
                }
                Err(_) => self.hand += 1,
            }
        }
    }

    /// Remove every installed entry (best effort: failures are counted).
    pub fn clear(&mut self) {
        while let Some(s) = self.slots.last() {
            let key = s.key;
            let _ = self.remove(&key);
        }
    }

    /// The bookkeeping and the kernel's tier counters (read now).
    pub fn stats(&self) -> OffloadStats {
        let mut s = self.stats;
        s.live = self.slots.len() as u64;
        match self.map.tier() {
            Ok(t) => s.tier = t,
            Err(_) => s.errors += 1,
        }
        s
    }

    /// Read slot `i`: the delta since the last read, or `Gone` (forgotten).
    fn probe_slot(&mut self, i: usize) -> Result<Probe, OffloadError> {
        match self.read_slot(i)? {
            Some(d) => Ok(Probe::Present(d)),
            None => {
                self.stats.evicted += 1;
                self.forget(i);
                Ok(Probe::Gone)
            }
        }
    }

    /// The delta of slot `i` since the last read, updating what was seen; `None`
    /// if the map does not hold the entry.
    fn read_slot(&mut self, i: usize) -> Result<Option<KernelDelta>, OffloadError> {
        let s = self.slots[i];
        let now = match self.map.lookup(&s.key) {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.stats.errors += 1;
                return Err(e);
            }
        };
        let seen = s.seen;
        // Counters only grow; a smaller value means the entry was re-created.
        let diff = |a: u64, b: u64| if a >= b { a - b } else { a };
        let delta = KernelDelta {
            packets: [
                diff(now.packets[0], seen.packets[0]),
                diff(now.packets[1], seen.packets[1]),
            ],
            bytes: [
                diff(now.bytes[0], seen.bytes[0]),
                diff(now.bytes[1], seen.bytes[1]),
            ],
            idle_ns: (now.last_seen_ns != 0 && now.last_seen_ns != seen.last_seen_ns)
                .then(|| self.map.clock_ns().saturating_sub(now.last_seen_ns)),
        };
        self.slots[i].seen = now;
        Ok(Some(delta))
    }

    /// Drop slot `i` from the bookkeeping (swap-remove).
    fn forget(&mut self, i: usize) {
        let key = self.slots[i].key;
        self.index.remove(&key);
        self.slots.swap_remove(i);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.key, i as u32);
        }
    }
}

#[cfg(test)]
mod tests;
