//! The broker's ticker: one thread, started only once a queue is watched through a
//! pollable descriptor, that runs due timers (delays, lease expiry) and TTL
//! sweeps of watched queues when they fall due, so their descriptor is readable
//! exactly when a receive would succeed even when nobody calls into the queue.
//! It sleeps until the earliest deadline.

use super::queue::QueueCore;
use crate::clock::Clock;
use crate::sync::event::Event;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Weak};

pub(crate) struct Ticker {
    clock: Arc<dyn Clock>,
    queues: Mutex<Vec<Weak<QueueCore>>>,
    ev: Event,
    started: AtomicBool,
    stop: AtomicBool,
}

impl Ticker {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Ticker {
            clock,
            queues: Mutex::new(Vec::new()),
            ev: Event::new(),
            started: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        })
    }

    /// Starts watching a queue's timers (and the thread, the first time).
    pub(crate) fn watch(self: &Arc<Self>, q: &Arc<QueueCore>) {
        self.queues.lock().push(Arc::downgrade(q));
        if !self.started.swap(true, SeqCst) {
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name("libqueue-ticker".into())
                .spawn(move || me.run());
            if spawned.is_err() {
                // No thread: timers of watched queues still run on every call into
                // the queue; only the descriptor's timeliness suffers.
                self.started.store(false, SeqCst);
            }
        }
        self.kick();
    }

    /// Makes the thread look again (a deadline moved earlier, the clock jumped).
    pub(crate) fn kick(&self) {
        self.ev.notify_all();
    }

    pub(crate) fn shutdown(&self) {
        self.stop.store(true, SeqCst);
        self.ev.notify_all();
    }

    fn run(self: Arc<Self>) {
        while !self.stop.load(SeqCst) {
            let t = self.ev.prepare();
            let now = self.clock.now();
            let mut next = u64::MAX;
            let queues: Vec<Arc<QueueCore>> = {
                let mut l = self.queues.lock();
                l.retain(|w| w.strong_count() > 0);
                l.iter().filter_map(Weak::upgrade).collect()
            };
            for q in &queues {
                q.maintain(now);
                q.sweep_expired(now);
                next = next.min(q.next_due()).min(q.min_expiry());
            }
            drop(queues);
            if self.stop.load(SeqCst) {
                self.ev.cancel(t);
                break;
            }
            let limit = if next == u64::MAX {
                None
            } else {
                self.clock.park_limit(next.saturating_sub(now).max(1))
            };
            self.ev.wait(t, limit);
        }
    }
}
