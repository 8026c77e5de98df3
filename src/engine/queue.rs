//! [`QueueCore`]: one queue — its state, the send path, timers and receive.
//! After-delivery operations (ack, nack, extend, requeue, dead-letter) are in
//! `queue/settle.rs`, operator operations (peek, cancel, purge, sweeps, stats)
//! in `queue/admin.rs`, the pollable descriptor in `queue/watch.rs`.
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

use super::counters::{bump, gauge, sum, Budget, Counters};
use super::leases::{DelayTable, LeaseTable};
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
pub(crate) use settle::{HeldLease, LeaseKey, Received, Settle};
use std::cell::RefCell;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Arc, OnceLock};
use watch::Watch;

mod admin;
mod settle;
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

    /// A new message id. Unique within the queue and increasing per producer thread:
    /// each thread reserves a block of [`ID_BLOCK`] ids, so producers never contend
    /// on one counter. With `strict_fifo` ids are taken one by one (increasing in
    /// send order queue-wide).
    ///
    /// On a durable storage every id handed out is below a durably recorded
    /// high-water mark ([`reserve_ids`](Self::reserve_ids)), so no id is
    /// handed out again after a restart; failing to record one fails the call.
    #[inline]
    pub(crate) fn next_id(&self) -> Result<u64> {
        if self.opts.strict_fifo {
            let id = self.ids.fetch_add(1, Relaxed);
            self.ensure_reserved(id + 1)?;
            return Ok(id);
        }
        ID_CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if let Some(e) = c.iter_mut().find(|e| e.0 == self.serial) {
                if e.1 < e.2 {
                    e.1 += 1;
                    return Ok(e.1 - 1);
                }
                let start = self.ids.fetch_add(ID_BLOCK, Relaxed);
                // The block is cached only once it is reserved.
                self.ensure_reserved(start + ID_BLOCK)?;
                *e = (self.serial, start + 1, start + ID_BLOCK);
                return Ok(start);
            }
            let start = self.ids.fetch_add(ID_BLOCK, Relaxed);
            self.ensure_reserved(start + ID_BLOCK)?;
            c.rotate_right(1);
            c[0] = (self.serial, start + 1, start + ID_BLOCK);
            Ok(start)
        })
    }

    /// Makes sure ids below `end` are durably reserved.
    #[inline]
    fn ensure_reserved(&self, end: u64) -> Result<()> {
        if end <= self.ids_durable.load(Acquire) {
            return Ok(());
        }
        self.reserve_ids(end)
    }

    /// Records that ids below `end` + [`ID_RESERVE`] are used (a `NextId`
    /// record): one record per [`ID_RESERVE`] ids, whether the messages are
    /// persistent or not. After a restart ids continue from the reserved mark.
    #[cold]
    fn reserve_ids(&self, end: u64) -> Result<()> {
        let _g = self.ids_lock.lock();
        if end <= self.ids_durable.load(Acquire) {
            return Ok(());
        }
        let upto = end.saturating_add(ID_RESERVE);
        self.record(Record::NextId {
            namespace: &self.ns.name,
            queue: &self.name,
            next_id: upto,
        })?;
        self.ids_durable
            .store(upto, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Checks a message and makes its node. The send time comes from the coarse
    /// clock (it only feeds `oldest_age`); TTL and delay deadlines from the precise one.
    ///
    /// With `copy`, the body is `copy` (copied when the node is made, see
    /// [`pool::make`]) and `msg`'s own body must be empty.
    fn build(
        &self,
        msg: Message,
        copy: Option<&[u8]>,
        now: &mut LazyNow<'_>,
    ) -> Result<(Node, Option<u64>)> {
        let priority = msg.priority.unwrap_or(self.opts.default_priority);
        if priority > MAX_PRIORITY {
            return Err(Error::InvalidArgument(format!(
                "priority {priority} is outside 0..={MAX_PRIORITY}"
            )));
        }
        debug_assert!(copy.is_none() || msg.body.is_empty());
        let size = msg.size() + copy.map_or(0, |b| b.len() as u64);
        let limit = self.ns.quotas.max_message_size;
        if size > limit {
            return Err(Error::MessageTooLarge { size, limit });
        }
        if let Some(cap) = self.cap_bytes.limit() {
            if size > cap {
                return Err(Error::MessageTooLarge { size, limit: cap });
            }
        }
        let ttl = msg.ttl.or(self.opts.default_ttl);
        let delay = msg
            .delay
            .or(self.opts.default_delay)
            .map(nanos)
            .filter(|d| *d > 0);
        let precise = if ttl.is_some() || delay.is_some() {
            now.get()
        } else {
            0
        };
        let node = Node {
            id: 0,
            priority,
            persistent: msg.persistent.unwrap_or(self.opts.persistent),
            body: msg.body.into_boxed_slice(),
            extra: Extra::new(msg.headers, msg.name, msg.correlation_id),
            enqueued_at: if precise != 0 { precise } else { now.coarse() },
            expires_at: ttl.map_or(u64::MAX, |t| precise.saturating_add(nanos(t))),
            size,
            deliveries: AtomicU32::new(0),
        };
        Ok((node, delay.map(|d| precise.saturating_add(d))))
    }

    /// Reserves room for `n` messages of `bytes` in all: queue capacity (waiting as
    /// `on_full` says), then the namespace quotas (never waiting). A wait ends
    /// with [`Error::Closed`] when the queue closes or `cancel` is set (and the
    /// waiters woken, see [`QueueCore::wake_all`]).
    fn admit(
        &self,
        n: u64,
        bytes: u64,
        on_full: OnFull,
        cancel: Option<&AtomicBool>,
    ) -> Result<()> {
        if self.cap_msgs.is_limited() || self.cap_bytes.is_limited() {
            if n > self.cap_msgs.limit().unwrap_or(u64::MAX) {
                return Err(Error::InvalidArgument(format!(
                    "a batch of {n} messages can never fit a queue of capacity {}",
                    self.cap_msgs.limit().unwrap_or(0)
                )));
            }
            if bytes > self.cap_bytes.limit().unwrap_or(u64::MAX) {
                return Err(Error::MessageTooLarge {
                    size: bytes,
                    limit: self.cap_bytes.limit().unwrap_or(0),
                });
            }
            let deadline = match on_full {
                OnFull::Timeout(d) => Some(self.clock.now().saturating_add(nanos(d))),
                _ => None,
            };
            let take = || {
                if self.cap_msgs.try_take(n) {
                    if self.cap_bytes.try_take(bytes) {
                        return true;
                    }
                    self.cap_msgs.give(n);
                }
                false
            };
            let mut swept = false;
            let mut backoff = Backoff::new();
            while !take() {
                if !swept {
                    // Expired messages (and leases that dead-letter) may be holding
                    // the room: collect them before calling the queue full.
                    swept = true;
                    let now = self.clock.now();
                    self.maintain(now);
                    self.sweep_expired(now);
                    continue;
                }
                if matches!(on_full, OnFull::Reject) {
                    return Err(Error::Full);
                }
                if !backoff.is_completed() {
                    // Consumers free room continuously under load: spin briefly
                    // before parking, so a full queue costs no syscall per message.
                    backoff.snooze();
                    continue;
                }
                if n > 1 {
                    self.batch_waiters.fetch_add(1, SeqCst);
                }
                let t = self.not_full.prepare();
                let leave = |this: &Self| {
                    if n > 1 {
                        this.batch_waiters.fetch_sub(1, SeqCst);
                    }
                };
                if take() {
                    leave(self);
                    self.not_full.cancel(t);
                    break;
                }
                if self.is_closed() || cancel.is_some_and(|c| c.load(SeqCst)) {
                    self.not_full.cancel(t);
                    leave(self);
                    return Err(Error::Closed);
                }
                let now = self.clock.now();
                if deadline.is_some_and(|dl| now >= dl) {
                    self.not_full.cancel(t);
                    leave(self);
                    return Err(Error::Timeout);
                }
                // Wake at the deadline, or when a message may expire or a lease end.
                let wake_at = deadline
                    .unwrap_or(u64::MAX)
                    .min(self.min_expiry.load(SeqCst))
                    .min(self.next_due.load(SeqCst));
                let limit = if wake_at == u64::MAX {
                    None
                } else {
                    self.clock.park_limit(wake_at.saturating_sub(now).max(1))
                };
                // Woken for one freed slot: the loop retries at once; if another
                // sender took the slot first, the room is used and nothing is lost.
                self.not_full.wait(t, limit);
                leave(self);
                swept = false;
                backoff = Backoff::new();
            }
        }
        let ns = &self.ns;
        let quota = |q: &'static str, b: &Budget| Error::QuotaExceeded {
            namespace: ns.name.clone(),
            quota: q,
            limit: b.limit().unwrap_or(0),
        };
        let err = if !ns.msgs.try_take(n) {
            Some(quota("max_messages", &ns.msgs))
        } else if !ns.bytes.try_take(bytes) {
            ns.msgs.give(n);
            Some(quota("max_bytes", &ns.bytes))
        } else {
            None
        };
        if let Some(e) = err {
            self.unadmit(n, bytes);
            return Err(e);
        }
        Ok(())
    }

    fn unadmit(&self, n: u64, bytes: u64) {
        if self.cap_msgs.is_limited() || self.cap_bytes.is_limited() {
            self.cap_msgs.give(n);
            self.cap_bytes.give(bytes);
            // One freed message makes room for one sender, unless a batch (or a
            // byte-limited send, whose need is unknown here) waits: then all look.
            if n == 1 && self.batch_waiters.load(SeqCst) == 0 && !self.cap_bytes.is_limited() {
                self.not_full.notify_one();
            } else {
                self.not_full.notify_all();
            }
        }
    }

    /// A message left the queue for good: give its room back.
    #[inline]
    fn release(&self, node: &Node, home: usize) {
        self.release_size(node.size, home);
    }

    #[inline]
    fn release_size(&self, size: u64, home: usize) {
        bump(&self.c(home).bytes_out, size);
        self.ns.msgs.give(1);
        self.ns.bytes.give(size);
        self.unadmit(1, size);
    }

    fn record(&self, r: Record<'_>) -> Result<()> {
        self.storage.append(&r)
    }

    fn record_enqueued(&self, node: &Node, due: Option<u64>) -> Result<()> {
        self.record(Record::Enqueued {
            namespace: &self.ns.name,
            queue: &self.name,
            message: node,
            deliver_at: due,
        })
    }

    /// Records a persistent message's delivery count. A failure only means the
    /// count may read lower after a restart.
    fn record_delivered(&self, node: &Node, deliveries: u32) {
        if node.persistent {
            let _ = self.record(Record::Delivered {
                namespace: &self.ns.name,
                queue: &self.name,
                id: node.id,
                deliveries,
            });
        }
    }

    /// Records a removal where nobody can be told of a failure (expiry, purge,
    /// cancel, deletion): at worst the message comes back after a restart
    /// (at-least-once).
    fn record_removed(&self, node: &Node, reason: RemoveReason) {
        let _ = self.record_removed_id(node.id, node.persistent, reason);
    }

    /// Records that a persistent message is gone. The message is gone from memory
    /// whatever the backend says; an error means it may come back after a restart,
    /// and a caller that reports success (an ack) must return it instead.
    fn record_removed_id(&self, id: u64, persistent: bool, reason: RemoveReason) -> Result<()> {
        // A deleted queue's messages are covered by its `QueueDeleted` record
        // (written first); a record per message would be redundant, and could
        // name a message of a queue created again under the same name.
        if persistent && reason != RemoveReason::QueueDeleted {
            self.record(Record::Removed {
                namespace: &self.ns.name,
                queue: &self.name,
                id,
                reason,
            })?;
        }
        Ok(())
    }

    /// Sends one message. A wait for room ends with [`Error::Closed`] once
    /// `cancel` is set and the waiters woken.
    pub(crate) fn send_one(
        &self,
        msg: Message,
        on_full: OnFull,
        cancel: Option<&AtomicBool>,
    ) -> Result<u64> {
        self.send_built(msg, None, on_full, cancel)
    }

    /// Sends a message with nothing set but a body copied from `body`. The copy
    /// goes into a recycled node's buffer when one of that length is at hand,
    /// so fixed-size messages from C or Python cost no allocation.
    pub(crate) fn send_copy(
        &self,
        body: &[u8],
        on_full: OnFull,
        cancel: Option<&AtomicBool>,
    ) -> Result<u64> {
        self.send_built(Message::default(), Some(body), on_full, cancel)
    }

    #[inline]
    fn send_built(
        &self,
        msg: Message,
        copy: Option<&[u8]>,
        on_full: OnFull,
        cancel: Option<&AtomicBool>,
    ) -> Result<u64> {
        self.check_open()?;
        let (node, due) = self.build(msg, copy, &mut LazyNow::new(&*self.clock))?;
        self.admit(1, node.size, on_full, cancel)?;
        self.commit(node, copy, due, home_shard(), true, true)
    }

    /// Sends a batch: all are admitted together or none is. Its persistent
    /// messages are recorded as one journal unit (a `Group` record when there
    /// are several, synced once): after a crash the batch is there whole or
    /// not at all. A storage error refuses the whole batch.
    pub(crate) fn send(
        &self,
        msgs: Vec<Message>,
        on_full: OnFull,
        cancel: Option<&AtomicBool>,
    ) -> Result<Vec<u64>> {
        self.check_open()?;
        let mut now = LazyNow::new(&*self.clock);
        let built = msgs
            .into_iter()
            .map(|m| self.build(m, None, &mut now))
            .collect::<Result<Vec<_>>>()?;
        let n = built.len() as u64;
        if n == 0 {
            return Ok(Vec::new());
        }
        let bytes: u64 = built.iter().map(|(node, _)| node.size).sum();
        self.admit(n, bytes, on_full, cancel)?;
        let refuse = |nodes: Vec<(Arc<Node>, Option<u64>)>, e: Error| {
            self.ns.msgs.give(n);
            self.ns.bytes.give(bytes);
            self.unadmit(n, bytes);
            for (node, _) in nodes {
                pool::recycle(node);
            }
            Err(e)
        };
        let mut nodes = Vec::with_capacity(built.len());
        for (mut node, due) in built {
            match self.next_id() {
                Ok(id) => node.id = id,
                Err(e) => return refuse(nodes, e),
            }
            nodes.push((pool::make(node, None), due));
        }
        let mut recs: Vec<Record<'_>> = nodes
            .iter()
            .filter(|(node, _)| node.persistent)
            .map(|(node, due)| Record::Enqueued {
                namespace: &self.ns.name,
                queue: &self.name,
                message: node,
                deliver_at: *due,
            })
            .collect();
        let recorded = match recs.len() {
            0 => Ok(()),
            1 => self.record(recs.pop().expect("one")),
            _ => self.record(Record::Group(&recs)),
        };
        drop(recs);
        if let Err(e) = recorded {
            return refuse(nodes, e);
        }
        let home = home_shard();
        let ids: Vec<u64> = nodes.iter().map(|(node, _)| node.id).collect();
        for (node, due) in nodes {
            self.place(node, due, home, n == 1);
        }
        // Counted once for the batch (two counter bumps instead of two per message).
        let c = self.c(home);
        bump(&c.sent, n);
        bump(&c.bytes_in, bytes);
        if n > 1 {
            self.not_empty.notify_all();
        }
        Ok(ids)
    }

    /// Gives an admitted message its id, records it if persistent, and queues it
    /// (counting it as sent if `count`). On a storage error its room is given back.
    #[inline]
    fn commit(
        &self,
        mut node: Node,
        copy: Option<&[u8]>,
        due: Option<u64>,
        home: usize,
        notify: bool,
        count: bool,
    ) -> Result<u64> {
        node.id = match self.next_id() {
            Ok(id) => id,
            Err(e) => {
                self.ns.msgs.give(1);
                self.ns.bytes.give(node.size);
                self.unadmit(1, node.size);
                return Err(e);
            }
        };
        let node = pool::make(node, copy);
        if node.persistent {
            if let Err(e) = self.record_enqueued(&node, due) {
                self.ns.msgs.give(1);
                self.ns.bytes.give(node.size);
                self.unadmit(1, node.size);
                pool::recycle(node);
                return Err(e);
            }
        }
        let id = node.id;
        if count {
            self.enqueue(node, due, home, notify);
        } else {
            self.place(node, due, home, notify);
        }
        Ok(id)
    }

    fn enqueue(&self, node: Arc<Node>, due: Option<u64>, home: usize, notify: bool) {
        let c = self.c(home);
        bump(&c.sent, 1);
        bump(&c.bytes_in, node.size);
        self.place(node, due, home, notify);
    }

    /// [`enqueue`](Self::enqueue) without counting it as sent.
    fn place(&self, node: Arc<Node>, due: Option<u64>, home: usize, notify: bool) {
        match due {
            Some(due) => {
                bump(&self.c(home).sent_delayed, 1);
                self.delay(node, due);
            }
            None => self.push_ready(node, home, notify),
        }
    }

    fn delay(&self, node: Arc<Node>, due: u64) {
        self.note_expiry(node.expires_at);
        self.delayed.lock().insert(due, node);
        self.note_due(due);
    }

    #[inline]
    fn push_ready(&self, node: Arc<Node>, home: usize, notify: bool) {
        let p = node.priority;
        let lane = self.lane(p);
        let bit = 1u16 << p;
        if self.used_prios.load(Relaxed) & bit == 0 {
            self.used_prios.fetch_or(bit, AcqRel);
        }
        self.note_expiry(node.expires_at);
        lane.push(home, node);
        if notify {
            self.not_empty.notify_one();
        }
        self.watch_raise();
    }

    #[inline]
    fn note_expiry(&self, t: u64) {
        if t < self.min_expiry.load(Relaxed) && t < self.min_expiry.fetch_min(t, SeqCst) {
            // The broker's ticker sweeps it when it expires (a watched queue's
            // descriptor must clear then, and its room be given back).
            self.ticker.schedule(t);
        }
    }

    /// Lowers `next_due` to `t` if it is earlier. Sleeping consumers computed how
    /// long to sleep from the old value, so they are woken to look again.
    #[inline]
    fn note_due(&self, t: u64) {
        if t < self.next_due.load(SeqCst) && t < self.next_due.fetch_min(t, SeqCst) {
            self.not_empty.notify_all();
            // The broker's ticker runs it on time even if nobody calls in.
            self.ticker.schedule(t);
        }
    }

    /// Runs due timers: promotes delayed messages, expires leases. Cheap (one
    /// load) until the clock reaches the earliest deadline.
    #[inline]
    pub(crate) fn maintain(&self, now: u64) {
        if now >= self.next_due.load(SeqCst) {
            self.maintain_slow(now);
        }
    }

    /// [`maintain`](Self::maintain), reading the clock only if a timer is pending.
    #[inline]
    fn maintain_lazy(&self, now: &mut LazyNow<'_>) {
        let due = self.next_due.load(SeqCst);
        if due != u64::MAX && now.get() >= due {
            self.maintain_slow(now.get());
        }
    }

    /// [`maintain`](Self::maintain), looking at the coarse clock first (cheaper;
    /// it lags the precise one by up to a tick, so due timers may run that much
    /// later, never earlier).
    #[inline]
    fn maintain_coarse(&self) {
        let due = self.next_due.load(SeqCst);
        if due != u64::MAX && self.clock.now_coarse() >= due {
            self.maintain_slow(self.clock.now());
        }
    }

    #[cold]
    fn maintain_slow(&self, now: u64) {
        // Someone else runs them: they will be done shortly.
        if let Some(_g) = self.maint.try_lock() {
            self.run_timers(now);
        }
    }

    /// Runs due timers, waiting for a concurrent run to finish first, then sweeps
    /// expired messages: when this returns, everything due at `now` is done (a
    /// manual clock's `advance` relies on it for watched queues).
    pub(crate) fn maintain_sync(&self, now: u64) {
        {
            let _g = self.maint.lock();
            self.run_timers(now);
        }
        self.sweep_expired(now);
    }

    fn run_timers(&self, now: u64) {
        // Reset first, then scan, then lower: a deadline added concurrently is
        // either seen by the scan or lowers `next_due` itself afterwards.
        self.next_due.store(u64::MAX, SeqCst);
        let home = home_shard();
        let mut min = u64::MAX;
        let mut due = Vec::new();
        min = min.min(self.delayed.lock().due(now, &mut due));
        for node in due {
            bump(&self.c(home).promoted, 1);
            self.push_ready(node, home, true);
        }
        let mut expired = Vec::new();
        for shard in self.leases.iter() {
            min = min.min(shard.lock().expire(now, &mut expired));
        }
        for node in expired {
            bump(&self.c(home).lease_expired, 1);
            self.requeue(node, None, "lease expired", home, now);
        }
        self.note_due(min);
    }

    /// Ids below `next` were used before a restart: never hand them out again.
    pub(crate) fn continue_ids(&self, next: u64) {
        self.ids.fetch_max(next, Relaxed);
        // Recovered from the journal: durably used already.
        self.ids_durable.fetch_max(next, AcqRel);
    }

    /// Puts back a message found by recovery (already in the journal): never
    /// refused; later ids continue after its id. A message that has used up its
    /// `max_deliveries` (its last delivery's lease was ended by the restart, as
    /// by a lease expiry) is dead-lettered instead of delivered again.
    pub(crate) fn restore(&self, node: Node, deliver_at: Option<u64>) {
        self.continue_ids(node.id + 1);
        self.ns.msgs.force_take(1);
        self.ns.bytes.force_take(node.size);
        self.cap_msgs.force_take(1);
        self.cap_bytes.force_take(node.size);
        let home = home_shard();
        let d = node.deliveries.load(Relaxed);
        if let Some(max) = self.opts.max_deliveries.filter(|max| d >= *max) {
            let reason =
                format!("lease ended by a restart; delivered {d} times (max_deliveries {max})");
            return self.dead_letter(Arc::new(node), &reason, home);
        }
        let due = deliver_at.filter(|d| *d > self.clock.now());
        self.enqueue(Arc::new(node), due, home, true);
    }

    fn expire(&self, node: &Node, home: usize) {
        bump(&self.c(home).expired, 1);
        self.release(node, home);
        self.record_removed(node, RemoveReason::Expired);
    }

    /// Pops the next ready message, highest priority first, skipping expired ones.
    #[inline]
    fn take_one(&self, home: usize, now: &mut LazyNow<'_>) -> Option<Arc<Node>> {
        let mask = self.used_prios.load(Acquire);
        if mask == 0 {
            return None;
        }
        for p in (0..PRIORITIES).rev() {
            if mask & (1 << p) == 0 {
                continue;
            }
            let Some(lane) = self.lanes[p].get() else {
                continue;
            };
            while let Some(node) = lane.pop(home) {
                if node.expires_at != u64::MAX && node.expired(now.get()) {
                    bump(&self.c(home).popped_expired, 1);
                    self.expire(&node, home);
                    pool::recycle(node);
                    continue;
                }
                return Some(node);
            }
        }
        None
    }

    /// Hands a taken message out, as a lease or auto-acked. It is counted (and
    /// an auto-acked one's room given back) in `taken`, for [`Self::count_taken`].
    #[inline]
    fn deliver(
        self: &Arc<Self>,
        node: Arc<Node>,
        auto_ack: bool,
        home: usize,
        now: &mut LazyNow<'_>,
        taken: &mut Taken,
    ) -> Received {
        let c = self.c(home);
        taken.n += 1;
        // Only the thread that popped the node writes its count (a stale delivery
        // of the same message no longer can): a plain load and store suffice.
        let d = node.deliveries.load(Relaxed) + 1;
        node.deliveries.store(d, Relaxed);
        if d > 1 {
            bump(&c.redelivered, 1);
        }
        if auto_ack {
            taken.bytes += node.size;
            self.record_removed(&node, RemoveReason::Acked);
            return Received {
                node,
                lease: None,
                delivery_count: d,
            };
        }
        self.record_delivered(&node, d);
        let shard = home & self.mask;
        let deadline = now.get().saturating_add(nanos(self.opts.lease_time));
        let token = self.leases[shard].lock().insert(node.clone(), deadline);
        self.note_due(deadline);
        Received {
            node,
            lease: Some(HeldLease {
                queue: self.clone(),
                key: LeaseKey { shard, token },
            }),
            delivery_count: d,
        }
    }

    /// Counts what [`Self::deliver`] handed out, once per receive call: two
    /// counter bumps for a whole batch; auto-acked messages' room is given back.
    fn count_taken(&self, auto_ack: bool, home: usize, taken: Taken) {
        let c = self.c(home);
        if auto_ack {
            bump(&c.taken_auto, taken.n);
            bump(&c.bytes_out, taken.bytes);
            self.ns.msgs.give(taken.n);
            self.ns.bytes.give(taken.bytes);
            self.unadmit(taken.n, taken.bytes);
        } else {
            bump(&c.taken_leased, taken.n);
        }
    }

    /// Receives up to `max` messages, handing each to `out` (at least one unless
    /// the wait ends first); also returns (with nothing) once `cancel` is set
    /// and the queue's waiters are woken (see [`QueueCore::interrupt`]).
    /// Returns how many it handed over. A watched queue's descriptor is
    /// brought up to date before it returns.
    pub(crate) fn receive_until<F: FnMut(Received)>(
        self: &Arc<Self>,
        max: usize,
        wait: Wait,
        auto_ack: bool,
        cancel: Option<&AtomicBool>,
        out: F,
    ) -> Result<usize> {
        let r = self.receive_loop(max, wait, auto_ack, cancel, out);
        self.watch_refresh();
        r
    }

    fn receive_loop<F: FnMut(Received)>(
        self: &Arc<Self>,
        max: usize,
        wait: Wait,
        auto_ack: bool,
        cancel: Option<&AtomicBool>,
        mut out: F,
    ) -> Result<usize> {
        if max == 0 {
            return Err(Error::InvalidArgument("max must be at least 1".into()));
        }
        let home = home_shard();
        let deadline = match wait {
            Wait::For(d) => Some(self.clock.now().saturating_add(nanos(d))),
            _ => None,
        };
        let mut backoff = Backoff::new();
        let mut notified = false;
        loop {
            self.check_open()?;
            if cancel.is_some_and(|c| c.load(SeqCst)) {
                // Stopped: take nothing more (a pool's stop() means exactly that).
                if notified {
                    self.not_empty.notify_one();
                }
                return Ok(0);
            }
            let mut now = LazyNow::new(&*self.clock);
            self.maintain_lazy(&mut now);
            if let Some(first) = self.take_one(home, &mut now) {
                let mut taken = Taken::default();
                out(self.deliver(first, auto_ack, home, &mut now, &mut taken));
                while (taken.n as usize) < max {
                    let Some(node) = self.take_one(home, &mut now) else {
                        break;
                    };
                    out(self.deliver(node, auto_ack, home, &mut now, &mut taken));
                }
                let n = taken.n as usize;
                self.count_taken(auto_ack, home, taken);
                return Ok(n);
            }
            let timed_out = deadline.is_some_and(|dl| now.get() >= dl);
            if matches!(wait, Wait::Try) || timed_out {
                if notified {
                    // We consumed a wake-up meant for whoever takes a message: pass it on.
                    self.not_empty.notify_one();
                }
                return Ok(0);
            }
            if !backoff.is_completed() {
                backoff.snooze();
                continue;
            }
            let t = self.not_empty.prepare();
            if let Some(node) = self.take_one(home, &mut now) {
                self.not_empty.cancel(t);
                let mut taken = Taken::default();
                out(self.deliver(node, auto_ack, home, &mut now, &mut taken));
                self.count_taken(auto_ack, home, taken);
                return Ok(1);
            }
            if self.is_closed() || cancel.is_some_and(|c| c.load(SeqCst)) {
                self.not_empty.cancel(t);
                continue;
            }
            let wake_at = deadline.unwrap_or(u64::MAX).min(self.next_due.load(SeqCst));
            // The clock is read again after `prepare`: a clock moved (and its
            // wake-up sent) since `now` was read would otherwise be missed, and a
            // manual clock's waiter would sleep for good.
            let fresh = self.clock.now();
            if fresh >= wake_at {
                self.not_empty.cancel(t);
                continue;
            }
            let limit = if wake_at == u64::MAX {
                None
            } else {
                self.clock.park_limit(wake_at.saturating_sub(fresh).max(1))
            };
            notified = self.not_empty.wait(t, limit);
            backoff = Backoff::new();
        }
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.check_fork()?;
        self.storage.flush()
    }
}

/// Messages one receive call handed out, counted at its end.
#[derive(Default)]
struct Taken {
    n: u64,
    /// Their size, when auto-acked.
    bytes: u64,
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
