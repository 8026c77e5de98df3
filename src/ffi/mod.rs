//! The C ABI: the only place in the crate with `extern "C"`.
//!
//! Every exported function runs its body through `run` (or `run_free` for
//! the `_free` functions): panics are caught and become [`lq_status::LQ_PANIC`],
//! NULL pointers become [`lq_status::LQ_NULL_POINTER`], every [`Error`] becomes
//! its own pinned status, and the detail of the last failure is kept per thread
//! for [`lq_last_error_message`]. Outputs are written only on success.
//!
//! One file per handle type:
//! - `options.rs`: `lq_broker_options`, `lq_queue_options`, `lq_quotas`
//! - `broker.rs`: `lq_broker`, `lq_namespace`, `lq_strings`, the recovery report
//! - `message.rs`: `lq_message` (what a producer sends)
//! - `queue.rs`: `lq_queue` (send, receive, peek, stats, the pollable fd, close)
//! - `delivery.rs`: `lq_delivery` (a received or peeked message)
//! - `topic.rs`: `lq_topic`
//! - `pool.rs`: `lq_pool_builder`, `lq_pool`, `lq_reply` (C callbacks)
//! - `rpc.rs`: `lq_rpc_client`
//!
//! The C conventions (status table, ownership, threads) are in `docs/c-api.md`.

#![allow(non_camel_case_types)]

mod broker;
mod delivery;
mod message;
mod options;
mod pool;
mod queue;
mod rpc;
mod topic;

// Every exported item, reachable from Rust too (benches/ffi_boundary.rs calls
// the C ABI from Rust to measure what the boundary costs).
pub use broker::{
    lq_broker, lq_broker_close, lq_broker_create_namespace, lq_broker_flush, lq_broker_free,
    lq_broker_get_namespace, lq_broker_is_closed, lq_broker_list_namespaces, lq_broker_namespace,
    lq_broker_open, lq_broker_queue, lq_broker_recovery_damage, lq_broker_recovery_report,
    lq_namespace, lq_namespace_create_queue, lq_namespace_delete_queue, lq_namespace_free,
    lq_namespace_get_queue, lq_namespace_get_stats, lq_namespace_list, lq_namespace_name,
    lq_namespace_queue, lq_namespace_stats, lq_namespace_topic, lq_recovery_report, lq_strings,
    lq_strings_free, lq_strings_get, lq_strings_len,
};
pub use delivery::*;
pub use message::{
    lq_message, lq_message_free, lq_message_new, lq_message_set_correlation_id,
    lq_message_set_delay_ms, lq_message_set_header, lq_message_set_name, lq_message_set_persistent,
    lq_message_set_priority, lq_message_set_ttl_ms, lq_message_size,
};
pub use options::*;
pub use pool::*;
pub use queue::*;
pub use rpc::*;
pub use topic::*;

use crate::error::Error;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

