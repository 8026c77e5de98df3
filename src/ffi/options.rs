//! Options handles: `lq_broker_options`, `lq_queue_options`, `lq_quotas`.
//!
//! Each is created with `_new`, changed with setters, read by the call that
//! takes it (which copies what it needs: the handle may be freed right after),
//! and freed with `_free`. Options handles are not thread-safe: use one from one
//! thread at a time (they may move between threads).

use super::boundary::{boxed, handle, handle_mut, items, ms, run, run_free, text, Fail, Out};
use super::status::{lq_status, lq_status::*};
use crate::{BrokerOptions, OnFull, QueueOptions, Quotas, SyncMode};

/// How to open a broker (`lq_broker_open`).
pub struct lq_broker_options {
    pub(crate) o: BrokerOptions,
}

/// Options of one queue (`lq_namespace_create_queue`,
/// `lq_broker_options_set_default_queue_options`).
pub struct lq_queue_options {
    pub(crate) o: QueueOptions,
}

/// Limits of a namespace (`lq_broker_create_namespace`,
/// `lq_broker_options_set_default_quotas`).
pub struct lq_quotas {
    pub(crate) q: Quotas,
}

/// When journal records reach the disk (`lq_broker_options_set_sync_mode`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lq_sync_mode {
    /// The OS writes back when it likes: survives a process crash, not a power cut.
    LQ_SYNC_NONE = 0,
    /// A background flush every `interval_ms`.
    LQ_SYNC_INTERVAL = 1,
    /// Every send returns after its record is on disk (group commit).
    LQ_SYNC_ALWAYS = 2,
}

/// What a send does when the queue is full (`lq_queue_options_set_on_full`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lq_on_full {
    /// Wait until there is room (or the queue closes).
    LQ_ON_FULL_BLOCK = 0,
    /// Fail at once with `LQ_FULL`.
    LQ_ON_FULL_REJECT = 1,
    /// Wait at most `timeout_ms`, then fail with `LQ_TIMEOUT`.
    LQ_ON_FULL_TIMEOUT = 2,
}

/// Parses an `lq_on_full` number (an `int` from C) with its timeout.
pub(crate) fn on_full_of(mode: u32, timeout_ms: u64) -> Result<OnFull, Fail> {
    match mode {
        m if m == lq_on_full::LQ_ON_FULL_BLOCK as u32 => Ok(OnFull::Block),
        m if m == lq_on_full::LQ_ON_FULL_REJECT as u32 => Ok(OnFull::Reject),
        m if m == lq_on_full::LQ_ON_FULL_TIMEOUT as u32 => Ok(OnFull::Timeout(ms(timeout_ms))),
        m => Err(Fail::new(
            LQ_INVALID_ARGUMENT,
            format!("on_full mode {m} is not an lq_on_full"),
        )),
    }
}

// ---- lq_broker_options ---------------------------------------------------------

/// A new broker options handle: in memory, system clock, no quotas. Free it with
/// `lq_broker_options_free` (opening a broker does not consume it).
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_options_new(out: *mut *mut lq_broker_options) -> lq_status {
    run(|| {
        let out = Out::new(out, "out")?;
        out.set(boxed(lq_broker_options {
            o: BrokerOptions::new(),
        }));
        Ok(())
    })
}

/// Frees broker options; NULL is a no-op.
///
/// # Safety
/// `opts` must be NULL or a handle from `lq_broker_options_new`, not used again.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_options_free(opts: *mut lq_broker_options) {
    run_free(opts)
}

/// Applies `f` to the options behind `opts`.
///
/// Pointers (the exported function's, see `boundary.rs`):
/// `opts` must be NULL or a live handle used by no other thread during the call.
fn with_broker_opts(
    opts: *mut lq_broker_options,
    f: impl FnOnce(BrokerOptions) -> Result<BrokerOptions, Fail>,
) -> lq_status {
    run(|| {
        let h = handle_mut(opts, "opts")?;
        h.o = f(h.o.clone())?;
        Ok(())
    })
}

