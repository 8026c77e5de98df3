//! `lq_broker` (one engine instance), `lq_namespace` (a tenant) and the
//! recovery report.
//!
//! Threads: `lq_broker` and `lq_namespace` may be shared between threads and
//! used concurrently.

use super::boundary::{
    boxed, check_open, handle, handle_opt, run, run_free, set_slice, text, Fail, Out,
};
use super::options::{lq_broker_options, lq_quotas};
use super::queue::{lq_queue, lq_queue_stats};
use super::status::{lq_status, lq_status::*};
use super::strings::{lq_strings, strings};
use super::topic::lq_topic;
use crate::{Broker, BrokerOptions, Namespace};

/// A broker: one engine instance. Shareable between threads.
pub struct lq_broker {
    pub(crate) b: Broker,
}

/// A namespace (tenant) of a broker. Shareable between threads. It keeps
/// working memory alive after `lq_broker_free`, but every call then returns
/// `LQ_CLOSED`.
pub struct lq_namespace {
    pub(crate) ns: Namespace,
    pub(crate) broker: Broker,
}

/// What opening a data directory found (`lq_broker_recovery_report`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct lq_recovery_report {
    /// Valid records replayed.
    pub records_read: u64,
    /// Queues defined.
    pub queues: u64,
    /// Unacked persistent messages brought back.
    pub messages_recovered: u64,
    /// Bytes not replayed because of damage.
    pub bytes_cut: u64,
    /// Segments with damage (or skipped because they follow it).
    pub segments_damaged: u64,
    /// Lines describing the damage (`lq_broker_recovery_damage`).
    pub damage_count: u64,
}

/// Statistics of a namespace (`lq_namespace_get_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct lq_namespace_stats {
    /// Number of queues.
    pub queues: u64,
    /// Its queues' statistics summed (`oldest_age_ms`: the oldest).
    pub totals: lq_queue_stats,
}

impl Drop for lq_broker {
    fn drop(&mut self) {
        self.b.close();
    }
}

pub(crate) fn ns_handle(ns: Namespace, broker: &Broker) -> *mut lq_namespace {
    boxed(lq_namespace {
        ns,
        broker: broker.clone(),
    })
}

/// Opens a broker. `opts` may be NULL (in memory, defaults) and is only read:
/// free it when convenient. With a data directory it locks it (`LQ_LOCKED` if
/// another process holds it), replays the journal and brings back every queue
/// and unacked persistent message. On success `*out` owns the broker: free it
/// with `lq_broker_free`.
///
/// # Safety
/// `opts` must be NULL or a live handle; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_open(
    opts: *const lq_broker_options,
    out: *mut *mut lq_broker,
) -> lq_status {
    run(|| {
        let out = Out::new(out, "out")?;
        let o = match handle_opt(opts) {
            Some(h) => h.o.clone(),
            None => BrokerOptions::new(),
        };
        let b = Broker::open(o)?;
        out.set(boxed(lq_broker { b }));
        Ok(())
    })
}

/// Closes the broker without freeing the handle: every queue closes, blocked
/// calls in other threads return `LQ_CLOSED`, later calls on the broker and on
/// every namespace, queue, topic and pool derived from it return `LQ_CLOSED`.
/// Persistent data is flushed and the data directory released. Idempotent.
/// In a child made by `fork()`, closing a broker inherited from the parent only
/// marks the child's copy closed: the parent's journal and threads are not
/// touched (every other call on it returns `LQ_FORKED`).
///
/// # Safety
/// `broker` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_close(broker: *const lq_broker) -> lq_status {
    run(|| {
        handle(broker, "broker")?.b.close();
        Ok(())
    })
}

/// Closes (as `lq_broker_close`) and frees the broker; NULL is a no-op. Handles
/// derived from it stay valid to call (they return `LQ_CLOSED`) and must still
/// be freed.
///
/// # Safety
/// `broker` must be NULL or a handle from `lq_broker_open`, not used again
/// (no other thread may be using it).
#[no_mangle]
pub unsafe extern "C" fn lq_broker_free(broker: *mut lq_broker) {
    // Dropping the handle closes the broker (see `Drop for lq_broker`).
    run_free(broker)
}

