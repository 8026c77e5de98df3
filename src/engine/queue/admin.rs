//! Operator operations on a queue: peek, cancel, purge, TTL sweeps, statistics,
//! close and destroy. Peek, cancel and purge drain ready lanes into the stash
//! (amortized: a drain moves what arrived since the last one); statistics and
//! TTL sweeps do not look at every message (see [`QueueCore::stats`]).

use super::*;

impl QueueCore {
    /// Removes expired ready and delayed messages if any may have expired.
    ///
    /// Ready ones are found through the expiry heaps (only messages with a
    /// TTL, by expiry): the cost is the expired messages (and the stale
    /// entries of messages that left otherwise), not the messages held.
    pub(crate) fn sweep_expired(&self, now: u64) {
        if self.min_expiry.load(SeqCst) > now {
            return;
        }
        // Reset first, then look, then lower: an expiry entered concurrently
        // is either seen below or lowers `min_expiry` itself afterwards.
        self.min_expiry.store(u64::MAX, SeqCst);
        let home = home_shard();
        let mut min = u64::MAX;
        let mut due = Vec::new();
        for heap in self.ttl.iter() {
            min = min.min(heap.lock().due(now, &mut due));
        }
        // By lane, so each lane's stash is taken once.
        due.sort_unstable_by_key(|&(id, p)| (p, id));
        for group in due.chunk_by(|a, b| a.1 == b.1) {
            let Some(lane) = self.lanes[group[0].1 as usize].get() else {
                continue;
            };
            let mut st = lane.stash();
            for &(id, _) in group {
                // Absent: it left the lane another way (a stale entry).
                if let Some(node) = st.remove(&id) {
                    if node.expired(now) {
                        bump(&self.c(home).removed_ready, 1);
                        self.expire(&node, home);
                    } else {
                        st.insert(id, node);
                    }
                }
            }
        }
        let mut dead = Vec::new();
        min = min.min(self.delayed.lock().take_expired(now, &mut dead));
        for node in dead {
            bump(&self.c(home).removed_delayed, 1);
            self.expire(&node, home);
        }
        if min < u64::MAX {
            self.min_expiry.fetch_min(min, SeqCst);
        }
        self.watch_refresh();
    }

    /// Moves every ready message into its lane's id-ordered stash, which
    /// consumers on any thread take from before the shards (see `Lane`).
    pub(crate) fn order_ready(&self) {
        for lane in self.lanes.iter().filter_map(|l| l.get()) {
            drop(lane.stash());
        }
    }

    /// Ready messages in delivery order (highest priority first, then by id),
    /// without leasing them.
    pub(crate) fn peek(&self, max: usize) -> Result<Vec<Arc<Node>>> {
        self.check_open()?;
        let now = self.clock.now();
        self.maintain(now);
        self.sweep_expired(now);
        let mut out = Vec::new();
        for p in (0..PRIORITIES).rev() {
            if out.len() >= max {
                break;
            }
            if let Some(lane) = self.lanes[p].get() {
                let st = lane.stash();
                out.extend(st.values().take(max - out.len()).cloned());
            }
        }
        Ok(out)
    }

    /// Cancels a ready or delayed message by id.
    pub(crate) fn cancel(&self, id: u64) -> Result<()> {
        let r = self.cancel_inner(id);
        self.watch_refresh();
        r
    }

    pub(super) fn cancel_inner(&self, id: u64) -> Result<()> {
        self.check_open()?;
        let home = home_shard();
        let c = self.c(home);
        let mut found = self
            .delayed
            .lock()
            .remove(id)
            .inspect(|_| bump(&c.removed_delayed, 1));
        if found.is_none() {
            for lane in self.lanes.iter().filter_map(|l| l.get()) {
                if let Some(n) = lane.stash().remove(&id) {
                    bump(&c.removed_ready, 1);
                    found = Some(n);
                    break;
                }
            }
        }
        match found {
            Some(node) => {
                bump(&c.cancelled, 1);
                self.release(&node, home);
                self.record_removed(&node, RemoveReason::Cancelled);
                Ok(())
            }
            None if self.leases.iter().any(|s| s.lock().contains(id)) => Err(Error::InvalidState(
                format!("message {id} is leased to a consumer; only its holder can ack or nack it"),
            )),
            None => Err(Error::NotFound(format!(
                "message {id} in queue {:?}",
                self.name
            ))),
        }
    }

    /// Removes every ready and delayed message (leased ones stay with their
    /// consumers). Returns how many were removed.
    pub(crate) fn purge(&self, reason: RemoveReason) -> u64 {
        let n = self.purge_inner(reason);
        self.watch_refresh();
        n
    }

    pub(super) fn purge_inner(&self, reason: RemoveReason) -> u64 {
        let home = home_shard();
        let c = self.c(home);
        let mut n = 0;
        for lane in self.lanes.iter().filter_map(|l| l.get()) {
            let all = std::mem::take(&mut *lane.stash());
            bump(&c.removed_ready, all.len() as u64);
            for node in all.into_values() {
                self.release(&node, home);
                self.record_removed(&node, reason);
                n += 1;
            }
        }
        // The expiry entries of what was ready are all stale now.
        for heap in self.ttl.iter() {
            let mut heap = heap.lock();
            if !heap.is_empty() {
                self.compact_expiry(&mut heap);
            }
        }
        let delayed = self.delayed.lock().drain();
        bump(&c.removed_delayed, delayed.len() as u64);
        for node in delayed {
            self.release(&node, home);
            self.record_removed(&node, reason);
            n += 1;
        }
        bump(&c.purged, n);
        n
    }

