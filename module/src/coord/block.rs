//! Blocked clients with a timeout, on the raw module API (the crate's `block_client` has none).
//! A command blocks its client, hands the work to the coordinator runtime, and the runtime calls
//! [`Blocked::finish`] exactly once; Redis then runs [`reply_cb`] on its main thread. If the work
//! overruns, Redis's own timeout answers first ([`timeout_cb`]), so a client always gets a reply.

use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use rcluster_domain::codes::Code;
use redis_module::raw;
use redis_module::{Context, RedisError, RedisValue};

/// What the client gets: owned data only, so it can cross threads.
#[derive(Debug)]
pub enum Answer {
    Ok,
    /// A value or nil.
    Value(Option<Vec<u8>>),
    /// A full error reply, code first.
    Error(String),
}

impl Answer {
    fn into_reply(self) -> Result<RedisValue, RedisError> {
        match self {
            Answer::Ok => Ok(RedisValue::SimpleStringStatic("OK")),
            Answer::Value(Some(v)) => Ok(RedisValue::StringBuffer(v)),
            Answer::Value(None) => Ok(RedisValue::Null),
            Answer::Error(e) => Err(RedisError::String(e)),
        }
    }
}

/// A client blocked until [`Blocked::finish`].
pub struct Blocked(*mut raw::RedisModuleBlockedClient);

// SAFETY: a blocked-client handle is meant to be passed to another thread; the module API
// functions used on it (RM_UnblockClient) are thread-safe.
unsafe impl Send for Blocked {}

/// Whether this client can be blocked (not inside MULTI, a script, or a context that forbids
/// blocking).
pub fn can_block(ctx: &Context) -> bool {
    let flags = crate::store::context_flags(ctx);
    let forbidden = raw::REDISMODULE_CTX_FLAGS_MULTI
        | raw::REDISMODULE_CTX_FLAGS_LUA
        | raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING;
    flags & forbidden == 0
}

impl Blocked {
    /// Blocks the calling client; Redis answers `timeout_cb` itself after `safety_timeout_ms`.
    pub fn new(ctx: &Context, safety_timeout_ms: u64) -> Option<Blocked> {
        // SAFETY: the API table is filled once at module load and only read afterwards.
        let block = unsafe { raw::RedisModule_BlockClient }?;
        let timeout = i64::try_from(safety_timeout_ms).unwrap_or(i64::MAX);
        // SAFETY: a valid context; the callbacks match the expected signatures.
        let bc = unsafe {
            block(
                ctx.ctx,
                Some(reply_cb),
                Some(timeout_cb),
                Some(free_cb),
                timeout,
            )
        };
        (!bc.is_null()).then_some(Blocked(bc))
    }

    /// Runs `f` holding Redis's lock (the main thread waits meanwhile), with a context of this
    /// client: keys are opened and commands run as from the main thread, and what `f` replicates
    /// goes to the AOF when the lock is released. `None` when Redis gives no such context.
    /// Never call it on Redis's main thread, which holds that lock already.
    pub fn with_redis_locked<R>(&self, f: impl FnOnce(&Context) -> R) -> Option<R> {
        // SAFETY: the API table is filled at load and only read afterwards.
        let (get, lock, unlock, free) = unsafe {
            (
                raw::RedisModule_GetThreadSafeContext?,
                raw::RedisModule_ThreadSafeContextLock?,
                raw::RedisModule_ThreadSafeContextUnlock?,
                raw::RedisModule_FreeThreadSafeContext?,
            )
        };
        // SAFETY: the handle is a live blocked client (not finished yet: `self` is borrowed).
        let ctx = unsafe { get(self.0) };
        if ctx.is_null() {
            return None;
        }
        /// Unlocks, then frees the context (as Redis documents), also when `f` panics.
        struct Locked {
            ctx: *mut raw::RedisModuleCtx,
            unlock: unsafe extern "C" fn(*mut raw::RedisModuleCtx),
            free: unsafe extern "C" fn(*mut raw::RedisModuleCtx),
        }
        impl Drop for Locked {
            fn drop(&mut self) {
                // SAFETY: locked once below and unlocked once here; freed after.
                unsafe {
                    (self.unlock)(self.ctx);
                    (self.free)(self.ctx);
                }
            }
        }
        // SAFETY: a thread-safe context just made; this thread is not Redis's main thread.
        unsafe { lock(ctx) };
        let _locked = Locked { ctx, unlock, free };
        Some(f(&Context::new(ctx)))
    }

    /// Hands the answer to Redis's main thread and releases the client.
    pub fn finish(self, answer: Answer) {
        let data = Box::into_raw(Box::new(answer)).cast::<c_void>();
        // SAFETY: as above, a read of the API table filled at load.
        if let Some(unblock) = unsafe { raw::RedisModule_UnblockClient } {
            // SAFETY: the handle came from RM_BlockClient and is unblocked exactly once (self
            // is consumed); Redis frees `data` through free_cb.
            unsafe {
                unblock(self.0, data);
            }
        }
    }
}

unsafe extern "C" fn reply_cb(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let context = Context::new(ctx);
        // SAFETY: called by Redis for a client unblocked with an `Answer` as private data.
        let data = unsafe { raw::RedisModule_GetBlockedClientPrivateData.map(|f| f(ctx)) };
        let answer = match data {
            // SAFETY: the pointer is the Box<Answer> made in `finish`; taking it leaves a
            // default in place so free_cb still frees a valid Answer.
            Some(p) if !p.is_null() => unsafe {
                std::mem::replace(&mut *p.cast::<Answer>(), Answer::Ok)
            },
            _ => Answer::Error(format!("{} the reply was lost", Code::Internal.as_str())),
        };
        context.reply(answer.into_reply());
    }));
    if outcome.is_err() {
        crate::stats::panic_caught();
    }
    raw::Status::Ok as c_int
}

unsafe extern "C" fn timeout_cb(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        crate::stats::noquorum(crate::stats::NoQuorumReason::Deadline);
        Context::new(ctx).reply(Err(RedisError::String(format!(
            "{} the request timed out before the replicas answered",
            Code::NoQuorum.as_str()
        ))));
    }));
    raw::Status::Ok as c_int
}

unsafe extern "C" fn free_cb(_ctx: *mut raw::RedisModuleCtx, data: *mut c_void) {
    if !data.is_null() {
        // SAFETY: `data` is the Box<Answer> leaked in `finish`, freed exactly once here.
        drop(unsafe { Box::from_raw(data.cast::<Answer>()) });
    }
}