/// The outcome of a call. The numbers are pinned: a number is never reused or
/// renumbered. 0 is success; 1–49 are expected outcomes a program handles
/// (nothing there, full, closed...); 100 and up are failures.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lq_status {
    /// Success.
    LQ_OK = 0,
    /// Nothing was ready (a non-blocking receive).
    LQ_EMPTY = 1,
    /// A wait ran out (receive, a full queue's send, an RPC call).
    LQ_TIMEOUT = 2,
    /// The queue is at capacity and the send was not to wait.
    LQ_FULL = 3,
    /// The broker or queue was closed (or the queue deleted), or the handle
    /// itself (`lq_queue_close`, `lq_topic_close`, `lq_rpc_client_close`).
    LQ_CLOSED = 4,
    /// No such queue, namespace, message, header or subscription.
    LQ_NOT_FOUND = 5,
    /// A queue or namespace of that name exists already.
    LQ_ALREADY_EXISTS = 6,
    /// A namespace quota (queues, messages, bytes) would be exceeded.
    LQ_QUOTA_EXCEEDED = 7,
    /// The delivery's lease ran out (the message was redelivered or dead-lettered).
    LQ_LEASE_EXPIRED = 8,
    /// The call does not apply in the current state (a second ack, cancelling a
    /// leased message, acking a peeked or auto-acked message...).
    LQ_INVALID_STATE = 9,
    /// An RPC handler on the other side failed; the message has its text.
    LQ_REMOTE = 10,
    /// The message is larger than the namespace's `max_message_size` (or the
    /// queue's byte capacity).
    LQ_MESSAGE_TOO_LARGE = 11,
    /// An argument is out of range.
    LQ_INVALID_ARGUMENT = 100,
    /// A queue, namespace or topic name is empty, over 64 bytes, or uses a
    /// character outside `[A-Za-z0-9_.-]`.
    LQ_INVALID_NAME = 101,
    /// A string argument is not valid UTF-8.
    LQ_INVALID_UTF8 = 102,
    /// A required pointer was NULL.
    LQ_NULL_POINTER = 103,
    /// The storage backend (the journal) failed.
    LQ_STORAGE = 104,
    /// Stored data is damaged (reserved: opening a damaged journal succeeds and
    /// reports the damage in the recovery report instead).
    LQ_CORRUPT = 105,
    /// Another process has the data directory open for writing.
    LQ_LOCKED = 106,
    /// The operating system refused a resource (a thread, a file descriptor).
    LQ_IO = 107,
    /// A bug: the library panicked; the call had no effect that can be relied on.
    LQ_PANIC = 108,
    /// The handle was inherited through `fork()`: a child process cannot use its
    /// parent's broker (nor anything taken from it); it may open its own.
    LQ_FORKED = 109,
    /// An error this version of the C ABI does not know (never returned by a
    /// library built from the same sources as the header).
    LQ_UNKNOWN = 199,
}

/// Wait forever (a `timeout_ms` argument).
pub const LQ_WAIT_FOREVER: u64 = u64::MAX;

/// The static name of a status (`"LQ_OK"`, `"LQ_EMPTY"`...), never NULL;
/// `"LQ_UNKNOWN"` for a number that is not a status.
#[no_mangle]
pub extern "C" fn lq_status_str(status: i32) -> *const c_char {
    use lq_status::*;
    let all = [
        LQ_OK,
        LQ_EMPTY,
        LQ_TIMEOUT,
        LQ_FULL,
        LQ_CLOSED,
        LQ_NOT_FOUND,
        LQ_ALREADY_EXISTS,
        LQ_QUOTA_EXCEEDED,
        LQ_LEASE_EXPIRED,
        LQ_INVALID_STATE,
        LQ_REMOTE,
        LQ_MESSAGE_TOO_LARGE,
        LQ_INVALID_ARGUMENT,
        LQ_INVALID_NAME,
        LQ_INVALID_UTF8,
        LQ_NULL_POINTER,
        LQ_STORAGE,
        LQ_CORRUPT,
        LQ_LOCKED,
        LQ_IO,
        LQ_PANIC,
        LQ_FORKED,
    ];
    let s = all
        .iter()
        .find(|s| **s as i32 == status)
        .copied()
        .unwrap_or(LQ_UNKNOWN);
    let name: &'static str = match s {
        LQ_OK => "LQ_OK\0",
        LQ_EMPTY => "LQ_EMPTY\0",
        LQ_TIMEOUT => "LQ_TIMEOUT\0",
        LQ_FULL => "LQ_FULL\0",
        LQ_CLOSED => "LQ_CLOSED\0",
        LQ_NOT_FOUND => "LQ_NOT_FOUND\0",
        LQ_ALREADY_EXISTS => "LQ_ALREADY_EXISTS\0",
        LQ_QUOTA_EXCEEDED => "LQ_QUOTA_EXCEEDED\0",
        LQ_LEASE_EXPIRED => "LQ_LEASE_EXPIRED\0",
        LQ_INVALID_STATE => "LQ_INVALID_STATE\0",
        LQ_REMOTE => "LQ_REMOTE\0",
        LQ_MESSAGE_TOO_LARGE => "LQ_MESSAGE_TOO_LARGE\0",
        LQ_INVALID_ARGUMENT => "LQ_INVALID_ARGUMENT\0",
        LQ_INVALID_NAME => "LQ_INVALID_NAME\0",
        LQ_INVALID_UTF8 => "LQ_INVALID_UTF8\0",
        LQ_NULL_POINTER => "LQ_NULL_POINTER\0",
        LQ_STORAGE => "LQ_STORAGE\0",
        LQ_CORRUPT => "LQ_CORRUPT\0",
        LQ_LOCKED => "LQ_LOCKED\0",
        LQ_IO => "LQ_IO\0",
        LQ_PANIC => "LQ_PANIC\0",
        LQ_FORKED => "LQ_FORKED\0",
        LQ_UNKNOWN => "LQ_UNKNOWN\0",
    };
    name.as_ptr().cast()
}

