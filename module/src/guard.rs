//! The one wrapper every command handler runs in: panic catching (a panic must never
//! abort Redis), per-command counters, and turning coded errors and the contract's replies into Redis replies.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rcluster_domain::codes::{Code, CodedError};
use rcluster_domain::rc::reply::Build;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use crate::stats::{self, Cmd};

pub type Outcome = Result<RedisValue, CodedError>;
pub type Handler = fn(&Context, Vec<RedisString>) -> Outcome;

/// Runs `handler` for `cmd`, catching any panic and counting the call.
pub fn run(cmd: Cmd, ctx: &Context, args: Vec<RedisString>, handler: Handler) -> RedisResult {
    let started = std::time::Instant::now();
    let outcome = match catch_unwind(AssertUnwindSafe(|| handler(ctx, args))) {
        Ok(outcome) => outcome,
        Err(payload) => {
            stats::panic_caught();
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            ctx.log_warning(&format!("rcluster: {} panicked: {what}", cmd.name()));
            Err(CodedError::new(
                Code::Internal,
                format!("{} aborted by an internal error: {what}", cmd.name()),
            ))
        }
    };
    stats::record(cmd, outcome.is_ok());
    let outcome_kind = match &outcome {
        Err(e) if e.code == Code::NoQuorum => Some(stats::Outcome::NoQuorum),
        Err(_) => Some(stats::Outcome::Error),
        // A quorum command's duration is recorded when it answers (`stats::quorum_op`).
        Ok(_) if stats::Op::is_quorum_command(cmd) => None,
        Ok(_) => Some(stats::Outcome::Ok),
    };
    if let Some(kind) = outcome_kind {
        stats::command_done(cmd, kind, started.elapsed());
    }
    outcome.map_err(|e| RedisError::String(e.to_string()))
}

/// The contract's replies built as Redis module replies.
pub struct Reply;

impl Build for Reply {
    type Out = RedisValue;
    fn nil() -> RedisValue {
        RedisValue::Null
    }
    fn int(n: i64) -> RedisValue {
        RedisValue::Integer(n)
    }
    fn bulk(bytes: Vec<u8>) -> RedisValue {
        RedisValue::StringBuffer(bytes)
    }
    fn status(text: &'static str) -> RedisValue {
        RedisValue::SimpleStringStatic(text)
    }
    fn array(items: Vec<RedisValue>) -> RedisValue {
        RedisValue::Array(items)
    }
}
