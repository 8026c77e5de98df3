//! The queue API: [`Queue`], its [`QueueOptions`], [`Delivery`] and [`QueueStats`].

use crate::clock::nanos;
use crate::engine::{Node, QueueCore};
use crate::error::{validate_name, Error, Result};
use crate::message::{Message, MessageView, DEFAULT_PRIORITY, MAX_PRIORITY};
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::Duration;

/// What a send does when the queue is at capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFull {
    /// Wait until there is room (or the queue closes).
    #[default]
    Block,
    /// Fail at once with [`Error::Full`].
    Reject,
    /// Wait at most this long, then fail with [`Error::Timeout`].
    Timeout(Duration),
}

/// How long a receive waits for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Do not wait.
    Try,
    /// Wait until a message arrives (or the queue closes).
    Forever,
    /// Wait at most this long (measured on the broker's clock).
    For(Duration),
}

/// Per-queue options. Build with [`QueueOptions::default`] and the setters.
///
/// ```
/// use libqueue::QueueOptions;
/// use std::time::Duration;
/// let o = QueueOptions::default()
///     .max_messages(10_000)
///     .lease_time(Duration::from_secs(5))
///     .max_deliveries(3)
///     .dead_letter_queue("orders.dlq");
/// assert_eq!(o.max_deliveries, Some(3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// Capacity in messages (ready + delayed + leased); `None`: unbounded.
    pub max_messages: Option<u64>,
    /// Capacity in bytes; `None`: unbounded.
    pub max_bytes: Option<u64>,
    /// What [`Queue::send`] does when full (each call may choose with [`Queue::send_with`]).
    pub on_full: OnFull,
    /// TTL of messages that set none.
    pub default_ttl: Option<Duration>,
    /// Delay of messages that set none.
    pub default_delay: Option<Duration>,
    /// Priority of messages that set none.
    pub default_priority: u8,
    /// How long a received message stays leased before it is redelivered.
    pub lease_time: Duration,
    /// Deliveries after which a message that is nacked or whose lease expires goes
    /// to the dead-letter queue (or is dropped, counted as dead-lettered, if there
    /// is none). `None`: redeliver forever.
    pub max_deliveries: Option<u32>,
    /// Dead-letter queue (same namespace; created with the queue if missing).
    pub dead_letter_queue: Option<String>,
    /// Whether messages that say nothing are persistent.
    pub persistent: bool,
    /// One lane instead of one per shard: delivery in queue-wide send order
    /// (within a priority), at the cost of scaling with cores.
    pub strict_fifo: bool,
    /// Number of shards (lanes per priority); default: the number of CPUs.
    pub shards: Option<usize>,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            max_messages: None,
            max_bytes: None,
            on_full: OnFull::Block,
            default_ttl: None,
            default_delay: None,
            default_priority: DEFAULT_PRIORITY,
            lease_time: Duration::from_secs(30),
            max_deliveries: None,
            dead_letter_queue: None,
            persistent: false,
            strict_fifo: false,
            shards: None,
        }
    }
}

