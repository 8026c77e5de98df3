//! `lq_queue`: send, receive, peek, cancel, purge, stats, flush, the pollable fd.
//!
//! Threads: an `lq_queue` may be shared between threads and used concurrently
//! (producers and consumers on one handle). Every receive returns an owned
//! `lq_delivery` per message.
//!
//! Lifetime: `lq_queue_close` may be called from any thread at any time, also
//! while other threads wait in the handle: it wakes them (`LQ_CLOSED`) and
//! every later call on the handle returns `LQ_CLOSED`. `lq_queue_free` frees
//! the memory and must come after every call on the handle has returned
//! (close, join the threads that use it, then free).

use super::boundary::{
    boxed, bytes, handle, items, nothing, run, run_free, set_slice, to_ms, wait_of, Fail, Out,
    OutArray,
};
use super::delivery::lq_delivery;
use super::message::{lq_message, take};
use super::options::on_full_of;
use super::status::{lq_status, lq_status::*};
use crate::{Broker, Queue, QueueStats};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

/// A handle on one queue. Shareable between threads.
pub struct lq_queue {
    pub(crate) q: Queue,
    broker: Broker,
    /// Set by `lq_queue_close`: the calls waiting in this handle return, and
    /// later ones fail, with `LQ_CLOSED` (other handles of the queue go on).
    closed: AtomicBool,
}

impl lq_queue {
    pub(crate) fn boxed(q: Queue, broker: &Broker) -> *mut lq_queue {
        boxed(lq_queue {
            q,
            broker: broker.clone(),
            closed: AtomicBool::new(false),
        })
    }
}

/// Exact statistics of a queue (`lq_queue_get_stats`). Gauges (`ready`, `leased`,
/// `delayed`, `bytes`, `oldest_age_ms`) are what it holds now; the rest are
/// totals since it was created.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct lq_queue_stats {
    /// Messages ready to be received.
    pub ready: u64,
    /// Messages leased to consumers.
    pub leased: u64,
    /// Messages waiting for their delay.
    pub delayed: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Age of the oldest message held in milliseconds (0 when empty).
    pub oldest_age_ms: u64,
    /// Messages accepted by send.
    pub sent: u64,
    /// Deliveries handed to consumers (redeliveries included).
    pub received: u64,
    /// Messages acked.
    pub acked: u64,
    /// Nacks.
    pub nacked: u64,
    /// Deliveries of a message delivered before.
    pub redelivered: u64,
    /// Messages dropped because their TTL passed.
    pub expired: u64,
    /// Messages dead-lettered after max deliveries.
    pub dead_lettered: u64,
    /// Messages cancelled by id.
    pub cancelled: u64,
    /// Messages removed by purge.
    pub purged: u64,
}

impl From<&QueueStats> for lq_queue_stats {
    fn from(s: &QueueStats) -> Self {
        lq_queue_stats {
            ready: s.ready,
            leased: s.leased,
            delayed: s.delayed,
            bytes: s.bytes,
            oldest_age_ms: s.oldest_age.map_or(0, to_ms),
            sent: s.sent,
            received: s.received,
            acked: s.acked,
            nacked: s.nacked,
            redelivered: s.redelivered,
            expired: s.expired,
            dead_lettered: s.dead_lettered,
            cancelled: s.cancelled,
            purged: s.purged,
        }
    }
}

/// Frees a queue handle (the queue stays in its namespace); NULL is a no-op.
/// To stop threads waiting in the handle, `lq_queue_close` it first and free it
/// once they have returned.
///
/// # Safety
/// `queue` must be NULL or an owned handle, not used again, with no call in it
/// (in any thread).
#[no_mangle]
pub unsafe extern "C" fn lq_queue_free(queue: *mut lq_queue) {
    run_free(queue)
}

/// Its name, borrowed (UTF-8, not NUL-terminated; valid until the handle is freed).
///
/// # Safety
/// `queue` NULL or live; `ptr` and `len` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_name(
    queue: *const lq_queue,
    ptr: *mut *const u8,
    len: *mut usize,
) -> lq_status {
    run(|| {
        let (h, ptr, len) = (
            handle(queue, "queue")?,
            Out::new(ptr, "ptr")?,
            Out::new(len, "len")?,
        );
        set_slice(ptr, len, h.q.name().as_bytes());
        Ok(())
    })
}

