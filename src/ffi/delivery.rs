//! `lq_delivery`: a received (or peeked) message.
//!
//! Ownership: a delivery returned by a receive, a peek or an RPC call is owned
//! by the host and freed with `lq_delivery_free`. Its body, name, headers and
//! correlation id are read **without a copy**: the pointers they return point
//! into the engine's message and stay valid until the delivery is acked,
//! nacked or freed, whichever comes first. `lq_delivery_ack` / `_nack` settle
//! it: afterwards the handle is still allocated (free it) but every call on it
//! but `lq_delivery_free` and `lq_delivery_id` returns `LQ_INVALID_STATE`
//! (a second ack included). A leased delivery freed unsettled is redelivered
//! when its lease runs out.
//!
//! A leased delivery whose queue closed (its broker closed or the queue was
//! deleted) can no longer be read or settled: every call on it but
//! `lq_delivery_free` and `lq_delivery_id` returns `LQ_CLOSED` and settles
//! nothing (a persistent message is back after a reopen). Auto-acked
//! deliveries, RPC replies and peeked ones are copies the queue no longer
//! holds: they stay readable.
//!
//! The `const lq_delivery *` a pool handler gets is borrowed for the call:
//! readable, not settleable (the pool acks or nacks by the handler's result),
//! never freed by the handler.
//!
//! Threads: a delivery may move between threads (ack it from any thread) but
//! must not be used from two threads at once.

use super::boundary::{
    handle, handle_mut, items, ms, null, run, run_free, set_slice, text, Fail, Out, OutArray,
};
use super::status::{lq_status, lq_status::*};
use crate::{Delivery, MessageView, Peeked};

/// A received message (leased, auto-acked or an RPC reply) or a peeked one.
pub struct lq_delivery {
    state: State,
}

enum State {
    /// Owned: received (leased or auto-acked) or an RPC reply.
    Owned(Delivery),
    /// A snapshot from peek.
    Peeked(Peeked),
    /// Lent to a pool handler for the duration of the call.
    Borrowed(*const Delivery),
    /// Acked or nacked: the message is gone.
    Settled { id: u64, how: &'static str },
}

/// The `Delivery` a pool handler's borrowed view points to.
fn borrowed(d: &*const Delivery) -> &Delivery {
    // SAFETY: a borrowed delivery (`lq_delivery::borrowed`) lives only inside the
    // pool handler call, during which the `Delivery` it points to is alive and
    // not moved (see `pool.rs`); the reference does not outlive `d`'s borrow.
    unsafe { &**d }
}

impl lq_delivery {
    pub(crate) fn owned(d: Delivery) -> Self {
        lq_delivery {
            state: State::Owned(d),
        }
    }

    pub(crate) fn peeked(p: Peeked) -> Self {
        lq_delivery {
            state: State::Peeked(p),
        }
    }

    /// A view of `d` for a pool handler; valid while `d` is.
    pub(crate) fn borrowed(d: &Delivery) -> Self {
        lq_delivery {
            state: State::Borrowed(d),
        }
    }

    fn view(&self) -> Result<&dyn MessageView, Fail> {
        match &self.state {
            State::Owned(d) if d.queue_closed() => Err(queue_closed(d.id())),
            State::Owned(d) => Ok(d),
            State::Peeked(p) => Ok(p),
            State::Borrowed(d) => Ok(borrowed(d)),
            State::Settled { id, how } => Err(Fail::new(
                LQ_INVALID_STATE,
                format!("the delivery of message {id} was {how}; its contents are gone"),
            )),
        }
    }

    /// The leased delivery, taken out for settling (the state becomes `Settled`).
    /// `LQ_CLOSED` (and the delivery left as it is) if its queue was closed.
    fn take_leased(&mut self, how: &'static str) -> Result<Delivery, Fail> {
        let id = self.leased()?.id();
        match std::mem::replace(&mut self.state, State::Settled { id, how }) {
            State::Owned(d) => Ok(d),
            _ => unreachable!("checked above"),
        }
    }