macro_rules! setter {
    ($(#[$m:meta])* $f:ident: $t:ty => $v:expr) => {
        $(#[$m])*
        pub fn $f(mut self, v: $t) -> Self {
            self.$f = $v(v);
            self
        }
    };
}

impl QueueOptions {
    setter!(/// Sets the capacity in messages.
        max_messages: u64 => Some);
    setter!(/// Sets the capacity in bytes.
        max_bytes: u64 => Some);
    setter!(/// Sets the full policy.
        on_full: OnFull => std::convert::identity);
    setter!(/// Sets the default TTL.
        default_ttl: Duration => Some);
    setter!(/// Sets the default delay.
        default_delay: Duration => Some);
    setter!(/// Sets the default priority.
        default_priority: u8 => std::convert::identity);
    setter!(/// Sets the lease time.
        lease_time: Duration => std::convert::identity);
    setter!(/// Sets the maximum deliveries.
        max_deliveries: u32 => Some);
    setter!(/// Sets the persistence default.
        persistent: bool => std::convert::identity);
    setter!(/// Asks for strict queue-wide FIFO.
        strict_fifo: bool => std::convert::identity);
    setter!(/// Sets the number of shards.
        shards: usize => Some);

    /// Sets the dead-letter queue.
    pub fn dead_letter_queue(mut self, name: impl Into<String>) -> Self {
        self.dead_letter_queue = Some(name.into());
        self
    }

    /// The options as `key=value` lines (the journal's queue definition record).
    pub(crate) fn to_text(&self) -> String {
        let ms = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).to_string();
        let mut out = Vec::new();
        let mut kv = |k: &str, v: String| out.push(format!("{k}={v}"));
        if let Some(v) = self.max_messages {
            kv("max_messages", v.to_string());
        }
        if let Some(v) = self.max_bytes {
            kv("max_bytes", v.to_string());
        }
        kv(
            "on_full",
            match self.on_full {
                OnFull::Block => "block".into(),
                OnFull::Reject => "reject".into(),
                OnFull::Timeout(d) => format!("timeout_ns:{}", ms(d)),
            },
        );
        if let Some(v) = self.default_ttl {
            kv("default_ttl_ns", ms(v));
        }
        if let Some(v) = self.default_delay {
            kv("default_delay_ns", ms(v));
        }
        kv("default_priority", self.default_priority.to_string());
        kv("lease_time_ns", ms(self.lease_time));
        if let Some(v) = self.max_deliveries {
            kv("max_deliveries", v.to_string());
        }
        if let Some(v) = &self.dead_letter_queue {
            kv("dead_letter_queue", v.clone());
        }
        kv("persistent", self.persistent.to_string());
        kv("strict_fifo", self.strict_fifo.to_string());
        if let Some(v) = self.shards {
            kv("shards", v.to_string());
        }
        out.join("\n")
    }

    /// Parses [`to_text`](Self::to_text). Unknown keys and malformed values are
    /// skipped (the default stays): a definition never makes a journal unreadable.
    pub(crate) fn from_text(text: &str) -> Result<Self> {
        let mut o = QueueOptions::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let r: Result<(), ()> = (|| {
                let n = || v.parse::<u64>().map_err(|_| ());
                let b = || v.parse::<bool>().map_err(|_| ());
                let ns = || n().map(Duration::from_nanos);
                match k {
                    "max_messages" => o.max_messages = Some(n()?.max(1)),
                    "max_bytes" => o.max_bytes = Some(n()?.max(1)),
                    "on_full" => {
                        o.on_full = match v {
                            "block" => OnFull::Block,
                            "reject" => OnFull::Reject,
                            t => OnFull::Timeout(Duration::from_nanos(
                                t.strip_prefix("timeout_ns:")
                                    .and_then(|x| x.parse().ok())
                                    .ok_or(())?,
                            )),
                        }
                    }
                    "default_ttl_ns" => o.default_ttl = Some(ns()?),
                    "default_delay_ns" => o.default_delay = Some(ns()?),
                    "default_priority" => o.default_priority = n()?.min(9) as u8,
                    "lease_time_ns" => o.lease_time = ns()?.max(Duration::from_nanos(1)),
                    "max_deliveries" => {
                        o.max_deliveries = Some(n()?.clamp(1, u32::MAX as u64) as u32)
                    }
                    "dead_letter_queue" if crate::validate_name(v).is_ok() => {
                        o.dead_letter_queue = Some(v.to_string())
                    }
                    "persistent" => o.persistent = b()?,
                    "strict_fifo" => o.strict_fifo = b()?,
                    "shards" => o.shards = Some(n()?.max(1) as usize),
                    _ => {}
                }
                Ok(())
            })();
            let _ = r; // a malformed value keeps the default
        }
        Ok(o)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.to_string()));
        if self.max_messages == Some(0) {
            return bad("max_messages must be at least 1");
        }
        if self.max_bytes == Some(0) {
            return bad("max_bytes must be at least 1");
        }
        if self.default_priority > MAX_PRIORITY {
            return bad("default_priority must be 0..=9");
        }
        if self.lease_time.is_zero() {
            return bad("lease_time must be positive");
        }
        if self.max_deliveries == Some(0) {
            return bad("max_deliveries must be at least 1");
        }
        if self.shards == Some(0) {
            return bad("shards must be at least 1");
        }
        if let Some(d) = &self.dead_letter_queue {
            validate_name(d)?;
        }
        Ok(())
    }
}