/// The queue, if neither this handle nor the broker it came from was closed.
fn open(h: &lq_queue) -> Result<&Queue, Fail> {
    if h.closed.load(SeqCst) {
        return Err(handle_closed());
    }
    super::boundary::check_open(&h.broker)?;
    Ok(&h.q)
}

fn handle_closed() -> Fail {
    Fail::new(LQ_CLOSED, "this queue handle was closed (lq_queue_close)")
}

/// What a wait that ended with nothing says: `LQ_CLOSED` if the handle, the
/// queue or its broker closed meanwhile, else what `nothing` says.
fn ended(h: &lq_queue, timeout_ms: u64) -> Fail {
    if h.closed.load(SeqCst) {
        handle_closed()
    } else if timeout_ms == super::boundary::LQ_WAIT_FOREVER
        || h.q.is_closed()
        || h.broker.is_closed()
    {
        Fail::new(LQ_CLOSED, "the queue was closed")
    } else {
        nothing(timeout_ms)
    }
}

/// Closes this handle (not the queue: other handles of it go on): every call
/// waiting in it in other threads (a receive, a send waiting for room) returns
/// `LQ_CLOSED` at once, and every later call on it but `lq_queue_name`,
/// `lq_queue_get_stats`, `lq_queue_is_closed` and `lq_queue_free` returns
/// `LQ_CLOSED`. Idempotent; safe to call from any thread while others use the
/// handle. Deliveries received through it stay valid. The handle must still be
/// freed with `lq_queue_free`, once no call is in it.
///
/// # Safety
/// `queue` NULL or live (not freed).
#[no_mangle]
pub unsafe extern "C" fn lq_queue_close(queue: *const lq_queue) -> lq_status {
    run(|| {
        let h = handle(queue, "queue")?;
        if !h.closed.swap(true, SeqCst) {
            // Wakes every waiter of the queue; those of other handles go back
            // to sleep, ours see the flag.
            h.q.wake_all();
        }
        Ok(())
    })
}

/// Pointers (the exported function's, see `boundary.rs`):
/// `queue` NULL or live; `msg` NULL or owned (consumed here); `id_out` NULL or writable.
fn send(
    queue: *const lq_queue,
    msg: *mut lq_message,
    on_full: Option<(u32, u64)>,
    id_out: *mut u64,
) -> lq_status {
    run(|| {
        let m = take(msg, "msg")?;
        let h = handle(queue, "queue")?;
        let q = open(h)?;
        let policy = match on_full {
            None => q.options().on_full,
            Some((mode, t)) => on_full_of(mode, t)?,
        };
        let id = q.send_until(m, policy, Some(&h.closed))?;
        if !id_out.is_null() {
            Out::new(id_out, "id_out")?.set(id);
        }
        Ok(())
    })
}

/// Sends `msg`, **consuming it** (also on failure). When the queue is full it
/// does what the queue's `on_full` option says (`LQ_FULL`, `LQ_TIMEOUT`, or
/// blocks). Other failures: `LQ_MESSAGE_TOO_LARGE`, `LQ_QUOTA_EXCEEDED`,
/// `LQ_CLOSED`, `LQ_STORAGE`. On success `*id_out` (if not NULL) gets the id.
///
/// # Safety
/// `queue` NULL or live; `msg` NULL or an owned message not used again;
/// `id_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_send(
    queue: *const lq_queue,
    msg: *mut lq_message,
    id_out: *mut u64,
) -> lq_status {
    send(queue, msg, None, id_out)
}

/// As `lq_queue_send`, with an explicit full policy (`on_full` an `lq_on_full`,
/// `timeout_ms` for `LQ_ON_FULL_TIMEOUT`).
///
/// # Safety
/// As for `lq_queue_send`.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_send_with(
    queue: *const lq_queue,
    msg: *mut lq_message,
    on_full: u32,
    timeout_ms: u64,
    id_out: *mut u64,
) -> lq_status {
    send(queue, msg, Some((on_full, timeout_ms)), id_out)
}

/// Sends a plain message: a copy of `body` and nothing else set. In a steady
/// stream of same-length bodies the copy goes into the buffer of a message
/// already consumed (bodies up to 4 KiB), so the send allocates nothing.
///
/// # Safety
/// `queue` NULL or live; `body` points to `body_len` bytes; `id_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_send_bytes(
    queue: *const lq_queue,
    body: *const u8,
    body_len: usize,
    id_out: *mut u64,
) -> lq_status {
    run(|| {
        let (h, b) = (handle(queue, "queue")?, bytes(body, body_len, "body")?);
        let q = open(h)?;
        let id = q.send_copy_until(b, q.options().on_full, Some(&h.closed))?;
        if !id_out.is_null() {
            Out::new(id_out, "id_out")?.set(id);
        }
        Ok(())
    })
}

