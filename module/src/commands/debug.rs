//! `RC.DEBUG PANIC`: panics inside a handler on purpose, to prove that a panic is caught and
//! Redis keeps running. Refused unless the module was loaded with `enable-debug-command yes`.

use std::sync::atomic::{AtomicBool, Ordering};

use rcluster_domain::codes::{Code, CodedError};
use redis_module::{Context, RedisString};

use crate::guard::{arity, Outcome};
use crate::stats::Cmd;

pub static ENABLED: AtomicBool = AtomicBool::new(false);

pub fn debug(_ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::Debug, &args, 2, 2, "RC.DEBUG PANIC")?;
    if !ENABLED.load(Ordering::Relaxed) {
        return Err(CodedError::new(
            Code::BadArg,
            "RC.DEBUG is disabled; load the module with 'enable-debug-command yes' to use it",
        ));
    }
    if args[1].as_slice().eq_ignore_ascii_case(b"PANIC") {
        panic!("RC.DEBUG PANIC requested");
    }
    Err(CodedError::new(Code::BadArg, "usage: RC.DEBUG PANIC"))
}
