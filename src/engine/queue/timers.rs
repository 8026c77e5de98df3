//! Timers: promoting due delayed messages, expiring leases and TTLs
//! ([`QueueCore::maintain`] and its cheaper and synchronous variants).

use super::*;

impl QueueCore {
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
    pub(super) fn maintain_lazy(&self, now: &mut LazyNow<'_>) {
        let due = self.next_due.load(SeqCst);
        if due != u64::MAX && now.get() >= due {
            self.maintain_slow(now.get());
        }
    }

    /// [`maintain`](Self::maintain), looking at the coarse clock first (cheaper;
    /// it lags the precise one by up to a tick, so due timers may run that much
    /// later, never earlier).
    #[inline]
    pub(super) fn maintain_coarse(&self) {
        let due = self.next_due.load(SeqCst);
        if due != u64::MAX && self.clock.now_coarse() >= due {
            self.maintain_slow(self.clock.now());
        }
    }

    #[cold]
    pub(super) fn maintain_slow(&self, now: u64) {
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

    pub(super) fn run_timers(&self, now: u64) {
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

    pub(super) fn expire(&self, node: &Node, home: usize) {
        bump(&self.c(home).expired, 1);
        self.release(node, home);
        self.record_removed(node, RemoveReason::Expired);
    }
}
