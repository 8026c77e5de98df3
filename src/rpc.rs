//! RPC on top of queues: `call` (request → reply, matched by correlation id),
//! `cast` (one consumer, no reply), `fanout` (every subscriber of a topic).
//!
//! The serving side is a [`Pool`](crate::Pool): a handler's `Ok(Some(bytes))` is
//! the reply; its failure on the last allowed delivery comes back as
//! [`Error::Remote`].
//!
//! Replies come back on the client's private reply queue, which the caller
//! receives from itself: no router thread, no hand-over between threads. A
//! call made while another is waiting on that queue takes a reply queue of its
//! own (`<reply queue>.<n>`, created on first need, then kept for later
//! concurrent calls), so every caller is woken directly by its own reply.

use crate::broker::Namespace;
use crate::clock::nanos;
use crate::consumer::{REPLY_TO, RPC_ERROR};
use crate::error::{Error, Result};
use crate::queue::{Delivery, Queue};
use crate::types::{Message, MessageView, QueueOptions, Wait};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

static CLIENTS: AtomicU64 = AtomicU64::new(0);

/// An RPC client of one namespace, with a private reply queue. `Send + Sync`:
/// many threads may call through one client at once.
///
/// ```
/// use libqueue::{Broker, Message, MessageView, Pool, RpcClient};
/// use std::time::Duration;
/// let ns = Broker::new().namespace("svc")?;
/// let _server = Pool::builder(&ns, "math")?
///     .handler("double", |d| {
///         let n: u64 = std::str::from_utf8(d.body()).unwrap().parse().unwrap();
///         Ok(Some((n * 2).to_string().into_bytes()))
///     })
///     .start()?;
/// let rpc = RpcClient::new(&ns)?;
/// let reply = rpc.call("math", Message::new("21").name("double"), Duration::from_secs(5))?;
/// assert_eq!(reply.body(), b"42");
/// # Ok::<(), libqueue::Error>(())
/// ```
pub struct RpcClient {
    ns: Namespace,
    reply: Queue,
    /// Held by the call waiting on `reply`.
    reply_busy: Mutex<()>,
    /// Extra reply queues for concurrent calls, not in use right now.
    idle: Mutex<Vec<Queue>>,
    /// Names of the extra reply queues (deleted with the client).
    extra: Mutex<Vec<String>>,
    late: AtomicU64,
    next: AtomicU64,
    /// Set by [`RpcClient::close`]: calls waiting for a reply return Closed.
    closed: AtomicBool,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("reply_queue", &self.reply.name())
            .field("late_replies", &self.late.load(SeqCst))
            .finish()
    }
}

