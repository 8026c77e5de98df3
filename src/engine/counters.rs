//! Statistics counters and capacity budgets.
//!
//! Counters are monotonic and kept per shard (each thread bumps its home shard's,
//! cache-padded), so counting never makes threads contend; gauges such as
//! "ready" are differences of sums (`ready_in - ready_out`), exact whenever the
//! queue is quiescent and never negative in a snapshot.
//!
//! Budgets enforce limits (queue capacity, namespace quotas) exactly: a CAS loop
//! on one counter, taken only when a limit is configured.

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($f:ident),* $(,)?) => {
        /// One shard's counters.
        #[derive(Debug, Default)]
        pub(crate) struct Counters { $(pub(crate) $f: AtomicU64,)* }

        /// Sums over all shards.
        #[derive(Debug, Default, Clone, Copy)]
        pub(crate) struct Totals { $(pub(crate) $f: u64,)* }

        pub(crate) fn sum(shards: &[CachePadded<Counters>]) -> Totals {
            let mut t = Totals::default();
            for s in shards { $(t.$f += s.$f.load(Relaxed);)* }
            t
        }
    };
}

// Event counts. The hot path bumps two per send (`sent`, `bytes_in`) and two
// per receive (`taken_*`, plus `bytes_out` when auto-acked); every gauge and
// total in `QueueStats` is derived from them in `QueueCore::stats`.
counters!(
    sent,
    sent_delayed,
    bytes_in,
    bytes_out,
    promoted,
    requeued,
    requeued_delayed,
    taken_auto,
    taken_leased,
    popped_expired,
    removed_ready,
    removed_delayed,
    settled_ack,
    settled_nack,
    lease_expired,
    lease_dropped,
    redelivered,
    expired,
    dead_lettered,
    cancelled,
    purged,
);

#[inline]
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

/// `a - b`, clamped at zero (a snapshot taken under concurrency may see `b` first).
pub(crate) fn gauge(a: u64, b: u64) -> u64 {
    a.saturating_sub(b)
}

/// A limit and the amount of it in use. With no limit it does nothing.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: Option<u64>,
    used: CachePadded<AtomicU64>,
}

impl Budget {
    pub(crate) fn new(limit: Option<u64>) -> Self {
        Budget {
            limit,
            used: CachePadded::new(AtomicU64::new(0)),
        }
    }

    pub(crate) fn limit(&self) -> Option<u64> {
        self.limit
    }

    pub(crate) fn is_limited(&self) -> bool {
        self.limit.is_some()
    }

    /// Takes `n` if that stays within the limit; exact under concurrency.
    #[inline]
    pub(crate) fn try_take(&self, n: u64) -> bool {
        let Some(limit) = self.limit else {
            return true;
        };
        let mut cur = self.used.load(Relaxed);
        loop {
            if cur.saturating_add(n) > limit {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(cur, cur + n, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(c) => cur = c,
            }
        }
    }

    /// Takes `n` regardless of the limit (messages moved in that must not be lost).
    pub(crate) fn force_take(&self, n: u64) {
        if self.limit.is_some() {
            self.used.fetch_add(n, Relaxed);
        }
    }

    /// Gives `n` back.
    #[inline]
    pub(crate) fn give(&self, n: u64) {
        if self.limit.is_some() {
            self.used.fetch_sub(n, Relaxed);
        }
    }
}
