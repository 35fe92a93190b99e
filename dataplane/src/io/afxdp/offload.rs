//! The kernel tier of the AF_XDP backend: [`OffloadMap`] over the XDP program's
//! maps (`bulkhead_flows`, `bulkhead_generation`, `bulkhead_tier` in
//! `dataplane/bpf/bulkhead.h`).
//!
//! The two port programs share one flow map and one generation map: the first
//! program's load creates them and pins them on bpffs under a name of this
//! process's own, the second load opens that pin, and the pin is removed as soon
//! as both are loaded (the programs and this process hold the maps from then on).
//! So one entry carries both directions of a flow, and one write of the
//! generation reaches both ports. Each program keeps its own tier counters.

use super::abi::{self, maps};
use super::sys;
use crate::flow::FlowKey;
use crate::offload::{
    EntryCounters, OffloadAction, OffloadError, OffloadMap, SideMacs, TierCounters,
};
use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray};
use std::path::{Path, PathBuf};

pub(crate) const FLOWS_MAP: &str = maps::BULKHEAD_FLOWS.name;
pub(crate) const GENERATION_MAP: &str = maps::BULKHEAD_GENERATION.name;
pub(crate) const TIER_MAP: &str = maps::BULKHEAD_TIER.name;

/// `struct bulkhead_flow_key`: the flow table's key, byte for byte.
#[derive(Debug, Clone, Copy)]
#[repr(transparent)]
pub(crate) struct BpfFlowKey(pub FlowKey);

/// `struct bulkhead_flow_val`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub(crate) struct BpfFlowValue {
    pub generation: u64,
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub last_seen: u64,
    pub action: u32,
    /// `[lo side's MAC, hi side's MAC]`: the frames the entry carries.
    pub mac: [[u8; 6]; 2],
}

/// `struct bulkhead_tier_count`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub(crate) struct BpfTierCount {
    pub packets: u64,
    pub bytes: u64,
}

// The maps as this module opens them (the aya wrapper, the key and value types)
// against their definitions in the object (abi.rs, generated from it): a
// change on either side fails the build.
const _: () = {
    use aya::maps::MapType;
    use std::mem::size_of;
    let flows = maps::BULKHEAD_FLOWS;
    assert!(matches!(flows.map_type, MapType::LruHash | MapType::Hash));
    assert!(flows.key_size as usize == size_of::<BpfFlowKey>());
    assert!(flows.value_size as usize == size_of::<BpfFlowValue>());
    let generation = maps::BULKHEAD_GENERATION;
    assert!(matches!(generation.map_type, MapType::Array));
    assert!(generation.key_size as usize == size_of::<u32>());
    assert!(generation.value_size as usize == size_of::<u64>());
    assert!(generation.max_entries >= 1);
    let tier = maps::BULKHEAD_TIER;
    assert!(matches!(tier.map_type, MapType::PerCpuArray));
    assert!(tier.key_size as usize == size_of::<u32>());
    assert!(tier.value_size as usize == size_of::<BpfTierCount>());
    assert!(tier.max_entries == abi::BULKHEAD_TIER_COUNT);
    assert!(abi::BULKHEAD_TIER_FORWARD < abi::BULKHEAD_TIER_COUNT);
    assert!(abi::BULKHEAD_TIER_DROP < abi::BULKHEAD_TIER_COUNT);
    assert!(abi::BULKHEAD_TIER_STALE < abi::BULKHEAD_TIER_COUNT);
    assert!(abi::BULKHEAD_TIER_PUNT < abi::BULKHEAD_TIER_COUNT);
    // The flow key's family, which the flow table writes.
    assert!(FlowKey::FAMILY_IPV4 as u32 == abi::BULKHEAD_FAMILY_IPV4);
    assert!(FlowKey::FAMILY_IPV6 as u32 == abi::BULKHEAD_FAMILY_IPV6);
};

