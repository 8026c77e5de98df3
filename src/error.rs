//! The one error type of the crate.

use std::fmt;

/// Everything that can go wrong in libqueue, each case distinct so a caller (and
/// the C ABI, which maps each to its own `lq_status`) can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A name (queue or namespace) is empty, longer than 64 characters, or uses a
    /// character outside `[A-Za-z0-9_.-]`.
    InvalidName(String),
    /// An argument is out of range (e.g. priority above 9, zero capacity).
    InvalidArgument(String),
    /// The message is larger than the namespace's `max_message_size` (or larger
    /// than the queue's byte capacity, so it could never fit).
    MessageTooLarge {
        /// Size of the rejected message in bytes (body + name + headers).
        size: u64,
        /// The limit it broke.
        limit: u64,
    },
    /// The queue is at capacity and the caller asked not to wait (or its wait timed out
    /// while sending; see [`Error::Timeout`]).
    Full,
    /// A namespace quota would be exceeded.
    QuotaExceeded {
        /// Namespace whose quota was hit.
        namespace: String,
        /// Which quota (`"max_queues"`, `"max_messages"`, `"max_bytes"`).
        quota: &'static str,
        /// The configured limit.
        limit: u64,
    },
    /// A blocking operation did not complete before its deadline.
    Timeout,
    /// The broker or queue has been closed (or deleted).
    Closed,
    /// No such queue, namespace or message.
    NotFound(String),
    /// A queue or namespace of that name exists already with other options.
    AlreadyExists(String),
    /// The delivery's lease is no longer held (it expired and the message was
    /// redelivered or dead-lettered), so it can no longer be acked, nacked or extended.
    LeaseExpired {
        /// Id of the message whose lease was lost.
        id: u64,
    },
    /// The operation does not apply to the message in its current state (for
    /// example cancelling a message that is leased to a consumer).
    InvalidState(String),
    /// The storage backend failed.
    Storage(String),
    /// An RPC handler on the other side failed; its error text.
    Remote(String),
    /// Another process (or broker) has the data directory open for writing.
    Locked(String),
    /// The operating system refused a resource the call needs (a thread, a file
    /// descriptor); the detail says which.
    Io(String),
    /// The handle was inherited through `fork()`: it belongs to the parent
    /// process's broker, which a child can never use (its journal, locks and
    /// threads are the parent's). The child may open a broker of its own.
    Forked,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName(n) => write!(
                f,
                "invalid name {n:?}: names are 1-64 characters from [A-Za-z0-9_.-]"
            ),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::MessageTooLarge { size, limit } => {
                write!(
                    f,
                    "message of {size} bytes exceeds the limit of {limit} bytes"
                )
            }
            Error::Full => write!(f, "queue is full"),
            Error::QuotaExceeded {
                namespace,
                quota,
                limit,
            } => write!(
                f,
                "quota {quota} of namespace {namespace:?} exceeded (limit {limit})"
            ),
            Error::Timeout => write!(f, "timed out"),
            Error::Closed => write!(f, "closed"),
            Error::NotFound(what) => write!(f, "not found: {what}"),
            Error::AlreadyExists(what) => write!(f, "already exists: {what}"),
            Error::LeaseExpired { id } => write!(
                f,
                "lease on message {id} is no longer held (expired or already settled)"
            ),
            Error::InvalidState(m) => write!(f, "invalid state: {m}"),
            Error::Storage(m) => write!(f, "storage error: {m}"),
            Error::Remote(m) => write!(f, "remote handler failed: {m}"),
            Error::Io(m) => write!(f, "I/O error: {m}"),
            Error::Forked => write!(
                f,
                "this handle was inherited through fork(): a child process cannot use its \
                 parent's broker (open a broker of its own in the child)"
            ),
            Error::Locked(d) => write!(
                f,
                "data directory {d} is locked by another writer (only one process may open it)"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks a queue or namespace name: 1–64 characters from `[A-Za-z0-9_.-]`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}
