//! The consumer pool with C callbacks: `lq_pool_builder`, `lq_pool`, `lq_reply`.
//!
//! A handler is an `lq_handler_fn` with a `void *userdata`. It is called from
//! the pool's **worker threads** (named `libqueue-pool-<queue>-<n>`), never
//! from the thread that started the pool; up to `size` handlers run at once,
//! so `userdata` must be safe to use from several threads. A handler gets the
//! message as a borrowed `const lq_delivery *` (valid for the call; read it with
//! the `lq_delivery_*` getters, never ack, nack or free it) and an `lq_reply *`
//! (valid for the call) on which it may set the reply bytes for an RPC caller
//! (`lq_reply_set_body`) or the error text of a failure (`lq_reply_set_error`).
//! It returns 0 for success (the message is acked; an RPC caller gets the
//! reply) or anything else for failure (the message is nacked with backoff and
//! dead-lettered after the queue's max deliveries; an RPC caller then gets
//! `LQ_REMOTE` with the error text). A handler must return normally: no
//! `longjmp` out of it, no C++ exception through it (the C++ wrapper catches
//! them).
//!
//! Threads: an `lq_pool_builder` is used from one thread at a time; an
//! `lq_pool` may be shared (stats from any thread), and stopped or freed once.

use super::boundary::{
    boxed, bytes, check_open, handle, handle_mut, ms, owned, run, run_free, text, Fail, Out,
    LQ_WAIT_FOREVER,
};
use super::broker::lq_namespace;
use super::delivery::lq_delivery;
use super::status::{lq_status, lq_status::*};
use crate::{Delivery, HandlerResult, Pool, PoolBuilder, PoolStats};
use std::ffi::c_void;

/// What a handler answers (`lq_reply_set_body`, `lq_reply_set_error`).
#[derive(Default)]
pub struct lq_reply {
    body: Option<Vec<u8>>,
    error: Option<String>,
}

/// A message handler: called from a pool worker thread with the host's
/// `userdata`, the message (borrowed for the call) and a reply to fill in.
/// Returns 0 for success, anything else for failure.
pub type lq_handler_fn = Option<
    unsafe extern "C" fn(userdata: *mut c_void, d: *const lq_delivery, reply: *mut lq_reply) -> i32,
>;

/// Configures a pool (`lq_pool_builder_new`, setters, `lq_pool_builder_start`).
pub struct lq_pool_builder {
    b: Option<PoolBuilder>,
}

/// A running consumer pool.
pub struct lq_pool {
    p: Option<Pool>,
    last: PoolStats,
}

/// Counters of a pool (`lq_pool_get_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct lq_pool_stats {
    /// Messages handed to handlers.
    pub handled: u64,
    /// Handlers that succeeded.
    pub succeeded: u64,
    /// Handlers that failed (or had no handler).
    pub failed: u64,
    /// Of those, panics (Rust handlers only; C handlers cannot panic).
    pub panicked: u64,
    /// Handlers running now.
    pub active: u64,
    /// Most handlers that ever ran at once (never above the pool size).
    pub max_active: u64,
}

impl From<PoolStats> for lq_pool_stats {
    fn from(s: PoolStats) -> Self {
        lq_pool_stats {
            handled: s.handled,
            succeeded: s.succeeded,
            failed: s.failed,
            panicked: s.panicked,
            active: s.active as u64,
            max_active: s.max_active as u64,
        }
    }
}

/// A C handler and its userdata.
struct Callback {
    f: unsafe extern "C" fn(*mut c_void, *const lq_delivery, *mut lq_reply) -> i32,
    userdata: *mut c_void,
}

// SAFETY: the host promises (documented on `lq_pool_builder_add_handler`) that
// the handler and its userdata may be used from any thread, concurrently.
unsafe impl Send for Callback {}
// SAFETY: as above.
unsafe impl Sync for Callback {}

impl Callback {
    fn call(&self, d: &Delivery) -> HandlerResult {
        let view = lq_delivery::borrowed(d);
        let mut reply = lq_reply::default();
        // SAFETY: `f` is the host's handler; `view` and `reply` outlive the call
        // and `view` borrows `d`, alive for the call.
        let rc = unsafe { (self.f)(self.userdata, &view, &mut reply) };
        if rc == 0 {
            Ok(reply.body)
        } else {
            Err(reply
                .error
                .unwrap_or_else(|| format!("handler returned {rc}")))
        }
    }
}