/// Exact statistics of one queue.
///
/// Gauges (`ready`, `leased`, `delayed`, `bytes`) are what the queue holds now;
/// the rest are totals since the queue was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Messages ready to be received.
    pub ready: u64,
    /// Messages leased to consumers (received, not yet acked).
    pub leased: u64,
    /// Messages waiting for their delay to pass.
    pub delayed: u64,
    /// Bytes held (ready + leased + delayed).
    pub bytes: u64,
    /// Age of the oldest message held, if any.
    pub oldest_age: Option<Duration>,
    /// Messages accepted by send (dead letters moved in included).
    pub sent: u64,
    /// Deliveries handed to consumers (redeliveries included).
    pub received: u64,
    /// Messages acked (auto-acked included).
    pub acked: u64,
    /// Nacks.
    pub nacked: u64,
    /// Deliveries of a message delivered before.
    pub redelivered: u64,
    /// Messages dropped because their TTL passed.
    pub expired: u64,
    /// Messages moved to the dead-letter queue (or dropped) after max deliveries.
    pub dead_lettered: u64,
    /// Messages cancelled by id.
    pub cancelled: u64,
    /// Messages removed by purge.
    pub purged: u64,
}

impl QueueStats {
    /// Messages held in all: ready + leased + delayed.
    pub fn depth(&self) -> u64 {
        self.ready + self.leased + self.delayed
    }

    pub(crate) fn add(&mut self, o: &QueueStats) {
        self.ready += o.ready;
        self.leased += o.leased;
        self.delayed += o.delayed;
        self.bytes += o.bytes;
        self.oldest_age = match (self.oldest_age, o.oldest_age) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.sent += o.sent;
        self.received += o.received;
        self.acked += o.acked;
        self.nacked += o.nacked;
        self.redelivered += o.redelivered;
        self.expired += o.expired;
        self.dead_lettered += o.dead_lettered;
        self.cancelled += o.cancelled;
        self.purged += o.purged;
    }
}

/// A handle on one queue. Cheap to clone; `Send + Sync`: share it between
/// producer and consumer threads.
#[derive(Clone, Debug)]
pub struct Queue {
    pub(crate) core: Arc<QueueCore>,
}

impl Queue {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The namespace it lives in.
    pub fn namespace(&self) -> &str {
        &self.core.ns.name
    }

    /// Its options.
    pub fn options(&self) -> &QueueOptions {
        &self.core.opts
    }

    /// Sends a message; when the queue is full, does what its `on_full` option says.
    /// Returns the message id.
    pub fn send(&self, msg: Message) -> Result<u64> {
        self.send_with(msg, self.core.opts.on_full)
    }

    /// Sends a message with an explicit full policy.
    pub fn send_with(&self, msg: Message, on_full: OnFull) -> Result<u64> {
        self.core.send_one(msg, on_full)
    }

    /// Sends a copy of `body` as a plain message (nothing else set), with the
    /// queue's full policy. Cheaper than `send(Message::new(body.to_vec()))`
    /// for a steady stream of same-sized bodies: the bytes are copied into the
    /// buffer of a message already consumed (up to 4 KiB) instead of a new one.
    ///
    /// ```
    /// use libqueue::{Broker, MessageView};
    /// let q = Broker::new().default_queue()?;
    /// q.send_bytes(b"reading 42")?;
    /// assert_eq!(q.try_receive()?.unwrap().body(), b"reading 42");
    /// # Ok::<(), libqueue::Error>(())
    /// ```
    pub fn send_bytes(&self, body: &[u8]) -> Result<u64> {
        self.core.send_copy(body, self.core.opts.on_full)
    }

    /// Sends several messages: all are accepted or none is (capacity and quotas are
    /// reserved for the whole batch). Returns their ids in order.
    ///
    /// With a data directory the batch's persistent messages are journaled as
    /// one record (synced once under `SyncMode::Always`): after a crash at any
    /// instant the batch is recovered whole or not at all. A journal error
    /// refuses the whole batch.
    pub fn send_batch(&self, msgs: impl IntoIterator<Item = Message>) -> Result<Vec<u64>> {
        self.core
            .send(msgs.into_iter().collect(), self.core.opts.on_full)
    }

    /// Sends several messages with an explicit full policy.
    pub fn send_batch_with(
        &self,
        msgs: impl IntoIterator<Item = Message>,
        on_full: OnFull,
    ) -> Result<Vec<u64>> {
        self.core.send(msgs.into_iter().collect(), on_full)
    }

