//! Operator operations on a queue: peek, cancel, purge, TTL sweeps, statistics,
//! close and destroy. They drain ready lanes into the stash and cost O(ready).

use super::*;

impl QueueCore {
    /// Removes expired ready and delayed messages if any may have expired.
    pub(crate) fn sweep_expired(&self, now: u64) {
        if self.min_expiry.load(SeqCst) > now {
            return;
        }
        self.min_expiry.store(u64::MAX, SeqCst);
        let home = home_shard();
        let mut min = u64::MAX;
        for lane in self.lanes.iter().filter_map(|l| l.get()) {
            let mut st = lane.stash();
            let dead: Vec<u64> = st
                .values()
                .filter(|n| n.expired(now))
                .map(|n| n.id)
                .collect();
            for id in dead {
                let node = st.remove(&id).expect("present");
                bump(&self.c(home).removed_ready, 1);
                self.expire(&node, home);
            }
            min = st
                .values()
                .map(|n| n.expires_at)
                .min()
                .unwrap_or(u64::MAX)
                .min(min);
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
        let mut oldest = u64::MAX;
        let lanes = self.lanes.iter().filter_map(|l| l.get());
        for lane in lanes.filter(|_| !inherited) {
            let st = lane.stash();
            if let Some(o) = st.values().map(|n| n.enqueued_at).min() {
                oldest = oldest.min(o);
            }
        }
        if !inherited {
            let delayed_oldest = self.delayed.lock().oldest();
            let leased_oldest = self.leases.iter().filter_map(|s| s.lock().oldest()).min();
            for o in [delayed_oldest, leased_oldest].into_iter().flatten() {
                oldest = oldest.min(o);
            }
        }
        let t = sum(&self.counters);
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
}