/// Keeps persistent messages in a journal in the directory `dir` (UTF-8, not
/// NUL-terminated), recovered when the broker opens.
///
/// # Safety
/// `opts` as for every setter (NULL or a live handle); `dir` must point to
/// `dir_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_options_set_data_dir(
    opts: *mut lq_broker_options,
    dir: *const u8,
    dir_len: usize,
) -> lq_status {
    with_broker_opts(opts, |o| {
        let d = text(dir, dir_len, "dir")?;
        if d.is_empty() {
            return Err(Fail::new(LQ_INVALID_ARGUMENT, "dir is empty"));
        }
        Ok(o.data_dir(d))
    })
}

/// `true`: this process alone may use the data directory. No other process
/// can attach, and `lq_broker_open` of a directory another process holds
/// fails with `LQ_LOCKED` (the behaviour before several processes could share
/// a directory). Default `false`: the first process to open a directory hosts
/// it, later ones attach to it (docs/multi-process.md).
///
/// # Safety
/// `opts` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_options_set_exclusive(
    opts: *mut lq_broker_options,
    exclusive: bool,
) -> lq_status {
    with_broker_opts(opts, |o| Ok(o.exclusive(exclusive)))
}

/// Users, besides this process's own, allowed to attach while this process
/// hosts the data directory: `len` user ids at `uids` (copied; they replace any
/// set before; `len` 0 clears the list, and `uids` may then be NULL). The
/// directory's permissions apply first (a new data directory is 0700).
///
/// # Safety
/// `opts` must be NULL or a live handle; `uids` must point to `len` readable
/// `uint32_t` (or be NULL when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn lq_broker_options_set_allow_uids(
    opts: *mut lq_broker_options,
    uids: *const u32,
    len: usize,
) -> lq_status {
    with_broker_opts(opts, |o| {
        let u = items(uids, len, "uids")?;
        Ok(o.allow_uids(u.iter().copied()))
    })
}

/// When journal records reach the disk: `mode` is an `lq_sync_mode`;
/// `interval_ms` (at least 1) is used with `LQ_SYNC_INTERVAL` only.
///
/// # Safety
/// `opts` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_options_set_sync_mode(
    opts: *mut lq_broker_options,
    mode: u32,
    interval_ms: u64,
) -> lq_status {
    with_broker_opts(opts, |o| {
        use lq_sync_mode::*;
        let m = match mode {
            m if m == LQ_SYNC_NONE as u32 => SyncMode::None,
            m if m == LQ_SYNC_INTERVAL as u32 && interval_ms > 0 => {
                SyncMode::Interval(ms(interval_ms))
            }
            m if m == LQ_SYNC_INTERVAL as u32 => {
                return Err(Fail::new(
                    LQ_INVALID_ARGUMENT,
                    "interval_ms must be positive",
                ))
            }
            m if m == LQ_SYNC_ALWAYS as u32 => SyncMode::Always,
            m => {
                return Err(Fail::new(
                    LQ_INVALID_ARGUMENT,
                    format!("sync mode {m} is not an lq_sync_mode"),
                ))
            }
        };
        Ok(o.sync_mode(m))
    })
}

/// Size of each journal segment file in bytes (default 64 MiB; at least 4096).
///
/// # Safety
/// `opts` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_options_set_segment_size(
    opts: *mut lq_broker_options,
    bytes: u64,
) -> lq_status {
    with_broker_opts(opts, |o| {
        if bytes < 4096 {
            return Err(Fail::new(
                LQ_INVALID_ARGUMENT,
                format!("segment size {bytes} is below 4096 bytes"),
            ));
        }
        Ok(o.segment_size(bytes))
    })
}

/// Quotas of namespaces created without explicit ones (the default namespace
/// too). `quotas` is copied.
///
/// # Safety
/// `opts` and `quotas` must be NULL or live handles.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_options_set_default_quotas(
    opts: *mut lq_broker_options,
    quotas: *const lq_quotas,
) -> lq_status {
    with_broker_opts(opts, |o| {
        let q = handle(quotas, "quotas")?;
        Ok(o.default_quotas(q.q.clone()))
    })
}

/// Options of queues created on first use. `qopts` is copied.
///
/// # Safety
/// `opts` and `qopts` must be NULL or live handles.
#[no_mangle]
pub unsafe extern "C" fn lq_broker_options_set_default_queue_options(
    opts: *mut lq_broker_options,
    qopts: *const lq_queue_options,
) -> lq_status {
    with_broker_opts(opts, |o| {
        let q = handle(qopts, "qopts")?;
        q.o.validate()?;
        Ok(o.default_queue_options(q.o.clone()))
    })
}