/// A pool builder on the queue `queue` (created if missing) of `ns`: size 1, no
/// handlers, backoff 100 ms to 30 s. `*out` is owned until
/// `lq_pool_builder_start` consumes it, or `lq_pool_builder_free`.
///
/// # Safety
/// `ns` NULL or live; `queue` points to `queue_len` bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_pool_builder_new(
    ns: *const lq_namespace,
    queue: *const u8,
    queue_len: usize,
    out: *mut *mut lq_pool_builder,
) -> lq_status {
    run(|| {
        let (h, q, out) = (
            handle(ns, "ns")?,
            text(queue, queue_len, "queue")?,
            Out::new(out, "out")?,
        );
        check_open(&h.broker)?;
        let b = Pool::builder(&h.ns, q)?;
        out.set(boxed(lq_pool_builder { b: Some(b) }));
        Ok(())
    })
}

/// Frees a builder that was not started; NULL is a no-op.
///
/// # Safety
/// `builder` must be NULL or an owned builder, not used again.
#[no_mangle]
pub unsafe extern "C" fn lq_pool_builder_free(builder: *mut lq_pool_builder) {
    run_free(builder)
}

/// Checks the arguments with `check`, then applies `apply` to the builder (so a
/// refused argument leaves the builder as it was).
///
/// Pointers (the exported function's, see `boundary.rs`):
/// `builder` NULL or live and unshared.
fn with_builder<T>(
    builder: *mut lq_pool_builder,
    check: impl FnOnce() -> Result<T, Fail>,
    apply: impl FnOnce(PoolBuilder, T) -> PoolBuilder,
) -> lq_status {
    run(|| {
        let h = handle_mut(builder, "builder")?;
        let v = check()?;
        let b =
            h.b.take()
                .ok_or_else(|| Fail::new(LQ_INVALID_STATE, "the builder is spent"))?;
        h.b = Some(apply(b, v));
        Ok(())
    })
}

/// Number of workers (1–1024): at most this many handlers run at once, and no
/// message leaves the queue while all are busy.
///
/// # Safety
/// `builder` NULL or live and unshared.
#[no_mangle]
pub unsafe extern "C" fn lq_pool_builder_set_size(
    builder: *mut lq_pool_builder,
    size: usize,
) -> lq_status {
    with_builder(
        builder,
        || {
            if !(1..=1024).contains(&size) {
                return Err(Fail::new(
                    LQ_INVALID_ARGUMENT,
                    format!("pool size {size} is not in 1..=1024"),
                ));
            }
            Ok(size)
        },
        |b, size| b.size(size),
    )
}

/// Retry delay after a failure: `base_ms × 2^(delivery − 1)`, at most `max_ms`.
///
/// # Safety
/// `builder` NULL or live and unshared.
#[no_mangle]
pub unsafe extern "C" fn lq_pool_builder_set_backoff_ms(
    builder: *mut lq_pool_builder,
    base_ms: u64,
    max_ms: u64,
) -> lq_status {
    with_builder(
        builder,
        || Ok(()),
        |b, ()| b.backoff(ms(base_ms), ms(max_ms)),
    )
}

fn callback(handler: lq_handler_fn, userdata: *mut c_void) -> Result<Callback, Fail> {
    let f = handler.ok_or_else(|| super::boundary::null("handler"))?;
    Ok(Callback { f, userdata })
}

/// Runs `handler(userdata, ...)` for messages named `name` (UTF-8). Registering
/// a name again replaces its handler. `handler` is called from pool worker
/// threads, possibly several at once: `userdata` must stay valid and be safe to
/// use from them until the pool is stopped or freed.
///
/// # Safety
/// `builder` NULL or live and unshared; `name` points to `name_len` bytes;
/// `handler` and `userdata` as above.
#[no_mangle]
pub unsafe extern "C" fn lq_pool_builder_add_handler(
    builder: *mut lq_pool_builder,
    name: *const u8,
    name_len: usize,
    handler: lq_handler_fn,
    userdata: *mut c_void,
) -> lq_status {
    with_builder(
        builder,
        || Ok((text(name, name_len, "name")?, callback(handler, userdata)?)),
        |b, (n, cb)| b.handler(n, move |d| cb.call(d)),
    )
}

