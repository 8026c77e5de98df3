//! `lq_topic`: publish once, every subscription (a queue) gets a copy.
//!
//! Threads: an `lq_topic` may be shared between threads and used concurrently.
//! `lq_topic_close` may be called from any thread, also while a publish waits
//! in the handle for room in a full subscription queue: it returns `LQ_CLOSED`.

use super::boundary::{bytes, check_open, handle, run, run_free, text, Fail, Out};
use super::message::{lq_message, take};
use super::queue::lq_queue;
use super::status::lq_status;
use super::strings::{lq_strings, strings};
use crate::{Broker, Filter, Topic, TopicStats};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

/// A topic of a namespace. Shareable between threads.
pub struct lq_topic {
    pub(crate) t: Topic,
    pub(crate) broker: Broker,
    /// Set by `lq_topic_close`.
    closed: AtomicBool,
}

impl lq_topic {
    pub(crate) fn new(t: Topic, broker: &Broker) -> Self {
        lq_topic {
            t,
            broker: broker.clone(),
            closed: AtomicBool::new(false),
        }
    }

    /// The topic, if neither this handle nor its broker was closed.
    fn open(&self) -> Result<&Topic, Fail> {
        if self.closed.load(SeqCst) {
            return Err(Fail::new(
                lq_status::LQ_CLOSED,
                "this topic handle was closed (lq_topic_close)",
            ));
        }
        check_open(&self.broker)?;
        Ok(&self.t)
    }
}

/// Closes this handle (not the topic: its subscriptions go on): a publish
/// waiting in it in another thread for room in a full subscription queue
/// returns `LQ_CLOSED` at once (subscriptions with room still get their copy),
/// and every later call on it but `lq_topic_free` returns `LQ_CLOSED`.
/// Idempotent; safe from any thread while others use the handle. It must still
/// be freed with `lq_topic_free` once no call is in it.
///
/// # Safety
/// `topic` NULL or live (not freed).
#[no_mangle]
pub unsafe extern "C" fn lq_topic_close(topic: *const lq_topic) -> lq_status {
    run(|| {
        let h = handle(topic, "topic")?;
        if !h.closed.swap(true, SeqCst) {
            h.t.wake_publishers();
        }
        Ok(())
    })
}

/// Frees a topic handle (the topic and its subscriptions stay); NULL is a no-op.
/// To stop a publish waiting in the handle, `lq_topic_close` it first and free
/// it once the publish has returned.
///
/// # Safety
/// `topic` must be NULL or an owned handle, not used again, with no call in it
/// (in any thread).
#[no_mangle]
pub unsafe extern "C" fn lq_topic_free(topic: *mut lq_topic) {
    run_free(topic)
}

/// Pointers (the exported function's, see `boundary.rs`):
/// As for the `lq_topic_subscribe*` functions.
fn subscribe(
    topic: *const lq_topic,
    queue: *const u8,
    queue_len: usize,
    filter: impl FnOnce() -> Result<Filter, Fail>,
    out: *mut *mut lq_queue,
) -> lq_status {
    run(|| {
        let (h, q) = (handle(topic, "topic")?, text(queue, queue_len, "queue")?);
        let f = filter()?;
        let sub = h.open()?.subscribe(q, f)?;
        if !out.is_null() {
            Out::new(out, "out")?.set(lq_queue::boxed(sub, &h.broker));
        }
        Ok(())
    })
}

/// Subscribes the queue `queue` (created with the defaults if missing) to every
/// message. Subscribing again with the same filter changes nothing; with
/// another, replaces the filter. With a data directory the subscription is
/// journaled before this returns and comes back when the broker reopens.
/// `*out` (if not NULL) gets an owned handle on the subscription queue (free
/// with `lq_queue_free`).
///
/// # Safety
/// `topic` NULL or live; `queue` points to `queue_len` bytes; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lq_topic_subscribe(
    topic: *const lq_topic,
    queue: *const u8,
    queue_len: usize,
    out: *mut *mut lq_queue,
) -> lq_status {
    subscribe(topic, queue, queue_len, || Ok(Filter::All), out)
}

/// Subscribes `queue` to messages named `name`.
///
/// # Safety
/// As for `lq_topic_subscribe`; `name` points to `name_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_topic_subscribe_name(
    topic: *const lq_topic,
    queue: *const u8,
    queue_len: usize,
    name: *const u8,
    name_len: usize,
    out: *mut *mut lq_queue,
) -> lq_status {
    subscribe(
        topic,
        queue,
        queue_len,
        || Ok(Filter::name(text(name, name_len, "name")?)),
        out,
    )
}

/// Subscribes `queue` to messages whose header `key` (UTF-8) equals `value`.
///
/// # Safety
/// As for `lq_topic_subscribe`; `key`/`value` point to their lengths in bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_topic_subscribe_header(
    topic: *const lq_topic,
    queue: *const u8,
    queue_len: usize,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    out: *mut *mut lq_queue,
) -> lq_status {
    subscribe(
        topic,
        queue,
        queue_len,
        || {
            Ok(Filter::header(
                text(key, key_len, "key")?,
                bytes(value, value_len, "value")?,
            ))
        },
        out,
    )
}