// ---- lq_quotas -----------------------------------------------------------------

/// New quotas: no limits but the largest message (64 MiB). Free with
/// `lq_quotas_free`.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lq_quotas_new(out: *mut *mut lq_quotas) -> lq_status {
    run(|| {
        let out = Out::new(out, "out")?;
        out.set(boxed(lq_quotas {
            q: Quotas::default(),
        }));
        Ok(())
    })
}

/// Frees quotas; NULL is a no-op.
///
/// # Safety
/// `quotas` must be NULL or a handle from `lq_quotas_new`, not used again.
#[no_mangle]
pub unsafe extern "C" fn lq_quotas_free(quotas: *mut lq_quotas) {
    run_free(quotas)
}

/// Applies `f` to the quotas behind `quotas`.
///
/// Pointers (the exported function's, see `boundary.rs`):
/// `quotas` must be NULL or a live handle used by no other thread.
fn with_quotas(quotas: *mut lq_quotas, f: impl FnOnce(Quotas) -> Quotas) -> lq_status {
    run(|| {
        let h = handle_mut(quotas, "quotas")?;
        h.q = f(h.q.clone());
        Ok(())
    })
}

/// Most queues the namespace may hold.
///
/// # Safety
/// `quotas` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_quotas_set_max_queues(quotas: *mut lq_quotas, value: u64) -> lq_status {
    with_quotas(quotas, |q| q.max_queues(value))
}

/// Most messages it may hold over all its queues.
///
/// # Safety
/// `quotas` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_quotas_set_max_messages(
    quotas: *mut lq_quotas,
    value: u64,
) -> lq_status {
    with_quotas(quotas, |q| q.max_messages(value))
}

/// Most bytes it may hold (body + name + correlation id + headers).
///
/// # Safety
/// `quotas` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_quotas_set_max_bytes(quotas: *mut lq_quotas, value: u64) -> lq_status {
    with_quotas(quotas, |q| q.max_bytes(value))
}

/// Largest single message in bytes (`LQ_MESSAGE_TOO_LARGE` above it).
///
/// # Safety
/// `quotas` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_quotas_set_max_message_size(
    quotas: *mut lq_quotas,
    value: u64,
) -> lq_status {
    with_quotas(quotas, |q| q.max_message_size(value))
}

// ---- lq_queue_options ----------------------------------------------------------

/// New queue options with the defaults (unbounded, block when full, priority 4,
/// 30 s lease, redeliver forever, not persistent). Free with
/// `lq_queue_options_free`.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_options_new(out: *mut *mut lq_queue_options) -> lq_status {
    run(|| {
        let out = Out::new(out, "out")?;
        out.set(boxed(lq_queue_options {
            o: QueueOptions::default(),
        }));
        Ok(())
    })
}

/// Frees queue options; NULL is a no-op.
///
/// # Safety
/// `opts` must be NULL or a handle from `lq_queue_options_new`, not used again.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_options_free(opts: *mut lq_queue_options) {
    run_free(opts)
}

/// Applies `f` to the queue options behind `opts`.
///
/// Pointers (the exported function's, see `boundary.rs`):
/// `opts` must be NULL or a live handle used by no other thread.
fn with_queue_opts(
    opts: *mut lq_queue_options,
    f: impl FnOnce(&mut QueueOptions) -> Result<(), Fail>,
) -> lq_status {
    run(|| {
        let h = handle_mut(opts, "opts")?;
        f(&mut h.o)
    })
}

fn positive(v: u64, what: &str) -> Result<u64, Fail> {
    if v == 0 {
        Err(Fail::new(
            LQ_INVALID_ARGUMENT,
            format!("{what} must be at least 1"),
        ))
    } else {
        Ok(v)
    }
}

/// Capacity in messages (at least 1).
///
/// # Safety
/// `opts` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_options_set_max_messages(
    opts: *mut lq_queue_options,
    v: u64,
) -> lq_status {
    with_queue_opts(opts, |o| {
        o.max_messages = Some(positive(v, "max_messages")?);
        Ok(())
    })
}