/// Runs `handler` for messages no named handler takes (without one, such a
/// message fails with "no handler for ..."). Threads as for
/// `lq_pool_builder_add_handler`.
///
/// # Safety
/// As for `lq_pool_builder_add_handler`.
#[no_mangle]
pub unsafe extern "C" fn lq_pool_builder_set_default_handler(
    builder: *mut lq_pool_builder,
    handler: lq_handler_fn,
    userdata: *mut c_void,
) -> lq_status {
    with_builder(
        builder,
        || callback(handler, userdata),
        |b, cb| b.default_handler(move |d| cb.call(d)),
    )
}

/// Starts the workers, **consuming** `builder` (also on failure). `*out` is
/// owned: stop it with `lq_pool_stop` (optional) and free it with
/// `lq_pool_free`.
///
/// # Safety
/// `builder` NULL or an owned builder, not used again; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_pool_builder_start(
    builder: *mut lq_pool_builder,
    out: *mut *mut lq_pool,
) -> lq_status {
    run(|| {
        let b = owned(builder, "builder")?.b;
        let out = Out::new(out, "out")?;
        let b = b.ok_or_else(|| Fail::new(LQ_INVALID_STATE, "the builder is spent"))?;
        let p = b.start()?;
        out.set(boxed(lq_pool {
            p: Some(p),
            last: PoolStats::default(),
        }));
        Ok(())
    })
}

/// The pool's counters (the final ones after `lq_pool_stop`).
///
/// # Safety
/// `pool` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_pool_get_stats(
    pool: *const lq_pool,
    out: *mut lq_pool_stats,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(pool, "pool")?, Out::new(out, "out")?);
        out.set(h.p.as_ref().map_or(h.last, Pool::stats).into());
        Ok(())
    })
}

/// Stops taking messages and waits for running handlers: all of them with
/// `LQ_WAIT_FOREVER`, else at most `timeout_ms`, after which the messages of
/// handlers still running go back to the queue (`*returned`, if not NULL, says
/// how many). The handle stays allocated (stats work) until `lq_pool_free`.
/// A second stop is `LQ_INVALID_STATE`.
///
/// # Safety
/// `pool` NULL or live, used by no other thread during the call; `returned`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lq_pool_stop(
    pool: *mut lq_pool,
    timeout_ms: u64,
    returned: *mut usize,
) -> lq_status {
    run(|| {
        let h = handle_mut(pool, "pool")?;
        let p =
            h.p.take()
                .ok_or_else(|| Fail::new(LQ_INVALID_STATE, "the pool was stopped already"))?;
        let n = if timeout_ms == LQ_WAIT_FOREVER {
            h.last = p.stop();
            0
        } else {
            let r = p.stop_timeout(ms(timeout_ms));
            h.last = r.stats;
            r.returned
        };
        if !returned.is_null() {
            Out::new(returned, "returned")?.set(n);
        }
        Ok(())
    })
}

/// Stops the pool (waiting for running handlers) if it runs, and frees it;
/// NULL is a no-op. After it returns no handler of this pool runs.
///
/// # Safety
/// `pool` must be NULL or an owned pool, not used again.
#[no_mangle]
pub unsafe extern "C" fn lq_pool_free(pool: *mut lq_pool) {
    run_free(pool)
}

// ---- lq_reply ------------------------------------------------------------------

/// Sets the reply an RPC caller gets when the handler succeeds (copied).
///
/// # Safety
/// `reply` NULL or the handler's reply; `body` points to `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_reply_set_body(
    reply: *mut lq_reply,
    body: *const u8,
    len: usize,
) -> lq_status {
    run(|| {
        let (h, b) = (handle_mut(reply, "reply")?, bytes(body, len, "body")?);
        h.body = Some(b.to_vec());
        Ok(())
    })
}

/// Sets the error text of a failing handler (copied; invalid UTF-8 is
/// replaced): it goes into the dead letter's reason and an RPC caller's
/// `LQ_REMOTE` message.
///
/// # Safety
/// `reply` NULL or the handler's reply; `text` points to `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_reply_set_error(
    reply: *mut lq_reply,
    text: *const u8,
    len: usize,
) -> lq_status {
    run(|| {
        let (h, b) = (handle_mut(reply, "reply")?, bytes(text, len, "text")?);
        h.error = Some(String::from_utf8_lossy(b).into_owned());
        Ok(())
    })
}
