//! Allocation counting, so that a bench can print allocations per event of a role it runs as a
//! child process (read from that process's `/metrics`). The `herald` binary installs
//! [`COUNTING_ALLOCATOR`] as its global allocator: the system allocator plus a few relaxed
//! atomic adds per call.

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use std::alloc::System;

/// The type of [`COUNTING_ALLOCATOR`].
pub type CountingAllocator = &'static StatsAlloc<System>;

/// The system allocator, counting its calls; `#[global_allocator]` in a binary.
pub const COUNTING_ALLOCATOR: CountingAllocator = &INSTRUMENTED_SYSTEM;

/// Allocations this process made so far (a `realloc` counts: it may move); 0 unless its binary
/// installed [`COUNTING_ALLOCATOR`].
pub fn allocations() -> u64 {
    let stats = INSTRUMENTED_SYSTEM.stats();
    (stats.allocations + stats.reallocations) as u64
}

/// Bytes allocated and not yet freed; 0 unless its binary installed [`COUNTING_ALLOCATOR`].
pub fn heap_bytes() -> u64 {
    let stats = INSTRUMENTED_SYSTEM.stats();
    (stats.bytes_allocated as u64).saturating_sub(stats.bytes_deallocated as u64)
}
