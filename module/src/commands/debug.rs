//! The handler of `RC.DEBUG`: `PANIC` panics inside a handler on purpose, to prove that a panic
//! is caught and Redis keeps running; `DROP-WRITES on|off` makes this node acknowledge replica
//! writes without storing them (the consistency checker's proof that it catches lost writes;
//! [`drops_writes`] is consulted by the one replica write path, `kv::apply`). Refused unless
//! the module was loaded with `enable-debug-command yes`.

use std::sync::atomic::{AtomicBool, Ordering};

use rcluster_domain::codes::{Code, CodedError};
use rcluster_domain::rc::debug::{Action, Debug};
use redis_module::{Context, RedisString, RedisValue};

use crate::guard::Outcome;
use crate::stats::Cmd;

pub static ENABLED: AtomicBool = AtomicBool::new(false);

/// `RC.DEBUG DROP-WRITES on`: replica writes are acknowledged and not stored.
static DROP_WRITES: AtomicBool = AtomicBool::new(false);

/// Whether this node acknowledges replica writes without storing them.
pub fn drops_writes() -> bool {
    DROP_WRITES.load(Ordering::Relaxed)
}

pub fn debug(ctx: &Context, args: Vec<RedisString>) -> Outcome {
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
    match request.action()? {
        Action::Panic => panic!("{} PANIC requested", Cmd::Debug.name()),
        Action::DropWrites(on) => {
            DROP_WRITES.store(on, Ordering::Relaxed);
            ctx.log_warning(&format!(
                "{} DROP-WRITES {}: replica writes are {}",
                Cmd::Debug.name(),
                if on { "on" } else { "off" },
                if on {
                    "acknowledged WITHOUT being stored"
                } else {
                    "stored again"
                }
            ));
            Ok(RedisValue::SimpleStringStatic("OK"))
        }
    }
}