/// The library version, `"MAJOR.MINOR.PATCH"`, as a static NUL-terminated string
/// (never freed).
#[no_mangle]
pub extern "C" fn lq_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// The detail of the last failed call on this thread (NUL-terminated, e.g.
/// `"quota max_messages of namespace \"t\" exceeded (limit 2)"`), or `""`.
/// Successful calls leave it as it was. The pointer stays valid until the next
/// failing call on this thread; copy it to keep it.
#[no_mangle]
pub extern "C" fn lq_last_error_message() -> *const c_char {
    catch_unwind(|| LAST_ERROR.with(|e| e.borrow().as_ptr())).unwrap_or(c"".as_ptr())
}

/// A failure on its way out of a call: its status and detail.
pub(crate) struct Fail {
    status: lq_status,
    msg: String,
}

impl Fail {
    pub(crate) fn new(status: lq_status, msg: impl Into<String>) -> Self {
        Fail {
            status,
            msg: msg.into(),
        }
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        use lq_status::*;
        let status = match &e {
            Error::InvalidName(_) => LQ_INVALID_NAME,
            Error::InvalidArgument(_) => LQ_INVALID_ARGUMENT,
            Error::MessageTooLarge { .. } => LQ_MESSAGE_TOO_LARGE,
            Error::Full => LQ_FULL,
            Error::QuotaExceeded { .. } => LQ_QUOTA_EXCEEDED,
            Error::Timeout => LQ_TIMEOUT,
            Error::Closed => LQ_CLOSED,
            Error::NotFound(_) => LQ_NOT_FOUND,
            Error::AlreadyExists(_) => LQ_ALREADY_EXISTS,
            Error::LeaseExpired { .. } => LQ_LEASE_EXPIRED,
            Error::InvalidState(_) => LQ_INVALID_STATE,
            Error::Storage(_) => LQ_STORAGE,
            Error::Remote(_) => LQ_REMOTE,
            Error::Locked(_) => LQ_LOCKED,
            Error::Io(_) => LQ_IO,
            Error::Forked => LQ_FORKED,
            #[allow(unreachable_patterns)]
            _ => LQ_UNKNOWN,
        };
        Fail::new(status, e.to_string())
    }
}

/// What an exported body returns.
pub(crate) type Outcome = Result<(), Fail>;

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The boundary: runs `f`, turns a panic into `LQ_PANIC` and a failure into its
/// status, recording the detail for [`lq_last_error_message`].
pub(crate) fn run(f: impl FnOnce() -> Outcome) -> lq_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => lq_status::LQ_OK,
        Ok(Err(fail)) => {
            set_last_error(&fail.msg);
            fail.status
        }
        Err(p) => {
            set_last_error(&format!("libqueue panicked: {}", panic_text(&*p)));
            lq_status::LQ_PANIC
        }
    }
}

/// The boundary of a `_free`: NULL is a no-op; a panic while dropping is
/// swallowed (a destructor has no way to report it).
pub(crate) fn run_free<T>(p: *mut T) {
    if p.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: every `_free` documents that `p` was returned by this library
        // as an owned `Box<T>` and is not used again.
        drop(unsafe { Box::from_raw(p) })
    }));
}

