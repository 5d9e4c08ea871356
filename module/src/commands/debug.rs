//! The handler of `RC.DEBUG PANIC`: panics inside a handler on purpose, to prove that a panic is caught and
//! Redis keeps running. Refused unless the module was loaded with `enable-debug-command yes`.

use std::sync::atomic::{AtomicBool, Ordering};

use rcluster_domain::codes::{Code, CodedError};
use rcluster_domain::rc::debug::Debug;
use redis_module::{Context, RedisString};

use crate::guard::Outcome;
use crate::stats::Cmd;

pub static ENABLED: AtomicBool = AtomicBool::new(false);

pub fn debug(_ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let request = Debug::parse(&args)?;
    if !ENABLED.load(Ordering::Relaxed) {
        return Err(CodedError::new(
            Code::BadArg,
            format!(
                "{} is disabled; load the module with 'enable-debug-command yes' to use it",
                Cmd::Debug.name()
            ),
        ));
    }
    request.check_panic()?;
    panic!("{} requested", Cmd::Debug.usage());
}
