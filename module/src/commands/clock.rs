//! The node's hybrid logical clock, and the handler of `RC.CLOCK [MERGE <timestamp>]` (as
//! `rcluster_domain::rc::clock` defines it): a merged timestamp more than
//! `rcluster.clock-max-forward-ms` ahead of the local wall clock is refused with `CLOCKSKEW`.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rcluster_domain::codes::{Code, CodedError};
use rcluster_domain::hlc::{Hlc, Timestamp};
use rcluster_domain::rc::clock::{Clock, ClockReply};
use redis_module::{Context, RedisString, RedisValue};

use crate::guard::{Outcome, Reply};
use crate::settings;

static CLOCK: Mutex<Hlc> = Mutex::new(Hlc::ZERO);

/// Wall time in ms, corrected by the offset the node process measured against NTP and shifted
/// by an injected skew fault (`crate::faults`).
pub fn wall_ms() -> u64 {
    let raw = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    raw.saturating_add_signed(settings::clock_offset_ms().saturating_add(crate::faults::skew_ms()))
}

fn with_clock<T>(f: impl FnOnce(&mut Hlc) -> T) -> T {
    // The clock state is a plain value: a poisoned lock still holds a valid one.
    let mut guard = CLOCK.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard)
}

/// A new timestamp for a write this node coordinates.
pub fn tick() -> u64 {
    let wall = wall_ms();
    with_clock(|c| c.tick(wall)).0
}

/// Moves the clock past a version this replica stores (ignored when too far ahead).
pub fn observe(ts: u64) {
    let wall = wall_ms();
    let max_forward = settings::clock_max_forward_ms();
    let _ = with_clock(|c| c.merge(Timestamp(ts), wall, max_forward));
}

fn reply(t: Timestamp) -> RedisValue {
    ClockReply(t).encode::<Reply>()
}

pub fn clock(_ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let wall = wall_ms();
    match Clock::parse(&args)?.merge {
        None => Ok(reply(with_clock(|c| c.tick(wall)))),
        Some(remote) => {
            let max_forward = settings::clock_max_forward_ms();
            with_clock(|c| c.merge(Timestamp(remote), wall, max_forward))
                .map(reply)
                .map_err(|e| CodedError::new(Code::ClockSkew, format!("{e}; not merged")))
        }
    }
}
