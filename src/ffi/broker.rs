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
/// free it when convenient. With a data directory that no live process holds,
/// this process becomes its *host*: it locks it, replays the journal, brings
/// back every queue and unacked persistent message, and serves other processes
/// that open the directory (a Unix socket in it). If a live process hosts the
/// directory, this broker *attaches* to it instead (`lq_broker_is_attached`):
/// the same calls, served by the host, whose options (sync mode, quotas and
/// queue defaults, segment size) apply rather than `opts`'s. With
/// `lq_broker_options_set_exclusive`, a directory another process holds
/// fails with `LQ_LOCKED`. On success `*out` owns the broker: free it with
/// `lq_broker_free`.
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

/// Whether the broker is attached to another process that hosts its data
/// directory (`false` when this process hosts it, or for a broker without a
/// data directory). It changes to `false` when this process takes over
/// from a host that went away.
///
/// # Safety
/// `broker` must be NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_is_attached(
    broker: *const lq_broker,
    out: *mut bool,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(broker, "broker")?, Out::new(out, "out")?);
        check_open(&h.b)?;
        out.set(h.b.is_attached());
        Ok(())
    })
}

/// Who hosts a shared data directory, and its counters
/// (`lq_broker_host_info`).
///
/// Set `struct_size` to `sizeof(lq_host_info)` before the call: fields added by
/// a later version go at the end, and a library only writes the fields that fit
/// in `struct_size` (a program built against an older header keeps working).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct lq_host_info {
    /// Set by the caller: `sizeof(lq_host_info)` as it was compiled.
    pub struct_size: usize,
    /// The host's process id.
    pub pid: u32,
    /// Times the directory changed host (0: the first host; each takeover
    /// adds one).
    pub takeovers: u64,
    /// Clients the host dropped for misbehaving (bad frames, stalls, a uid
    /// not allowed, too many connections).
    pub dropped: u64,
    /// Processes attached now (entries of the `clients` array; may be more
    /// than the array held).
    pub clients: u64,
}

/// One attached process (`lq_broker_host_info`'s `clients` array). A later
/// version may add fields at the end: the array's entries are `client_size`
/// bytes apart, as the caller passes it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct lq_host_client {
    /// Its process id (from `SO_PEERCRED`).
    pub pid: u32,
    /// Its user id.
    pub uid: u32,
    /// When it connected, in seconds since the Unix epoch.
    pub since: u64,
    /// Messages it holds leased now.
    pub leases: u64,
}

/// Copies the first `size` bytes of `v` (at most its size) to `to`, skipping the
/// first `skip` bytes.
///
/// Pointers: `to` must be valid for `size` bytes (the caller's `struct_size` or
/// `client_size`, which its exported function's `# Safety` section requires).
fn write_prefix<T: Copy>(v: &T, to: *mut u8, size: usize, skip: usize) {
    let n = size.min(std::mem::size_of::<T>());
    if n > skip {
        // SAFETY: `v` is a plain `repr(C)` value of `size_of::<T>()` bytes and
        // `n` does not exceed it; `to` is valid for `size >= n` bytes (above);
        // `v` is ours (on the stack), so the two do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (v as *const T).cast::<u8>().add(skip),
                to.add(skip),
                n - skip,
            )
        };
    }
}

/// Who hosts the broker's data directory and who is attached to it, asked of
/// the host (from an attached process, one round trip). Fills the fields of
/// `*out` that fit in `out->struct_size` (which the caller sets to
/// `sizeof(lq_host_info)`; `struct_size` itself is left as it is), and the
/// first `capacity` attached processes into `clients` (entries `client_size`
/// bytes apart, `sizeof(lq_host_client)`; `clients` may be NULL when
/// `capacity` is 0). `out->clients` gets how many are attached: call again
/// with a larger array if it exceeds `capacity`. `LQ_INVALID_STATE` for a broker
/// that does not share a data directory (in memory, or exclusive);
/// `LQ_INVALID_ARGUMENT` if `struct_size` does not reach `pid`, or
/// `client_size` is below the first version's `lq_host_client` (24 bytes).
///
/// # Safety
/// `broker` NULL or live; `out` NULL or valid for `out->struct_size` bytes;
/// `clients` valid for `capacity * client_size` bytes (or NULL with `capacity` 0).
#[no_mangle]
pub unsafe extern "C" fn lq_broker_host_info(
    broker: *const lq_broker,
    out: *mut lq_host_info,
    clients: *mut lq_host_client,
    capacity: usize,
    client_size: usize,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(broker, "broker")?, Out::new(out, "out")?);
        // The first version's entry (up to `leases`): what every caller has.
        let first = std::mem::offset_of!(lq_host_client, leases) + std::mem::size_of::<u64>();
        let to = if capacity == 0 {
            None
        } else {
            if client_size < first {
                return Err(Fail::new(
                    LQ_INVALID_ARGUMENT,
                    "client_size must be sizeof(lq_host_client)",
                ));
            }
            if capacity > isize::MAX as usize / client_size {
                return Err(Fail::new(LQ_INVALID_ARGUMENT, "capacity is too large"));
            }
            Some(Out::new(clients, "clients")?.as_ptr().cast::<u8>())
        };
        let at = out.as_ptr().cast::<u8>();
        // SAFETY: `out` is non-NULL and the caller guarantees it points to an
        // `lq_host_info` whose first field (a `usize`, present in every
        // version) is set; read unaligned in case the caller's struct is not.
        let size = unsafe { at.cast::<usize>().read_unaligned() };
        let head = std::mem::offset_of!(lq_host_info, pid);
        if size < head + std::mem::size_of::<u32>() {
            return Err(Fail::new(
                LQ_INVALID_ARGUMENT,
                "out->struct_size must be sizeof(lq_host_info)",
            ));
        }
        check_open(&h.b)?;
        let info = h.b.host_info()?;
        let full = lq_host_info {
            struct_size: std::mem::size_of::<lq_host_info>(),
            pid: info.pid,
            takeovers: info.takeovers,
            dropped: info.dropped,
            clients: info.clients.len() as u64,
        };
        if let Some(to) = to {
            for (i, c) in info.clients.iter().take(capacity).enumerate() {
                let entry = lq_host_client {
                    pid: c.pid,
                    uid: c.uid,
                    since: c.since,
                    leases: c.leases,
                };
                // `i < capacity`: entry `i` is inside the caller's array
                // (`capacity * client_size` bytes, checked not to overflow).
                write_prefix(&entry, to.wrapping_add(i * client_size), client_size, 0);
            }
        }
        write_prefix(&full, at, size, head);
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
