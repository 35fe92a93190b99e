//! Hints to the CPU and the kernel about memory the packet path is about to use.
//!
//! The only `unsafe` in the crate. Neither hint changes what a program computes:
//! a prefetch never faults and has no visible effect but timing, and
//! `madvise(MADV_HUGEPAGE)` only asks the kernel to back an anonymous mapping with
//! transparent huge pages. Both exist because the flow table at a million flows is
//! bound by cache and TLB misses (see `bench/RESULTS.md`).

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
#[allow(unsafe_code)]
pub fn advise_huge_pages<T>(buf: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = buf.as_ptr() as usize;
        let end = start + std::mem::size_of_val(buf);
        let aligned = start.next_multiple_of(PAGE);
        if end > aligned + (2 << 20) {
            // SAFETY: madvise with MADV_HUGEPAGE on a page-aligned range inside an
            // allocation we own changes only how the kernel backs it, never its
            // contents; an error (e.g. EINVAL without THP) leaves the range as it was.
            unsafe {
                libc::madvise(
                    aligned as *mut libc::c_void,
                    (end - aligned) / PAGE * PAGE,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}