/// Gives the host an owned handle.
pub(crate) fn boxed<T>(v: T) -> *mut T {
    Box::into_raw(Box::new(v))
}

/// A shared reference from a handle pointer, or `LQ_NULL_POINTER`.
///
/// # Safety
/// A non-NULL `p` must point to a live `T` not mutated during the call.
pub(crate) unsafe fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T, Fail> {
    // SAFETY: the caller guarantees a non-NULL `p` points to a live `T`.
    unsafe { p.as_ref() }.ok_or_else(|| null(what))
}

/// A mutable reference from a handle pointer, or `LQ_NULL_POINTER`.
///
/// # Safety
/// A non-NULL `p` must point to a live `T` that nothing else uses during the call.
pub(crate) unsafe fn handle_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Fail> {
    // SAFETY: the caller guarantees exclusive access to a live `T`.
    unsafe { p.as_mut() }.ok_or_else(|| null(what))
}

pub(crate) fn null(what: &str) -> Fail {
    Fail::new(lq_status::LQ_NULL_POINTER, format!("{what} is NULL"))
}

/// Bytes given as `(ptr, len)`: NULL is allowed when `len` is 0.
///
/// # Safety
/// A non-NULL `p` must point to `len` readable bytes that outlive the call.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null(what));
    }
    if len > isize::MAX as usize {
        return Err(Fail::new(
            lq_status::LQ_INVALID_ARGUMENT,
            format!("{what}: length {len} is too large"),
        ));
    }
    // SAFETY: the caller guarantees `len` readable bytes at `p`, checked non-NULL.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A string given as `(ptr, len)`, checked to be UTF-8 (no NUL needed).
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn text<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a str, Fail> {
    // SAFETY: forwarded from the caller.
    let b = unsafe { bytes(p, len, what) }?;
    std::str::from_utf8(b).map_err(|e| {
        Fail::new(
            lq_status::LQ_INVALID_UTF8,
            format!("{what} is not valid UTF-8 ({e})"),
        )
    })
}

/// An out-parameter, checked non-NULL up front and written only on success.
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// # Safety
    /// A non-NULL `p` must be valid for a write of `T` until the call returns.
    pub(crate) unsafe fn new(p: *mut T, what: &str) -> Result<Self, Fail> {
        NonNull::new(p).map(Out).ok_or_else(|| null(what))
    }

    /// The pointer (non-NULL).
    pub(crate) fn as_ptr(&self) -> *mut T {
        self.0.as_ptr()
    }

    pub(crate) fn set(self, v: T) {
        // SAFETY: `new`'s caller guaranteed the pointer is writable for a `T`;
        // `write` does not read or drop what was there (it may be uninitialized).
        unsafe { self.0.as_ptr().write(v) }
    }
}

/// Writes a borrowed `(ptr, len)` pair.
pub(crate) fn set_slice(ptr: Out<*const u8>, len: Out<usize>, s: &[u8]) {
    ptr.set(s.as_ptr());
    len.set(s.len());
}

/// Milliseconds to a duration.
pub(crate) fn ms(v: u64) -> std::time::Duration {
    std::time::Duration::from_millis(v)
}

/// A duration to milliseconds (saturating).
pub(crate) fn to_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds to a receive wait: 0 = try, [`LQ_WAIT_FOREVER`] = forever.
pub(crate) fn wait_of(timeout_ms: u64) -> crate::Wait {
    match timeout_ms {
        0 => crate::Wait::Try,
        LQ_WAIT_FOREVER => crate::Wait::Forever,
        t => crate::Wait::For(ms(t)),
    }
}

/// What a receive that found nothing returns.
pub(crate) fn nothing(timeout_ms: u64) -> Fail {
    if timeout_ms == 0 {
        Fail::new(lq_status::LQ_EMPTY, "no message is ready")
    } else {
        Fail::new(
            lq_status::LQ_TIMEOUT,
            format!("no message came within {timeout_ms} ms"),
        )
    }
}
