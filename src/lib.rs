//! # libqueue
//!
//! A message queue engine that programs embed in their own process: a
//! [`Broker`] holds [`Namespace`]s (tenants with quotas) holding [`Queue`]s.
//! Messages are leased on receive and settled with ack / nack / extend; expired
//! leases redeliver; after `max_deliveries` a message goes to its dead-letter
//! queue. Priorities 0–9, TTL, delay, peek, cancel, purge and exact statistics
//! are built in, and every timer reads an injectable [`Clock`].
//!
//! ## Ordering
//! Within one priority level, messages from one producer thread are delivered in
//! the order it sent them (FIFO per producer, what Zaqar and moodycamel's
//! ConcurrentQueue promise), also while peek, stats, cancel or purge run
//! concurrently. Messages from different producers may interleave in any order:
//! a message sent last by one thread (a "stop" marker, say) can be delivered
//! before messages another thread sent earlier. Higher priorities are delivered
//! first. Redelivery (nack, lease expiry) and delay are the only other
//! reorderings. With
//! [`QueueOptions::strict_fifo`] a queue keeps one lane: messages are delivered
//! in the order their sends completed, queue-wide, at the cost of scaling.
//!
//! ## Threads
//! [`Broker`], [`Namespace`] and [`Queue`] are cheap handles, `Send + Sync`;
//! share them freely. A [`Delivery`] is `Send + Sync` too; it can be acked from
//! any thread.
//!
//! ## Layers
//! From the bottom: `sync` (lock-free primitives, wait/notify) → `types` (the
//! shared vocabulary: [`Message`], [`QueueOptions`], [`Quotas`], [`Node`]…,
//! with `error` and `clock`) → `store` (the [`Storage`] trait) → `engine` (its
//! root owns namespaces, queues, topics, timers, storage and recovery) → this
//! API (handles, each holding a private *flavor*: today only the local engine)
//! → `ffi` (the C ABI). A module imports only from the layers below it.
//!
//! ```
//! use libqueue::{Broker, Message, MessageView, QueueOptions};
//! use std::time::Duration;
//!
//! let broker = Broker::new();
//! let tenant = broker.namespace("tenant-a")?;
//! let q = tenant.create_queue("orders", QueueOptions::default()
//!     .lease_time(Duration::from_secs(10))
//!     .max_deliveries(3)
//!     .dead_letter_queue("orders.dlq"))?;
//! let id = q.send(Message::new("order #1").name("create_order").priority(7))?;
//! let d = q.try_receive()?.expect("ready");
//! assert_eq!((d.id(), d.name()), (id, Some("create_order")));
//! d.ack()?;
//! assert_eq!(q.stats().acked, 1);
//! # Ok::<(), libqueue::Error>(())
//! ```

#![warn(missing_docs)]

#[cfg(feature = "bridge")]
pub mod bridge;
// Read by `libqueue stats` with or without the feature.
#[path = "bridge/file.rs"]
pub mod bridge_file;
mod broker;
mod clock;
mod consumer;
mod engine;
mod error;
pub mod ffi;
mod queue;
// The wire format's constants are not C API: cbindgen skips the module.
/// cbindgen:ignore
mod remote;
mod rpc;
pub mod store;
pub mod sync;
mod topic;
mod types;

#[cfg(feature = "bridge")]
pub use bridge::{Bridge, BridgeBuilder, BridgeStats, RabbitBuilder};
pub use broker::{
    Broker, BrokerOptions, Namespace, NamespaceStats, DEFAULT_NAMESPACE, DEFAULT_QUEUE,
};
pub use clock::{Clock, ClockListener, ManualClock, Nanos, SystemClock};
pub use consumer::{HandlerResult, Pool, PoolBuilder, PoolStats, StopReport, REPLY_TO, RPC_ERROR};
pub use error::{validate_name, Error, Result};
pub use queue::{Delivery, LeaseTicket, Peeked, Queue};
#[doc(hidden)]
pub use remote::HostLimits;
pub use remote::{wire, ClientInfo, HostInfo};
pub use rpc::RpcClient;
pub use store::{JournalOptions, MemoryStorage, RecoveryReport, Storage, SyncMode};
pub use topic::Topic;
pub use types::{
    Filter, Headers, Message, MessageView, Node, OnFull, QueueOptions, QueueStats, Quotas,
    TopicStats, Wait, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_PRIORITY, EXECUTION_ID, MAX_PRIORITY,
};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
