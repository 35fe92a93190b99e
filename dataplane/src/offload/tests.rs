use super::*;
use crate::wire::MacAddr;
use std::net::{IpAddr, Ipv4Addr};

fn key(port: u16) -> (FlowKey, Side) {
    FlowKey::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        17,
        port,
        5000,
        [0, 0],
    )
}

/// The MACs of the test flows' ends, `[lo, hi]`.
const MACS: SideMacs = [MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2])];

/// The MACs of a frame sent by `side` of a test flow.
fn from(side: Side) -> (MacAddr, MacAddr) {
    match side {
        Side::Lo => (MACS[0], MACS[1]),
        Side::Hi => (MACS[1], MACS[0]),
    }
}

#[test]
fn a_frame_from_other_macs_is_not_carried() {
    let (mut o, map) = offloader(8);
    let (k, side) = key(1000);
    o.install(&k, OffloadAction::Forward, MACS, 0).unwrap();
    let stranger = MacAddr([2, 0, 0, 0, 0, 9]);
    assert_eq!(map.carry(&k, side, (stranger, MACS[1]), 60), None);
    assert_eq!(map.carry(&k, side, (MACS[0], stranger), 60), None);
    // The flow's own MACs, but the wrong way round for this side.
    assert_eq!(map.carry(&k, side, (MACS[1], MACS[0]), 60), None);
    assert_eq!(
        map.carry(&k, side, from(side), 60),
        Some(OffloadAction::Forward)
    );
}

fn offloader(capacity: usize) -> (Offloader, MemOffloadMap) {
    let map = MemOffloadMap::new(capacity);
    let mut o = Offloader::new(Box::new(map.clone()));
    o.sync_generation(1).unwrap();
    (o, map)
}

#[test]
fn reads_report_only_what_the_kernel_counted_since_the_last_read() {
    let (mut o, map) = offloader(8);
    let (k, side) = key(1000);
    assert_eq!(
        o.install(&k, OffloadAction::Forward, MACS, 0).unwrap(),
        None
    );
    map.set_clock(100);
    for _ in 0..3 {
        assert_eq!(
            map.carry(&k, side, from(side), 60),
            Some(OffloadAction::Forward)
        );
    }
    map.set_clock(250);
    let Probe::Present(d) = o.read(&k).unwrap() else {
        panic!("entry gone")
    };
    assert_eq!(d.packets_of(side), 3);
    assert_eq!(d.bytes_of(side), 180);
    assert_eq!(d.idle_ns, Some(150));
    // Nothing new: an empty delta, no idle time.
    let Probe::Present(d) = o.read(&k).unwrap() else {
        panic!("entry gone")
    };
    assert!(d.is_empty());
    assert_eq!(d.idle_ns, None);
    map.carry(&k, side, from(side), 40);
    assert_eq!(o.remove(&k).unwrap().map(|d| d.bytes_of(side)), Some(40));
    assert!(map.is_empty());
    assert_eq!(o.stats().live, 0);
    assert_eq!(o.stats().removed, 1);
}

#[test]
fn a_generation_change_makes_entries_stale_until_installed_again() {
    let (mut o, map) = offloader(8);
    let (k, side) = key(1000);
    o.install(&k, OffloadAction::Forward, MACS, 0).unwrap();
    assert!(o.is_fresh(&k, OffloadAction::Forward));
    assert!(!o.sync_generation(1).unwrap(), "same policy generation");
    assert!(o.sync_generation(2).unwrap());
    assert_eq!(o.stats().invalidated, 1);
    assert!(!o.is_fresh(&k, OffloadAction::Forward));
    assert_eq!(
        map.carry(&k, side, from(side), 60),
        None,
        "a stale entry punts"
    );
    o.install(&k, OffloadAction::Drop, MACS, 0).unwrap();
    assert_eq!(
        map.carry(&k, side, from(side), 60),
        Some(OffloadAction::Drop)
    );
    assert_eq!(map.entry(&k), Some((OffloadAction::Drop, o.generation())));
}

#[test]
fn a_full_map_refuses_installs_and_an_evicted_entry_is_found_gone() {
    let (mut o, map) = offloader(2);
    let keys: Vec<FlowKey> = (1..=3).map(|p| key(p).0).collect();
    for k in &keys {
        o.install(k, OffloadAction::Forward, MACS, 0).unwrap();
    }
    assert!(o.is_installed(&keys[0]) && o.is_installed(&keys[1]));
    assert!(!o.is_installed(&keys[2]), "no room: stays in userspace");
    assert_eq!(o.stats().full, 1);

    map.evict(&keys[0]);
    let mut seen = Vec::new();
    o.sweep(10, |k, p| {
        seen.push((*k, p));
        true
    });
    assert!(seen.contains(&(keys[0], Probe::Gone)));
    assert_eq!(seen.len(), 2);
    assert_eq!(o.stats().evicted, 1);
    assert_eq!(o.stats().live, 1);
    // The room is back.
    o.install(&keys[2], OffloadAction::Forward, MACS, 0)
        .unwrap();
    assert!(o.is_installed(&keys[2]));
}

#[test]
fn recheck_is_rate_limited_per_entry() {
    let (mut o, map) = offloader(4);
    let (k, _) = key(7);
    o.install(&k, OffloadAction::Forward, MACS, 1_000).unwrap();
    assert_eq!(o.recheck(&k, 2_000).unwrap(), None, "just installed");
    map.evict(&k);
    assert_eq!(
        o.recheck(&k, 1_000 + RECHECK_NS + 1).unwrap(),
        Some(Probe::Gone)
    );
    assert!(!o.is_installed(&k));
}

#[test]
fn with_a_publish_fence_the_publisher_not_the_worker_makes_entries_stale() {
    use crate::policy::{PolicySnapshot, SnapshotCell};
    let map = MemOffloadMap::new(8);
    let cell = SnapshotCell::new(PolicySnapshot::empty(1));
    let fence_map = map.clone();
    let fence = Box::new(move |g| {
        let mut m = fence_map.clone();
        m.set_generation(kernel_generation(g)).unwrap();
    });
    assert!(cell.set_publish_fence(fence).is_ok());
    assert_eq!(
        map.generation(),
        2,
        "the fence writes the current generation at once"
    );

    let mut o = Offloader::new(Box::new(map.clone())).with_publish_fence();
    o.sync_generation(1).unwrap();
    let (k, side) = key(1000);
    o.install(&k, OffloadAction::Forward, MACS, 0).unwrap();
    assert_eq!(
        map.carry(&k, side, from(side), 60),
        Some(OffloadAction::Forward)
    );

    cell.publish(PolicySnapshot::empty(2));
    // The worker has not polled yet: the kernel already sends the flow back.
    assert_eq!(map.generation(), 3);
    assert_eq!(map.carry(&k, side, from(side), 60), None);
    // A worker still deciding under generation 1 writes entries that are
    // stale from the start, and never moves the kernel's generation back.
    let (k2, side2) = key(2000);
    o.install(&k2, OffloadAction::Forward, MACS, 0).unwrap();
    assert_eq!(map.carry(&k2, side2, from(side2), 60), None);
    assert!(o.sync_generation(2).unwrap());
    assert_eq!(map.generation(), 3);
    o.install(&k, OffloadAction::Forward, MACS, 0).unwrap();
    assert_eq!(
        map.carry(&k, side, from(side), 60),
        Some(OffloadAction::Forward)
    );
}