    /// Receives one message, leased: `Ok(None)` if none came within `wait`.
    pub fn receive_with(&self, wait: Wait) -> Result<Option<Delivery>> {
        self.one(wait, false)
    }

    fn one(&self, wait: Wait, auto_ack: bool) -> Result<Option<Delivery>> {
        let mut got = None;
        self.core.receive(1, wait, auto_ack, |d| got = Some(d))?;
        Ok(got)
    }

    fn many(&self, max: usize, wait: Wait, auto_ack: bool) -> Result<Vec<Delivery>> {
        let mut out = Vec::with_capacity(max.min(256));
        self.core.receive(max, wait, auto_ack, |d| out.push(d))?;
        Ok(out)
    }

    /// Receives a message if one is ready now (leased).
    pub fn try_receive(&self) -> Result<Option<Delivery>> {
        self.receive_with(Wait::Try)
    }

    /// Waits for a message (leased). Fails only with [`Error::Closed`].
    pub fn receive(&self) -> Result<Delivery> {
        self.receive_with(Wait::Forever)?.ok_or(Error::Closed)
    }

    /// Waits at most `timeout` for a message (leased).
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Option<Delivery>> {
        self.receive_with(Wait::For(timeout))
    }

    /// Receives up to `max` messages (leased): waits as `wait` says for the first,
    /// then takes what else is ready. Empty if nothing came.
    pub fn receive_batch(&self, max: usize, wait: Wait) -> Result<Vec<Delivery>> {
        self.many(max, wait, false)
    }

    /// Receives one message and acks it at once (at-most-once delivery).
    pub fn receive_auto_ack(&self, wait: Wait) -> Result<Option<Delivery>> {
        self.one(wait, true)
    }

    /// Receives up to `max` messages, acked at once.
    pub fn receive_batch_auto_ack(&self, max: usize, wait: Wait) -> Result<Vec<Delivery>> {
        self.many(max, wait, true)
    }

    /// Up to `max` ready messages in the order they would be delivered, without
    /// leasing them.
    pub fn peek(&self, max: usize) -> Result<Vec<Peeked>> {
        Ok(self.core.peek(max)?.into_iter().map(Peeked).collect())
    }

    /// Removes a ready or delayed message by id. A leased message cannot be
    /// cancelled ([`Error::InvalidState`]); an unknown id is [`Error::NotFound`].
    pub fn cancel(&self, id: u64) -> Result<()> {
        self.core.cancel(id)
    }

    /// Removes every ready and delayed message; leased ones stay with their
    /// consumers. Returns how many were removed.
    pub fn purge(&self) -> Result<u64> {
        if self.core.is_closed() {
            return Err(Error::Closed);
        }
        self.core.check_fork()?;
        Ok(self.core.purge(crate::store::RemoveReason::Purged))
    }

    /// Exact statistics. In a forked child, for a queue inherited from the
    /// parent: its counters as they were at the fork (nothing else is touched).
    pub fn stats(&self) -> QueueStats {
        self.core.stats()
    }

    /// [`Error::Forked`] if this handle was inherited through `fork()`.
    pub(crate) fn check_fork(&self) -> Result<()> {
        self.core.check_fork()
    }

    /// Makes every persistent message sent so far durable (a barrier).
    pub fn flush(&self) -> Result<()> {
        self.core.flush()
    }

    /// A file descriptor that is readable exactly when a receive would find a
    /// message: wait on it with epoll / poll / select / asyncio (`add_reader`),
    /// then receive with [`Wait::Try`] until it returns `None` (which clears it).
    /// Delayed messages and expired leases make it readable when they fall due.
    /// Level-triggered; owned by the queue (do not close it); Linux only.
    #[cfg(target_os = "linux")]
    pub fn fd(&self) -> Result<std::os::fd::RawFd> {
        self.core.pollable_fd()
    }

    /// Whether the queue was closed (its broker closed or the queue was deleted).
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }
}

/// A received message. Its body is borrowed from the engine (no copy).
///
/// A leased delivery must be settled with [`ack`](Delivery::ack) or
/// [`nack`](Delivery::nack); if it is dropped unsettled, the lease runs out and the
/// message is redelivered. Auto-acked deliveries need nothing.
#[derive(Debug)]
pub struct Delivery {
    /// Taken only by `drop`, which hands it to the node recycler.
    node: ManuallyDrop<Arc<Node>>,
    /// The queue (to settle with), the lease shard and token; None when auto-acked,
    /// so an auto-ack receive touches no shared reference count.
    lease: Option<(Arc<QueueCore>, usize, u64)>,
    delivery_count: u32,
}

