//! Hints to the CPU and the kernel about memory the packet path is about to use.
//!
//! The only `unsafe` outside the AF_XDP backend. No hint changes what a program computes:
//! a prefetch never faults and has no visible effect but timing,
//! `madvise(MADV_HUGEPAGE)` only asks the kernel to back an anonymous mapping with
//! transparent huge pages, and `madvise(MADV_POPULATE_WRITE)` only faults pages
//! in ahead of their first use. The first two exist because the flow table at a
//! million flows is bound by cache and TLB misses (see `bench/RESULTS.md`); the
//! third because faulting a huge page in on the packet path can stall a worker
//! for tens of milliseconds (direct compaction), long enough for the kernel to
//! drop frames at the socket right after a start.

/// Ask the CPU to bring the cache line holding `*p` into all cache levels.
#[inline(always)]
#[allow(unsafe_code)]
pub fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is a hint: it never faults, reads nothing into the
    // program's state and is valid for any address; `p` is a valid reference anyway.
    // SSE is part of the x86_64 baseline, so the target feature is always present.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (p as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Ask the kernel to back `buf`'s pages with transparent huge pages where it can
/// (`/sys/kernel/mm/transparent_hugepage/enabled` set to `madvise` or `always`).
/// Call it before the memory is first touched. Failure is harmless and ignored.
pub fn advise_huge_pages<T>(buf: &[T]) {
    if let Some((start, len)) = whole_pages(buf) {
        if len > 2 << 20 {
            madvise(start, len, MADV_HUGEPAGE);
        }
    }
}

/// Fault every whole page of `buf` in now, writable, so that its first use on
/// the packet path takes no page fault (and no huge-page compaction). Call it
/// after [`advise_huge_pages`]. Contents are unchanged. Where the kernel lacks
/// `MADV_POPULATE_WRITE` (before Linux 5.14) the pages fault in on first use,
/// as without this call.
pub fn populate<T>(buf: &mut [T]) {
    if let Some((start, len)) = whole_pages(buf) {
        madvise(start, len, MADV_POPULATE_WRITE);
    }
}

#[cfg(target_os = "linux")]
const MADV_HUGEPAGE: i32 = libc::MADV_HUGEPAGE;
#[cfg(target_os = "linux")]
const MADV_POPULATE_WRITE: i32 = libc::MADV_POPULATE_WRITE;
#[cfg(not(target_os = "linux"))]
const MADV_HUGEPAGE: i32 = 0;
#[cfg(not(target_os = "linux"))]
const MADV_POPULATE_WRITE: i32 = 0;

/// The page-aligned part of `buf`: its start address and length, if any.
fn whole_pages<T>(buf: &[T]) -> Option<(usize, usize)> {
    const PAGE: usize = 4096;
    let start = buf.as_ptr() as usize;
    let end = start + std::mem::size_of_val(buf);
    let aligned = start.next_multiple_of(PAGE);
    let len = end.saturating_sub(aligned) / PAGE * PAGE;
    (len > 0).then_some((aligned, len))
}

#[allow(unsafe_code)]
fn madvise(start: usize, len: usize, advice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: `start..start + len` is a page-aligned range inside an allocation
    // the caller owns (`whole_pages`). MADV_HUGEPAGE changes only how the kernel
    // backs it and MADV_POPULATE_WRITE only faults it in: neither changes its
    // contents. An error (no THP, an older kernel) leaves the range as it was.
    unsafe {
        libc::madvise(start as *mut libc::c_void, len, advice);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, len, advice);
}
