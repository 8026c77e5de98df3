//! RPC on top of queues: `call` (request → reply, matched by correlation id),
//! `cast` (one consumer, no reply), `fanout` (every subscriber of a topic).
//!
//! The serving side is a [`Pool`](crate::Pool): a handler's `Ok(Some(bytes))` is
//! the reply; its failure on the last allowed delivery comes back as
//! [`Error::Remote`].
//!
//! Replies come back on the client's private reply queue. There is no router
//! thread: the caller that holds the *leader* lock receives from the reply queue
//! itself and hands replies meant for other callers to them (a condvar), so a
//! lone caller gets its reply with no extra thread hop. When the leader's own
//! reply arrives it returns and another waiting caller takes over.

use crate::broker::Namespace;
use crate::clock::nanos;
use crate::consumer::{REPLY_TO, RPC_ERROR};
use crate::error::{Error, Result};
use crate::message::{Message, MessageView};
use crate::queue::{Delivery, Queue, QueueOptions, Wait};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
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
    /// Calls in flight by correlation id, with their reply once it came.
    pending: Mutex<HashMap<String, Option<Delivery>>>,
    arrived: Condvar,
    /// Held by the caller that receives from the reply queue.
    leader: Mutex<()>,
    late: AtomicU64,
    next: AtomicU64,
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
            pending: Mutex::new(HashMap::new()),
            arrived: Condvar::new(),
            leader: Mutex::new(()),
            late: AtomicU64::new(0),
            next: AtomicU64::new(0),
        })
    }

    /// The private reply queue's name.
    pub fn reply_queue(&self) -> &str {
        self.reply.name()
    }

    /// Sends `msg` to `queue` and waits at most `timeout` (on the broker's clock)
    /// for the reply. [`Error::Timeout`] if none came (a reply arriving later is
    /// dropped and counted in [`late_replies`](Self::late_replies));
    /// [`Error::Remote`] if the handler failed for good.
    pub fn call(&self, queue: &str, msg: Message, timeout: Duration) -> Result<Delivery> {
        let corr = format!("{}#{}", self.reply.name(), self.next.fetch_add(1, SeqCst));
        self.pending.lock().insert(corr.clone(), None);
        let msg = msg
            .correlation_id(corr.clone())
            .header(REPLY_TO, self.reply.name());
        if let Err(e) = self.ns.send(queue, msg) {
            self.pending.lock().remove(&corr);
            return Err(e);
        }
        let clock = self.reply.core.clock.clone();
        let deadline = clock.now().saturating_add(nanos(timeout));
        let outcome = loop {
            if let Some(d) = self.take_arrived(&corr) {
                break Ok(d);
            }
            let now = clock.now();
            if now >= deadline {
                break Err(Error::Timeout);
            }
            let remaining = Duration::from_nanos(deadline - now);
            if let Some(_lead) = self.leader.try_lock() {
                // Our reply may have been handed over just before we led.
                if let Some(d) = self.take_arrived(&corr) {
                    break Ok(d);
                }
                match self.reply.receive_auto_ack(Wait::For(remaining)) {
                    Ok(Some(d)) if d.correlation_id() == Some(corr.as_str()) => break Ok(d),
                    Ok(Some(d)) => self.hand_over(d),
                    Ok(None) => {}
                    Err(e) => break Err(e),
                }
            } else {
                let mut p = self.pending.lock();
                if !matches!(p.get(&corr), Some(Some(_))) {
                    // Woken by a hand-over or when the leader leaves; the limit
                    // guards against a leader that was itself waiting for time.
                    let limit = clock.park_limit(deadline - now).unwrap_or(remaining);
                    self.arrived
                        .wait_for(&mut p, limit.min(Duration::from_millis(50)));
                }
            }
        };
        // Let another caller lead (or find the reply we may have handed over).
        self.arrived.notify_all();
        let leftover = self.pending.lock().remove(&corr);
        let d = match (outcome, leftover) {
            (Ok(d), _) => d,
            (Err(Error::Timeout), Some(Some(d))) => d, // arrived at the last moment
            (Err(e), _) => return Err(e),
        };
        match d.header_str(RPC_ERROR) {
            Some(e) => Err(Error::Remote(e.to_string())),
            None => Ok(d),
        }
    }

    fn take_arrived(&self, corr: &str) -> Option<Delivery> {
        let mut p = self.pending.lock();
        match p.get_mut(corr) {
            Some(slot @ Some(_)) => slot.take(),
            _ => None,
        }
    }

    /// A reply for another caller: give it to them, or count it late.
    fn hand_over(&self, d: Delivery) {
        let mut p = self.pending.lock();
        match d.correlation_id().and_then(|c| p.get_mut(c)) {
            Some(slot) => {
                *slot = Some(d);
                drop(p);
                self.arrived.notify_all();
            }
            None => {
                self.late.fetch_add(1, SeqCst);
            }
        }
    }

    /// Sends `msg` to `queue` for one consumer; no reply.
    pub fn cast(&self, queue: &str, msg: Message) -> Result<u64> {
        self.ns.send(queue, msg)
    }

    /// Publishes `msg` to every subscriber of `topic`; returns how many got it.
    pub fn fanout(&self, topic: &str, msg: Message) -> Result<usize> {
        self.ns.topic(topic)?.publish(msg)
    }

    /// Replies that arrived after their call had timed out (dropped). Replies
    /// still waiting in the reply queue are examined first.
    pub fn late_replies(&self) -> u64 {
        if let Some(_lead) = self.leader.try_lock() {
            while let Ok(Some(d)) = self.reply.receive_auto_ack(Wait::Try) {
                self.hand_over(d);
            }
        }
        self.late.load(SeqCst)
    }
}

impl Drop for RpcClient {
    fn drop(&mut self) {
        let _ = self.ns.delete_queue(self.reply.name());
    }
}
