//! What a bridge counts ([`BridgeStats`]), shared between its thread and the
//! handle that reads it.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::SystemTime;

/// A bridge's counters and health, as [`Bridge::stats`](super::Bridge::stats)
/// reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeStats {
    /// Whether the connection to the remote is up now.
    pub connected: bool,
    /// Local messages stored by the remote (PubAck received) and then acked locally.
    pub forwarded: u64,
    /// Remote messages sent to their local queue and then acked at the remote.
    pub received: u64,
    /// Messages waiting in the outbound local queues (ready, delayed or leased).
    pub pending_outbound: u64,
    /// Messages waiting at the remote for the inbound routes, as it last said.
    pub pending_inbound: u64,
    /// Publishes (and inbound sends) tried again after a failure.
    pub retries: u64,
    /// NATS: publishes the remote reported as duplicates (suppressed by its
    /// duplicate window): replays after a failure or restart. RabbitMQ (no
    /// duplicate window): inbound deliveries flagged `redelivered`, each
    /// possibly a copy of one received before.
    pub duplicates: u64,
    /// Messages dead-lettered locally (unmappable, refused, or too old).
    pub dead_lettered: u64,
    /// Routes waiting as standby: another process of the data directory
    /// forwards their queue (or receives from their source); they take
    /// over when it stops or dies (`docs/bridges.md`).
    pub standby: u64,
    /// The last error, if any (it stays after recovery; see `error_since`).
    pub last_error: Option<String>,
    /// When the current run of failures began (None once the bridge has
    /// made progress since the last error).
    pub error_since: Option<SystemTime>,
    /// When the last error happened.
    pub last_error_at: Option<SystemTime>,
}

/// The live counters.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) connected: AtomicBool,
    pub(crate) forwarded: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) pending_inbound: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    errors: Mutex<ErrorState>,
}

#[derive(Default)]
struct ErrorState {
    last: Option<String>,
    at: Option<SystemTime>,
    since: Option<SystemTime>,
}

impl Shared {
    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.store(up, Relaxed);
    }

    /// Records an error (and the start of a run of failures).
    pub(crate) fn error(&self, text: &str) {
        let now = SystemTime::now();
        let mut e = self.errors.lock();
        e.last = Some(text.to_string());
        e.at = Some(now);
        e.since.get_or_insert(now);
    }

    /// Records progress: a run of failures is over.
    pub(crate) fn progress(&self) {
        let mut e = self.errors.lock();
        if e.since.is_some() {
            e.since = None;
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn snapshot(&self, pending_outbound: u64) -> BridgeStats {
        let e = self.errors.lock();
        BridgeStats {
            connected: self.connected.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            received: self.received.load(Relaxed),
            pending_outbound,
            pending_inbound: self.pending_inbound.load(Relaxed),
            retries: self.retries.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            standby: 0,
            last_error: e.last.clone(),
            error_since: e.since,
            last_error_at: e.at,
        }
    }
}