// SAFETY: plain `#[repr(C)]` data of integers (FlowKey's padding is an explicit
// field), valid for every bit pattern, no pointers; the layouts are checked
// against the object's BTF by `tests::layouts_match_the_programs_btf`.
#[allow(unsafe_code)]
unsafe impl aya::Pod for BpfFlowKey {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl aya::Pod for BpfFlowValue {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl aya::Pod for BpfTierCount {}

/// Where the maps both port programs share are pinned while they load, and
/// removed after: `<dir>/<netns>-offload-<pid>-<n>-<map>`.
pub(crate) struct SharedPins {
    pub flows: PathBuf,
    pub generation: PathBuf,
}

impl SharedPins {
    pub(crate) fn new(dir: &Path, netns: u64) -> SharedPins {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let stem = format!(
            "{netns}-offload-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        SharedPins {
            flows: dir.join(format!("{stem}-flows")),
            generation: dir.join(format!("{stem}-generation")),
        }
    }

    /// Remove pins of this kind left by processes that no longer run (a crash
    /// between the two loads).
    pub(crate) fn remove_stale(dir: &Path, netns: u64) {
        let prefix = format!("{netns}-offload-");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Drop for SharedPins {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.flows);
        let _ = std::fs::remove_file(&self.generation);
    }
}

/// The maps of the kernel tier, taken from the loaded programs.
pub struct XdpOffloadMap {
    flows: HashMap<MapData, BpfFlowKey, BpfFlowValue>,
    generation: Array<MapData, u64>,
    /// The generation map's kernel id (for [`XdpOffloadMap::publish_fence`]).
    generation_id: u32,
    /// One per port program.
    tiers: Vec<PerCpuArray<MapData, BpfTierCount>>,
    capacity: usize,
}

impl std::fmt::Debug for XdpOffloadMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpOffloadMap")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

fn map_err(map: &'static str, op: &'static str, e: MapError) -> OffloadError {
    OffloadError::Map {
        map,
        op,
        reason: super::sys::error_chain(&e),
    }
}

fn is_not_found(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// Another handle on the same kernel map (by its id), for another worker.
pub(crate) fn reopen(map: &Map) -> Result<Map, MapError> {
    let (data, wrap): (&MapData, fn(MapData) -> Map) = match map {
        Map::HashMap(d) => (d, Map::HashMap),
        Map::LruHashMap(d) => (d, Map::LruHashMap),
        Map::Array(d) => (d, Map::Array),
        Map::PerCpuArray(d) => (d, Map::PerCpuArray),
        _ => {
            return Err(MapError::InvalidName {
                name: "an offload map of an unexpected type".into(),
            })
        }
    };
    Ok(wrap(MapData::from_id(data.info()?.id())?))
}

impl XdpOffloadMap {
    pub(crate) fn new(
        flows: Map,
        generation: Map,
        tiers: Vec<Map>,
        capacity: usize,
    ) -> Result<XdpOffloadMap, MapError> {
        let generation_id = match &generation {
            Map::Array(d) => d.info()?.id(),
            _ => {
                return Err(MapError::InvalidName {
                    name: format!("{GENERATION_MAP} (not an array)"),
                })
            }
        };
        Ok(XdpOffloadMap {
            flows: HashMap::try_from(flows)?,
            generation: Array::try_from(generation)?,
            generation_id,
            tiers: tiers
                .into_iter()
                .map(PerCpuArray::try_from)
                .collect::<Result<_, _>>()?,
            capacity,
        })
    }
}

impl XdpOffloadMap {
    /// A handle of its own on the generation map, for the publisher: see
    /// [`crate::offload::fence_publications`].
    pub fn generation_fence(&self) -> Result<std::sync::Arc<XdpGenerationFence>, OffloadError> {
        let data =
            MapData::from_id(self.generation_id).map_err(|e| map_err(GENERATION_MAP, "open", e))?;
        let map =
            Array::try_from(Map::Array(data)).map_err(|e| map_err(GENERATION_MAP, "open", e))?;
        Ok(std::sync::Arc::new(XdpGenerationFence {
            map: std::sync::Mutex::new((map, 0)),
        }))
    }
}

/// Writes the kernel generation of each published policy generation, never
/// moving it back (a generation older than the one in place leaves it: the
/// entries written under it are then stale, which sends their flows to
/// userspace, the safe side).
pub struct XdpGenerationFence {
    /// The map and the highest kernel generation written.
    map: std::sync::Mutex<(Array<MapData, u64>, u64)>,
}

impl std::fmt::Debug for XdpGenerationFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpGenerationFence").finish_non_exhaustive()
    }
}

impl crate::offload::GenerationFence for XdpGenerationFence {
    fn advance_to(&self, policy_generation: u64) -> Result<(), OffloadError> {
        let next = crate::offload::kernel_generation(policy_generation);
        let mut guard = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, last) = &mut *guard;
        if next <= *last {
            return Ok(());
        }
        map.set(0, next, 0)
            .map_err(|e| map_err(GENERATION_MAP, "write", e))?;
        *last = next;
        Ok(())
    }
}