impl MessageView for Delivery {
    fn node(&self) -> &Node {
        &self.node
    }
}

impl Delivery {
    pub(crate) fn new(
        node: Arc<Node>,
        lease: Option<(Arc<QueueCore>, usize, u64)>,
        delivery_count: u32,
    ) -> Self {
        Delivery {
            node: ManuallyDrop::new(node),
            lease,
            delivery_count,
        }
    }

    /// Which delivery of the message this is (1 the first time).
    pub fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    /// The queue it came from (leased deliveries; an auto-acked one keeps no
    /// reference to its queue).
    pub fn queue_name(&self) -> Option<&str> {
        self.lease.as_ref().map(|l| l.0.name.as_str())
    }

    /// The message id and lease (shard, token), for settling on its behalf.
    pub(crate) fn lease_ref(&self) -> Option<(u64, (usize, u64))> {
        self.lease
            .as_ref()
            .map(|(_, shard, token)| (self.node.id, (*shard, *token)))
    }

    /// Whether it is leased (false when received with auto-ack).
    pub fn is_leased(&self) -> bool {
        self.lease.is_some()
    }

    /// When the lease ends (clock nanoseconds), while it is held.
    pub fn lease_deadline(&self) -> Option<u64> {
        let (q, shard, token) = self.lease.as_ref()?;
        q.lease_deadline(self.node.id, (*shard, *token))
    }

    fn lease(&self) -> Result<(&QueueCore, (usize, u64))> {
        match &self.lease {
            Some((q, shard, token)) => Ok((q, (*shard, *token))),
            None => Err(Error::InvalidState(format!(
                "message {} was received with auto-ack; there is no lease to settle",
                self.node.id
            ))),
        }
    }

    /// Acknowledges: the message is done and removed. [`Error::LeaseExpired`] if the
    /// lease ran out first (the message went back to the queue).
    pub fn ack(self) -> Result<()> {
        let (q, l) = self.lease()?;
        q.settle(self.node.id, l, true, None, "")
    }

    /// Returns the message to the queue now (or to the dead-letter queue if it has
    /// been delivered `max_deliveries` times).
    pub fn nack(self) -> Result<()> {
        let (q, l) = self.lease()?;
        q.settle(self.node.id, l, false, None, "nacked")
    }

    /// Returns the message to the queue (after `delay`, if given), recording `reason`:
    /// if this was its last allowed delivery it goes to the dead-letter queue with
    /// `reason` in its `x-dead-letter-reason` header.
    pub fn nack_with(self, delay: Option<Duration>, reason: &str) -> Result<()> {
        let (q, l) = self.lease()?;
        q.settle(self.node.id, l, false, delay.map(nanos), reason)
    }

    /// Returns the message to the queue after `delay`.
    pub fn nack_after(self, delay: Duration) -> Result<()> {
        let (q, l) = self.lease()?;
        q.settle(self.node.id, l, false, Some(nanos(delay)), "nacked")
    }

    /// Renews the lease for the queue's lease time from now.
    pub fn extend(&self) -> Result<()> {
        let (q, _) = self.lease()?;
        self.extend_by(q.opts.lease_time)
    }

    /// Renews the lease so it ends `by` from now.
    pub fn extend_by(&self, by: Duration) -> Result<()> {
        if by.is_zero() {
            return Err(Error::InvalidArgument(
                "a lease extension must be positive".into(),
            ));
        }
        let (q, l) = self.lease()?;
        q.extend(self.node.id, l, nanos(by)).map(|_| ())
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // SAFETY: `node` is not used after this (we are in `drop`), and this is
        // the only place that takes it out of its `ManuallyDrop`.
        let node = unsafe { ManuallyDrop::take(&mut self.node) };
        crate::engine::node::pool::recycle(node);
    }
}

/// A message seen by [`Queue::peek`]: a snapshot, not leased.
#[derive(Debug, Clone)]
pub struct Peeked(Arc<Node>);

impl MessageView for Peeked {
    fn node(&self) -> &Node {
        &self.0
    }
}
