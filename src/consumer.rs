//! The consumer pool (dispatcher): the Octavia queue consumer.
//!
//! `size` worker threads each take one message at a time from a queue and run the
//! handler registered for its name (or the default handler). At most `size`
//! handlers run at once, and a worker takes the next message only when its
//! handler has returned: no message leaves the queue while all workers are busy.
//! That is the throttle (the seed's `rpc_thread_pool_size`).
//!
//! A handler returns `Ok(reply)` (the message is acked; for an RPC request the
//! reply goes back to the caller) or `Err(text)`; a panic counts as `Err` with the
//! panic message. A failure nacks the message with an exponential backoff; once it
//! has been delivered `max_deliveries` times (a queue option) it moves to the
//! dead-letter queue with `handler failed: <text>` in its reason, and an RPC caller
//! gets [`Error::Remote`](crate::Error::Remote).
//!
//! Idle workers sleep in a blocking receive: no polling, no CPU.

use crate::broker::Namespace;
use crate::error::{Error, Result};
use crate::queue::{Delivery, LeaseTicket, Queue};
use crate::types::{Message, MessageView, Wait};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a handler returns: `Ok(Some(reply))` / `Ok(None)` on success (acked),
/// `Err(text)` on failure (nacked with backoff).
pub type HandlerResult = std::result::Result<Option<Vec<u8>>, String>;

type Handler = Arc<dyn Fn(&Delivery) -> HandlerResult + Send + Sync>;

/// Header naming the queue (same namespace) an RPC reply goes to.
pub const REPLY_TO: &str = "x-reply-to";
/// Header of an RPC reply that carries the handler's error instead of a result.
pub const RPC_ERROR: &str = "x-rpc-error";

/// Configures a [`Pool`].
pub struct PoolBuilder {
    ns: Namespace,
    queue: Queue,
    size: usize,
    handlers: HashMap<String, Handler>,
    default: Option<Handler>,
    backoff: (Duration, Duration),
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("queue", &self.queue.name())
            .field("size", &self.size)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PoolBuilder {
    /// Number of workers: at most this many handlers run at once (default 1).
    pub fn size(mut self, n: usize) -> Self {
        self.size = n;
        self
    }

    /// Runs `f` for messages named `name`.
    pub fn handler<F>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(&Delivery) -> HandlerResult + Send + Sync + 'static,
    {
        self.handlers.insert(name.to_string(), Arc::new(f));
        self
    }

    /// Runs `f` for messages no named handler takes. Without one, such a message
    /// fails with "no handler for ...".
    pub fn default_handler<F>(mut self, f: F) -> Self
    where
        F: Fn(&Delivery) -> HandlerResult + Send + Sync + 'static,
    {
        self.default = Some(Arc::new(f));
        self
    }

    /// Retry delay after a failure: `base × 2^(delivery − 1)`, at most `max`
    /// (default 100 ms to 30 s).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = (base, max);
        self
    }

    /// Starts the workers.
    pub fn start(self) -> Result<Pool> {
        if self.size == 0 {
            return Err(Error::InvalidArgument(
                "pool size must be at least 1".into(),
            ));
        }
        let shared = Arc::new(Shared {
            ns: self.ns,
            queue: self.queue,
            handlers: self.handlers,
            default: self.default,
            backoff: self.backoff,
            stop: AtomicBool::new(false),
            slots: (0..self.size).map(|_| Mutex::new(None)).collect(),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            handled: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            exited: Mutex::new(0),
            exited_cv: Condvar::new(),
        });
        let mut workers = Vec::with_capacity(self.size);
        for w in 0..self.size {
            let s = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("libqueue-pool-{}-{w}", s.queue.name()))
                .spawn(move || s.work(w))
                .map_err(|e| {
                    shared.stop.store(true, SeqCst);
                    shared.queue.wake_receivers();
                    Error::Io(format!("cannot start a pool worker: {e}"))
                })?;
            workers.push(h);
        }
        Ok(Pool {
            shared,
            workers,
            origin: crate::sync::fork::Origin::here(),
        })
    }
}