/// Pointers (the exported function's, see `boundary.rs`):
/// As for `lq_queue_send_batch`.
fn send_batch(
    queue: *const lq_queue,
    msgs: *const *mut lq_message,
    n: usize,
    on_full: Option<(u32, u64)>,
    ids_out: *mut u64,
) -> lq_status {
    run(|| {
        if n == 0 {
            return Ok(());
        }
        let ptrs = items(msgs, n, "msgs")?;
        let mut batch = Vec::with_capacity(n);
        let mut missing = None;
        for (i, p) in ptrs.iter().enumerate() {
            match take(*p, "msgs[i]") {
                Ok(m) => batch.push(m),
                Err(_) => missing = missing.or(Some(i)),
            }
        }
        if let Some(i) = missing {
            return Err(super::boundary::null(&format!("msgs[{i}]")));
        }
        let h = handle(queue, "queue")?;
        let q = open(h)?;
        let policy = match on_full {
            None => q.options().on_full,
            Some((mode, t)) => on_full_of(mode, t)?,
        };
        let ids = q.send_batch_until(batch, policy, Some(&h.closed))?;
        if let Ok(ids_out) = OutArray::new(ids_out, n, "ids_out") {
            for (i, id) in ids.into_iter().enumerate() {
                ids_out.set(i, id);
            }
        }
        Ok(())
    })
}

/// Sends `n` messages: all are accepted or none is. **Consumes every message**
/// in `msgs` (also on failure; the array itself stays the caller's). On success
/// `ids_out` (if not NULL, `n` entries) gets their ids in order.
/// `LQ_NULL_POINTER` if an entry is NULL (the others are still consumed).
///
/// # Safety
/// `queue` NULL or live; `msgs` points to `n` entries, each NULL or an owned
/// message not used again; `ids_out` NULL or writable for `n` entries.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_send_batch(
    queue: *const lq_queue,
    msgs: *const *mut lq_message,
    n: usize,
    ids_out: *mut u64,
) -> lq_status {
    send_batch(queue, msgs, n, None, ids_out)
}

/// As `lq_queue_send_batch`, with an explicit full policy (`on_full` an
/// `lq_on_full`, `timeout_ms` for `LQ_ON_FULL_TIMEOUT`) for the whole batch.
///
/// # Safety
/// As for `lq_queue_send_batch`.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_send_batch_with(
    queue: *const lq_queue,
    msgs: *const *mut lq_message,
    n: usize,
    on_full: u32,
    timeout_ms: u64,
    ids_out: *mut u64,
) -> lq_status {
    send_batch(queue, msgs, n, Some((on_full, timeout_ms)), ids_out)
}

/// One receive: `timeout_ms` 0 tries, `LQ_WAIT_FOREVER` blocks.
///
/// Pointers (the exported function's, see `boundary.rs`):
/// `queue` NULL or live; `out` NULL or writable.
fn receive_one(
    queue: *const lq_queue,
    timeout_ms: u64,
    auto_ack: bool,
    out: *mut *mut lq_delivery,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(queue, "queue")?, Out::new(out, "out")?);
        let q = open(h)?;
        let mut got = None;
        q.receive_into(
            1,
            wait_of(timeout_ms),
            crate::queue::ReceiveMode::from_auto_ack(auto_ack),
            Some(&h.closed),
            |d| got = Some(d),
        )?;
        match got {
            Some(d) => {
                out.set(boxed(lq_delivery::owned(d)));
                Ok(())
            }
            None => Err(ended(h, timeout_ms)),
        }
    })
}

/// Receives a message if one is ready now (leased), else `LQ_EMPTY`. `*out`
/// is owned: settle it with `lq_delivery_ack`/`_nack` and free it with
/// `lq_delivery_free` (an unsettled freed delivery is redelivered when its lease
/// runs out).
///
/// # Safety
/// `queue` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_try_receive(
    queue: *const lq_queue,
    out: *mut *mut lq_delivery,
) -> lq_status {
    receive_one(queue, 0, false, out)
}