impl XdpGenerationFence {
    /// The kernel's generation now (0: the fast path is off).
    pub fn current(&self) -> Result<u64, OffloadError> {
        let guard = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard
            .0
            .get(&0, 0)
            .map_err(|e| map_err(GENERATION_MAP, "lookup", e))
    }
}

impl OffloadMap for XdpOffloadMap {
    fn set_generation(&mut self, generation: u64) -> Result<(), OffloadError> {
        self.generation
            .set(0, generation, 0)
            .map_err(|e| map_err(GENERATION_MAP, "write", e))
    }

    fn insert(
        &mut self,
        key: &FlowKey,
        action: OffloadAction,
        macs: SideMacs,
        generation: u64,
    ) -> Result<(), OffloadError> {
        let value = BpfFlowValue {
            generation,
            action: match action {
                OffloadAction::Forward => abi::BULKHEAD_OFFLOAD_FORWARD,
                OffloadAction::Drop => abi::BULKHEAD_OFFLOAD_DROP,
            },
            mac: macs.map(|m| m.0),
            ..BpfFlowValue::default()
        };
        self.flows
            .insert(BpfFlowKey(*key), value, 0)
            .map_err(|e| map_err(FLOWS_MAP, "insert", e))
    }

    fn lookup(&self, key: &FlowKey) -> Result<Option<EntryCounters>, OffloadError> {
        match self.flows.get(&BpfFlowKey(*key), 0) {
            Ok(v) => Ok(Some(EntryCounters {
                packets: v.packets,
                bytes: v.bytes,
                last_seen_ns: v.last_seen,
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(map_err(FLOWS_MAP, "lookup", e)),
        }
    }

    fn delete(&mut self, key: &FlowKey) -> Result<(), OffloadError> {
        match self.flows.remove(&BpfFlowKey(*key)) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(map_err(FLOWS_MAP, "delete", e)),
        }
    }

    fn clock_ns(&self) -> u64 {
        sys::monotonic_ns()
    }

    fn tier(&self) -> Result<TierCounters, OffloadError> {
        let mut t = TierCounters::default();
        for map in &self.tiers {
            let sum = |index: u32| -> Result<(u64, u64), OffloadError> {
                let values = map
                    .get(&index, 0)
                    .map_err(|e| map_err(TIER_MAP, "lookup", e))?;
                Ok(values
                    .iter()
                    .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes)))
            };
            let (p, b) = sum(abi::BULKHEAD_TIER_FORWARD)?;
            t.forwarded_packets += p;
            t.forwarded_bytes += b;
            let (p, b) = sum(abi::BULKHEAD_TIER_DROP)?;
            t.dropped_packets += p;
            t.dropped_bytes += b;
            t.stale_packets += sum(abi::BULKHEAD_TIER_STALE)?.0;
            t.punted_packets += sum(abi::BULKHEAD_TIER_PUNT)?.0;
        }
        Ok(t)
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
#[path = "offload_btf.rs"]
mod tests;