    /// The leased delivery, left in place, or why it cannot be settled.
    fn leased(&self) -> Result<&Delivery, Fail> {
        let id = self.view().map(|v| v.id()).unwrap_or(0);
        match &self.state {
            State::Owned(d) if d.queue_closed() => return Err(queue_closed(d.id())),
            State::Owned(d) if d.is_leased() => {}
            State::Owned(_) => {
                return Err(Fail::new(
                    LQ_INVALID_STATE,
                    format!("message {id} was received with auto-ack (or is an RPC reply): there is no lease to settle"),
                ))
            }
            State::Peeked(_) => {
                return Err(Fail::new(
                    LQ_INVALID_STATE,
                    format!("message {id} was peeked, not received: there is no lease to settle"),
                ))
            }
            State::Borrowed(_) => {
                return Err(Fail::new(
                    LQ_INVALID_STATE,
                    format!("message {id} belongs to a pool handler: the pool settles it by the handler's result"),
                ))
            }
            State::Settled { .. } => return Err(self.view().err().expect("settled")),
        }
        match &self.state {
            State::Owned(d) => Ok(d),
            _ => unreachable!("checked above"),
        }
    }
}

/// What a leased delivery whose queue closed answers.
fn queue_closed(id: u64) -> Fail {
    Fail::new(
        LQ_CLOSED,
        format!("the queue of message {id} was closed (its broker closed or the queue deleted): the delivery can no longer be read or settled"),
    )
}

/// Frees a delivery (an unsettled leased one is redelivered when its lease
/// runs out); NULL is a no-op. Pointers read from it become invalid.
///
/// # Safety
/// `d` must be NULL or an owned delivery, not used again (never the borrowed
/// one a pool handler gets).
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_free(d: *mut lq_delivery) {
    run_free(d)
}

/// Pointers (the exported function's, see `boundary.rs`):
/// `d` NULL or live and unshared.
fn settle(
    d: *mut lq_delivery,
    how: &'static str,
    f: impl FnOnce(Delivery) -> crate::Result<()>,
) -> lq_status {
    run(|| {
        let h = handle_mut(d, "d")?;
        f(h.take_leased(how)?)?;
        Ok(())
    })
}

/// Acknowledges: the message is done and removed. Afterwards the delivery is
/// settled (its body pointer is invalid; a second ack is `LQ_INVALID_STATE`)
/// but still needs `lq_delivery_free`. `LQ_LEASE_EXPIRED` if the lease ran out
/// first (the message went back to the queue; the delivery is settled too).
/// `LQ_CLOSED` if its queue was closed (broker closed, queue deleted): nothing
/// is settled and a persistent message is back after a reopen. `LQ_STORAGE`
/// if the journal could not record the ack (the message may come back after
/// a restart; the delivery is settled).
///
/// # Safety
/// `d` NULL or an owned, live delivery used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_ack(d: *mut lq_delivery) -> lq_status {
    settle(d, "acked", Delivery::ack)
}

/// Acknowledges `n` leased deliveries of one queue at once: each is acked as
/// `lq_delivery_ack` would (and settled, as it leaves it), in one call — one
/// round trip when the broker is attached, rather than one per delivery.
/// Not all or nothing: `results` (NULL, or writable for `n` entries) gets each
/// delivery's status, in order, and the call returns `LQ_OK` if every one was
/// acked, else the status of the first that was not (its detail in
/// `lq_last_error_message`), e.g. `LQ_LEASE_EXPIRED`.
///
/// Checked first, and then none is acked and `results` is not written:
/// `LQ_NULL_POINTER` for a NULL `ds` or entry; `LQ_INVALID_ARGUMENT` for `n` 0,
/// a delivery listed twice, or deliveries of different queues;
/// `LQ_INVALID_STATE` for one already settled, peeked, auto-acked or a pool
/// handler's; `LQ_CLOSED` for one whose queue was closed.
///
/// # Safety
/// `ds` NULL or readable for `n` entries, each NULL or an owned, live delivery
/// used by no other thread; `results` NULL or writable for `n` entries.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_ack_batch(
    ds: *const *mut lq_delivery,
    n: usize,
    results: *mut lq_status,
) -> lq_status {
    run(|| {
        if n == 0 {
            return Err(Fail::new(LQ_INVALID_ARGUMENT, "n must be at least 1"));
        }
        let ptrs = items(ds, n, "ds")?;
        let mut seen = std::collections::HashSet::with_capacity(n);
        for (i, &p) in ptrs.iter().enumerate() {
            if p.is_null() {
                return Err(null(&format!("ds[{i}]")));
            }
            if !seen.insert(p) {
                return Err(Fail::new(
                    LQ_INVALID_ARGUMENT,
                    format!("ds[{i}] is listed twice"),
                ));
            }
        }
        let results = if results.is_null() {
            None
        } else {
            Some(OutArray::new(results, n, "results")?)
        };
        // Distinct, non-NULL pointers (checked above): one `&mut` each.
        let mut hs = ptrs
            .iter()
            .map(|&p| handle_mut(p, "ds[i]"))
            .collect::<Result<Vec<&mut lq_delivery>, Fail>>()?;
        let first = hs[0].leased()?;
        for (i, h) in hs.iter().enumerate() {
            if !h.leased()?.same_queue(first)? {
                return Err(Fail::new(
                    LQ_INVALID_ARGUMENT,
                    format!("ds[{i}] is a delivery of another queue than ds[0]"),
                ));
            }
        }
        let taken = hs
            .iter_mut()
            .map(|h| h.take_leased("acked"))
            .collect::<Result<Vec<Delivery>, Fail>>()?;
        let mut first_fail = None;
        for (i, r) in Delivery::ack_all(taken)?.into_iter().enumerate() {
            let st = match r {
                Ok(()) => LQ_OK,
                Err(e) => {
                    let st = lq_status::from(&e);
                    first_fail.get_or_insert(Fail::from(e));
                    st
                }
            };
            if let Some(out) = &results {
                out.set(i, st);
            }
        }
        first_fail.map_or(Ok(()), Err)
    })
}