/// Waits for a message (leased); returns `LQ_CLOSED` if the queue, its broker
/// or this handle (`lq_queue_close`) closes first.
///
/// # Safety
/// As for `lq_queue_try_receive`.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_receive(
    queue: *const lq_queue,
    out: *mut *mut lq_delivery,
) -> lq_status {
    receive_one(queue, super::boundary::LQ_WAIT_FOREVER, false, out)
}

/// Waits at most `timeout_ms` for a message (leased): `LQ_TIMEOUT` if none came
/// (`LQ_EMPTY` when `timeout_ms` is 0; `LQ_WAIT_FOREVER` waits forever).
///
/// # Safety
/// As for `lq_queue_try_receive`.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_receive_timeout(
    queue: *const lq_queue,
    timeout_ms: u64,
    out: *mut *mut lq_delivery,
) -> lq_status {
    receive_one(queue, timeout_ms, false, out)
}

/// As `lq_queue_receive_timeout`, but the message is acked at once (at-most-once):
/// the delivery needs no settling (`lq_delivery_ack` on it is `LQ_INVALID_STATE`)
/// and is only freed.
///
/// # Safety
/// As for `lq_queue_try_receive`.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_receive_auto_ack(
    queue: *const lq_queue,
    timeout_ms: u64,
    out: *mut *mut lq_delivery,
) -> lq_status {
    receive_one(queue, timeout_ms, true, out)
}

/// Fills `out` (`max` entries) with owned deliveries.
fn fill(
    out: OutArray<*mut lq_delivery>,
    max: usize,
    n_out: Out<usize>,
    items: Vec<lq_delivery>,
) -> Result<(), Fail> {
    debug_assert!(items.len() <= max);
    let n = items.len();
    for (i, d) in items.into_iter().enumerate() {
        out.set(i, boxed(d));
    }
    n_out.set(n);
    Ok(())
}

/// The body of `lq_queue_receive_batch` and `lq_queue_receive_batch_auto_ack`.
fn receive_many(
    queue: *const lq_queue,
    max: usize,
    timeout_ms: u64,
    auto_ack: bool,
    out: *mut *mut lq_delivery,
    n_out: *mut usize,
) -> lq_status {
    run(|| {
        let (h, n_out) = (handle(queue, "queue")?, Out::new(n_out, "n_out")?);
        let out = OutArray::new(out, max, "out")?;
        if max == 0 {
            return Err(Fail::new(LQ_INVALID_ARGUMENT, "max must be at least 1"));
        }
        let mut got = Vec::with_capacity(max.min(256));
        open(h)?.receive_into(
            max,
            wait_of(timeout_ms),
            crate::queue::ReceiveMode::from_auto_ack(auto_ack),
            Some(&h.closed),
            |d| got.push(d),
        )?;
        if got.is_empty() {
            return Err(ended(h, timeout_ms));
        }
        let items = got.into_iter().map(lq_delivery::owned).collect();
        fill(out, max, n_out, items)
    })
}

/// Receives up to `max` messages (leased): waits as `timeout_ms` says for the
/// first (0 tries, `LQ_WAIT_FOREVER` blocks), then takes what else is ready.
/// On success `out[0..*n_out]` are owned deliveries (`*n_out` ≥ 1); with
/// nothing, `LQ_EMPTY` / `LQ_TIMEOUT` and nothing written.
///
/// # Safety
/// `queue` NULL or live; `out` writable for `max` entries; `n_out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_receive_batch(
    queue: *const lq_queue,
    max: usize,
    timeout_ms: u64,
    out: *mut *mut lq_delivery,
    n_out: *mut usize,
) -> lq_status {
    receive_many(queue, max, timeout_ms, false, out, n_out)
}

/// As `lq_queue_receive_batch`, but every message is acked as it is taken
/// (at-most-once), in one call (one round trip when the broker is attached):
/// the deliveries need no settling (`lq_delivery_ack` on one is
/// `LQ_INVALID_STATE`) and are only freed, each with `lq_delivery_free`.
///
/// # Safety
/// As for `lq_queue_receive_batch`.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_receive_batch_auto_ack(
    queue: *const lq_queue,
    max: usize,
    timeout_ms: u64,
    out: *mut *mut lq_delivery,
    n_out: *mut usize,
) -> lq_status {
    receive_many(queue, max, timeout_ms, true, out, n_out)
}

