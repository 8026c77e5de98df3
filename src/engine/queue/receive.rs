//! The receive path: popping the next ready message (highest priority first,
//! home shard then stealing), handing it out as a lease or auto-acked, and
//! waiting (spin, then park on `not_empty`) with a deadline and a cancel flag.

use super::*;

/// How a receive hands a message out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReceiveMode {
    /// Leased: settled later with ack / nack, redelivered if the lease runs out.
    Leased,
    /// Acked as it is handed out (at-most-once).
    AutoAck,
}

impl ReceiveMode {
    /// [`AutoAck`](Self::AutoAck) when `auto_ack`, else [`Leased`](Self::Leased).
    pub(crate) fn from_auto_ack(auto_ack: bool) -> Self {
        if auto_ack {
            ReceiveMode::AutoAck
        } else {
            ReceiveMode::Leased
        }
    }
}

impl QueueCore {
    /// Pops the next ready message, highest priority first, skipping expired ones.
    #[inline]
    pub(super) fn take_one(&self, home: usize, now: &mut LazyNow<'_>) -> Option<Arc<Node>> {
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
        mode: ReceiveMode,
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
        if mode == ReceiveMode::AutoAck {
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
        // Placed again (see `stats`: a pass that ran while it was between its
        // lane and the lease table did not see it).
        self.note_added(node.enqueued_at);
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
    fn count_taken(&self, mode: ReceiveMode, home: usize, taken: Taken) {
        let c = self.c(home);
        if mode == ReceiveMode::AutoAck {
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
        mode: ReceiveMode,
        cancel: Option<&AtomicBool>,
        out: F,
    ) -> Result<usize> {
        let r = self.receive_loop(max, wait, mode, cancel, out);
        self.watch_refresh();
        r
    }

    pub(super) fn receive_loop<F: FnMut(Received)>(
        self: &Arc<Self>,
        max: usize,
        wait: Wait,
        mode: ReceiveMode,
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
                out(self.deliver(first, mode, home, &mut now, &mut taken));
                while (taken.n as usize) < max {
                    let Some(node) = self.take_one(home, &mut now) else {
                        break;
                    };
                    out(self.deliver(node, mode, home, &mut now, &mut taken));
                }
                let n = taken.n as usize;
                self.count_taken(mode, home, taken);
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
                out(self.deliver(node, mode, home, &mut now, &mut taken));
                self.count_taken(mode, home, taken);
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
}

/// Messages one receive call handed out, counted at its end.
#[derive(Default)]
struct Taken {
    n: u64,
    /// Their size, when auto-acked.
    bytes: u64,
}