/// Counters of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Messages handed to handlers.
    pub handled: u64,
    /// Handlers that returned `Ok`.
    pub succeeded: u64,
    /// Handlers that returned `Err` or panicked.
    pub failed: u64,
    /// Of those, panics.
    pub panicked: u64,
    /// Handlers running now.
    pub active: usize,
    /// Most handlers that ever ran at once (never above the pool size).
    pub max_active: usize,
}

/// What [`Pool::stop_timeout`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StopReport {
    /// Handlers that were still running when the time was up; their messages went
    /// back to the queue (their late ack or nack is ignored).
    pub returned: usize,
    /// The counters at the end (handlers still running counted in `active`).
    pub stats: PoolStats,
}

struct Shared {
    ns: Namespace,
    queue: Queue,
    handlers: HashMap<String, Handler>,
    default: Option<Handler>,
    backoff: (Duration, Duration),
    stop: AtomicBool,
    /// Per worker: the lease of the message its handler runs on.
    slots: Vec<Mutex<Option<LeaseTicket>>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
    handled: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    /// Workers that have exited, and a condvar to wait for them.
    exited: Mutex<usize>,
    exited_cv: Condvar,
}

impl Shared {
    fn work(&self, w: usize) {
        self.work_loop(w);
        *self.exited.lock() += 1;
        self.exited_cv.notify_all();
    }

    fn work_loop(&self, w: usize) {
        while !self.stop.load(SeqCst) {
            let got = match self.queue.receive_cancellable(Wait::Forever, &self.stop) {
                Ok(got) => got,
                Err(_) => return, // closed
            };
            let Some(d) = got else { continue };
            self.run(w, d);
        }
    }

    fn run(&self, w: usize, d: Delivery) {
        let Some(ticket) = d.ticket() else {
            return;
        };
        *self.slots[w].lock() = Some(ticket);
        let now_active = self.active.fetch_add(1, SeqCst) + 1;
        if now_active > self.max_active.load(SeqCst) {
            self.max_active.fetch_max(now_active, SeqCst);
        }
        self.handled.fetch_add(1, SeqCst);

        let handler = d
            .name()
            .and_then(|n| self.handlers.get(n))
            .or(self.default.as_ref());
        let result = match handler {
            None => Err(format!(
                "no handler for message name {:?}",
                d.name().unwrap_or("")
            )),
            Some(h) => match catch_unwind(AssertUnwindSafe(|| h(&d))) {
                Ok(r) => r,
                Err(p) => {
                    self.panicked.fetch_add(1, SeqCst);
                    let text = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    Err(format!("handler panicked: {text}"))
                }
            },
        };
        self.active.fetch_sub(1, SeqCst);
        // If stop_timeout already returned the message, the slot is empty and
        // the settle below fails harmlessly (the lease is gone).
        *self.slots[w].lock() = None;

        let meta = ReplyMeta {
            reply_to: d.header_str(REPLY_TO).map(str::to_string),
            corr: d.correlation_id().map(str::to_string),
        };
        match result {
            Ok(reply) => {
                self.succeeded.fetch_add(1, SeqCst);
                if d.ack().is_ok() {
                    // Reply only once the request is done for good.
                    let _ = self.reply_to(&meta, reply, None);
                }
            }
            Err(text) => {
                self.failed.fetch_add(1, SeqCst);
                let last = self
                    .queue
                    .options()
                    .max_deliveries
                    .is_some_and(|m| d.delivery_count() >= m);
                let n = d.delivery_count().saturating_sub(1).min(30);
                let delay = self.backoff.0.saturating_mul(1u32 << n).min(self.backoff.1);
                let reason = format!("handler failed: {text}");
                if d.nack_with(Some(delay), &reason).is_ok() && last {
                    // Dead-lettered: tell an RPC caller instead of letting it time out.
                    let _ = self.reply_to(&meta, None, Some(&text));
                }
            }
        }
    }

