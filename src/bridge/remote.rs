//! What the forwarding loops need of a distributed engine: the [`Remote`]
//! trait, one implementation per engine (`nats.rs` today). The loops
//! (`outbound.rs`, `inbound.rs`) hold the guarantees; an implementation only
//! maps calls and sorts its errors into retry-later and never-will-work.

use super::mapping::Mapped;
use std::time::Duration;

/// How a remote call failed.
#[derive(Debug, Clone)]
pub(crate) enum RemoteError {
    /// The remote is down, slow or full: try again later.
    Transient(String),
    /// This message can never be accepted (too large, refused): dead-letter it.
    Permanent(String),
}

impl RemoteError {
    pub(crate) fn text(&self) -> &str {
        match self {
            RemoteError::Transient(t) | RemoteError::Permanent(t) => t,
        }
    }
}

/// What the remote said of a stored message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stored {
    /// The remote had it already (its duplicate window suppressed this copy).
    pub(crate) duplicate: bool,
}

/// A message fetched from the remote, as the loops see it.
pub(crate) struct Fetched<'a> {
    pub(crate) headers: Vec<(&'a str, &'a str)>,
    pub(crate) body: &'a [u8],
    /// Messages left behind it at the remote, if the remote says.
    pub(crate) pending: Option<u64>,
}

/// A distributed engine the bridge forwards to and receives from. Its futures
/// run on the bridge's own single-threaded runtime (so need not be `Send`).
pub(crate) trait Remote: 'static {
    /// A publish sent and not yet confirmed.
    type Pending;
    /// A message fetched and not yet acknowledged.
    type Incoming;
    /// An inbound source opened on the remote (a durable consumer).
    type Source;

    /// Whether the connection is up now.
    fn connected(&self) -> bool;

    /// Checks that `target` (a subject) is served (a stream takes it).
    async fn check_target(&self, target: &str) -> Result<(), RemoteError>;

    /// Sends one message with the stable id `msg_id`; confirmation comes later
    /// ([`confirm`](Self::confirm)), so publishes pipeline in order.
    async fn publish(
        &self,
        target: &str,
        msg_id: &str,
        m: &Mapped,
    ) -> Result<Self::Pending, RemoteError>;

    /// Waits for the remote to confirm it stored a published message.
    async fn confirm(&self, p: Self::Pending) -> Result<Stored, RemoteError>;

    /// Opens (or finds) the durable inbound source `durable` on `origin`.
    async fn open_source(&self, origin: &str, durable: &str) -> Result<Self::Source, RemoteError>;

    /// Fetches up to `max` messages, waiting at most `wait` for the first.
    async fn fetch(
        &self,
        src: &Self::Source,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Self::Incoming>, RemoteError>;

    /// A fetched message's headers and body.
    fn view(m: &Self::Incoming) -> Fetched<'_>;

    /// Acknowledges a fetched message: the remote forgets it.
    async fn ack(&self, m: Self::Incoming) -> Result<(), RemoteError>;

    /// Hands a fetched message back to be redelivered after `delay`.
    async fn retry_later(&self, m: Self::Incoming, delay: Duration) -> Result<(), RemoteError>;
}
