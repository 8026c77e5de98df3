//! An event count: lets consumers sleep until producers signal, at no cost to
//! producers while nobody sleeps.
//!
//! Protocol (Dekker style, fence against fence): a waiter announces itself
//! (`waiters += 1`), issues a SeqCst fence, reads the epoch, then re-checks its
//! condition before sleeping; a notifier makes its change, issues a SeqCst fence
//! and reads `waiters`. Either the waiter's re-check sees the change, or the
//! notifier sees the waiter and bumps the epoch. The mutex is taken only to sleep
//! (the waiter compares the epoch under it) and to notify (after the bump), so a
//! bump can never fall between the waiter's comparison and its sleep; announcing
//! and withdrawing take no lock.

use super::{fence, lock, AtomicU64, AtomicUsize, StdCondvar, StdMutex};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Duration;

/// See the module documentation.
#[derive(Debug)]
pub struct Event {
    waiters: AtomicUsize,
    epoch: AtomicU64,
    sleep: StdMutex<()>,
    cv: StdCondvar,
}

/// A registration returned by [`Event::prepare`]; pass it to [`Event::wait`] or
/// [`Event::cancel`] exactly once.
#[must_use]
#[derive(Debug)]
pub struct Ticket(u64);

impl Default for Event {
    fn default() -> Self {
        Self::new()
    }
}

impl Event {
    /// A new event with no waiters.
    pub fn new() -> Self {
        Event {
            waiters: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
            sleep: StdMutex::new(()),
            cv: StdCondvar::new(),
        }
    }

    /// Announces a waiter. The caller must re-check its condition afterwards and
    /// then call [`wait`](Self::wait) or [`cancel`](Self::cancel).
    pub fn prepare(&self) -> Ticket {
        self.waiters.fetch_add(1, SeqCst);
        // Pairs with the fence in `notify_*`: either the notifier's load sees this
        // waiter, or the caller's re-check (after this fence) sees the change.
        fence(SeqCst);
        Ticket(self.epoch.load(SeqCst))
    }

    /// Withdraws a waiter whose re-check succeeded.
    pub fn cancel(&self, _t: Ticket) {
        self.waiters.fetch_sub(1, SeqCst);
    }

    /// Sleeps until notified after `t` was taken, or until `limit` (None: no limit).
    /// Returns true if it was notified, false on timeout. Spurious wake-ups return true.
    pub fn wait(&self, t: Ticket, limit: Option<Duration>) -> bool {
        let mut g = lock(&self.sleep);
        let notified = loop {
            if self.epoch.load(SeqCst) != t.0 {
                break true;
            }
            match limit {
                None => {
                    g = match self.cv.wait(g) {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    }
                }
                Some(d) => {
                    let (g2, res) = match self.cv.wait_timeout(g, d) {
                        Ok(v) => v,
                        Err(p) => p.into_inner(),
                    };
                    g = g2;
                    if res.timed_out() {
                        break self.epoch.load(SeqCst) != t.0;
                    }
                    // Woken (or spurious): report it; the caller re-checks anyway.
                    break true;
                }
            }
        };
        drop(g);
        self.waiters.fetch_sub(1, SeqCst);
        notified
    }

    /// Wakes one waiter, if any. Call after making the awaited change visible.
    #[inline]
    pub fn notify_one(&self) {
        fence(SeqCst);
        if self.waiters.load(Relaxed) > 0 {
            self.epoch.fetch_add(1, SeqCst);
            drop(lock(&self.sleep));
            self.cv.notify_one();
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        fence(SeqCst);
        if self.waiters.load(Relaxed) > 0 {
            self.epoch.fetch_add(1, SeqCst);
            drop(lock(&self.sleep));
            self.cv.notify_all();
        }
    }

    /// True if somebody is (about to be) asleep.
    pub fn has_waiters(&self) -> bool {
        self.waiters.load(SeqCst) > 0
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;
    use loom::thread;

    /// A producer sets a flag and notifies; a consumer checks, prepares, re-checks
    /// and waits without a timeout. Loom explores every interleaving: if a wake-up
    /// could be lost, the consumer would block forever and loom reports a deadlock.
    #[test]
    fn no_lost_wakeup() {
        loom::model(|| {
            let ev = Arc::new(Event::new());
            let flag = Arc::new(AtomicBool::new(false));
            let (ev2, flag2) = (ev.clone(), flag.clone());
            let p = thread::spawn(move || {
                flag2.store(true, SeqCst);
                ev2.notify_one();
            });
            loop {
                if flag.load(SeqCst) {
                    break;
                }
                let t = ev.prepare();
                if flag.load(SeqCst) {
                    ev.cancel(t);
                    break;
                }
                ev.wait(t, None);
            }
            p.join().unwrap();
        });
    }

    /// Two waiters, two notifications: both consumers finish.
    #[test]
    fn two_waiters_two_notifies() {
        loom::model(|| {
            let ev = Arc::new(Event::new());
            let count = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
            let mut hs = Vec::new();
            for _ in 0..2 {
                let (ev, count) = (ev.clone(), count.clone());
                hs.push(thread::spawn(move || loop {
                    let c = count.load(SeqCst);
                    if c > 0 && count.compare_exchange(c, c - 1, SeqCst, SeqCst).is_ok() {
                        break;
                    }
                    let t = ev.prepare();
                    if count.load(SeqCst) > 0 {
                        ev.cancel(t);
                        continue;
                    }
                    ev.wait(t, None);
                }));
            }
            for _ in 0..2 {
                count.fetch_add(1, SeqCst);
                ev.notify_one();
            }
            for h in hs {
                h.join().unwrap();
            }
        });
    }
}
