//! The pollable descriptor of a watched queue (`Queue::fd`), and the hooks the
//! broker's ticker and the pool use.

use super::*;

/// The pollable "something to receive" signal of a watched queue.
#[cfg(target_os = "linux")]
pub(super) struct Watch {
    pub(super) efd: crate::sync::eventfd::EventFd,
    pub(super) raised: AtomicBool,
}
#[cfg(not(target_os = "linux"))]
pub(super) struct Watch;

impl QueueCore {
    /// Wakes every blocked receiver so it re-checks its cancel flag.
    pub(crate) fn interrupt(&self) {
        self.not_empty.notify_all();
    }

    /// The earliest pending timer (u64::MAX if none).
    pub(crate) fn next_due(&self) -> u64 {
        self.next_due.load(SeqCst)
    }

    /// A lower bound on the earliest expiry of a ready or delayed message.
    pub(crate) fn min_expiry(&self) -> u64 {
        self.min_expiry.load(SeqCst)
    }

    /// Whether no ready message is waiting (exact when nothing runs concurrently).
    pub(crate) fn ready_empty(&self) -> bool {
        self.lanes
            .iter()
            .filter_map(|l| l.get())
            .all(|l| l.is_empty())
    }

    pub(crate) fn is_watched(&self) -> bool {
        self.watch.get().is_some()
    }

    /// The queue's pollable descriptor: readable exactly when a receive would find
    /// a message, or fail because the queue closed (broker closed, queue deleted:
    /// then it stays readable). Created on first use; from then on every push raises it and every
    /// receive that leaves the queue empty clears it; the broker's ticker runs
    /// this queue's timers (as every queue's) when they fall due.
    #[cfg(target_os = "linux")]
    pub(crate) fn pollable_fd(self: &Arc<Self>) -> Result<std::os::fd::RawFd> {
        self.check_open()?;
        if let Some(w) = self.watch.get() {
            return Ok(w.efd.raw());
        }
        let efd = crate::sync::eventfd::EventFd::new()
            .map_err(|e| Error::Io(format!("cannot create an eventfd: {e}")))?;
        let fresh = self
            .watch
            .set(Watch {
                efd,
                raised: AtomicBool::new(false),
            })
            .is_ok();
        if fresh {
            self.ticker.kick();
            self.maintain(self.clock.now());
            self.watch_refresh();
        }
        Ok(self.watch.get().expect("set above").efd.raw())
    }

    /// Makes a watched queue's descriptor readable (nothing if unwatched).
    #[cfg(target_os = "linux")]
    pub(super) fn watch_raise(&self) {
        if let Some(w) = self.watch.get() {
            std::sync::atomic::fence(SeqCst);
            if !w.raised.swap(true, SeqCst) {
                w.efd.raise();
            }
        }
    }

    /// Clears the descriptor, then raises it again if a message is (still) there:
    /// a push racing with the clear raises it itself. Nothing for an unwatched queue.
    #[cfg(target_os = "linux")]
    pub(crate) fn watch_refresh(&self) {
        if self.closed.load(SeqCst) {
            return; // stays readable: receives fail with Closed
        }
        if let Some(w) = self.watch.get() {
            w.raised.store(false, SeqCst);
            w.efd.clear();
            std::sync::atomic::fence(SeqCst);
            if !self.ready_empty() {
                self.watch_raise();
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn watch_raise(&self) {}
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn watch_refresh(&self) {}

    /// Wakes sleepers so they re-read the clock (a manual clock moved).
    pub(crate) fn wake_all(&self) {
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }
}
