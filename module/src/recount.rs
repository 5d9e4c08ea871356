//! Recounting what this Redis holds after a load or a flush (registers, chunks and their bytes,
//! the hint backlog per node) in small steps, so Redis's main thread never stalls on it: a
//! keyspace SCAN cursor and then a cursor over each `hint:<node>` hash, advanced for at most
//! [`STEP_BUDGET`] per step, one step every [`STEP_PAUSE`] on a Redis timer, clients served in
//! between. `INFO rcluster` keeps showing the previous counts (kept up to date by the commands)
//! and `recount_in_progress:1` from the load or flush until the pass publishes; `recount_steps`
//! counts the steps.
//!
//! Commands keep changing the live counts while a pass runs. A pass publishes what it counted
//! plus the change the live counts saw meanwhile: exact when nothing changed, and otherwise off
//! by the records changed before the cursor reached them (a key created then is counted twice,
//! one deleted then is subtracted once too often), so a disturbed pass is followed by one more
//! (at most [`MAX_PASSES`] in a row; the last one publishes whatever it found). Everything here
//! runs on Redis's main thread.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use rcluster_domain::hint::{self, hint_key, Backlog};
use rcluster_domain::keys::{chunk_field, classify, RecordKind};
use rcluster_domain::validate;
use redis_module::{raw, Context, KeysCursor, RedisString};

use crate::coord::hints;
use crate::{stats, store};

/// Longest a step keeps the main thread.
pub const STEP_BUDGET: Duration = Duration::from_millis(1);
/// Pause between two steps (clients and other events run in it).
pub const STEP_PAUSE: Duration = Duration::from_millis(1);
/// Passes in a row when commands changed the counts while a pass ran.
pub const MAX_PASSES: u32 = 2;

/// Held counts as (registers, chunks, chunk bytes).
type Held = (i64, i64, i64);

/// A cursor over the fields of one hash (`RM_ScanKey`), reopened at every step.
struct FieldCursor(*mut raw::RedisModuleScanCursor);

impl FieldCursor {
    fn new() -> Option<FieldCursor> {
        // SAFETY: the API table is filled at load; a fresh cursor is ours until destroyed.
        let create = unsafe { raw::RedisModule_ScanCursorCreate }?;
        let cursor = unsafe { create() };
        (!cursor.is_null()).then_some(FieldCursor(cursor))
    }
}

impl Drop for FieldCursor {
    fn drop(&mut self) {
        // SAFETY: the cursor came from RM_ScanCursorCreate and is destroyed once.
        if let Some(destroy) = unsafe { raw::RedisModule_ScanCursorDestroy } {
            unsafe { destroy(self.0) };
        }
    }
}

enum Phase {
    /// Walking the keyspace.
    Keys(KeysCursor),
    /// Walking the hint hashes found, one at a time.
    Hints {
        queue: Vec<String>,
        current: Option<(String, FieldCursor)>,
    },
}

struct Pass {
    number: u32,
    phase: Phase,
    counted: Held,
    hint_nodes: BTreeSet<String>,
    backlogs: BTreeMap<String, Backlog>,
    /// The live counts when the pass's first step began (no command ran between that and the
    /// first key counted).
    before: Option<(Held, BTreeMap<String, Backlog>)>,
}

impl Pass {
    fn new(number: u32) -> Pass {
        Pass {
            number,
            phase: Phase::Keys(KeysCursor::new()),
            counted: (0, 0, 0),
            hint_nodes: BTreeSet::new(),
            backlogs: BTreeMap::new(),
            before: None,
        }
    }
}

thread_local! {
    static PASS: RefCell<Option<Pass>> = const { RefCell::new(None) };
    static STEP_SCHEDULED: Cell<bool> = const { Cell::new(false) };
}

/// Called on every cron tick: starts a pass when one was asked for (after a load or flush).
pub fn on_cron(ctx: &Context) {
    if stats::take_recount_request() {
        begin(1);
        schedule(ctx);
    }
}

fn begin(number: u32) {
    PASS.with(|p| *p.borrow_mut() = Some(Pass::new(number)));
    stats::set_recount_in_progress(true);
}

fn schedule(ctx: &Context) {
    if !STEP_SCHEDULED.with(|s| s.replace(true)) {
        ctx.create_timer(STEP_PAUSE, step, ());
    }
}

fn step(ctx: &Context, (): ()) {
    STEP_SCHEDULED.with(|s| s.set(false));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // A new load or flush replaced the keyspace: its pass starts over.
        if stats::take_recount_request() {
            begin(1);
        }
        // Timers do not run while Redis loads, but keep to that even if they did.
        if store::loading(ctx) {
            return true;
        }
        PASS.with(|p| {
            let mut slot = p.borrow_mut();
            let Some(pass) = slot.as_mut() else {
                return false;
            };
            stats::recount_step();
            if pass.before.is_none() {
                pass.before = Some((stats::held(), hints::snapshot()));
            }
            if !advance(ctx, pass, Instant::now() + STEP_BUDGET) {
                return true;
            }
            let number = pass.number;
            let disturbed = slot.take().is_some_and(publish);
            if disturbed && number < MAX_PASSES {
                *slot = Some(Pass::new(number + 1));
                return true;
            }
            stats::set_recount_in_progress(false);
            false
        })
    }));
    match outcome {
        Ok(true) => schedule(ctx),
        Ok(false) => {}
        Err(_) => {
            stats::panic_caught();
            PASS.with(|p| p.borrow_mut().take());
            stats::set_recount_in_progress(false);
            ctx.log_warning("rcluster: the recount failed; the held counts are left as they were");
        }
    }
}

