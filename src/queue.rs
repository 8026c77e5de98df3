//! The queue API: [`Queue`], its [`QueueOptions`], [`Delivery`] and [`QueueStats`].

use crate::clock::nanos;
use crate::engine::QueueCore;
use crate::error::{Error, Result};
use crate::types::Node;
use crate::types::{Message, MessageView, OnFull, QueueOptions, QueueStats, Wait};
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::Duration;

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
        self.core.send_one(msg, on_full, None)
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
        self.core.send_copy(body, self.core.opts.on_full, None)
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
            .send(msgs.into_iter().collect(), self.core.opts.on_full, None)
    }

    /// Sends several messages with an explicit full policy.
    pub fn send_batch_with(
        &self,
        msgs: impl IntoIterator<Item = Message>,
        on_full: OnFull,
    ) -> Result<Vec<u64>> {
        self.core.send(msgs.into_iter().collect(), on_full, None)
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

    /// Whether the queue of a leased delivery was closed (its broker closed or
    /// the queue deleted); false for an auto-acked one, which keeps no queue.
    pub(crate) fn queue_closed(&self) -> bool {
        self.lease.as_ref().is_some_and(|l| l.0.is_closed())
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
    /// lease ran out first (the message went back to the queue);
    /// [`Error::Closed`] if its queue was closed (broker closed, queue deleted):
    /// nothing is settled and, persistent, the message is back after a reopen;
    /// [`Error::Storage`] if the journal could not record the ack (the message
    /// may come back after a restart).
    ///
    /// The same holds for every way of settling or extending: after the broker
    /// is closed each returns [`Error::Closed`].
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
        crate::types::node::pool::recycle(node);
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
