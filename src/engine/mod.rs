//! The engine: one instance's state and everything that happens to it.
//!
//! - `root`: [`Engine`], the root — namespaces, the ticker, the clock
//!   listener, the storage and recovery.
//! - `queue`: [`QueueCore`], all operations on one queue.
//! - `leases`: in-flight (leased) and delayed messages, by deadline.
//! - `counters`: per-shard statistics and capacity/quota budgets.
//! - `namespace`: a tenant's queues and quotas.
//! - `ticker`: the thread that runs every queue's timers when they fall due.
//! - `topic`: [`topic::TopicCore`], a topic's subscriptions and publishing.

mod counters;
pub(crate) mod leases;
pub(crate) mod namespace;
pub(crate) mod queue;
mod root;
pub(crate) mod ticker;
pub(crate) mod topic;

pub(crate) use queue::{HeldLease, LeaseKey, QueueCore, ReceiveMode, Received, Settle};
pub(crate) use root::{Declare, Engine, EngineOptions, Recording, DEFAULT_NAMESPACE};