impl RpcClient {
    /// A client with its own reply queue in `ns`.
    pub fn new(ns: &Namespace) -> Result<Self> {
        let name = format!(
            "rpc.reply.{}.{}",
            std::process::id(),
            CLIENTS.fetch_add(1, SeqCst)
        );
        let reply = ns.create_queue(&name, QueueOptions::default())?;
        Ok(RpcClient {
            ns: ns.clone(),
            reply,
            reply_busy: Mutex::new(()),
            idle: Mutex::new(Vec::new()),
            extra: Mutex::new(Vec::new()),
            late: AtomicU64::new(0),
            next: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
    }

    /// Closes this client (not its namespace): calls waiting for a reply in
    /// other threads return [`Error::Closed`] at once, and later calls, casts
    /// and fanouts fail with it. Idempotent. Its reply queues are deleted when
    /// it is dropped.
    pub fn close(&self) {
        if self.closed.swap(true, SeqCst) {
            return;
        }
        // Every waiter re-checks the flag: the main reply queue and the extra
        // ones (a call in flight holds its extra queue outside `idle`).
        self.reply.wake_receivers();
        for name in self.extra.lock().iter() {
            if let Ok(q) = self.ns.get_queue(name) {
                q.wake_receivers();
            }
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// The private reply queue's name.
    pub fn reply_queue(&self) -> &str {
        self.reply.name()
    }

    /// Sends `msg` to `queue` and waits at most `timeout` (on the broker's clock)
    /// for the reply. [`Error::Timeout`] if none came (a reply arriving later is
    /// dropped and counted in [`late_replies`](Self::late_replies));
    /// [`Error::Remote`] if the handler failed for good.
    /// [`Error::Closed`] if the client is (or gets) closed meanwhile.
    pub fn call(&self, queue: &str, msg: Message, timeout: Duration) -> Result<Delivery> {
        self.check_open()?;
        if let Some(_busy) = self.reply_busy.try_lock() {
            return self.call_on(&self.reply, queue, msg, timeout);
        }
        // Another call waits on the reply queue: wait on one of our own.
        let own = self.idle.lock().pop();
        let own = match own {
            Some(q) => q,
            None => match self.new_reply_queue() {
                Ok(q) => q,
                Err(_) => {
                    // No room for another queue (a namespace quota): take turns.
                    let _busy = self.reply_busy.lock();
                    return self.call_on(&self.reply, queue, msg, timeout);
                }
            },
        };
        let r = self.call_on(&own, queue, msg, timeout);
        self.idle.lock().push(own);
        r
    }

    fn new_reply_queue(&self) -> Result<Queue> {
        let mut extra = self.extra.lock();
        let name = format!("{}.{}", self.reply.name(), extra.len() + 1);
        let q = self.ns.create_queue(&name, QueueOptions::default())?;
        extra.push(name);
        Ok(q)
    }

    /// One call, its reply expected on `reply` (used by this call alone).
    fn call_on(
        &self,
        reply: &Queue,
        queue: &str,
        msg: Message,
        timeout: Duration,
    ) -> Result<Delivery> {
        self.check_open()?; // closed while this call waited for a reply queue
        let corr = format!("{}#{}", reply.name(), self.next.fetch_add(1, SeqCst));
        let msg = msg
            .correlation_id(corr.clone())
            .header(REPLY_TO, reply.name());
        self.ns.send(queue, msg)?;
        let clock = reply.clock().clone();
        let deadline = clock.now().saturating_add(nanos(timeout));
        let d = loop {
            let now = clock.now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            let remaining = Duration::from_nanos(deadline - now);
            let got = reply.receive_auto_ack_cancellable(Wait::For(remaining), &self.closed)?;
            if got.is_none() {
                self.check_open()?;
            }
            match got {
                Some(d) if d.correlation_id() == Some(corr.as_str()) => break d,
                // The reply to an earlier call of this queue that timed out.
                Some(_) => {
                    self.late.fetch_add(1, SeqCst);
                }
                None => {}
            }
        };
        match d.header_str(RPC_ERROR) {
            Some(e) => Err(Error::Remote(e.to_string())),
            None => Ok(d),
        }
    }

    /// Sends `msg` to `queue` for one consumer; no reply.
    pub fn cast(&self, queue: &str, msg: Message) -> Result<u64> {
        self.check_open()?;
        self.ns.send(queue, msg)
    }

    /// Publishes `msg` to every subscriber of `topic`; returns how many got it.
    pub fn fanout(&self, topic: &str, msg: Message) -> Result<usize> {
        self.check_open()?;
        self.ns.topic(topic)?.publish(msg)
    }

    /// Replies that arrived after their call had timed out (dropped). Replies
    /// waiting in reply queues that no call is waiting on are examined first.
    pub fn late_replies(&self) -> u64 {
        let drain = |q: &Queue| {
            while let Ok(Some(_)) = q.receive_auto_ack(Wait::Try) {
                self.late.fetch_add(1, SeqCst);
            }
        };
        if let Some(_busy) = self.reply_busy.try_lock() {
            drain(&self.reply);
        }
        // Held while draining: no call can take one of these meanwhile.
        let idle = self.idle.lock();
        idle.iter().for_each(drain);
        drop(idle);
        self.late.load(SeqCst)
    }
}

impl Drop for RpcClient {
    fn drop(&mut self) {
        let _ = self.ns.delete_queue(self.reply.name());
        for name in self.extra.lock().iter() {
            let _ = self.ns.delete_queue(name);
        }
    }
}
