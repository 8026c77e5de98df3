//! [`QueueCore`]: one queue. This file holds its state and what every part
//! uses; the operations are one file each:
//!
//! - `send`: ids, admission (capacity, quotas), recording, placing on a lane.
//! - `timers`: delayed messages falling due, lease and TTL expiry (`maintain`).
//! - `receive`: taking the next ready message, leasing it, waiting.
//! - `settle`: after delivery — ack, nack, give back, extend, requeue,
//!   dead-letter; the lease types a receive hands out ([`Received`]).
//! - `admin`: operator operations — peek, cancel, purge, sweeps, stats, close.
//! - `watch`: the pollable descriptor and waking waiters.
//!
//! Hot path (send of a ready message, receive of one): a thread-local id block,
//! one `Arc` allocation, a lock-free push/pop on the caller's home shard of the
//! priority lane, a few relaxed counter bumps on the caller's home shard, and a
//! fence plus one load to see whether a consumer sleeps. Leases take the
//! consumer's home lease-table mutex (uncontended); delays, TTL sweeps and lease
//! expiry run in [`QueueCore::maintain`], which does nothing until the clock
//! reaches `next_due`, called by every operation and, when the earliest deadline
//! arrives, by the broker's ticker thread (see `ticker.rs`), which is told only
//! when a queue's earliest deadline moves earlier.

use super::counters::{bump, gauge, sum, Budget, Counters, Totals};
use super::leases::{DelayTable, ExpiryHeap, LeaseTable};
use super::namespace::NsShared;
use super::ticker::Ticker;
use crate::clock::{nanos, Clock};
use crate::error::{Error, Result};
use crate::store::{Record, RemoveReason, Storage};
use crate::sync::event::Event;
use crate::sync::home_shard;
use crate::sync::lane::Lane;
use crate::types::node::{pool, Extra, Node};
use crate::types::{Message, MAX_PRIORITY};
use crate::types::{OnFull, QueueOptions, QueueStats, Wait};
use crossbeam_utils::{Backoff, CachePadded};
use parking_lot::Mutex;
pub(crate) use receive::ReceiveMode;
pub(crate) use settle::{HeldLease, LeaseKey, Received, Settle};
use std::cell::RefCell;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Arc, OnceLock};
use watch::Watch;

mod admin;
mod handover;
mod receive;
mod send;
mod settle;
mod timers;
mod watch;

const PRIORITIES: usize = MAX_PRIORITY as usize + 1;
/// Ids a thread reserves at once (see [`QueueCore::next_id`]).
const ID_BLOCK: u64 = 64;
/// Ids a queue on a durable storage reserves ahead in one `NextId` record
/// (see [`QueueCore::reserve_ids`]): one record per this many ids.
const ID_RESERVE: u64 = 1024;

static QUEUE_SERIAL: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Per-thread id blocks: (queue serial, next id, end of block), a few queues at once.
    static ID_CACHE: RefCell<[(u64, u64, u64); 4]> = const { RefCell::new([(0, 0, 0); 4]) };
}

/// One queue. Shared (`Arc`) by its namespace, the [`crate::Queue`] handles and
/// outstanding deliveries.
pub(crate) struct QueueCore {
    pub(crate) name: String,
    pub(crate) ns: Arc<NsShared>,
    pub(crate) opts: QueueOptions,
    dlq: Option<Arc<QueueCore>>,
    serial: u64,
    /// Next id block; padded: it is written while the fields below are read by all.
    ids: CachePadded<AtomicU64>,
    /// Ids below this are durably reserved (a `NextId` record, or recovered);
    /// `u64::MAX` on a storage that keeps nothing.
    ids_durable: AtomicU64,
    /// Held while a reservation is recorded.
    ids_lock: Mutex<()>,
    mask: usize,
    lanes: [OnceLock<Lane<Arc<Node>>>; PRIORITIES],
    used_prios: AtomicU16,
    leases: Box<[CachePadded<Mutex<LeaseTable>>]>,
    delayed: Mutex<DelayTable>,
    /// Earliest time at which a delayed message is due or a lease may expire.
    next_due: AtomicU64,
    maint: Mutex<()>,
    /// Earliest expiry among ready and delayed messages (a lower bound).
    min_expiry: AtomicU64,
    /// Earliest enqueue time among the messages placed (ready or delayed)
    /// since `oldest` was last computed; `u64::MAX` if none (see `stats`).
    oldest_added: AtomicU64,
    /// The oldest message held when last computed, valid while no message
    /// has left the queue since (see `stats`).
    oldest: Mutex<Oldest>,
    /// Ready messages with a TTL, by expiry, per shard (see [`ExpiryHeap`]).
    ttl: Box<[CachePadded<Mutex<ExpiryHeap>>]>,
    counters: Box<[CachePadded<Counters>]>,
    cap_msgs: Budget,
    cap_bytes: Budget,
    /// Batch senders asleep on `not_full` (they need more than one slot).
    batch_waiters: AtomicUsize,
    /// Padded: their waiter counts are written whenever a thread parks.
    not_empty: CachePadded<Event>,
    not_full: CachePadded<Event>,
    closed: AtomicBool,
    pub(crate) clock: Arc<dyn Clock>,
    storage: Arc<dyn Storage>,
    ticker: Arc<Ticker>,
    /// Set once the queue is watched through a pollable descriptor.
    watch: OnceLock<Watch>,
    /// The process that made it: a forked child gets [`Error::Forked`].
    origin: crate::sync::fork::Origin,
}

