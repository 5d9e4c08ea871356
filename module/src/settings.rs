//! The module's configuration values (`CONFIG SET rcluster.<name>` or `loadmodule ... <name> <v>`)
//! and typed accessors for the handlers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

pub static MAX_KEY_BYTES: AtomicI64 = AtomicI64::new(DEFAULT_MAX_KEY_BYTES);
pub static MAX_VALUE_BYTES: AtomicI64 = AtomicI64::new(DEFAULT_MAX_VALUE_BYTES);
pub static MAX_CHUNK_BYTES: AtomicI64 = AtomicI64::new(DEFAULT_MAX_CHUNK_BYTES);
pub static CLOCK_MAX_FORWARD_MS: AtomicI64 = AtomicI64::new(DEFAULT_CLOCK_MAX_FORWARD_MS);
pub static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);
/// Pause between anti-entropy passes (0: none).
pub static ANTI_ENTROPY_INTERVAL_MS: AtomicI64 = AtomicI64::new(DEFAULT_ANTI_ENTROPY_INTERVAL_MS);
/// Requests traced per million without `TRACE` (0: none), and the caps of the ring of traces.
pub static TRACE_SAMPLE_PER_MILLION: AtomicI64 = AtomicI64::new(0);
pub static TRACE_MAX_COUNT: AtomicI64 = AtomicI64::new(DEFAULT_TRACE_MAX_COUNT);
pub static TRACE_MAX_BYTES: AtomicI64 = AtomicI64::new(DEFAULT_TRACE_MAX_BYTES);
pub static NODE_ID: Mutex<String> = Mutex::new(String::new());
/// Password of the internal user (`rcluster-internal`) on every peer's Redis.
pub static INTERNAL_PASSWORD: Mutex<String> = Mutex::new(String::new());

pub const DEFAULT_MAX_KEY_BYTES: i64 = 1024;
pub const DEFAULT_MAX_VALUE_BYTES: i64 = 8 << 20;
pub const DEFAULT_MAX_CHUNK_BYTES: i64 = 5 << 20;
pub const DEFAULT_CLOCK_MAX_FORWARD_MS: i64 = 60_000;
/// Ten minutes: a pass sends every register once, so it is kept rare by default.
pub const DEFAULT_ANTI_ENTROPY_INTERVAL_MS: i64 = 600_000;
pub const DEFAULT_TRACE_MAX_COUNT: i64 = rcluster_domain::trace::DEFAULT_MAX_TRACES as i64;
pub const DEFAULT_TRACE_MAX_BYTES: i64 = rcluster_domain::trace::DEFAULT_MAX_BYTES as i64;
/// Bounds of the clock offset the node process may feed in from NTP (one day either way).
pub const MAX_CLOCK_OFFSET_MS: i64 = 86_400_000;

fn read(v: &AtomicI64) -> u64 {
    // Redis enforces each setting's minimum of 0 or more, so the value is never negative.
    u64::try_from(v.load(Ordering::Relaxed)).unwrap_or(0)
}

pub fn trace_sample_per_million() -> u64 {
    read(&TRACE_SAMPLE_PER_MILLION)
}
pub fn trace_max_count() -> u64 {
    read(&TRACE_MAX_COUNT)
}
pub fn trace_max_bytes() -> u64 {
    read(&TRACE_MAX_BYTES)
}

pub fn anti_entropy_interval_ms() -> u64 {
    read(&ANTI_ENTROPY_INTERVAL_MS)
}

/// The size limits the argument checks apply, as configured now.
pub fn limits() -> rcluster_domain::rc::Limits {
    rcluster_domain::rc::Limits {
        max_key_bytes: max_key_bytes(),
        max_value_bytes: max_value_bytes(),
        max_chunk_bytes: max_chunk_bytes(),
    }
}

pub fn max_key_bytes() -> u64 {
    read(&MAX_KEY_BYTES)
}
pub fn max_value_bytes() -> u64 {
    read(&MAX_VALUE_BYTES)
}
pub fn max_chunk_bytes() -> u64 {
    read(&MAX_CHUNK_BYTES)
}
pub fn clock_max_forward_ms() -> u64 {
    read(&CLOCK_MAX_FORWARD_MS)
}
pub fn clock_offset_ms() -> i64 {
    CLOCK_OFFSET_MS.load(Ordering::Relaxed)
}
fn text(v: &Mutex<String>) -> String {
    match v.lock() {
        Ok(s) => s.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

pub fn node_id() -> String {
    text(&NODE_ID)
}
pub fn internal_password() -> String {
    text(&INTERNAL_PASSWORD)
}