/// Up to `max` ready messages in delivery order, without leasing them. On
/// success `out[0..*n_out]` are owned peeked deliveries (readable, not
/// settleable; free each with `lq_delivery_free`); `*n_out` may be 0.
///
/// # Safety
/// As for `lq_queue_receive_batch`.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_peek(
    queue: *const lq_queue,
    max: usize,
    out: *mut *mut lq_delivery,
    n_out: *mut usize,
) -> lq_status {
    run(|| {
        let (h, n_out) = (handle(queue, "queue")?, Out::new(n_out, "n_out")?);
        let out = if max == 0 {
            OutArray::empty()
        } else {
            OutArray::new(out, max, "out")?
        };
        let items = open(h)?
            .peek(max)?
            .into_iter()
            .map(lq_delivery::peeked)
            .collect();
        fill(out, max, n_out, items)
    })
}

/// Removes a ready or delayed message by id: `LQ_INVALID_STATE` if it is
/// leased, `LQ_NOT_FOUND` if there is no such message.
///
/// # Safety
/// `queue` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_cancel(queue: *const lq_queue, id: u64) -> lq_status {
    run(|| {
        open(handle(queue, "queue")?)?.cancel(id)?;
        Ok(())
    })
}

/// Removes every ready and delayed message (leased ones stay); `*removed` (if
/// not NULL) gets how many.
///
/// # Safety
/// `queue` NULL or live; `removed` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_purge(queue: *const lq_queue, removed: *mut u64) -> lq_status {
    run(|| {
        let n = open(handle(queue, "queue")?)?.purge()?;
        if !removed.is_null() {
            Out::new(removed, "removed")?.set(n);
        }
        Ok(())
    })
}

/// Exact statistics (also of a closed queue).
///
/// # Safety
/// `queue` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_get_stats(
    queue: *const lq_queue,
    out: *mut lq_queue_stats,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(queue, "queue")?, Out::new(out, "out")?);
        h.q.check_fork()?;
        out.set((&h.q.stats()).into());
        Ok(())
    })
}

/// Makes every persistent message sent so far durable (a barrier).
///
/// # Safety
/// `queue` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_flush(queue: *const lq_queue) -> lq_status {
    run(|| {
        open(handle(queue, "queue")?)?.flush()?;
        Ok(())
    })
}

/// A file descriptor that is readable exactly when a receive would find a
/// message (level-triggered): add it to epoll/poll/select, and when readable
/// call `lq_queue_try_receive` until `LQ_EMPTY` (which clears it). Owned by the
/// queue: do not close it. Linux only (`LQ_IO` elsewhere).
///
/// # Safety
/// `queue` NULL or live; `fd` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_fd(queue: *const lq_queue, fd: *mut i32) -> lq_status {
    run(|| {
        let (h, fd) = (handle(queue, "queue")?, Out::new(fd, "fd")?);
        let _q = open(h)?;
        #[cfg(target_os = "linux")]
        {
            fd.set(_q.fd()?);
            Ok(())
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = fd;
            Err(Fail::new(LQ_IO, "a pollable descriptor needs Linux"))
        }
    })
}

/// The queue's full policy: `*on_full` an `lq_on_full`, `*timeout_ms` its
/// wait for `LQ_ON_FULL_TIMEOUT` (else 0). A binding that waits in slices (to
/// stay interruptible) uses it to wait as the queue's own send would.
///
/// # Safety
/// `queue` NULL or live; `on_full` and `timeout_ms` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_get_on_full(
    queue: *const lq_queue,
    on_full: *mut u32,
    timeout_ms: *mut u64,
) -> lq_status {
    run(|| {
        let (h, mode, t) = (
            handle(queue, "queue")?,
            Out::new(on_full, "on_full")?,
            Out::new(timeout_ms, "timeout_ms")?,
        );
        use super::options::lq_on_full::*;
        let (m, ms) = match h.q.options().on_full {
            crate::OnFull::Block => (LQ_ON_FULL_BLOCK, 0),
            crate::OnFull::Reject => (LQ_ON_FULL_REJECT, 0),
            crate::OnFull::Timeout(d) => (LQ_ON_FULL_TIMEOUT, to_ms(d)),
        };
        mode.set(m as u32);
        t.set(ms);
        Ok(())
    })
}

/// Whether the queue was closed (its broker closed or the queue deleted) or
/// this handle was (`lq_queue_close`).
///
/// # Safety
/// `queue` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_is_closed(queue: *const lq_queue, out: *mut bool) -> lq_status {
    run(|| {
        let (h, out) = (handle(queue, "queue")?, Out::new(out, "out")?);
        out.set(h.closed.load(SeqCst) || h.q.is_closed() || h.broker.is_closed());
        Ok(())
    })
}
