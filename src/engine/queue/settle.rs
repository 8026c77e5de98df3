//! After delivery: ack / nack / give back / extend a lease, requeue (now or
//! after a delay), dead-letter after `max_deliveries`.

use super::*;

/// Which lease a consumer holds: its lease-table shard and its token there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseKey {
    pub(crate) shard: usize,
    pub(crate) token: u64,
}

/// A lease a receive handed out: the queue to settle it with, and its key.
#[derive(Debug)]
pub(crate) struct HeldLease {
    pub(crate) queue: Arc<QueueCore>,
    pub(crate) key: LeaseKey,
}

/// What a receive hands out (the API's `Delivery` wraps it): the message, its
/// lease (`None` when auto-acked, so an auto-ack receive touches no shared
/// reference count) and which delivery of it this is.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) node: Arc<Node>,
    pub(crate) lease: Option<HeldLease>,
    pub(crate) delivery_count: u32,
}

/// How a lease is settled.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Settle<'a> {
    /// Done: the message is removed.
    Ack,
    /// Back to the queue (after `delay` nanoseconds, if given), or to the
    /// dead-letter queue with `reason` if this was its last allowed delivery.
    Nack { delay: Option<u64>, reason: &'a str },
}

impl QueueCore {
    /// Puts a message that was leased back: ready now, later, or to the dead-letter
    /// queue once it has been delivered `max_deliveries` times.
    pub(super) fn requeue(
        &self,
        node: Arc<Node>,
        delay: Option<u64>,
        why: &str,
        home: usize,
        now: u64,
    ) {
        let d = node.deliveries.load(Relaxed);
        if let Some(max) = self.opts.max_deliveries {
            if d >= max {
                let reason = format!("{why}; delivered {d} times (max_deliveries {max})");
                return self.dead_letter(node, &reason, home);
            }
        }
        self.record_delivered(&node, d);
        match delay.filter(|d| *d > 0) {
            Some(d) => {
                bump(&self.c(home).requeued_delayed, 1);
                self.delay(node, now.saturating_add(d));
            }
            None => {
                bump(&self.c(home).requeued, 1);
                self.push_ready(node, home, true);
            }
        }
    }

    /// Moves a message to the dead-letter queue (or drops it if there is none).
    /// A persistent message's move is one journal unit (a `Group` of the dead
    /// letter's `Enqueued` and the original's `Removed`): after a crash the
    /// message is in exactly one of the two queues.
    pub(super) fn dead_letter(&self, node: Arc<Node>, reason: &str, home: usize) {
        bump(&self.c(home).dead_lettered, 1);
        let (id, size, persistent) = (node.id, node.size, node.persistent);
        match self.dlq.as_ref().filter(|q| !q.is_closed()) {
            Some(dlq) => self.move_to(dlq, node, reason, home),
            None => {
                // Nobody to tell (a nack or a timer dropped it): at worst the
                // message comes back after a restart.
                let _ = self.record_removed_id(id, persistent, RemoveReason::DeadLettered);
            }
        }
        self.release_size(size, home);
    }

    /// Queues a dead letter of `node` in `dlq` and records the move.
    pub(super) fn move_to(&self, dlq: &QueueCore, node: Arc<Node>, reason: &str, home: usize) {
        let mut node = Arc::try_unwrap(node).unwrap_or_else(|shared| Node {
            body: shared.body.clone(),
            extra: shared.extra.clone(),
            deliveries: AtomicU32::new(shared.deliveries.load(Relaxed)),
            ..*shared
        });
        let mut extra = node.extra.take().map(|e| *e).unwrap_or_default();
        let headers = &mut extra.headers;
        headers.insert("x-dead-letter-reason".into(), reason.as_bytes().to_vec());
        headers.insert("x-dead-letter-queue".into(), self.name.as_bytes().to_vec());
        headers.insert("x-original-id".into(), node.id.to_string().into_bytes());
        headers.insert(
            "x-delivery-count".into(),
            node.deliveries.load(Relaxed).to_string().into_bytes(),
        );
        let now = dlq.clock.now();
        let original = node.id;
        // A storage that cannot reserve an id cannot record the move either:
        // the dead letter is then kept in memory only (as below).
        let id = dlq
            .next_id()
            .unwrap_or_else(|_| dlq.ids.fetch_add(1, Relaxed));
        let moved = Node {
            id,
            size: crate::types::message::size_of(
                &node.body,
                headers,
                extra.name.as_deref(),
                extra.correlation_id.as_deref(),
            ),
            extra: Some(Box::new(extra)),
            enqueued_at: now,
            expires_at: dlq
                .opts
                .default_ttl
                .map_or(u64::MAX, |t| now.saturating_add(nanos(t))),
            deliveries: AtomicU32::new(0),
            ..node
        };
        if moved.persistent {
            // The message already left its source queue in memory; if the record
            // fails, at worst it comes back in its source queue after a restart.
            let _ = self.record(Record::Group(&[
                Record::Enqueued {
                    namespace: &dlq.ns.name,
                    queue: &dlq.name,
                    message: &moved,
                    deliver_at: None,
                },
                Record::Removed {
                    namespace: &self.ns.name,
                    queue: &self.name,
                    id: original,
                    reason: RemoveReason::DeadLettered,
                },
            ]));
        }
        dlq.force_enqueue(Arc::new(moved), home);
    }