    /// Closes the queue: every waiter wakes with [`Error::Closed`].
    pub(crate) fn close(&self) {
        self.closed.store(true, SeqCst);
        self.not_empty.notify_all();
        self.not_full.notify_all();
        // A poller of the descriptor must learn it too (its receive then fails
        // with Closed): the descriptor stays readable from now on.
        self.watch_raise();
    }

    /// Closes the queue and gives back everything it holds (it was deleted).
    pub(crate) fn destroy(&self) {
        self.close();
        self.purge(RemoveReason::QueueDeleted);
        let mut held = Vec::new();
        for s in self.leases.iter() {
            s.lock().expire(u64::MAX, &mut held);
        }
        let home = home_shard();
        for node in held {
            bump(&self.c(home).lease_dropped, 1);
            self.release(&node, home);
            self.record_removed(&node, RemoveReason::QueueDeleted);
        }
    }

    /// Exact statistics (after running due timers and sweeping expired messages).
    ///
    /// O(shards) but for two parts: expired messages are found through the
    /// expiry heaps (see [`Self::sweep_expired`]: the cost is what expired),
    /// and `oldest_age` comes from a cache ([`Self::oldest_held`]) that one
    /// pass over the messages held refreshes only after a message has left.
    ///
    /// In a forked child (whose copy of the queue is the parent's as it was at
    /// the fork) only the counters are read: no timer runs, no lock is taken (a
    /// parent thread may have held it), `oldest_age` is `None`.
    pub(crate) fn stats(&self) -> QueueStats {
        let now = self.clock.now();
        let inherited = self.origin.inherited();
        if !inherited {
            self.maintain(now);
            self.sweep_expired(now);
        }
        let t = sum(&self.counters);
        let oldest = if inherited {
            u64::MAX
        } else {
            self.oldest_held(&t)
        };
        QueueStats {
            ready: gauge(
                t.sent + t.promoted + t.requeued,
                t.sent_delayed + t.taken_auto + t.taken_leased + t.popped_expired + t.removed_ready,
            ),
            leased: gauge(
                t.taken_leased,
                t.settled_ack + t.settled_nack + t.lease_expired + t.lease_dropped,
            ),
            delayed: gauge(
                t.sent_delayed + t.requeued_delayed,
                t.promoted + t.removed_delayed,
            ),
            bytes: gauge(t.bytes_in, t.bytes_out),
            oldest_age: (oldest != u64::MAX)
                .then(|| std::time::Duration::from_nanos(now.saturating_sub(oldest))),
            sent: t.sent,
            received: t.taken_auto + t.taken_leased,
            acked: t.taken_auto + t.settled_ack,
            nacked: t.settled_nack,
            redelivered: t.redelivered,
            expired: t.expired,
            dead_lettered: t.dead_lettered,
            cancelled: t.cancelled,
            purged: t.purged,
        }
    }

    /// How many messages have left the queue for good (each such event bumps
    /// one of these counters, after the message is out of its lane or table).
    fn left(t: &Totals) -> u64 {
        t.taken_auto
            + t.settled_ack
            + t.dead_lettered
            + t.expired
            + t.cancelled
            + t.purged
            + t.lease_dropped
    }

    /// The enqueue time of the oldest message held (ready, delayed or leased),
    /// `u64::MAX` if none, given counters `t` read before.
    ///
    /// The set of messages held changes in two ways: messages are placed
    /// (each lowers `oldest_added` after it is placed in a lane, the delay
    /// table or — moved from a lane by a receive — a lease table, so one
    /// between two places while a pass ran is not missed) and messages leave
    /// (each bumps a counter of [`Self::left`] after it is gone). While none
    /// has left since the last pass over them, the oldest is the older of
    /// that pass's result and `oldest_added`: O(1). Otherwise one pass over
    /// everything held, which resets `oldest_added` before it starts (a
    /// message placed during the pass is seen by the pass or lowers it).
    /// Under concurrency the answer is the oldest of the messages held at some
    /// instant during the call, as for the gauges.
    fn oldest_held(&self, t: &Totals) -> u64 {
        let left = Self::left(t);
        let mut o = self.oldest.lock();
        if o.left != left {
            self.oldest_added.store(u64::MAX, SeqCst);
            let mut oldest = u64::MAX;
            for lane in self.lanes.iter().filter_map(|l| l.get()) {
                let st = lane.stash();
                if let Some(at) = st.values().map(|n| n.enqueued_at).min() {
                    oldest = oldest.min(at);
                }
            }
            let delayed_oldest = self.delayed.lock().oldest();
            let leased_oldest = self.leases.iter().filter_map(|s| s.lock().oldest()).min();
            for at in [delayed_oldest, leased_oldest].into_iter().flatten() {
                oldest = oldest.min(at);
            }
            *o = Oldest { at: oldest, left };
        }
        o.at.min(self.oldest_added.load(SeqCst))
    }
}
