//! The node's hybrid logical clock.
//!
//! `RC.CLOCK` issues a new timestamp: `[timestamp, physical_ms, logical]`.
//! `RC.CLOCK MERGE <timestamp>` merges a timestamp seen from another node (Lamport rule) and
//! returns the new local one; a timestamp more than `rcluster.clock-max-forward-ms` ahead of the
//! local wall clock is refused with `CLOCKSKEW`.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rcluster_domain::codes::{Code, CodedError};
use rcluster_domain::hlc::{Hlc, Timestamp};
use rcluster_domain::validate;
use redis_module::{Context, RedisString, RedisValue};

use crate::guard::{arity, number, Outcome};
use crate::settings;
use crate::stats::Cmd;

const USAGE: &str = "RC.CLOCK [MERGE <timestamp>]";

static CLOCK: Mutex<Hlc> = Mutex::new(Hlc::ZERO);

/// Wall time in ms, corrected by the offset the node process measured against NTP.
fn wall_ms() -> u64 {
    let raw = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    raw.saturating_add_signed(settings::clock_offset_ms())
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
    RedisValue::Array(vec![
        number(t.0),
        RedisValue::Integer(i64::try_from(t.physical_ms()).unwrap_or(i64::MAX)),
        RedisValue::Integer(i64::from(t.logical())),
    ])
}

pub fn clock(_ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::Clock, &args, 1, 3, USAGE)?;
    let wall = wall_ms();
    match args.get(1).map(|a| a.as_slice().to_ascii_uppercase()) {
        None => Ok(reply(with_clock(|c| c.tick(wall)))),
        Some(sub) if sub == b"MERGE" && args.len() == 3 => {
            let remote = Timestamp(validate::u64_arg("timestamp", args[2].as_slice())?);
            let max_forward = settings::clock_max_forward_ms();
            with_clock(|c| c.merge(remote, wall, max_forward))
                .map(reply)
                .map_err(|e| CodedError::new(Code::ClockSkew, format!("{e}; not merged")))
        }
        Some(_) => Err(CodedError::new(
            Code::BadArg,
            format!(
                "unknown form of RC.CLOCK '{}'; usage: {USAGE}",
                validate::show(args[1..].concat_bytes().as_slice())
            ),
        )),
    }
}

trait ConcatBytes {
    fn concat_bytes(&self) -> Vec<u8>;
}

impl ConcatBytes for [RedisString] {
    fn concat_bytes(&self) -> Vec<u8> {
        self.iter()
            .map(|a| a.as_slice())
            .collect::<Vec<_>>()
            .join(&b' ')
    }
}