/// Whether the broker was closed.
///
/// # Safety
/// `broker` must be NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_is_closed(
    broker: *const lq_broker,
    out: *mut bool,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(broker, "broker")?, Out::new(out, "out")?);
        out.set(h.b.is_closed());
        Ok(())
    })
}

/// Which flavor of namespace lookup.
enum NsLookup<'a> {
    OpenOrCreate,
    Create(Option<&'a lq_quotas>),
    Get,
}

/// Pointers (the exported function's, see `boundary.rs`):
/// As for the `lq_broker_*namespace` functions.
fn namespace_call(
    broker: *const lq_broker,
    name: *const u8,
    name_len: usize,
    how: NsLookup<'_>,
    out: *mut *mut lq_namespace,
) -> lq_status {
    run(|| {
        let (h, name, out) = (
            handle(broker, "broker")?,
            text(name, name_len, "name")?,
            Out::new(out, "out")?,
        );
        check_open(&h.b)?;
        let ns = match how {
            NsLookup::OpenOrCreate => h.b.namespace(name)?,
            NsLookup::Create(q) => {
                h.b.create_namespace(name, q.map(|q| q.q.clone()).unwrap_or_default())?
            }
            NsLookup::Get => h.b.get_namespace(name)?,
        };
        out.set(ns_handle(ns, &h.b));
        Ok(())
    })
}

/// The namespace `name` (UTF-8, `[A-Za-z0-9_.-]{1,64}`), created with the
/// default quotas if missing. `*out` is owned: free with `lq_namespace_free`.
///
/// # Safety
/// `broker` NULL or live; `name` points to `name_len` bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_namespace(
    broker: *const lq_broker,
    name: *const u8,
    name_len: usize,
    out: *mut *mut lq_namespace,
) -> lq_status {
    namespace_call(broker, name, name_len, NsLookup::OpenOrCreate, out)
}

/// Creates the namespace `name` with `quotas` (copied; NULL: no limits but
/// the 64 MiB largest message). If it exists with the same quotas (declared
/// again, e.g. at the next start on the same data directory) `*out` gets it,
/// unchanged; with other quotas, `LQ_ALREADY_EXISTS`. With a data directory
/// the namespace and its quotas are journaled before this returns and come
/// back when the broker reopens. `*out` is owned.
///
/// # Safety
/// As for `lq_broker_namespace`; `quotas` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_create_namespace(
    broker: *const lq_broker,
    name: *const u8,
    name_len: usize,
    quotas: *const lq_quotas,
    out: *mut *mut lq_namespace,
) -> lq_status {
    let q = handle_opt(quotas);
    namespace_call(broker, name, name_len, NsLookup::Create(q), out)
}

/// An existing namespace, or `LQ_NOT_FOUND`; `LQ_INVALID_NAME` for a name no
/// namespace could have (as the create calls). `*out` is owned.
///
/// # Safety
/// As for `lq_broker_namespace`.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_get_namespace(
    broker: *const lq_broker,
    name: *const u8,
    name_len: usize,
    out: *mut *mut lq_namespace,
) -> lq_status {
    namespace_call(broker, name, name_len, NsLookup::Get, out)
}

/// A queue of the default namespace, created on first use. `*out` is owned:
/// free with `lq_queue_free`.
///
/// # Safety
/// `broker` NULL or live; `name` points to `name_len` bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_queue(
    broker: *const lq_broker,
    name: *const u8,
    name_len: usize,
    out: *mut *mut lq_queue,
) -> lq_status {
    run(|| {
        let (h, name, out) = (
            handle(broker, "broker")?,
            text(name, name_len, "name")?,
            Out::new(out, "out")?,
        );
        check_open(&h.b)?;
        out.set(lq_queue::boxed(h.b.queue(name)?, &h.b));
        Ok(())
    })
}