impl std::fmt::Debug for QueueCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("namespace", &self.ns.name)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl QueueCore {
    pub(crate) fn new(
        name: String,
        ns: Arc<NsShared>,
        opts: QueueOptions,
        dlq: Option<Arc<QueueCore>>,
        clock: Arc<dyn Clock>,
        storage: Arc<dyn Storage>,
        ticker: Arc<Ticker>,
    ) -> Self {
        let shards = if opts.strict_fifo {
            1
        } else {
            opts.shards.unwrap_or_else(default_shards)
        }
        .clamp(1, 256)
        .next_power_of_two();
        QueueCore {
            name,
            ns,
            dlq,
            serial: QUEUE_SERIAL.fetch_add(1, Relaxed),
            ids: CachePadded::new(AtomicU64::new(1)),
            ids_durable: AtomicU64::new(if storage.durable() { 1 } else { u64::MAX }),
            ids_lock: Mutex::new(()),
            mask: shards - 1,
            lanes: Default::default(),
            used_prios: AtomicU16::new(0),
            leases: (0..shards).map(|_| Default::default()).collect(),
            delayed: Mutex::new(DelayTable::default()),
            next_due: AtomicU64::new(u64::MAX),
            maint: Mutex::new(()),
            min_expiry: AtomicU64::new(u64::MAX),
            oldest_added: AtomicU64::new(u64::MAX),
            oldest: Mutex::new(Oldest::default()),
            ttl: (0..shards).map(|_| Default::default()).collect(),
            counters: (0..shards).map(|_| Default::default()).collect(),
            cap_msgs: Budget::new(opts.max_messages),
            cap_bytes: Budget::new(opts.max_bytes),
            batch_waiters: AtomicUsize::new(0),
            not_empty: CachePadded::new(Event::new()),
            not_full: CachePadded::new(Event::new()),
            closed: AtomicBool::new(false),
            clock,
            storage,
            ticker,
            watch: OnceLock::new(),
            origin: crate::sync::fork::Origin::here(),
            opts,
        }
    }

    #[inline]
    fn c(&self, home: usize) -> &Counters {
        &self.counters[home & self.mask]
    }

    fn lane(&self, p: u8) -> &Lane<Arc<Node>> {
        self.lanes[p as usize].get_or_init(|| Lane::new(self.mask + 1))
    }

    /// This queue's number, unique in the process (another queue of the same
    /// name, made after this one was deleted, has another).
    pub(crate) fn serial(&self) -> u64 {
        self.serial
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }

    /// [`Error::Closed`] once closed; [`Error::Forked`] in a forked child (one
    /// relaxed load of a line written only by `fork`).
    #[inline]
    fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::Closed)
        } else {
            self.check_fork()
        }
    }

    /// [`Error::Forked`] in a forked child: nothing of the parent's queue (its
    /// locks, its journal) may be touched there.
    #[inline]
    pub(crate) fn check_fork(&self) -> Result<()> {
        if self.origin.inherited() {
            Err(Error::Forked)
        } else {
            Ok(())
        }
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.check_fork()?;
        self.storage.flush()
    }
}

/// What `stats` knows of the oldest message held: its enqueue time (`at`,
/// `u64::MAX` for none) as of when the count of messages that had left the
/// queue (`left`, see `QueueCore::left`) was as recorded.
#[derive(Debug)]
struct Oldest {
    at: u64,
    left: u64,
}

impl Default for Oldest {
    fn default() -> Self {
        Oldest {
            at: u64::MAX,
            left: 0,
        }
    }
}

/// Reads the clock at most once, and only if asked.
pub(crate) struct LazyNow<'a> {
    clock: &'a dyn Clock,
    now: Option<u64>,
    coarse: Option<u64>,
}

impl<'a> LazyNow<'a> {
    fn new(clock: &'a dyn Clock) -> Self {
        LazyNow {
            clock,
            now: None,
            coarse: None,
        }
    }

    #[inline]
    fn get(&mut self) -> u64 {
        *self.now.get_or_insert_with(|| self.clock.now())
    }

    /// The precise time if already read, else the coarse clock.
    #[inline]
    fn coarse(&mut self) -> u64 {
        match self.now {
            Some(n) => n,
            None => *self.coarse.get_or_insert_with(|| self.clock.now_coarse()),
        }
    }
}

fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get())
}
