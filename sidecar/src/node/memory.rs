//! Memory of the node process: the limit its cgroup sets (a container's), and heap tuning.
//!
//! Heap tuning: a file transfer allocates and frees a chunk-sized buffer (1 to 5 MiB) per chunk; with glibc's defaults each one is a fresh mmap or a heap trimmed and
//! grown again, so every chunk paid page faults and zeroing (about a quarter of download time,
//! measured with perf). The node keeps freed memory while transfers run and hands it back to the
//! OS when the last one ends, so an idle node stays small.

use std::sync::atomic::{AtomicUsize, Ordering};

use rcluster_domain::memory_fit::{limit_files, parse_limit};

/// The tightest memory limit of this process's cgroup and its parents (v1 or v2), in bytes;
/// `None` when no limit is set or none can be read.
pub fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    limit_files(&own)
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|text| parse_limit(&text))
        .min()
}

/// Allocations up to this size come from the heap, not from their own mmap.
const MMAP_THRESHOLD: libc::c_int = 16 << 20;
/// Free memory at the top of the heap kept instead of trimmed after each free.
const TRIM_THRESHOLD: libc::c_int = 64 << 20;

static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Sets the thresholds; called once when a node starts.
pub fn tune() {
    // SAFETY: mallopt only changes glibc allocator parameters; both values are in range.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Held for the length of one upload or download.
pub struct Transfer(());

impl Transfer {
    pub fn begin() -> Transfer {
        ACTIVE.fetch_add(1, Ordering::Relaxed);
        Transfer(())
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if ACTIVE.fetch_sub(1, Ordering::Relaxed) == 1 {
            // SAFETY: malloc_trim only returns free heap pages to the OS.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}
