//! `lq_rpc_client`: `call` (request, reply by correlation id), `cast` (one
//! consumer), `fanout` (every subscriber of a topic). The serving side is an
//! `lq_pool` whose handler sets the reply with `lq_reply_set_body`.
//!
//! Threads: an `lq_rpc_client` may be shared; many threads may call through one
//! client at once. `lq_rpc_client_close` may be called from any thread, also
//! while calls wait in the client: they return `LQ_CLOSED` at once.

use super::boundary::{boxed, check_open, handle, ms, run, run_free, text, Fail, Out};
use super::broker::lq_namespace;
use super::delivery::lq_delivery;
use super::message::{lq_message, take};
use super::status::lq_status;
use crate::{Broker, RpcClient};

/// An RPC client with a private reply queue. Shareable between threads.
pub struct lq_rpc_client {
    c: RpcClient,
    broker: Broker,
}

/// A client with its own reply queue in `ns`. `*out` is owned: free it with
/// `lq_rpc_client_free` (which deletes the reply queue).
///
/// # Safety
/// `ns` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_rpc_client_new(
    ns: *const lq_namespace,
    out: *mut *mut lq_rpc_client,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(ns, "ns")?, Out::new(out, "out")?);
        check_open(&h.broker)?;
        out.set(boxed(lq_rpc_client {
            c: RpcClient::new(&h.ns)?,
            broker: h.broker.clone(),
        }));
        Ok(())
    })
}

/// Closes the client (not its namespace): calls waiting for a reply in other
/// threads return `LQ_CLOSED` at once, and every later call, cast or fanout
/// through it returns `LQ_CLOSED`. Idempotent; safe from any thread while
/// others use the client. It must still be freed with `lq_rpc_client_free`
/// once no call is in it.
///
/// # Safety
/// `client` NULL or live (not freed).
#[no_mangle]
pub unsafe extern "C" fn lq_rpc_client_close(client: *const lq_rpc_client) -> lq_status {
    run(|| {
        handle(client, "client")?.c.close();
        Ok(())
    })
}

/// Frees a client and deletes its reply queue; NULL is a no-op. To stop calls
/// waiting in it, `lq_rpc_client_close` it first and free it once they have
/// returned.
///
/// # Safety
/// `client` must be NULL or an owned client, not used again (no call in flight).
#[no_mangle]
pub unsafe extern "C" fn lq_rpc_client_free(client: *mut lq_rpc_client) {
    run_free(client)
}

/// Pointers (the exported function's, see `boundary.rs`):
/// `client` NULL or live; `target` points to `target_len` bytes; `msg` NULL or
/// owned (consumed).
fn prepare<'a>(
    client: *const lq_rpc_client,
    target: *const u8,
    target_len: usize,
    msg: *mut lq_message,
) -> Result<(&'a lq_rpc_client, &'a str, crate::Message), Fail> {
    let m = take(msg, "msg")?;
    let (h, t) = (
        handle(client, "client")?,
        text(target, target_len, "target")?,
    );
    check_open(&h.broker)?;
    if h.c.is_closed() {
        return Err(Fail::new(
            lq_status::LQ_CLOSED,
            "this RPC client was closed (lq_rpc_client_close)",
        ));
    }
    Ok((h, t, m))
}

/// Sends `msg` (**consumed**) to the queue `queue` and waits at most
/// `timeout_ms` for the reply: on success `*reply` is an owned delivery holding
/// the reply body (read it, then `lq_delivery_free`; it needs no ack).
/// `LQ_TIMEOUT` if no reply came; `LQ_REMOTE` if the handler failed for good
/// (its text in `lq_last_error_message`); `LQ_CLOSED` if the client (or the
/// broker) was closed, also while the call waited.
///
/// # Safety
/// `client` NULL or live; `queue` points to `queue_len` bytes; `msg` NULL or
/// owned; `reply` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_rpc_call(
    client: *const lq_rpc_client,
    queue: *const u8,
    queue_len: usize,
    msg: *mut lq_message,
    timeout_ms: u64,
    reply: *mut *mut lq_delivery,
) -> lq_status {
    run(|| {
        let (h, q, m) = prepare(client, queue, queue_len, msg)?;
        let reply = Out::new(reply, "reply")?;
        let d = h.c.call(q, m, ms(timeout_ms))?;
        reply.set(boxed(lq_delivery::owned(d)));
        Ok(())
    })
}

/// Sends `msg` (**consumed**) to the queue `queue` for one consumer, no reply;
/// `*id_out` (if not NULL) gets its id.
///
/// # Safety
/// As for `lq_rpc_call`; `id_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lq_rpc_cast(
    client: *const lq_rpc_client,
    queue: *const u8,
    queue_len: usize,
    msg: *mut lq_message,
    id_out: *mut u64,
) -> lq_status {
    run(|| {
        let (h, q, m) = prepare(client, queue, queue_len, msg)?;
        let id = h.c.cast(q, m)?;
        if !id_out.is_null() {
            Out::new(id_out, "id_out")?.set(id);
        }
        Ok(())
    })
}

/// Publishes `msg` (**consumed**) to every subscriber of the topic `topic`;
/// `*count` (if not NULL) gets how many got it.
///
/// # Safety
/// As for `lq_rpc_call`; `count` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lq_rpc_fanout(
    client: *const lq_rpc_client,
    topic: *const u8,
    topic_len: usize,
    msg: *mut lq_message,
    count: *mut usize,
) -> lq_status {
    run(|| {
        let (h, t, m) = prepare(client, topic, topic_len, msg)?;
        let n = h.c.fanout(t, m)?;
        if !count.is_null() {
            Out::new(count, "count")?.set(n);
        }
        Ok(())
    })
}

/// Replies that arrived after their call had timed out (dropped).
///
/// # Safety
/// `client` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_rpc_late_replies(
    client: *const lq_rpc_client,
    out: *mut u64,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(client, "client")?, Out::new(out, "out")?);
        out.set(h.c.late_replies());
        Ok(())
    })
}