/// Names of all namespaces, sorted. `*out` is owned: free with `lq_strings_free`.
///
/// # Safety
/// `broker` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_list_namespaces(
    broker: *const lq_broker,
    out: *mut *mut lq_strings,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(broker, "broker")?, Out::new(out, "out")?);
        check_open(&h.b)?;
        out.set(strings(h.b.namespaces()));
        Ok(())
    })
}

/// Makes every persistent message sent so far durable (a barrier), whatever
/// the sync mode.
///
/// # Safety
/// `broker` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_flush(broker: *const lq_broker) -> lq_status {
    run(|| {
        let h = handle(broker, "broker")?;
        check_open(&h.b)?;
        h.b.flush()?;
        Ok(())
    })
}

/// What opening the data directory found; `LQ_NOT_FOUND` for a broker without
/// one.
///
/// # Safety
/// `broker` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_recovery_report(
    broker: *const lq_broker,
    out: *mut lq_recovery_report,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(broker, "broker")?, Out::new(out, "out")?);
        let r =
            h.b.recovery_report()
                .ok_or_else(|| Fail::new(LQ_NOT_FOUND, "the broker has no data directory"))?;
        out.set(lq_recovery_report {
            records_read: r.records_read,
            queues: r.queues,
            messages_recovered: r.messages_recovered,
            bytes_cut: r.bytes_cut,
            segments_damaged: r.segments_damaged,
            damage_count: r.damage.len() as u64,
        });
        Ok(())
    })
}

/// Line `index` of the recovery report's damage findings, as UTF-8 bytes (not
/// NUL-terminated) borrowed from the broker: valid until `lq_broker_free`.
/// `LQ_NOT_FOUND` past the last line or without a data directory.
///
/// # Safety
/// `broker` NULL or live; `ptr` and `len` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_recovery_damage(
    broker: *const lq_broker,
    index: usize,
    ptr: *mut *const u8,
    len: *mut usize,
) -> lq_status {
    run(|| {
        let (h, ptr, len) = (
            handle(broker, "broker")?,
            Out::new(ptr, "ptr")?,
            Out::new(len, "len")?,
        );
        let line =
            h.b.recovery_report()
                .and_then(|r| r.damage.get(index))
                .ok_or_else(|| Fail::new(LQ_NOT_FOUND, format!("no damage line {index}")))?;
        set_slice(ptr, len, line.as_bytes());
        Ok(())
    })
}

// ---- lq_namespace --------------------------------------------------------------

/// Frees a namespace handle (the namespace itself stays in the broker); NULL is
/// a no-op.
///
/// # Safety
/// `ns` must be NULL or an owned handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn lq_namespace_free(ns: *mut lq_namespace) {
    run_free(ns)
}

/// Pointers (the exported function's, see `boundary.rs`):
/// As for the `lq_namespace_*` functions taking a name and an out-pointer.
fn ns_named<T>(
    ns: *const lq_namespace,
    name: *const u8,
    name_len: usize,
    out: *mut *mut T,
    f: impl FnOnce(&lq_namespace, &str) -> Result<*mut T, Fail>,
) -> lq_status {
    run(|| {
        let (h, name, out) = (
            handle(ns, "ns")?,
            text(name, name_len, "name")?,
            Out::new(out, "out")?,
        );
        check_open(&h.broker)?;
        out.set(f(h, name)?);
        Ok(())
    })
}

/// The queue `name`, created with the broker's default queue options if
/// missing. `*out` is owned: free with `lq_queue_free`.
///
/// # Safety
/// `ns` NULL or live; `name` points to `name_len` bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_namespace_queue(
    ns: *const lq_namespace,
    name: *const u8,
    name_len: usize,
    out: *mut *mut lq_queue,
) -> lq_status {
    ns_named(ns, name, name_len, out, |h, n| {
        Ok(lq_queue::boxed(h.ns.queue(n)?, &h.broker))
    })
}

