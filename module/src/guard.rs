//! The one wrapper every command handler runs in: arity check, panic catching (a panic must never
//! abort Redis), per-command counters, and turning coded errors into Redis error replies.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rcluster_domain::codes::{Code, CodedError};
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use crate::stats::{self, Cmd};

pub type Outcome = Result<RedisValue, CodedError>;
pub type Handler = fn(&Context, Vec<RedisString>) -> Outcome;

/// Runs `handler` for `cmd`, catching any panic and counting the call.
pub fn run(cmd: Cmd, ctx: &Context, args: Vec<RedisString>, handler: Handler) -> RedisResult {
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
    outcome.map_err(|e| RedisError::String(e.to_string()))
}

/// Checks the argument count (command name included) against `min..=max`.
pub fn arity(
    cmd: Cmd,
    args: &[RedisString],
    min: usize,
    max: usize,
    usage: &str,
) -> Result<(), CodedError> {
    if args.len() < min || args.len() > max {
        return Err(CodedError::new(
            Code::Arity,
            format!(
                "wrong number of arguments for '{}' command; usage: {usage}",
                cmd.name()
            ),
        ));
    }
    Ok(())
}

/// A bulk string reply of a decimal number (versions and timestamps: u64, so never an integer
/// reply that could overflow i64).
pub fn number(n: u64) -> RedisValue {
    RedisValue::BulkString(n.to_string())
}
