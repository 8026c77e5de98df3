//! The C ABI (the only place with `extern "C"`). This release exports the
//! version; the full surface (`lq_broker_*`, `lq_queue_*`, ...) is the next layer.

use std::ffi::c_char;

/// The library version, `"MAJOR.MINOR.PATCH"`, as a static NUL-terminated string
/// (never freed).
#[no_mangle]
pub extern "C" fn lq_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