/// Capacity in bytes (at least 1).
///
/// # Safety
/// `opts` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_options_set_max_bytes(
    opts: *mut lq_queue_options,
    v: u64,
) -> lq_status {
    with_queue_opts(opts, |o| {
        o.max_bytes = Some(positive(v, "max_bytes")?);
        Ok(())
    })
}

/// TTL in milliseconds of messages that set none.
///
/// # Safety
/// `opts` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_options_set_default_ttl_ms(
    opts: *mut lq_queue_options,
    v: u64,
) -> lq_status {
    with_queue_opts(opts, |o| {
        o.default_ttl = Some(ms(v));
        Ok(())
    })
}

/// Delay in milliseconds of messages that set none.
///
/// # Safety
/// `opts` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_options_set_default_delay_ms(
    opts: *mut lq_queue_options,
    v: u64,
) -> lq_status {
    with_queue_opts(opts, |o| {
        o.default_delay = Some(ms(v));
        Ok(())
    })
}

/// Priority (0–9) of messages that set none.
///
/// # Safety
/// `opts` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_options_set_default_priority(
    opts: *mut lq_queue_options,
    v: u8,
) -> lq_status {
    with_queue_opts(opts, |o| {
        if v > crate::MAX_PRIORITY {
            return Err(Fail::new(
                LQ_INVALID_ARGUMENT,
                format!("priority {v} is above 9"),
            ));
        }
        o.default_priority = v;
        Ok(())
    })
}

/// How long a received message stays leased, in milliseconds (at least 1).
///
/// # Safety
/// `opts` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_options_set_lease_time_ms(
    opts: *mut lq_queue_options,
    v: u64,
) -> lq_status {
    with_queue_opts(opts, |o| {
        o.lease_time = ms(positive(v, "lease_time_ms")?);
        Ok(())
    })
}

/// Deliveries after which a failing message is dead-lettered (at least 1).
///
/// # Safety
/// `opts` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_options_set_max_deliveries(
    opts: *mut lq_queue_options,
    v: u32,
) -> lq_status {
    with_queue_opts(opts, |o| {
        o.max_deliveries = Some(positive(v.into(), "max_deliveries")? as u32);
        Ok(())
    })
}

/// Whether messages that say nothing are persistent.
///
/// # Safety
/// `opts` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_options_set_persistent(
    opts: *mut lq_queue_options,
    v: bool,
) -> lq_status {
    with_queue_opts(opts, |o| {
        o.persistent = v;
        Ok(())
    })
}

/// Strict queue-wide FIFO (one lane; does not scale with cores).
///
/// # Safety
/// `opts` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_options_set_strict_fifo(
    opts: *mut lq_queue_options,
    v: bool,
) -> lq_status {
    with_queue_opts(opts, |o| {
        o.strict_fifo = v;
        Ok(())
    })
}

/// Number of shards (lanes per priority; at least 1; default: CPUs).
///
/// # Safety
/// `opts` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_options_set_shards(
    opts: *mut lq_queue_options,
    v: usize,
) -> lq_status {
    with_queue_opts(opts, |o| {
        o.shards = Some(positive(v as u64, "shards")? as usize);
        Ok(())
    })
}

/// What a send does when the queue is full: `mode` is an `lq_on_full`;
/// `timeout_ms` is used with `LQ_ON_FULL_TIMEOUT` only.
///
/// # Safety
/// `opts` must be NULL or a live handle used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_options_set_on_full(
    opts: *mut lq_queue_options,
    mode: u32,
    timeout_ms: u64,
) -> lq_status {
    with_queue_opts(opts, |o| {
        o.on_full = on_full_of(mode, timeout_ms)?;
        Ok(())
    })
}

/// The dead-letter queue (same namespace; created with the queue if missing).
///
/// # Safety
/// `opts` must be NULL or a live handle; `name` must point to `name_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_queue_options_set_dead_letter_queue(
    opts: *mut lq_queue_options,
    name: *const u8,
    name_len: usize,
) -> lq_status {
    with_queue_opts(opts, |o| {
        let n = text(name, name_len, "name")?;
        crate::validate_name(n)?;
        o.dead_letter_queue = Some(n.to_string());
        Ok(())
    })
}