/// Removes the subscription of `queue` (the queue stays; journaled with a
/// data directory); `LQ_NOT_FOUND` if there is none.
///
/// # Safety
/// `topic` NULL or live; `queue` points to `queue_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_topic_unsubscribe(
    topic: *const lq_topic,
    queue: *const u8,
    queue_len: usize,
) -> lq_status {
    run(|| {
        let (h, q) = (handle(topic, "topic")?, text(queue, queue_len, "queue")?);
        h.open()?.unsubscribe(q)?;
        Ok(())
    })
}

/// Names of the subscribed queues, in subscription order. `*out` is owned:
/// free with `lq_strings_free`.
///
/// # Safety
/// `topic` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_topic_subscriptions(
    topic: *const lq_topic,
    out: *mut *mut lq_strings,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(topic, "topic")?, Out::new(out, "out")?);
        out.set(strings(h.open()?.subscriptions()));
        Ok(())
    })
}

/// Counters of a topic (`lq_topic_get_stats`), since its broker opened.
///
/// Set `struct_size` to `sizeof(lq_topic_stats)` before the call: fields
/// added by a later version go at the end, and a library only writes the
/// fields that fit in `struct_size` (a program built against an older header
/// keeps working).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct lq_topic_stats {
    /// Set by the caller: `sizeof(lq_topic_stats)` as it was compiled.
    pub struct_size: usize,
    /// Publishes (whatever their outcome).
    pub published: u64,
    /// Publishes that found the topic without any subscription: the message
    /// went nowhere (not an error, `*count` was 0).
    pub dropped_no_subscriber: u64,
    /// Publishes that found subscriptions, none of whose filters matched.
    pub unmatched: u64,
    /// Subscriptions now.
    pub subscriptions: u64,
}

impl From<TopicStats> for lq_topic_stats {
    fn from(s: TopicStats) -> Self {
        lq_topic_stats {
            struct_size: std::mem::size_of::<lq_topic_stats>(),
            published: s.published,
            dropped_no_subscriber: s.dropped_no_subscriber,
            unmatched: s.unmatched,
            subscriptions: s.subscriptions,
        }
    }
}

/// Writes the topic's counters into `*out`: the fields that fit in
/// `out->struct_size` bytes (which the caller sets to
/// `sizeof(lq_topic_stats)`); `struct_size` itself is left as it is.
/// `LQ_INVALID_ARGUMENT` if `struct_size` does not hold even the first
/// counter.
///
/// # Safety
/// `topic` NULL or live; `out` NULL or valid for `out->struct_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_topic_get_stats(
    topic: *const lq_topic,
    out: *mut lq_topic_stats,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(topic, "topic")?, Out::new(out, "out")?);
        h.broker.check_fork()?;
        let at = out.as_ptr().cast::<u8>();
        // SAFETY: `out` is non-NULL and the caller guarantees it points to an
        // `lq_topic_stats` whose first field (a `usize`, present in every
        // version) is set; read unaligned in case the caller's struct is not.
        let size = unsafe { at.cast::<usize>().read_unaligned() };
        let head = std::mem::offset_of!(lq_topic_stats, published);
        if size < head + std::mem::size_of::<u64>() {
            return Err(Fail::new(
                lq_status::LQ_INVALID_ARGUMENT,
                "out->struct_size must be sizeof(lq_topic_stats)",
            ));
        }
        let full = lq_topic_stats::from(h.t.stats());
        let n = size.min(std::mem::size_of::<lq_topic_stats>());
        // SAFETY: `full` is a plain `repr(C)` value of `size_of` bytes and
        // `n` does not exceed it; the caller guarantees `out` is valid for
        // `struct_size` (>= `n`) bytes. The copy skips the `struct_size`
        // field, and the two do not overlap (`full` is on our stack).
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&full as *const lq_topic_stats).cast::<u8>().add(head),
                at.add(head),
                n - head,
            )
        };
        Ok(())
    })
}

/// Publishes `msg`, **consuming it**: every subscription whose filter matches
/// gets a copy. `*count` (if not NULL) gets how many did. A publish that
/// nobody takes (0) is not an error; `lq_topic_get_stats` counts it. If one refuses it
/// (full, quota, closed) the others still get theirs and that first error is
/// returned.
///
/// # Safety
/// `topic` NULL or live; `msg` NULL or owned (not used again); `count` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn lq_topic_publish(
    topic: *const lq_topic,
    msg: *mut lq_message,
    count: *mut usize,
) -> lq_status {
    run(|| {
        let m = take(msg, "msg")?;
        let h = handle(topic, "topic")?;
        let n = h.open()?.publish_until(m, Some(&h.closed))?;
        if !count.is_null() {
            Out::new(count, "count")?.set(n);
        }
        Ok(())
    })
}