/// Returns the message to the queue now (or to the dead-letter queue after
/// max deliveries). Settles the delivery as `lq_delivery_ack` does.
///
/// # Safety
/// As for `lq_delivery_ack`.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_nack(d: *mut lq_delivery) -> lq_status {
    settle(d, "nacked", Delivery::nack)
}

/// Returns the message to the queue after `delay_ms` (0: now), recording
/// `reason` (UTF-8; NULL/0 for none) in `x-dead-letter-reason` if this was its
/// last allowed delivery. Settles the delivery.
///
/// # Safety
/// As for `lq_delivery_ack`; `reason` points to `reason_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_nack_with(
    d: *mut lq_delivery,
    delay_ms: u64,
    reason: *const u8,
    reason_len: usize,
) -> lq_status {
    run(|| {
        let (h, reason) = (handle_mut(d, "d")?, text(reason, reason_len, "reason")?);
        let delay = (delay_ms > 0).then(|| ms(delay_ms));
        let reason = if reason.is_empty() { "nacked" } else { reason };
        h.take_leased("nacked")?.nack_with(delay, reason)?;
        Ok(())
    })
}

/// Renews the lease so it ends `ms_from_now` milliseconds from now (0: the
/// queue's lease time).
///
/// # Safety
/// `d` NULL or live and unshared.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_extend(d: *mut lq_delivery, ms_from_now: u64) -> lq_status {
    run(|| {
        let h = handle_mut(d, "d")?;
        let dl = h.take_leased("extended")?;
        let r = if ms_from_now == 0 {
            dl.extend()
        } else {
            dl.extend_by(ms(ms_from_now))
        };
        // Extending does not settle: put it back.
        h.state = State::Owned(dl);
        r.map_err(Fail::from)
    })
}

/// Runs `f` on the message view of `d`.
///
/// Pointers (the exported function's, see `boundary.rs`):
/// `d` NULL or live.
fn read<T>(
    d: *const lq_delivery,
    out: *mut T,
    f: impl FnOnce(&dyn MessageView, &lq_delivery) -> Result<T, Fail>,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(d, "d")?, Out::new(out, "out")?);
        out.set(f(h.view()?, h)?);
        Ok(())
    })
}

/// The message id (unique within its queue). Works on a settled delivery too.
///
/// # Safety
/// `d` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_id(d: *const lq_delivery, out: *mut u64) -> lq_status {
    run(|| {
        let (h, out) = (handle(d, "d")?, Out::new(out, "out")?);
        out.set(match &h.state {
            State::Settled { id, .. } => *id,
            State::Owned(d) => d.id(),
            _ => h.view()?.id(),
        });
        Ok(())
    })
}

/// The body, zero-copy: `*ptr` points into the engine's message, valid until
/// the delivery is acked, nacked or freed. An empty body gives a non-NULL
/// pointer and length 0.
///
/// # Safety
/// `d` NULL or live; `ptr` and `len` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_body(
    d: *const lq_delivery,
    ptr: *mut *const u8,
    len: *mut usize,
) -> lq_status {
    run(|| {
        let (h, ptr, len) = (
            handle(d, "d")?,
            Out::new(ptr, "ptr")?,
            Out::new(len, "len")?,
        );
        set_slice(ptr, len, h.view()?.body());
        Ok(())
    })
}

