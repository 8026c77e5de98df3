//! The broker's ticker: one thread that runs every queue's due timers (delays,
//! lease expiry — and with it dead-lettering — and TTL sweeps) when they fall due,
//! whether or not anyone calls into the queue. A consumer that dies holding a
//! lease is the case leases exist for: its message must come back (or move to
//! the dead-letter queue, waking a receiver blocked there) on time.
//!
//! Every queue registers here when it is created. The thread starts the first
//! time a queue notes a deadline earlier than the one the thread sleeps until
//! ([`Ticker::schedule`], called only when a queue's earliest deadline moves
//! earlier, never per message), scans the queues with one load each, runs what
//! is due and sleeps until the earliest next deadline. With no timer pending it
//! sleeps without a limit: an idle broker costs no CPU.
//!
//! With a clock that moves by hand ([`Clock::moves_by_hand`], a `ManualClock`)
//! no thread runs: the broker runs every due timer inside `advance`, so tests
//! see them happen exactly there, deterministically.
//!
//! Once the broker is dropped (queue handles may live on) the thread exits when
//! nothing is pending, and starts again if a live queue notes a deadline.

use super::queue::QueueCore;
use crate::clock::Clock;
use crate::sync::event::Event;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Weak};

/// Least clock time between two TTL sweeps of an unwatched queue by the ticker.
const SWEEP_GAP: u64 = 10_000_000;

/// A registered queue and when the ticker may sweep it again.
struct Entry {
    q: Weak<QueueCore>,
    sweep_after: AtomicU64,
}

pub(crate) struct Ticker {
    clock: Arc<dyn Clock>,
    queues: Mutex<Vec<Arc<Entry>>>,
    ev: Event,
    /// A thread runs (or is being started).
    running: AtomicBool,
    /// The broker closed: no thread ever again.
    stop: AtomicBool,
    /// The broker handle is gone: the thread exits once nothing is pending.
    orphaned: AtomicBool,
    /// The clock time the thread sleeps until; `u64::MAX` while it scans, sleeps
    /// without a limit or does not run (then any new deadline must kick it).
    wake_at: AtomicU64,
    /// The clock moves by hand and runs the timers itself ([`Clock::moves_by_hand`]).
    by_hand: bool,
}

impl Ticker {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Ticker {
            queues: Mutex::new(Vec::new()),
            ev: Event::new(),
            running: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            orphaned: AtomicBool::new(false),
            wake_at: AtomicU64::new(u64::MAX),
            by_hand: clock.moves_by_hand(),
            clock,
        })
    }

    /// Makes a new queue's timers run here.
    pub(crate) fn register(&self, q: &Arc<QueueCore>) {
        let mut l = self.queues.lock();
        if l.len() >= 64 && l.len().is_power_of_two() {
            l.retain(|e| e.q.strong_count() > 0);
        }
        l.push(Arc::new(Entry {
            q: Arc::downgrade(q),
            sweep_after: AtomicU64::new(0),
        }));
    }

    /// A queue's earliest deadline moved earlier, to `t`: wakes (or starts) the
    /// thread if it would otherwise sleep past `t`. One load when it would not.
    #[inline]
    pub(crate) fn schedule(self: &Arc<Self>, t: u64) {
        if t < self.wake_at.load(SeqCst) {
            self.kick();
        }
    }

    /// Makes the thread look again (a deadline moved earlier, the clock jumped),
    /// starting it if none runs.
    pub(crate) fn kick(self: &Arc<Self>) {
        if self.by_hand {
            return; // the clock's `advance` runs the timers
        }
        if !self.running.load(SeqCst) && !self.stop.load(SeqCst) {
            self.start();
        }
        self.ev.notify_all();
    }

    fn start(self: &Arc<Self>) {
        if self.running.swap(true, SeqCst) {
            return;
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("libqueue-ticker".into())
            .spawn(move || me.run());
        if spawned.is_err() {
            // No thread: timers still run on every call into their queue, and
            // the next deadline tries again.
            self.running.store(false, SeqCst);
        }
    }

    /// The broker closed: the thread ends for good.
    pub(crate) fn shutdown(&self) {
        self.stop.store(true, SeqCst);
        self.ev.notify_all();
    }

    /// The last broker handle is gone: the thread ends once no live queue has a
    /// pending timer (and starts again if one notes a deadline later).
    pub(crate) fn orphan(&self) {
        self.orphaned.store(true, SeqCst);
        self.ev.notify_all();
    }

    fn live_queues(&self) -> Vec<(Arc<QueueCore>, Arc<Entry>)> {
        let mut l = self.queues.lock();
        l.retain(|e| e.q.strong_count() > 0);
        l.iter()
            .filter_map(|e| Some((e.q.upgrade()?, e.clone())))
            .collect()
    }

    /// Runs what is due at `now` in every queue; returns the earliest next deadline.
    ///
    /// A TTL sweep drains the queue's ready lanes into its id-ordered stash, so
    /// an unwatched queue is swept at most every [`SWEEP_GAP`] (and at least four
    /// times the last sweep's own duration apart): a backlog whose messages expire
    /// one after another costs a bounded share of one thread, and an expired
    /// message gives its room back that much later at most. It is never
    /// delivered meanwhile (a receive skips it). A watched queue is swept at the
    /// expiry itself, so its descriptor is exact.
    fn tick(&self, now: u64) -> u64 {
        let mut next = u64::MAX;
        for (q, e) in self.live_queues() {
            if q.is_closed() {
                continue;
            }
            q.maintain(now);
            let after = e.sweep_after.load(SeqCst);
            if q.min_expiry() <= now && (now >= after || q.is_watched()) {
                let t = std::time::Instant::now();
                q.sweep_expired(now);
                let took = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let gap = SWEEP_GAP.max(took.saturating_mul(4));
                e.sweep_after.store(now.saturating_add(gap), SeqCst);
            }
            let mut expiry = q.min_expiry();
            if expiry != u64::MAX && !q.is_watched() {
                expiry = expiry.max(e.sweep_after.load(SeqCst));
            }
            next = next.min(q.next_due()).min(expiry);
        }
        next
    }

    fn run(self: Arc<Self>) {
        loop {
            if self.stop.load(SeqCst) {
                break;
            }
            let t = self.ev.prepare();
            // From here until the sleep target is stored, any new deadline kicks
            // the event (it reads MAX), so the wait below returns at once.
            self.wake_at.store(u64::MAX, SeqCst);
            let now = self.clock.now();
            let next = self.tick(now);
            if self.stop.load(SeqCst) {
                self.ev.cancel(t);
                break;
            }
            if next == u64::MAX && self.orphaned.load(SeqCst) {
                self.ev.cancel(t);
                self.running.store(false, SeqCst);
                // A deadline noted before `running` fell saw a running thread
                // and only notified: look once more before leaving.
                let pending = self
                    .live_queues()
                    .iter()
                    .any(|(q, _)| !q.is_closed() && q.next_due().min(q.min_expiry()) != u64::MAX);
                if pending && !self.stop.load(SeqCst) && !self.running.swap(true, SeqCst) {
                    continue;
                }
                return;
            }
            self.wake_at.store(next, SeqCst);
            let limit = if next == u64::MAX {
                None
            } else {
                self.clock.park_limit(next.saturating_sub(now).max(1))
            };
            self.ev.wait(t, limit);
        }
        self.wake_at.store(u64::MAX, SeqCst);
    }
}
