//! The module's global allocator: blocks of at least [`COUNTED_FROM`] bytes (values, chunks,
//! reply and command buffers: the memory that grows with the data) come from Redis's allocator,
//! so they count in `INFO memory` and against `maxmemory`; smaller ones (the coordinator's
//! futures, tasks and bookkeeping, short-lived and bounded by the requests in flight) come from
//! the system allocator. Redis's allocator updates one shared `used_memory` counter on every
//! call, and the coordinator thread's many small allocations contending for it with Redis's
//! main thread cost about a tenth of the machine's CPU during quorum writes.

use std::alloc::{GlobalAlloc, Layout, System};

use redis_module::alloc::RedisAlloc;

/// The size from which a block is Redis's (and counted).
pub const COUNTED_FROM: usize = 1024;

pub struct SplitAlloc;

fn counted(size: usize) -> bool {
    size >= COUNTED_FROM
}

// SAFETY: every block is freed (and resized) by the allocator that made it: the choice depends
// only on the layout's size, which Rust passes back unchanged to `dealloc` and `realloc`.
unsafe impl GlobalAlloc for SplitAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted(layout.size()) {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { RedisAlloc.alloc(layout) }
        } else {
            // SAFETY: as above.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted(layout.size()) {
            // SAFETY: `ptr` came from RedisAlloc (same size rule).
            unsafe { RedisAlloc.dealloc(ptr, layout) }
        } else {
            // SAFETY: `ptr` came from System (same size rule).
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !counted(layout.size()) && !counted(new_size) {
            // SAFETY: both sizes belong to System, which made `ptr`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Crossing the threshold (or within Redis's allocator, which has no realloc of its own
        // here): a new block, the bytes copied, the old block freed by its maker.
        // SAFETY: the caller guarantees a valid layout for `new_size` with this alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as in `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size and do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}