    /// Sends an RPC reply if the request asked for one.
    fn reply_to(
        &self,
        meta: &ReplyMeta,
        reply: Option<Vec<u8>>,
        error: Option<&str>,
    ) -> Result<()> {
        let (Some(to), Some(corr)) = (&meta.reply_to, &meta.corr) else {
            return Ok(());
        };
        let mut m = Message::new(reply.unwrap_or_default()).correlation_id(corr.clone());
        if let Some(e) = error {
            m = m.header(RPC_ERROR, e);
        }
        self.ns.get_queue(to)?.send(m).map(|_| ())
    }
}

struct ReplyMeta {
    reply_to: Option<String>,
    corr: Option<String>,
}

/// A running consumer pool. Dropping it stops it ([`Pool::stop`]).
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// The process that started it: in a forked child its workers do not exist.
    origin: crate::sync::fork::Origin,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("queue", &self.shared.queue.name())
            .field("size", &self.workers.len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Pool {
    /// A pool on `queue` of namespace `ns`.
    pub fn builder(ns: &Namespace, queue: &str) -> Result<PoolBuilder> {
        Ok(PoolBuilder {
            queue: ns.queue(queue)?,
            ns: ns.clone(),
            size: 1,
            handlers: HashMap::new(),
            default: None,
            backoff: (Duration::from_millis(100), Duration::from_secs(30)),
        })
    }

    /// Its counters.
    pub fn stats(&self) -> PoolStats {
        let s = &self.shared;
        PoolStats {
            handled: s.handled.load(SeqCst),
            succeeded: s.succeeded.load(SeqCst),
            failed: s.failed.load(SeqCst),
            panicked: s.panicked.load(SeqCst),
            active: s.active.load(SeqCst),
            max_active: s.max_active.load(SeqCst),
        }
    }

    /// Stops taking messages, waits for running handlers to finish, and returns
    /// the final counters (every handled message counted as succeeded or failed).
    ///
    /// In a forked child, a pool inherited from the parent has no threads: this
    /// returns its counters as they were at the fork, touching nothing else.
    pub fn stop(mut self) -> PoolStats {
        if self.forget_inherited() {
            return self.stats();
        }
        self.halt();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.stats()
    }

    /// Stops taking messages and waits at most `timeout` for running handlers;
    /// the messages of those still running go back to the queue at once.
    /// In a forked child, as [`stop`](Self::stop) (nothing is returned).
    pub fn stop_timeout(mut self, timeout: Duration) -> StopReport {
        if self.forget_inherited() {
            return StopReport {
                returned: 0,
                stats: self.stats(),
            };
        }
        self.halt();
        let end = Instant::now() + timeout;
        {
            let mut exited = self.shared.exited.lock();
            while *exited < self.workers.len() {
                if self
                    .shared
                    .exited_cv
                    .wait_until(&mut exited, end)
                    .timed_out()
                {
                    break;
                }
            }
        }
        let mut returned = 0;
        for slot in &self.shared.slots {
            if let Some(f) = slot.lock().take() {
                if self.shared.queue.give_back(f).is_ok() {
                    returned += 1;
                }
            }
        }
        // Finished workers are joined; the rest end on their own when their
        // handler returns (their settle then fails: the lease is gone).
        for w in self.workers.drain(..) {
            if w.is_finished() {
                let _ = w.join();
            }
        }
        StopReport {
            returned,
            stats: self.stats(),
        }
    }

    /// In a forked child: lets go of the parent's workers without joining them
    /// (they do not exist here) or waking them (their locks may be held), and
    /// returns true.
    fn forget_inherited(&mut self) -> bool {
        if !self.origin.inherited_exact() {
            return false;
        }
        self.shared.stop.store(true, SeqCst);
        for w in self.workers.drain(..) {
            // Dropping the handle would detach a thread of the parent's.
            std::mem::forget(w);
        }
        true
    }

    fn halt(&self) {
        self.shared.stop.store(true, SeqCst);
        self.shared.queue.wake_receivers();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.forget_inherited() {
            return;
        }
        self.halt();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
