//! RPC on top of queues: `call` (request → reply, matched by correlation id),
//! `cast` (one consumer, no reply), `fanout` (every subscriber of a topic).
//!
//! The serving side is a [`Pool`](crate::Pool): a handler's `Ok(Some(bytes))` is
//! the reply; its failure on the last allowed delivery comes back as
//! [`Error::Remote`].

use crate::broker::Namespace;
use crate::consumer::{REPLY_TO, RPC_ERROR};
use crate::error::{Error, Result};
use crate::message::{Message, MessageView};
use crate::queue::{Delivery, Queue, QueueOptions, Wait};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

static CLIENTS: AtomicU64 = AtomicU64::new(0);

struct Inner {
    ns: Namespace,
    reply: Queue,
    pending: Mutex<HashMap<String, SyncSender<Delivery>>>,
    late: AtomicU64,
    stop: AtomicBool,
    next: AtomicU64,
}

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
    inner: Arc<Inner>,
    router: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("reply_queue", &self.inner.reply.name())
            .field("late_replies", &self.late_replies())
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
        let inner = Arc::new(Inner {
            ns: ns.clone(),
            reply,
            pending: Mutex::new(HashMap::new()),
            late: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            next: AtomicU64::new(0),
        });
        let me = inner.clone();
        let router = std::thread::Builder::new()
            .name("libqueue-rpc-replies".into())
            .spawn(move || me.route())
            .map_err(|e| Error::InvalidState(format!("cannot start the reply router: {e}")))?;
        Ok(RpcClient {
            inner,
            router: Some(router),
        })
    }

    /// The private reply queue's name.
    pub fn reply_queue(&self) -> &str {
        self.inner.reply.name()
    }

    /// Sends `msg` to `queue` and waits at most `timeout` (real time) for the
    /// reply. [`Error::Timeout`] if none came (a reply arriving later is dropped
    /// and counted in [`late_replies`](Self::late_replies)); [`Error::Remote`] if
    /// the handler failed for good.
    pub fn call(&self, queue: &str, msg: Message, timeout: Duration) -> Result<Delivery> {
        let i = &self.inner;
        let corr = format!("{}#{}", i.reply.name(), i.next.fetch_add(1, SeqCst));
        let (tx, rx) = sync_channel(1);
        i.pending.lock().insert(corr.clone(), tx);
        let msg = msg
            .correlation_id(corr.clone())
            .header(REPLY_TO, i.reply.name());
        if let Err(e) = i.ns.send(queue, msg) {
            i.pending.lock().remove(&corr);
            return Err(e);
        }
        let reply = match rx.recv_timeout(timeout) {
            Ok(d) => d,
            Err(_) => {
                if i.pending.lock().remove(&corr).is_some() {
                    return Err(Error::Timeout);
                }
                // The router took it just now: the reply is in the channel.
                rx.try_recv().map_err(|_| Error::Timeout)?
            }
        };
        match reply.header_str(RPC_ERROR) {
            Some(e) => Err(Error::Remote(e.to_string())),
            None => Ok(reply),
        }
    }

    /// Sends `msg` to `queue` for one consumer; no reply.
    pub fn cast(&self, queue: &str, msg: Message) -> Result<u64> {
        self.inner.ns.send(queue, msg)
    }

    /// Publishes `msg` to every subscriber of `topic`; returns how many got it.
    pub fn fanout(&self, topic: &str, msg: Message) -> Result<usize> {
        self.inner.ns.topic(topic)?.publish(msg)
    }

    /// Replies that arrived after their call had timed out (dropped).
    pub fn late_replies(&self) -> u64 {
        self.inner.late.load(SeqCst)
    }
}

impl Inner {
    fn route(&self) {
        while !self.stop.load(SeqCst) {
            let mut got = None;
            let r = self
                .reply
                .core
                .receive_until(1, Wait::Forever, true, Some(&self.stop), |d| got = Some(d));
            if r.is_err() {
                return; // closed
            }
            let Some(d) = got else { continue };
            let waiter = d
                .correlation_id()
                .and_then(|c| self.pending.lock().remove(c));
            match waiter {
                Some(tx) => {
                    if tx.try_send(d).is_err() {
                        self.late.fetch_add(1, SeqCst);
                    }
                }
                None => {
                    self.late.fetch_add(1, SeqCst);
                }
            }
        }
    }
}

impl Drop for RpcClient {
    fn drop(&mut self) {
        self.inner.stop.store(true, SeqCst);
        self.inner.reply.core.interrupt();
        if let Some(r) = self.router.take() {
            let _ = r.join();
        }
        let _ = self.inner.ns.delete_queue(self.inner.reply.name());
    }
}
