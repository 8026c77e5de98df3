//! `lq_strings`: a list of names (queues, namespaces, topics, subscriptions)
//! that a call returns as a snapshot. May move between threads.

use super::boundary::{boxed, handle, run, run_free, set_slice, Fail, Out};
use super::status::{lq_status, lq_status::*};

/// A list of names (queues, namespaces, topics, subscriptions): a snapshot.
pub struct lq_strings {
    v: Vec<String>,
}

pub(crate) fn strings(v: Vec<String>) -> *mut lq_strings {
    boxed(lq_strings { v })
}

/// How many names the list holds.
///
/// # Safety
/// `list` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_strings_len(list: *const lq_strings, out: *mut usize) -> lq_status {
    run(|| {
        let (h, out) = (handle(list, "list")?, Out::new(out, "out")?);
        out.set(h.v.len());
        Ok(())
    })
}

/// Name `index`, borrowed from the list (UTF-8, not NUL-terminated; valid until
/// `lq_strings_free`). `LQ_NOT_FOUND` past the end.
///
/// # Safety
/// `list` NULL or live; `ptr` and `len` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_strings_get(
    list: *const lq_strings,
    index: usize,
    ptr: *mut *const u8,
    len: *mut usize,
) -> lq_status {
    run(|| {
        let (h, ptr, len) = (
            handle(list, "list")?,
            Out::new(ptr, "ptr")?,
            Out::new(len, "len")?,
        );
        let s = h.v.get(index).ok_or_else(|| {
            Fail::new(
                LQ_NOT_FOUND,
                format!("index {index} is past the end ({} names)", h.v.len()),
            )
        })?;
        set_slice(ptr, len, s.as_bytes());
        Ok(())
    })
}

/// Frees a list; NULL is a no-op.
///
/// # Safety
/// `list` must be NULL or an owned list, not used again.
#[no_mangle]
pub unsafe extern "C" fn lq_strings_free(list: *mut lq_strings) {
    run_free(list)
}
