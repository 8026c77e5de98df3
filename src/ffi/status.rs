//! `lq_status`: the outcome of every fallible call, and its names.
//!
//! One table, `status_table!` below, lists every status once, in number order,
//! with the [`Error`]s that become it. From it come `lq_status::ALL`, the names
//! `lq_status_str` returns and the `Error` → status mapping. The enum itself is
//! written out beside it because cbindgen reads the source and does not expand
//! macros: the numbers and the documentation live only in the enum, the names
//! and the mapping only in the table, and the compiler holds the two together
//! (the generated `match`es have no wildcard, so a status missing from the
//! table, or an entry that is not a status, does not compile). The tests below
//! check that every status round-trips its name and number, also through the
//! committed header.

use crate::error::Error;
use std::ffi::c_char;

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
    /// The operating system refused a resource (a thread, a file descriptor),
    /// or a bridge's remote could not be reached (the message names it).
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

/// Generates, from one list of `STATUS <= error pattern` entries (in number
/// order; an entry without `<=` is a status no [`Error`] becomes), the status
/// list, the names and the `Error` → status mapping.
macro_rules! status_table {
    ($($status:ident $(<= $err:pat)?),+ $(,)?) => {
        impl lq_status {
            /// Every status, in number order.
            pub(crate) const ALL: &'static [lq_status] = &[$(lq_status::$status),+];

            /// The name as the header spells it, NUL-terminated.
            fn name_nul(self) -> &'static str {
                match self {
                    $(lq_status::$status => concat!(stringify!($status), "\0"),)+
                }
            }
        }

        impl From<&Error> for lq_status {
            fn from(e: &Error) -> Self {
                #[allow(unreachable_patterns)]
                match e {
                    $($($err => lq_status::$status,)?)+
                }
            }
        }
    };
}

status_table! {
    LQ_OK,
    LQ_EMPTY,
    LQ_TIMEOUT           <= Error::Timeout,
    LQ_FULL              <= Error::Full,
    LQ_CLOSED            <= Error::Closed,
    LQ_NOT_FOUND         <= Error::NotFound(_),
    LQ_ALREADY_EXISTS    <= Error::AlreadyExists(_),
    LQ_QUOTA_EXCEEDED    <= Error::QuotaExceeded { .. },
    LQ_LEASE_EXPIRED     <= Error::LeaseExpired { .. },
    LQ_INVALID_STATE     <= Error::InvalidState(_),
    LQ_REMOTE            <= Error::Remote(_),
    LQ_MESSAGE_TOO_LARGE <= Error::MessageTooLarge { .. },
    LQ_INVALID_ARGUMENT  <= Error::InvalidArgument(_),
    LQ_INVALID_NAME      <= Error::InvalidName(_),
    LQ_INVALID_UTF8,
    LQ_NULL_POINTER,
    LQ_STORAGE           <= Error::Storage(_),
    LQ_CORRUPT,
    LQ_LOCKED            <= Error::Locked(_),
    LQ_IO                <= Error::Io(_),
    LQ_PANIC,
    LQ_FORKED            <= Error::Forked,
    // Last: an `Error` added without a status of its own.
    LQ_UNKNOWN           <= _,
}

impl lq_status {
    /// The status with number `n`, if there is one.
    pub(crate) fn from_i32(n: i32) -> Option<lq_status> {
        Self::ALL.iter().copied().find(|s| *s as i32 == n)
    }

    /// The name as the header spells it (`"LQ_NOT_FOUND"`).
    #[cfg(test)]
    fn name(self) -> &'static str {
        let n = self.name_nul();
        &n[..n.len() - 1]
    }
}

/// The static name of a status (`"LQ_OK"`, `"LQ_EMPTY"`...), never NULL;
/// `"LQ_UNKNOWN"` for a number that is not a status.
#[no_mangle]
pub extern "C" fn lq_status_str(status: i32) -> *const c_char {
    lq_status::from_i32(status)
        .unwrap_or(lq_status::LQ_UNKNOWN)
        .name_nul()
        .as_ptr()
        .cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn every_status_round_trips_its_name_and_number() {
        assert_eq!(lq_status::ALL.len(), 23);
        for s in lq_status::ALL.iter().copied() {
            let n = s as i32;
            assert_eq!(lq_status::from_i32(n), Some(s));
            assert_eq!(s.name(), format!("{s:?}"), "the name is the variant's");
            // SAFETY: lq_status_str returns a static NUL-terminated string.
            let c = unsafe { CStr::from_ptr(lq_status_str(n)) };
            assert_eq!(c.to_str().unwrap(), s.name());
        }
        let numbers: Vec<i32> = lq_status::ALL.iter().map(|s| *s as i32).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in number order");
        for n in [-1, 12, 49, 99, 110, 198, 200, i32::MAX, i32::MIN] {
            assert_eq!(lq_status::from_i32(n), None);
            // SAFETY: as above.
            let c = unsafe { CStr::from_ptr(lq_status_str(n)) };
            assert_eq!(c.to_str().unwrap(), "LQ_UNKNOWN");
        }
    }

    #[test]
    fn the_committed_header_has_every_status_with_its_number() {
        let header = include_str!("../../include/libqueue.h");
        for s in lq_status::ALL.iter().copied() {
            let line = format!("  {} = {},", s.name(), s as i32);
            assert!(header.contains(&line), "include/libqueue.h lacks `{line}`");
        }
    }

    #[test]
    fn errors_map_to_their_statuses() {
        use lq_status::*;
        let cases = [
            (Error::Full, LQ_FULL),
            (Error::Timeout, LQ_TIMEOUT),
            (Error::Closed, LQ_CLOSED),
            (Error::Forked, LQ_FORKED),
        ];
        for (e, s) in cases {
            assert_eq!(lq_status::from(&e), s, "{e}");
        }
    }
}