/// Creates the queue `name` with `opts` (NULL: defaults; copied);
/// `LQ_ALREADY_EXISTS` if it exists. `*out` is owned.
///
/// # Safety
/// As for `lq_namespace_queue`; `opts` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lq_namespace_create_queue(
    ns: *const lq_namespace,
    name: *const u8,
    name_len: usize,
    opts: *const super::options::lq_queue_options,
    out: *mut *mut lq_queue,
) -> lq_status {
    // The options are read inside the boundary (where a panic is caught).
    ns_named(ns, name, name_len, out, move |h, n| {
        let o = handle_opt(opts).map(|o| o.o.clone()).unwrap_or_default();
        Ok(lq_queue::boxed(h.ns.create_queue(n, o)?, &h.broker))
    })
}

/// An existing queue, or `LQ_NOT_FOUND`; `LQ_INVALID_NAME` for a name no queue
/// could have (as the create calls). `*out` is owned.
///
/// # Safety
/// As for `lq_namespace_queue`.
#[no_mangle]
pub unsafe extern "C" fn lq_namespace_get_queue(
    ns: *const lq_namespace,
    name: *const u8,
    name_len: usize,
    out: *mut *mut lq_queue,
) -> lq_status {
    ns_named(ns, name, name_len, out, |h, n| {
        Ok(lq_queue::boxed(h.ns.get_queue(n)?, &h.broker))
    })
}

/// The topic `name`, created if missing (journaled, with a data directory,
/// with its subscriptions: they come back when the broker reopens). `*out` is
/// owned: free with `lq_topic_free`.
///
/// # Safety
/// As for `lq_namespace_queue`.
#[no_mangle]
pub unsafe extern "C" fn lq_namespace_topic(
    ns: *const lq_namespace,
    name: *const u8,
    name_len: usize,
    out: *mut *mut lq_topic,
) -> lq_status {
    ns_named(ns, name, name_len, out, |h, n| {
        Ok(boxed(lq_topic::new(h.ns.topic(n)?, &h.broker)))
    })
}

/// Deletes the queue `name`: its messages are dropped, its handles return
/// `LQ_CLOSED`, it leaves every topic. `LQ_NOT_FOUND` if there is none,
/// `LQ_INVALID_NAME` for a name no queue could have.
///
/// # Safety
/// `ns` NULL or live; `name` points to `name_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_namespace_delete_queue(
    ns: *const lq_namespace,
    name: *const u8,
    name_len: usize,
) -> lq_status {
    run(|| {
        let (h, name) = (handle(ns, "ns")?, text(name, name_len, "name")?);
        check_open(&h.broker)?;
        h.ns.delete_queue(name)?;
        Ok(())
    })
}

/// Names of its queues (sorted) or, with `topics` true, of its topics.
/// `*out` is owned: free with `lq_strings_free`.
///
/// # Safety
/// `ns` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_namespace_list(
    ns: *const lq_namespace,
    topics: bool,
    out: *mut *mut lq_strings,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(ns, "ns")?, Out::new(out, "out")?);
        check_open(&h.broker)?;
        let v = if topics {
            h.ns.list_topics()
        } else {
            h.ns.list_queues()
        };
        out.set(strings(v));
        Ok(())
    })
}

/// Exact statistics over all its queues.
///
/// # Safety
/// `ns` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_namespace_get_stats(
    ns: *const lq_namespace,
    out: *mut lq_namespace_stats,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(ns, "ns")?, Out::new(out, "out")?);
        let s = h.ns.stats();
        out.set(lq_namespace_stats {
            queues: s.queues,
            totals: (&s.totals).into(),
        });
        Ok(())
    })
}

/// Its name, borrowed (UTF-8, not NUL-terminated; valid until the handle is
/// freed).
///
/// # Safety
/// `ns` NULL or live; `ptr` and `len` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_namespace_name(
    ns: *const lq_namespace,
    ptr: *mut *const u8,
    len: *mut usize,
) -> lq_status {
    run(|| {
        let (h, ptr, len) = (
            handle(ns, "ns")?,
            Out::new(ptr, "ptr")?,
            Out::new(len, "len")?,
        );
        set_slice(ptr, len, h.ns.name().as_bytes());
        Ok(())
    })
}
