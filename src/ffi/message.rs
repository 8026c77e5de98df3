//! `lq_message`: a message being built for sending.
//!
//! Created with `lq_message_new` (the body is copied in), changed with setters,
//! then handed to a send call, which **always consumes it** (on success and on
//! failure alike, as the Rust API's `send(msg)` does): do not free or reuse it
//! after passing it to `lq_queue_send`, `lq_queue_send_batch`,
//! `lq_topic_publish` or an `lq_rpc_*` call. A message never sent is freed with
//! `lq_message_free`. Not thread-safe: one thread at a time (it may move).

use super::boundary::{boxed, bytes, handle_mut, ms, owned, run, run_free, text, Fail, Out};
use super::status::{lq_status, lq_status::*};
use crate::Message;

/// A message to send: body, headers, name, correlation id, priority, TTL,
/// delay, persistence.
pub struct lq_message {
    pub(crate) m: Message,
}

/// Takes the message out of an owned handle (which is freed).
pub(crate) fn take(p: *mut lq_message, what: &str) -> Result<Message, Fail> {
    Ok(owned(p, what)?.m)
}

/// A new message with a copy of `body` (`body_len` bytes; NULL allowed when 0).
/// `*out` is owned until a send consumes it or `lq_message_free`.
///
/// # Safety
/// `body` must point to `body_len` readable bytes; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn lq_message_new(
    body: *const u8,
    body_len: usize,
    out: *mut *mut lq_message,
) -> lq_status {
    run(|| {
        let (b, out) = (bytes(body, body_len, "body")?, Out::new(out, "out")?);
        out.set(boxed(lq_message { m: Message::new(b) }));
        Ok(())
    })
}

/// Frees a message that was not sent; NULL is a no-op.
///
/// # Safety
/// `msg` must be NULL or an owned message, not used again.
#[no_mangle]
pub unsafe extern "C" fn lq_message_free(msg: *mut lq_message) {
    run_free(msg)
}

/// Checks the arguments with `check`, then applies `apply` to the message
/// behind `msg` (a refused argument leaves the message as it was).
///
/// Pointers (the exported function's, see `boundary.rs`):
/// `msg` must be NULL or a live handle used by no other thread.
fn with_msg<T>(
    msg: *mut lq_message,
    check: impl FnOnce() -> Result<T, Fail>,
    apply: impl FnOnce(Message, T) -> Message,
) -> lq_status {
    run(|| {
        let h = handle_mut(msg, "msg")?;
        let v = check()?;
        h.m = apply(std::mem::take(&mut h.m), v);
        Ok(())
    })
}

/// Sets the name (what the message is about; pools dispatch on it). UTF-8.
///
/// # Safety
/// `msg` NULL or live; `name` points to `name_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_message_set_name(
    msg: *mut lq_message,
    name: *const u8,
    name_len: usize,
) -> lq_status {
    with_msg(msg, || text(name, name_len, "name"), |m, n| m.name(n))
}

/// Sets the correlation id (RPC replies, execution ids). UTF-8.
///
/// # Safety
/// `msg` NULL or live; `id` points to `id_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_message_set_correlation_id(
    msg: *mut lq_message,
    id: *const u8,
    id_len: usize,
) -> lq_status {
    with_msg(msg, || text(id, id_len, "id"), |m, c| m.correlation_id(c))
}

/// Adds (or replaces) a header: `key` is UTF-8, `value` any bytes (copied).
///
/// # Safety
/// `msg` NULL or live; `key`/`value` point to their lengths in bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_message_set_header(
    msg: *mut lq_message,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
) -> lq_status {
    with_msg(
        msg,
        || {
            let k = text(key, key_len, "key")?;
            if k.is_empty() {
                return Err(Fail::new(LQ_INVALID_ARGUMENT, "header key is empty"));
            }
            Ok((k, bytes(value, value_len, "value")?))
        },
        |m, (k, v)| m.header(k, v),
    )
}

/// Sets the priority, 0 (lowest) to 9 (highest); `LQ_INVALID_ARGUMENT` above 9.
///
/// # Safety
/// `msg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lq_message_set_priority(msg: *mut lq_message, priority: u8) -> lq_status {
    with_msg(
        msg,
        || {
            if priority > crate::MAX_PRIORITY {
                return Err(Fail::new(
                    LQ_INVALID_ARGUMENT,
                    format!("priority {priority} is above 9"),
                ));
            }
            Ok(priority)
        },
        |m, p| m.priority(p),
    )
}

/// Time to live in milliseconds from sending; an expired message is never
/// delivered.
///
/// # Safety
/// `msg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lq_message_set_ttl_ms(msg: *mut lq_message, ttl_ms: u64) -> lq_status {
    with_msg(msg, || Ok(()), |m, ()| m.ttl(ms(ttl_ms)))
}

/// Delay in milliseconds: receivable only this long after sending.
///
/// # Safety
/// `msg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lq_message_set_delay_ms(msg: *mut lq_message, delay_ms: u64) -> lq_status {
    with_msg(msg, || Ok(()), |m, ()| m.delay(ms(delay_ms)))
}

/// Persistent (written to the journal of a broker with a data directory) or
/// not, overriding the queue's default.
///
/// # Safety
/// `msg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lq_message_set_persistent(
    msg: *mut lq_message,
    persistent: bool,
) -> lq_status {
    with_msg(msg, || Ok(()), |m, ()| m.persistent(persistent))
}

/// Size as quotas count it: body + name + correlation id + headers, in bytes.
///
/// # Safety
/// `msg` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_message_size(msg: *const lq_message, out: *mut u64) -> lq_status {
    run(|| {
        let (h, out) = (super::boundary::handle(msg, "msg")?, Out::new(out, "out")?);
        out.set(h.m.size());
        Ok(())
    })
}
