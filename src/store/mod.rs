//! Storage backends, behind the [`Storage`] trait.
//!
//! The engine keeps every message in memory and tells the storage what happens
//! to *persistent* ones (and which queues exist), as [`Record`]s, in the order it
//! happens for each message. A backend that persists (the journal, a later
//! layer) writes them down and replays them on open; [`MemoryStorage`] keeps
//! nothing, because in a purely in-memory broker the engine's own state is all
//! there is. Non-persistent messages never reach the storage.

pub mod journal;

pub use journal::{Inspection, JournalOptions, RecoveryReport, SyncMode};

use crate::error::Result;
use crate::types::Filter;
use crate::types::Node;
use crate::types::QueueOptions;
use crate::types::Quotas;

/// Something that happened to a queue or a persistent message.
#[derive(Debug)]
#[non_exhaustive]
pub enum Record<'a> {
    /// A queue was created (with these options).
    QueueDefined {
        /// Namespace of the queue.
        namespace: &'a str,
        /// Queue name.
        queue: &'a str,
        /// Its options.
        options: &'a QueueOptions,
    },
    /// A persistent message was accepted; `deliver_at` is its due time if delayed.
    Enqueued {
        /// Namespace of the queue.
        namespace: &'a str,
        /// Queue name.
        queue: &'a str,
        /// The message (id, headers, body, expiry...).
        message: &'a Node,
        /// When it becomes receivable (clock nanoseconds), if delayed.
        deliver_at: Option<u64>,
    },
    /// A queue was deleted (with everything it held).
    QueueDeleted {
        /// Namespace of the queue.
        namespace: &'a str,
        /// Queue name.
        queue: &'a str,
    },
    /// A persistent message left the queue for good.
    Removed {
        /// Namespace of the queue.
        namespace: &'a str,
        /// Queue name.
        queue: &'a str,
        /// Message id.
        id: u64,
        /// Why it left.
        reason: RemoveReason,
    },
    /// A persistent message was handed out again or returned; its delivery count.
    Delivered {
        /// Namespace of the queue.
        namespace: &'a str,
        /// Queue name.
        queue: &'a str,
        /// Message id.
        id: u64,
        /// Deliveries so far.
        deliveries: u32,
    },
    /// Several records that must be recovered together or not at all (a
    /// batch's `Enqueued` records; a dead letter's `Enqueued` and its
    /// original's `Removed`). Holds no group.
    Group(&'a [Record<'a>]),
    /// Ids below `next_id` are used in this queue (persistent messages or not):
    /// a durable high-water mark, so ids are never handed out again after a
    /// restart.
    NextId {
        /// Namespace of the queue.
        namespace: &'a str,
        /// Queue name.
        queue: &'a str,
        /// The first id not yet reserved.
        next_id: u64,
    },
    /// A namespace was created (or its quotas set again): the latest one wins.
    NamespaceDefined {
        /// Namespace name.
        namespace: &'a str,
        /// Its quotas.
        quotas: &'a Quotas,
    },
    /// A topic was created.
    TopicDefined {
        /// Namespace of the topic.
        namespace: &'a str,
        /// Topic name.
        topic: &'a str,
    },
    /// A queue was subscribed to a topic (or its filter replaced).
    Subscribed {
        /// Namespace of the topic and the queue.
        namespace: &'a str,
        /// Topic name.
        topic: &'a str,
        /// The subscribed queue.
        queue: &'a str,
        /// Which messages it takes.
        filter: &'a Filter,
    },
    /// A subscription was removed (its queue stays). Deleting a queue removes
    /// its subscriptions without a record of this kind.
    Unsubscribed {
        /// Namespace of the topic and the queue.
        namespace: &'a str,
        /// Topic name.
        topic: &'a str,
        /// The queue no longer subscribed.
        queue: &'a str,
    },
}

/// Why a message left its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoveReason {
    /// Acknowledged (or received in auto-ack mode).
    Acked,
    /// Its TTL passed.
    Expired,
    /// Moved to the dead-letter queue (which records its own `Enqueued`) or dropped
    /// after too many deliveries.
    DeadLettered,
    /// Cancelled by id.
    Cancelled,
    /// Purged with the rest of the queue.
    Purged,
    /// Its queue was deleted.
    QueueDeleted,
}

/// A storage backend. Implementations must be thread-safe: the engine calls them
/// from every producer and consumer thread.
pub trait Storage: Send + Sync + 'static {
    /// Short name of the backend (`"memory"`, `"journal"`).
    fn name(&self) -> &'static str;
    /// Records an event. For a namespace, topic, subscription or queue
    /// definition, an unsubscribe, a queue deletion and a send's `Enqueued`,
    /// an error refuses the operation (the send fails, the message is not
    /// queued). An ack whose `Removed` fails returns the error (the message is
    /// gone from memory but may come back after a restart). Other errors
    /// recording what already happened in memory (`Removed` of an expiry, purge
    /// or cancel, `Delivered`, a dead letter's `Enqueued`) are ignored: at worst
    /// the message comes back after a restart (at-least-once).
    fn append(&self, record: &Record<'_>) -> Result<()>;
    /// Makes everything appended so far durable.
    fn flush(&self) -> Result<()>;
    /// Whether records outlive the process (then queues journal an id
    /// high-water mark, [`Record::NextId`]).
    fn durable(&self) -> bool {
        false
    }
    /// Makes everything durable and lets go of the storage (a journal releases its
    /// data directory); later appends fail with [`Error::Closed`](crate::Error::Closed).
    fn close(&self) {}
}

/// The in-memory backend: keeps nothing beyond the engine's own memory.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStorage;

impl Storage for MemoryStorage {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn append(&self, _record: &Record<'_>) -> Result<()> {
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}
