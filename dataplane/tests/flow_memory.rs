//! The flow table's memory is faulted in when the table is built, not by the
//! first packets of its flows: a worker faulting (and compacting) huge pages in
//! on its first flows stalled for tens of milliseconds after a start, and the
//! kernel dropped frames at its socket meanwhile. A binary of its own, so no
//! other test's allocations move the resident set while it is measured.
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use dataplane::flow::{FlowTable, Timeouts};

/// Resident bytes of this process (`/proc/self/statm`, pages of 4 KiB).
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages in statm");
    pages * 4096
}

#[test]
fn a_new_table_is_resident_before_any_flow() {
    const CAPACITY: usize = 1 << 20;
    let before = resident();
    let table = FlowTable::new(CAPACITY, Timeouts::default());
    let grown = resident().saturating_sub(before);
    // Slots (2^21 of 8 bytes) and entries (2^20 of 128 bytes) at least.
    let least = (2u64 << 20) * 8 + (1u64 << 20) * 128;
    eprintln!("resident after building: +{} MiB", grown >> 20);
    assert!(
        grown >= least * 9 / 10,
        "only {} MiB of at least {} MiB resident",
        grown >> 20,
        least >> 20
    );
    assert_eq!(table.len(), 0);
}