/// Moves the pass on until `deadline`; true when it has counted everything.
fn advance(ctx: &Context, pass: &mut Pass, deadline: Instant) -> bool {
    loop {
        match &mut pass.phase {
            Phase::Keys(cursor) => {
                let (counted, nodes) = (Cell::new(pass.counted), RefCell::new(Vec::new()));
                let mut more = true;
                while more && Instant::now() < deadline {
                    more = cursor.scan(ctx, &|_ctx: &Context, name: RedisString, key| {
                        count_key(&name, key, &counted, &nodes)
                    });
                }
                pass.counted = counted.get();
                pass.hint_nodes.extend(nodes.into_inner());
                if more {
                    return false;
                }
                let queue = std::mem::take(&mut pass.hint_nodes).into_iter().collect();
                pass.phase = Phase::Hints {
                    queue,
                    current: None,
                };
            }
            Phase::Hints { queue, current } => {
                if current.is_none() {
                    let Some(node) = queue.pop() else {
                        return true;
                    };
                    let Some(cursor) = FieldCursor::new() else {
                        continue; // Cannot happen on a working Redis; the node goes uncounted.
                    };
                    *current = Some((node, cursor));
                }
                let Some((node, cursor)) = current.as_ref() else {
                    continue;
                };
                let backlog = pass.backlogs.entry(node.clone()).or_default();
                if walk_hints(ctx, node, cursor, backlog, deadline) {
                    if backlog.is_empty() {
                        pass.backlogs.remove(node);
                    }
                    *current = None;
                }
                if Instant::now() >= deadline {
                    return false;
                }
            }
        }
    }
}

/// Counts one key of the keyspace scan; hint hashes are noted, to be walked after it.
fn count_key(
    name: &RedisString,
    key: Option<&redis_module::key::RedisKey>,
    counted: &Cell<Held>,
    hint_nodes: &RefCell<Vec<String>>,
) {
    let (kv, chunks, bytes) = counted.get();
    match classify(name.as_slice()) {
        RecordKind::Kv => counted.set((kv + 1, chunks, bytes)),
        RecordKind::Chunk => {
            let len = key
                .and_then(|k| k.hash_get(chunk_field::LENGTH).ok().flatten())
                .and_then(|v| v.parse_integer().ok())
                .unwrap_or(0);
            counted.set((kv, chunks + 1, bytes + len));
        }
        // Only ids RC.HINT.PUT accepts (they become INFO field names).
        RecordKind::Hint(node) => {
            if let Ok(id) = validate::node_id(node) {
                hint_nodes.borrow_mut().push(id);
            }
        }
        RecordKind::Other => {}
    }
}

/// The bytes of a module string (valid while the string is).
///
/// # Safety
/// `s` must be a live module string.
unsafe fn bytes_of<'a>(s: *const raw::RedisModuleString) -> &'a [u8] {
    let mut len = 0usize;
    let ptr = match raw::RedisModule_StringPtrLen {
        Some(f) => f(s, &mut len),
        None => return &[],
    };
    if ptr.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(ptr.cast::<u8>(), len)
    }
}

unsafe extern "C" fn count_hint(
    _key: *mut raw::RedisModuleKey,
    field: *mut raw::RedisModuleString,
    value: *mut raw::RedisModuleString,
    privdata: *mut c_void,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `privdata` is the &mut Backlog passed to RM_ScanKey below, for this call only;
        // field and value are live for the callback.
        let backlog = unsafe { &mut *privdata.cast::<Backlog>() };
        let (field, value) = unsafe { (bytes_of(field), bytes_of(value)) };
        // Undecodable entries are never replayed nor counted.
        if let Some(ts) = hint::decode_ts(value) {
            backlog.add(ts, hint::stored_bytes(field, value.len()));
        }
    }));
}

/// Counts the fields of `hint:<node>` into `backlog` until `deadline`; true when done (or when
/// the key is not a hash any more).
fn walk_hints(
    ctx: &Context,
    node: &str,
    cursor: &FieldCursor,
    backlog: &mut Backlog,
    deadline: Instant,
) -> bool {
    let name = store::string(ctx, hint_key(node));
    // SAFETY: the API table is filled at load; the key is opened and closed within this call,
    // on the main thread, and RM_ScanKey allows reopening the key between calls.
    unsafe {
        let (Some(open), Some(close), Some(key_type), Some(scan)) = (
            raw::RedisModule_OpenKey,
            raw::RedisModule_CloseKey,
            raw::RedisModule_KeyType,
            raw::RedisModule_ScanKey,
        ) else {
            return true;
        };
        let key = open(ctx.ctx, name.inner, raw::REDISMODULE_READ as c_int);
        if key.is_null() {
            return true;
        }
        let mut more = key_type(key) == raw::REDISMODULE_KEYTYPE_HASH as c_int;
        while more && Instant::now() < deadline {
            more = scan(
                key,
                cursor.0,
                Some(count_hint),
                (backlog as *mut Backlog).cast::<c_void>(),
            ) != 0;
        }
        close(key);
        !more
    }
}

/// Publishes a finished pass; true when commands changed the counts while it ran.
fn publish(pass: Pass) -> bool {
    let live = stats::held();
    let (before, hints_before) = pass.before.unwrap_or_default();
    let (kv, chunks, bytes) = pass.counted;
    stats::set_held(
        (kv + live.0 - before.0).max(0),
        (chunks + live.1 - before.1).max(0),
        (bytes + live.2 - before.2).max(0),
    );
    let hints_now = hints::snapshot();
    let disturbed = live != before || hints_now != hints_before;
    hints::replace(hint::after_recount(
        pass.backlogs,
        &hints_before,
        &hints_now,
    ));
    disturbed
}
