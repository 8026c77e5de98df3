//! The boundary every exported function runs through: `run` / `run_free`
//! (panics, failures and the per-thread last error), the pointer helpers
//! (`handle`, `handle_mut`, `Out`, `bytes`, `text`), `check_open`, and the
//! small conversions (milliseconds, waits).

use super::status::lq_status;
use crate::error::Error;
use crate::Broker;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

/// Wait forever (a `timeout_ms` argument).
pub const LQ_WAIT_FOREVER: u64 = u64::MAX;

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
        Fail::new(lq_status::from(&e), e.to_string())
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

/// `LQ_CLOSED` once the broker is closed; `LQ_FORKED` in a forked child.
pub(crate) fn check_open(b: &Broker) -> Result<(), Fail> {
    b.check_fork()?;
    if b.is_closed() {
        Err(Fail::new(lq_status::LQ_CLOSED, "the broker is closed"))
    } else {
        Ok(())
    }
}