/// Pointers (the exported function's, see `boundary.rs`):
/// `d` NULL or live; `ptr` and `len` writable.
fn optional_text(
    d: *const lq_delivery,
    ptr: *mut *const u8,
    len: *mut usize,
    what: &str,
    f: impl FnOnce(&dyn MessageView) -> Option<&[u8]>,
) -> lq_status {
    run(|| {
        let (h, ptr, len) = (
            handle(d, "d")?,
            Out::new(ptr, "ptr")?,
            Out::new(len, "len")?,
        );
        let v = h.view()?;
        let s = f(v)
            .ok_or_else(|| Fail::new(LQ_NOT_FOUND, format!("message {} has no {what}", v.id())))?;
        set_slice(ptr, len, s);
        Ok(())
    })
}

/// The message name (UTF-8, not NUL-terminated, zero-copy as the body);
/// `LQ_NOT_FOUND` if it has none.
///
/// # Safety
/// `d` NULL or live; `ptr` and `len` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_name(
    d: *const lq_delivery,
    ptr: *mut *const u8,
    len: *mut usize,
) -> lq_status {
    optional_text(d, ptr, len, "name", |v| v.name().map(str::as_bytes))
}

/// The correlation id (UTF-8, zero-copy); `LQ_NOT_FOUND` if it has none.
///
/// # Safety
/// `d` NULL or live; `ptr` and `len` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_correlation_id(
    d: *const lq_delivery,
    ptr: *mut *const u8,
    len: *mut usize,
) -> lq_status {
    optional_text(d, ptr, len, "correlation id", |v| {
        v.correlation_id().map(str::as_bytes)
    })
}

/// The value of header `key` (bytes, zero-copy); `LQ_NOT_FOUND` if absent.
///
/// # Safety
/// `d` NULL or live; `key` points to `key_len` bytes; `ptr` and `len` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_header(
    d: *const lq_delivery,
    key: *const u8,
    key_len: usize,
    ptr: *mut *const u8,
    len: *mut usize,
) -> lq_status {
    let key = match text(key, key_len, "key") {
        Ok(k) => k.to_string(),
        Err(f) => return run(|| Err(f)),
    };
    let what = format!("header {key:?}");
    optional_text(d, ptr, len, &what, |v| v.header(&key))
}

/// How many headers it has.
///
/// # Safety
/// `d` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_header_count(
    d: *const lq_delivery,
    out: *mut usize,
) -> lq_status {
    read(d, out, |v, _| Ok(v.headers().len()))
}

/// Header number `index` (sorted by key): key and value, zero-copy.
/// `LQ_NOT_FOUND` past the last.
///
/// # Safety
/// `d` NULL or live; the four out-pointers writable.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_header_at(
    d: *const lq_delivery,
    index: usize,
    key: *mut *const u8,
    key_len: *mut usize,
    value: *mut *const u8,
    value_len: *mut usize,
) -> lq_status {
    run(|| {
        let (h, k, kl, v, vl) = (
            handle(d, "d")?,
            Out::new(key, "key")?,
            Out::new(key_len, "key_len")?,
            Out::new(value, "value")?,
            Out::new(value_len, "value_len")?,
        );
        let view = h.view()?;
        let (hk, hv) = view.headers().iter().nth(index).ok_or_else(|| {
            Fail::new(
                LQ_NOT_FOUND,
                format!("message {} has no header number {index}", view.id()),
            )
        })?;
        set_slice(k, kl, hk.as_bytes());
        set_slice(v, vl, hv);
        Ok(())
    })
}

/// Priority 0–9.
///
/// # Safety
/// `d` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_priority(d: *const lq_delivery, out: *mut u8) -> lq_status {
    read(d, out, |v, _| Ok(v.priority()))
}

/// Which delivery of the message this is (1 the first time; 0 for a peek).
///
/// # Safety
/// `d` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_count(d: *const lq_delivery, out: *mut u32) -> lq_status {
    read(d, out, |_, h| {
        Ok(match &h.state {
            State::Owned(d) => d.delivery_count(),
            State::Borrowed(d) => borrowed(d).delivery_count(),
            _ => 0,
        })
    })
}

/// Whether the message is persistent.
///
/// # Safety
/// `d` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_is_persistent(
    d: *const lq_delivery,
    out: *mut bool,
) -> lq_status {
    read(d, out, |v, _| Ok(v.is_persistent()))
}

/// When it expires (broker clock, nanoseconds); `LQ_NOT_FOUND` without a TTL.
///
/// # Safety
/// `d` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_delivery_expires_at(d: *const lq_delivery, out: *mut u64) -> lq_status {
    read(d, out, |v, _| {
        v.expires_at()
            .ok_or_else(|| Fail::new(LQ_NOT_FOUND, format!("message {} has no TTL", v.id())))
    })
}