    /// Enqueues a message moved here (dead letters, recorded by the mover):
    /// never refused, never lost.
    pub(super) fn force_enqueue(&self, node: Arc<Node>, home: usize) {
        self.ns.msgs.force_take(1);
        self.ns.bytes.force_take(node.size);
        self.cap_msgs.force_take(1);
        self.cap_bytes.force_take(node.size);
        self.enqueue(node, None, home, true);
    }

    pub(super) fn lease_shard(&self, shard: usize) -> &Mutex<LeaseTable> {
        &self.leases[shard]
    }

    /// Acks, or nacks with an optional delay.
    pub(crate) fn settle(&self, id: u64, lease: LeaseKey, how: Settle<'_>) -> Result<()> {
        // Run due timers first, so a lease that has run out cannot be settled.
        // The coarse clock decides whether to look (it never runs ahead of the
        // precise one): a settle less than a clock tick after its deadline may
        // still be taken, as if it came first — never a settle of a message
        // already handed to someone else, since the lease table decides.
        // A closed queue (its broker closed, or it was deleted) settles nothing:
        // the lease stays, so the message comes back after a reopen, and the
        // caller is told so instead of a false OK.
        self.check_open()?;
        self.maintain_coarse();
        let node = self.take_lease(id, lease)?;
        let home = home_shard();
        let c = self.c(home);
        match how {
            Settle::Ack => {
                bump(&c.settled_ack, 1);
                self.release(&node, home);
                // An ack the journal could not record is no ack: say so.
                let recorded =
                    self.record_removed_id(node.id, node.persistent, RemoveReason::Acked);
                pool::recycle(node);
                recorded?;
            }
            Settle::Nack { delay, reason } => {
                bump(&c.settled_nack, 1);
                self.requeue(node, delay, reason, home, self.clock.now());
            }
        }
        Ok(())
    }

    /// Ends a lease held by `lease`, handing its message over.
    pub(super) fn take_lease(&self, id: u64, lease: LeaseKey) -> Result<Arc<Node>> {
        self.lease_shard(lease.shard)
            .lock()
            .remove(id, lease.token)
            .ok_or(Error::LeaseExpired { id })
    }

    /// Returns a leased message unprocessed (its consumer is going away): the
    /// delivery does not count, so it can never dead-letter this way.
    pub(crate) fn give_back(&self, id: u64, lease: LeaseKey) -> Result<()> {
        self.check_fork()?;
        let node = self.take_lease(id, lease)?;
        let home = home_shard();
        let d = node.deliveries.fetch_sub(1, Relaxed) - 1;
        self.record_delivered(&node, d);
        bump(&self.c(home).settled_nack, 1);
        bump(&self.c(home).requeued, 1);
        self.push_ready(node, home, true);
        Ok(())
    }

    /// Renews a lease: it now ends `by` from now. Returns the new deadline.
    pub(crate) fn extend(&self, id: u64, lease: LeaseKey, by: u64) -> Result<u64> {
        self.check_open()?;
        let now = self.clock.now();
        self.maintain(now);
        let deadline = now.saturating_add(by);
        if self
            .lease_shard(lease.shard)
            .lock()
            .extend(id, lease.token, deadline)
        {
            self.note_due(deadline);
            Ok(deadline)
        } else {
            Err(Error::LeaseExpired { id })
        }
    }

    pub(crate) fn lease_deadline(&self, id: u64, lease: LeaseKey) -> Option<u64> {
        if self.origin.inherited() {
            return None;
        }
        self.lease_shard(lease.shard)
            .lock()
            .deadline(id, lease.token)
    }
}
