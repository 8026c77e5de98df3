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

// ---- Pointers from C ------------------------------------------------------------
//
// THE SAFETY ARGUMENT (rustls-ffi's `Castable` / `try_ref_from_ptr!` model). Every
// raw pointer that crosses the C boundary is turned into a Rust value by one of
// the helpers below (`handle`, `handle_opt`, `handle_mut`, `owned`, `Out::new`, `OutArray::new`,
// `items`, `bytes`, `text`, `run_free`), and only there; their `unsafe` blocks are
// the only ones that dereference a pointer the host gave. Each helper is called
// with a parameter of the exported `unsafe extern "C"` function whose body calls
// it (directly, or through a private function of that file that takes the
// parameter and passes it on unchanged), and every exported function's
// `# Safety` section requires of that parameter exactly what the helper relies
// on: NULL (which the helper turns into `LQ_NULL_POINTER`) or
// - for `handle` and `handle_opt`: a live handle of that type, not freed during the call;
// - for `handle_mut`: the same, used by no other thread during the call (the
//   handles it serves — builders, options, messages, deliveries — may move
//   between threads but not be shared);
// - for `owned` and `run_free`: a handle this library returned as an owned
//   `Box`, handed back and not used again;
// - for `Out::new`: writable for one `T` until the call returns;
// - for `OutArray::new`: writable for `len` entries until the call returns;
// - for `items`, `bytes` and `text`: `len` readable entries that stay unchanged
//   until the call returns.
// The handle types are distinct (`lq_queue`, `lq_delivery`...), so the type a
// helper reads is the one the C signature names. A borrowed reference lives no
// longer than the exported call: the helpers return it for an unbounded lifetime
// `'a`, and the callers keep it inside the `run` closure. These helpers are
// private to `src/ffi/` and must never be given any other pointer; given that,
// their callers need no `unsafe` of their own.

/// The boundary of a `_free`: NULL is a no-op; a panic while dropping is
/// swallowed (a destructor has no way to report it).
pub(super) fn run_free<T>(p: *mut T) {
    if p.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| drop(owned(p, "handle"))));
}

/// Gives the host an owned handle.
pub(super) fn boxed<T>(v: T) -> *mut T {
    Box::into_raw(Box::new(v))
}

/// Takes back an owned handle (see the safety argument above), or `LQ_NULL_POINTER`.
pub(super) fn owned<T>(p: *mut T, what: &str) -> Result<Box<T>, Fail> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: the safety argument above: `p` is an owned handle from `boxed`
    // (`Box::into_raw`), handed back and not used again.
    Ok(unsafe { Box::from_raw(p) })
}

/// A shared reference from a handle pointer, or `LQ_NULL_POINTER`.
pub(super) fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T, Fail> {
    handle_opt(p).ok_or_else(|| null(what))
}

/// A shared reference from a handle pointer that may be NULL (`None`).
pub(super) fn handle_opt<'a, T>(p: *const T) -> Option<&'a T> {
    // SAFETY: the safety argument above: a non-NULL `p` points to a live `T`
    // that stays alive during the call.
    unsafe { p.as_ref() }
}

/// A mutable reference from a handle pointer, or `LQ_NULL_POINTER`.
pub(super) fn handle_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Fail> {
    // SAFETY: the safety argument above: a non-NULL `p` points to a live `T`
    // that nothing else uses during the call.
    unsafe { p.as_mut() }.ok_or_else(|| null(what))
}

pub(super) fn null(what: &str) -> Fail {
    Fail::new(lq_status::LQ_NULL_POINTER, format!("{what} is NULL"))
}

/// `len` items given as `(ptr, len)`: NULL is allowed when `len` is 0.
pub(super) fn items<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null(what));
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(Fail::new(
            lq_status::LQ_INVALID_ARGUMENT,
            format!("{what}: length {len} is too large"),
        ));
    }
    // SAFETY: the safety argument above: `len` readable `T`s at `p` (checked
    // non-NULL, and at most isize::MAX bytes), unchanged during the call.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Bytes given as `(ptr, len)`: NULL is allowed when `len` is 0.
pub(super) fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8], Fail> {
    items(p, len, what)
}

/// A string given as `(ptr, len)`, checked to be UTF-8 (no NUL needed).
pub(super) fn text<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a str, Fail> {
    let b = bytes(p, len, what)?;
    std::str::from_utf8(b).map_err(|e| {
        Fail::new(
            lq_status::LQ_INVALID_UTF8,
            format!("{what} is not valid UTF-8 ({e})"),
        )
    })
}

/// An out-parameter, checked non-NULL up front and written only on success.
pub(super) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// `p` as an out-parameter, or `LQ_NULL_POINTER`.
    pub(super) fn new(p: *mut T, what: &str) -> Result<Self, Fail> {
        NonNull::new(p).map(Out).ok_or_else(|| null(what))
    }

    /// The pointer (non-NULL).
    pub(super) fn as_ptr(&self) -> *mut T {
        self.0.as_ptr()
    }

    pub(super) fn set(self, v: T) {
        // SAFETY: the safety argument above: the pointer is writable for a `T`
        // until the call returns; `write` does not read or drop what was there
        // (it may be uninitialized).
        unsafe { self.0.as_ptr().write(v) }
    }
}

/// An out-array of `len` entries, checked non-NULL up front; entries are
/// written one by one, only on success, and never read.
pub(super) struct OutArray<T> {
    p: NonNull<T>,
    len: usize,
}

impl<T> OutArray<T> {
    /// `p` as an array of `len` writable entries, or `LQ_NULL_POINTER`.
    pub(super) fn new(p: *mut T, len: usize, what: &str) -> Result<Self, Fail> {
        let p = NonNull::new(p).ok_or_else(|| null(what))?;
        Ok(OutArray { p, len })
    }

    /// An array of no entries (nothing is ever written).
    pub(super) fn empty() -> Self {
        OutArray {
            p: NonNull::dangling(),
            len: 0,
        }
    }

    /// Writes entry `i`. Panics (`LQ_PANIC`) past the end.
    pub(super) fn set(&self, i: usize, v: T) {
        assert!(
            i < self.len,
            "out-array index {i} past its {} entries",
            self.len
        );
        // SAFETY: the safety argument above: `len` writable entries at `p`, and
        // `i < len`; `write` does not read or drop what was there.
        unsafe { self.p.as_ptr().add(i).write(v) }
    }
}

/// Writes a borrowed `(ptr, len)` pair.
pub(super) fn set_slice(ptr: Out<*const u8>, len: Out<usize>, s: &[u8]) {
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
