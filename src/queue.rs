//! The queue API: [`Queue`], its [`QueueOptions`], [`Delivery`] and [`QueueStats`].

use crate::clock::{nanos, Clock};
pub(crate) use crate::engine::ReceiveMode;
use crate::engine::{HeldLease, LeaseKey, QueueCore, Received, Settle};
use crate::error::{Error, Result};
use crate::remote::client::{Client, QueueAt};
use crate::types::{Headers, Message, MessageView, Node, OnFull, QueueOptions, QueueStats, Wait};
use std::mem::ManuallyDrop;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// A handle on one queue. Cheap to clone; `Send + Sync`: share it between
/// producer and consumer threads.
#[derive(Clone, Debug)]
pub struct Queue {
    flavor: QueueFlavor,
}

/// Where a [`Queue`]'s operations run: the engine of this process, or the
/// host of its data directory (crossbeam-channel's `SenderFlavor` is the
/// model: one `match` per call, no `dyn`).
#[derive(Clone, Debug)]
enum QueueFlavor {
    Local(Arc<QueueCore>),
    Remote(Arc<RemoteQueue>),
}

/// A queue of the host's, named: every call is a request to the host.
pub(crate) struct RemoteQueue {
    pub(crate) client: Arc<Client>,
    pub(crate) ns: String,
    pub(crate) name: String,
    pub(crate) opts: QueueOptions,
    /// Which queue of that name it is (the host's number; `wire::op::QUEUE`):
    /// once that queue is deleted, this handle stays closed, as a local one.
    serial: u64,
    /// Set once the host answered `Closed` for it (deleted by someone else).
    closed: AtomicBool,
    /// The statistics last read: what [`Queue::stats`] shows once the host
    /// can no longer answer for it (this broker closed).
    last_stats: parking_lot::Mutex<QueueStats>,
}

impl RemoteQueue {
    pub(crate) fn new(
        client: &Arc<Client>,
        ns: &str,
        name: &str,
        opts: QueueOptions,
        serial: u64,
    ) -> Self {
        RemoteQueue {
            client: client.clone(),
            ns: ns.to_string(),
            name: name.to_string(),
            opts,
            serial,
            closed: AtomicBool::new(false),
            last_stats: Default::default(),
        }
    }

    /// How requests name it.
    pub(crate) fn at(&self) -> QueueAt<'_> {
        QueueAt {
            ns: &self.ns,
            name: &self.name,
            serial: self.serial,
        }
    }

    /// Notes a `Closed` answer: the handle is closed from now on.
    fn seen<T>(&self, r: Result<T>) -> Result<T> {
        if matches!(r, Err(Error::Closed)) {
            self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        r
    }

    fn is_closed(&self) -> bool {
        self.client.is_closed()
            || self.closed.load(std::sync::atomic::Ordering::SeqCst)
            || self.client.was_deleted(self.serial)
    }
}

impl std::fmt::Debug for RemoteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("namespace", &self.ns)
            .field("name", &self.name)
            .field("attached", &true)
            .finish_non_exhaustive()
    }
}

impl Queue {
    pub(crate) fn local(core: Arc<QueueCore>) -> Self {
        Queue {
            flavor: QueueFlavor::Local(core),
        }
    }

    pub(crate) fn remote(q: RemoteQueue) -> Self {
        Queue {
            flavor: QueueFlavor::Remote(Arc::new(q)),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        match &self.flavor {
            QueueFlavor::Local(q) => &q.name,
            QueueFlavor::Remote(q) => &q.name,
        }
    }

    /// The namespace it lives in.
    pub fn namespace(&self) -> &str {
        match &self.flavor {
            QueueFlavor::Local(q) => &q.ns.name,
            QueueFlavor::Remote(q) => &q.ns,
        }
    }

    /// Its options.
    pub fn options(&self) -> &QueueOptions {
        match &self.flavor {
            QueueFlavor::Local(q) => &q.opts,
            QueueFlavor::Remote(q) => &q.opts,
        }
    }

    /// Sends a message; when the queue is full, does what its `on_full` option says.
    /// Returns the message id.
    pub fn send(&self, msg: Message) -> Result<u64> {
        self.send_with(msg, self.options().on_full)
    }

    /// Sends a message with an explicit full policy.
    pub fn send_with(&self, msg: Message, on_full: OnFull) -> Result<u64> {
        self.send_until(msg, on_full, None)
    }

    /// Sends a copy of `body` as a plain message (nothing else set), with the
    /// queue's full policy. Cheaper than `send(Message::new(body.to_vec()))`
    /// for a steady stream of same-sized bodies: the bytes are copied into the
    /// buffer of a message already consumed (up to 4 KiB) instead of a new one.
    ///
    /// ```
    /// use libqueue::{Broker, MessageView};
    /// let q = Broker::new().default_queue()?;
    /// q.send_bytes(b"reading 42")?;
    /// assert_eq!(q.try_receive()?.unwrap().body(), b"reading 42");
    /// # Ok::<(), libqueue::Error>(())
    /// ```
    pub fn send_bytes(&self, body: &[u8]) -> Result<u64> {
        self.send_copy_until(body, self.options().on_full, None)
    }

    /// Sends several messages: all are accepted or none is (capacity and quotas are
    /// reserved for the whole batch). Returns their ids in order.
    ///
    /// With a data directory the batch's persistent messages are journaled as
    /// one record (synced once under `SyncMode::Always`): after a crash at any
    /// instant the batch is recovered whole or not at all. A journal error
    /// refuses the whole batch.
    pub fn send_batch(&self, msgs: impl IntoIterator<Item = Message>) -> Result<Vec<u64>> {
        self.send_batch_until(msgs.into_iter().collect(), self.options().on_full, None)
    }

    /// Sends several messages with an explicit full policy.
    pub fn send_batch_with(
        &self,
        msgs: impl IntoIterator<Item = Message>,
        on_full: OnFull,
    ) -> Result<Vec<u64>> {
        self.send_batch_until(msgs.into_iter().collect(), on_full, None)
    }

    /// Receives one message, leased: `Ok(None)` if none came within `wait`.
    pub fn receive_with(&self, wait: Wait) -> Result<Option<Delivery>> {
        self.one(wait, ReceiveMode::Leased)
    }

    fn one(&self, wait: Wait, mode: ReceiveMode) -> Result<Option<Delivery>> {
        let mut got = None;
        self.receive_into(1, wait, mode, None, |d| got = Some(d))?;
        Ok(got)
    }

    fn many(&self, max: usize, wait: Wait, mode: ReceiveMode) -> Result<Vec<Delivery>> {
        let mut out = Vec::with_capacity(max.min(256));
        self.receive_into(max, wait, mode, None, |d| out.push(d))?;
        Ok(out)
    }

    /// Receives a message if one is ready now (leased).
    pub fn try_receive(&self) -> Result<Option<Delivery>> {
        self.receive_with(Wait::Try)
    }

    /// Waits for a message (leased). Fails only with [`Error::Closed`].
    pub fn receive(&self) -> Result<Delivery> {
        self.receive_with(Wait::Forever)?.ok_or(Error::Closed)
    }

    /// Waits at most `timeout` for a message (leased).
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Option<Delivery>> {
        self.receive_with(Wait::For(timeout))
    }

    /// Receives up to `max` messages (leased): waits as `wait` says for the first,
    /// then takes what else is ready. Empty if nothing came.
    pub fn receive_batch(&self, max: usize, wait: Wait) -> Result<Vec<Delivery>> {
        self.many(max, wait, ReceiveMode::Leased)
    }

    /// Receives one message and acks it at once (at-most-once delivery).
    pub fn receive_auto_ack(&self, wait: Wait) -> Result<Option<Delivery>> {
        self.one(wait, ReceiveMode::AutoAck)
    }

    /// Receives up to `max` messages, acked at once.
    pub fn receive_batch_auto_ack(&self, max: usize, wait: Wait) -> Result<Vec<Delivery>> {
        self.many(max, wait, ReceiveMode::AutoAck)
    }

    /// Up to `max` ready messages in the order they would be delivered, without
    /// leasing them.
    pub fn peek(&self, max: usize) -> Result<Vec<Peeked>> {
        match &self.flavor {
            QueueFlavor::Local(q) => Ok(q.peek(max)?.into_iter().map(Peeked).collect()),
            QueueFlavor::Remote(q) => Ok(q
                .seen(q.client.peek(q.at(), max))?
                .into_iter()
                .map(|n| Peeked(Arc::new(n)))
                .collect()),
        }
    }

    /// Removes a ready or delayed message by id. A leased message cannot be
    /// cancelled ([`Error::InvalidState`]); an unknown id is [`Error::NotFound`].
    pub fn cancel(&self, id: u64) -> Result<()> {
        match &self.flavor {
            QueueFlavor::Local(q) => q.cancel(id),
            QueueFlavor::Remote(q) => q.seen(q.client.cancel(q.at(), id)),
        }
    }

    /// Removes every ready and delayed message; leased ones stay with their
    /// consumers. Returns how many were removed.
    pub fn purge(&self) -> Result<u64> {
        match &self.flavor {
            QueueFlavor::Local(q) => {
                if q.is_closed() {
                    return Err(Error::Closed);
                }
                q.check_fork()?;
                Ok(q.purge(crate::store::RemoveReason::Purged))
            }
            QueueFlavor::Remote(q) => q.seen(q.client.purge(q.at())),
        }
    }

    /// Exact statistics. In a forked child, for a queue inherited from the
    /// parent: its counters as they were at the fork (nothing else is touched).
    pub fn stats(&self) -> QueueStats {
        match &self.flavor {
            QueueFlavor::Local(q) => q.stats(),
            // The host answers for a deleted queue too (its last counters);
            // once it cannot (this broker closed), the last statistics read.
            QueueFlavor::Remote(q) => match q.seen(q.client.queue_stats(q.at())) {
                Ok(s) => {
                    *q.last_stats.lock() = s;
                    s
                }
                Err(_) => *q.last_stats.lock(),
            },
        }
    }

    /// [`Error::Forked`] if this handle was inherited through `fork()`.
    pub(crate) fn check_fork(&self) -> Result<()> {
        match &self.flavor {
            QueueFlavor::Local(q) => q.check_fork(),
            QueueFlavor::Remote(q) => q.client.check_fork(),
        }
    }

    /// Makes every persistent message sent so far durable (a barrier).
    pub fn flush(&self) -> Result<()> {
        match &self.flavor {
            QueueFlavor::Local(q) => q.flush(),
            QueueFlavor::Remote(q) => q.client.unit(crate::remote::wire::op::FLUSH, &[]),
        }
    }

    /// A file descriptor that is readable exactly when a receive would find a
    /// message: wait on it with epoll / poll / select / asyncio (`add_reader`),
    /// then receive with [`Wait::Try`] until it returns `None` (which clears it).
    /// Delayed messages and expired leases make it readable when they fall due.
    /// Level-triggered; owned by the queue (do not close it); Linux only.
    ///
    /// On a queue of an attached broker it is this process's own descriptor,
    /// kept by the host (`WATCH`/`NOTIFY` in `remote::wire`): what this
    /// process's calls change shows before they return; other processes'
    /// calls and the host's timers show as soon as the host's notice arrives.
    /// Once this broker is closed it stays readable.
    #[cfg(target_os = "linux")]
    pub fn fd(&self) -> Result<std::os::fd::RawFd> {
        match &self.flavor {
            QueueFlavor::Local(q) => q.pollable_fd(),
            QueueFlavor::Remote(q) => q.seen(q.client.watch(q.at())),
        }
    }

    /// Whether the queue was closed (its broker closed or the queue was deleted).
    pub fn is_closed(&self) -> bool {
        match &self.flavor {
            QueueFlavor::Local(q) => q.is_closed(),
            QueueFlavor::Remote(q) => q.is_closed(),
        }
    }

    /// [`receive_with`](Self::receive_with) that can be stopped from another
    /// thread: it also returns `Ok(None)` once `cancel` is set and
    /// [`wake_receivers`](Self::wake_receivers) called (taking nothing more).
    /// A worker loop stops this way.
    ///
    /// ```
    /// use libqueue::{Broker, Wait};
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// let q = Broker::new().queue("jobs")?;
    /// let stop = Arc::new(AtomicBool::new(false));
    /// let worker = {
    ///     let (q, stop) = (q.clone(), stop.clone());
    ///     std::thread::spawn(move || q.receive_cancellable(Wait::Forever, &stop))
    /// };
    /// stop.store(true, Ordering::SeqCst);
    /// q.wake_receivers();
    /// assert!(worker.join().unwrap()?.is_none());
    /// # Ok::<(), libqueue::Error>(())
    /// ```
    pub fn receive_cancellable(&self, wait: Wait, cancel: &AtomicBool) -> Result<Option<Delivery>> {
        let mut got = None;
        self.receive_into(1, wait, ReceiveMode::Leased, Some(cancel), |d| {
            got = Some(d)
        })?;
        Ok(got)
    }

    /// [`receive_auto_ack`](Self::receive_auto_ack) that can be stopped like
    /// [`receive_cancellable`](Self::receive_cancellable).
    pub fn receive_auto_ack_cancellable(
        &self,
        wait: Wait,
        cancel: &AtomicBool,
    ) -> Result<Option<Delivery>> {
        let mut got = None;
        self.receive_into(1, wait, ReceiveMode::AutoAck, Some(cancel), |d| {
            got = Some(d)
        })?;
        Ok(got)
    }

    /// Wakes every receive waiting on this queue, so a cancellable one
    /// re-checks its flag (the others go back to waiting).
    pub fn wake_receivers(&self) {
        match &self.flavor {
            QueueFlavor::Local(q) => q.interrupt(),
            QueueFlavor::Remote(q) => q.client.wake_waiters(),
        }
    }

    /// Returns a leased message unprocessed, on behalf of the delivery that
    /// `ticket` names (which may be held by another thread, e.g. a worker
    /// stuck in its handler): it is ready again at once and this delivery
    /// does not count towards `max_deliveries`. [`Error::LeaseExpired`] if the
    /// lease is no longer held (settled, expired or given back already).
    ///
    /// ```
    /// use libqueue::{Broker, Error, Message, MessageView};
    /// let q = Broker::new().queue("jobs")?;
    /// q.send(Message::new("job"))?;
    /// let d = q.try_receive()?.unwrap();
    /// let ticket = d.ticket().expect("leased");
    /// q.give_back(ticket)?; // e.g. from a thread stopping a stuck worker
    /// assert!(matches!(d.ack(), Err(Error::LeaseExpired { .. })));
    /// let again = q.try_receive()?.unwrap();
    /// assert_eq!((again.body(), again.delivery_count()), (&b"job"[..], 1));
    /// # Ok::<(), libqueue::Error>(())
    /// ```
    pub fn give_back(&self, ticket: LeaseTicket) -> Result<()> {
        match &self.flavor {
            QueueFlavor::Local(q) => match ticket.key {
                TicketKey::Local(key) => q.give_back(ticket.id, key),
                TicketKey::Remote(_) => Err(Error::InvalidArgument(
                    "this ticket is of an attached broker's delivery".into(),
                )),
            },
            QueueFlavor::Remote(q) => match ticket.key {
                TicketKey::Remote(lease) => {
                    q.client.give_back(q.at(), lease).map_err(|e| match e {
                        Error::LeaseExpired { .. } => Error::LeaseExpired { id: ticket.id },
                        e => e,
                    })
                }
                TicketKey::Local(_) => Err(Error::InvalidArgument(
                    "this ticket is of a local broker's delivery".into(),
                )),
            },
        }
    }

    /// The clock its timers read (its broker's).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        match &self.flavor {
            QueueFlavor::Local(q) => &q.clock,
            QueueFlavor::Remote(q) => q.client.clock(),
        }
    }

    /// Receives up to `max` messages, handing each to `out`; also returns
    /// (with nothing) once `cancel` is set and the receivers woken.
    pub(crate) fn receive_into<F: FnMut(Delivery)>(
        &self,
        max: usize,
        wait: Wait,
        mode: ReceiveMode,
        cancel: Option<&AtomicBool>,
        mut out: F,
    ) -> Result<usize> {
        match &self.flavor {
            QueueFlavor::Local(q) => {
                q.receive_until(max, wait, mode, cancel, |r| out(Delivery::local(r)))
            }
            QueueFlavor::Remote(q) => {
                let auto_ack = matches!(mode, ReceiveMode::AutoAck);
                let got = q.seen(q.client.receive(q.at(), max, wait, auto_ack, cancel))?;
                let n = got.len();
                for (lease, count, node) in got {
                    out(Delivery::remote(q, lease, count, node));
                }
                Ok(n)
            }
        }
    }

    /// [`send_with`](Self::send_with) whose wait for room ends with
    /// [`Error::Closed`] once `cancel` is set and the waiters woken.
    pub(crate) fn send_until(
        &self,
        msg: Message,
        on_full: OnFull,
        cancel: Option<&AtomicBool>,
    ) -> Result<u64> {
        match &self.flavor {
            QueueFlavor::Local(q) => q.send_one(msg, on_full, cancel),
            QueueFlavor::Remote(q) => q
                .seen(q.client.send(
                    q.at(),
                    Some(on_full),
                    false,
                    std::slice::from_ref(&msg),
                    cancel,
                ))?
                .first()
                .copied()
                .ok_or_else(|| Error::Io("the host answered a send without an id".into())),
        }
    }

    /// [`send_bytes`](Self::send_bytes) with a full policy and a cancel flag.
    pub(crate) fn send_copy_until(
        &self,
        body: &[u8],
        on_full: OnFull,
        cancel: Option<&AtomicBool>,
    ) -> Result<u64> {
        match &self.flavor {
            QueueFlavor::Local(q) => q.send_copy(body, on_full, cancel),
            QueueFlavor::Remote(_) => self.send_until(Message::new(body.to_vec()), on_full, cancel),
        }
    }

    /// [`send_batch_with`](Self::send_batch_with) with a cancel flag.
    pub(crate) fn send_batch_until(
        &self,
        msgs: Vec<Message>,
        on_full: OnFull,
        cancel: Option<&AtomicBool>,
    ) -> Result<Vec<u64>> {
        match &self.flavor {
            QueueFlavor::Local(q) => q.send(msgs, on_full, cancel),
            QueueFlavor::Remote(q) => {
                q.seen(q.client.send(q.at(), Some(on_full), true, &msgs, cancel))
            }
        }
    }

    /// The number of the queue this handle is on (the host's `wire_serial`
    /// is made from it); 0 for an attached handle.
    pub(crate) fn serial(&self) -> u64 {
        match &self.flavor {
            QueueFlavor::Local(q) => q.serial(),
            QueueFlavor::Remote(_) => 0,
        }
    }

    /// The largest message its namespace accepts (bytes); the host's bound
    /// on what one answer may carry. `u64::MAX` for an attached handle.
    pub(crate) fn max_message_size(&self) -> u64 {
        match &self.flavor {
            QueueFlavor::Local(q) => q.ns.quotas.max_message_size,
            QueueFlavor::Remote(_) => u64::MAX,
        }
    }

    /// Wakes every waiter (receivers and senders waiting for room).
    pub(crate) fn wake_all(&self) {
        match &self.flavor {
            QueueFlavor::Local(q) => q.wake_all(),
            QueueFlavor::Remote(q) => q.client.wake_waiters(),
        }
    }
}

/// Names one leased [`Delivery`] so that another thread can give its message
/// back with [`Queue::give_back`] (see [`Delivery::ticket`]). Copyable; it
/// grants nothing once the lease has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTicket {
    id: u64,
    key: TicketKey,
}

/// The lease a [`LeaseTicket`] names: the engine's key, or the number the
/// host gave an attached process's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TicketKey {
    Local(LeaseKey),
    Remote(u64),
}

/// A received message. Its body is borrowed from the engine (no copy).
///
/// A leased delivery must be settled with [`ack`](Delivery::ack) or
/// [`nack`](Delivery::nack); if it is dropped unsettled, the lease runs out and the
/// message is redelivered. Auto-acked deliveries need nothing.
#[derive(Debug)]
pub struct Delivery {
    flavor: DeliveryFlavor,
}

/// Where a [`Delivery`] is settled (see [`QueueFlavor`]).
#[derive(Debug)]
enum DeliveryFlavor {
    Local(LocalDelivery),
    Remote(RemoteDelivery),
}

/// A delivery from the host: a copy of the message, and the number of its
/// lease on the host (none when auto-acked).
#[derive(Debug)]
struct RemoteDelivery {
    node: Node,
    lease: Option<RemoteLease>,
    delivery_count: u32,
}

#[derive(Debug)]
struct RemoteLease {
    queue: Arc<RemoteQueue>,
    number: u64,
    /// Set once settled (or given back): dropping it then tells the host nothing.
    done: AtomicBool,
}

impl Drop for RemoteLease {
    fn drop(&mut self) {
        // Unsettled: the host forgets the number and the lease runs out there,
        // as a dropped local delivery's does.
        if !self.done.load(std::sync::atomic::Ordering::SeqCst) {
            self.queue.client.forget(self.number);
        }
    }
}

/// A delivery from the engine of this process: the engine's [`Received`],
/// whose node goes back to the node recycler when it is dropped.
#[derive(Debug)]
struct LocalDelivery {
    /// Taken only by `drop`, which hands it to the node recycler.
    node: ManuallyDrop<Arc<Node>>,
    /// `None` when auto-acked, so an auto-ack receive touches no shared
    /// reference count.
    lease: Option<HeldLease>,
    delivery_count: u32,
}

impl Drop for LocalDelivery {
    fn drop(&mut self) {
        // SAFETY: `node` is not used after this (we are in `drop`), and this is
        // the only place that takes it out of its `ManuallyDrop`.
        let node = unsafe { ManuallyDrop::take(&mut self.node) };
        crate::types::node::pool::recycle(node);
    }
}

/// Implements [`MessageView`] for a handle with one `match` per accessor on
/// its flavor, each arm reading a [`MessageView`] the flavor holds.
macro_rules! view_by_flavor {
    ($ty:ty, $($arm:pat => $view:expr),+ $(,)?) => {
        impl MessageView for $ty {
            fn id(&self) -> u64 {
                match self { $($arm => $view.id()),+ }
            }
            fn body(&self) -> &[u8] {
                match self { $($arm => $view.body()),+ }
            }
            fn headers(&self) -> &Headers {
                match self { $($arm => MessageView::headers($view)),+ }
            }
            fn name(&self) -> Option<&str> {
                match self { $($arm => MessageView::name($view)),+ }
            }
            fn correlation_id(&self) -> Option<&str> {
                match self { $($arm => MessageView::correlation_id($view)),+ }
            }
            fn priority(&self) -> u8 {
                match self { $($arm => $view.priority()),+ }
            }
            fn enqueued_at(&self) -> u64 {
                match self { $($arm => $view.enqueued_at()),+ }
            }
            fn expires_at(&self) -> Option<u64> {
                match self { $($arm => $view.expires_at()),+ }
            }
            fn is_persistent(&self) -> bool {
                match self { $($arm => $view.is_persistent()),+ }
            }
            fn size(&self) -> u64 {
                match self { $($arm => $view.size()),+ }
            }
        }
    };
}

view_by_flavor!(Delivery,
    Delivery { flavor: DeliveryFlavor::Local(l) } => &**l.node,
    Delivery { flavor: DeliveryFlavor::Remote(r) } => &r.node,
);
view_by_flavor!(Peeked, Peeked(n) => &**n);

impl Delivery {
    /// Wraps what the local engine handed out.
    #[inline]
    pub(crate) fn local(r: Received) -> Self {
        Delivery {
            flavor: DeliveryFlavor::Local(LocalDelivery {
                node: ManuallyDrop::new(r.node),
                lease: r.lease,
                delivery_count: r.delivery_count,
            }),
        }
    }

    /// Wraps what the host handed out (`lease` 0: auto-acked).
    pub(crate) fn remote(q: &Arc<RemoteQueue>, lease: u64, count: u32, node: Node) -> Self {
        Delivery {
            flavor: DeliveryFlavor::Remote(RemoteDelivery {
                node,
                lease: (lease != 0).then(|| RemoteLease {
                    queue: q.clone(),
                    number: lease,
                    done: AtomicBool::new(false),
                }),
                delivery_count: count,
            }),
        }
    }

    /// The message as the engine holds it (the host encodes it from here).
    pub(crate) fn node(&self) -> &Node {
        match &self.flavor {
            DeliveryFlavor::Local(l) => &l.node,
            DeliveryFlavor::Remote(r) => &r.node,
        }
    }

    /// The namespace of the queue it came from (leased deliveries).
    pub(crate) fn namespace_name(&self) -> Option<&str> {
        match &self.flavor {
            DeliveryFlavor::Local(l) => l.lease.as_ref().map(|h| h.queue.ns.name.as_str()),
            DeliveryFlavor::Remote(r) => r.lease.as_ref().map(|l| l.queue.ns.as_str()),
        }
    }

    /// Which delivery of the message this is (1 the first time).
    pub fn delivery_count(&self) -> u32 {
        match &self.flavor {
            DeliveryFlavor::Local(l) => l.delivery_count,
            DeliveryFlavor::Remote(r) => r.delivery_count,
        }
    }

    /// The queue it came from (leased deliveries; an auto-acked one keeps no
    /// reference to its queue).
    pub fn queue_name(&self) -> Option<&str> {
        match &self.flavor {
            DeliveryFlavor::Local(l) => l.lease.as_ref().map(|h| h.queue.name.as_str()),
            DeliveryFlavor::Remote(r) => r.lease.as_ref().map(|l| l.queue.name.as_str()),
        }
    }

    /// Whether the queue of a leased delivery was closed (its broker closed or
    /// the queue deleted); false for an auto-acked one, which keeps no queue.
    pub(crate) fn queue_closed(&self) -> bool {
        match &self.flavor {
            DeliveryFlavor::Local(l) => l.lease.as_ref().is_some_and(|h| h.queue.is_closed()),
            DeliveryFlavor::Remote(r) => r.lease.as_ref().is_some_and(|l| l.queue.is_closed()),
        }
    }

    /// A ticket naming its lease, with which another thread can give the
    /// message back ([`Queue::give_back`]); `None` when auto-acked.
    pub fn ticket(&self) -> Option<LeaseTicket> {
        match &self.flavor {
            DeliveryFlavor::Local(l) => l.lease.as_ref().map(|h| LeaseTicket {
                id: l.node.id,
                key: TicketKey::Local(h.key),
            }),
            DeliveryFlavor::Remote(r) => r.lease.as_ref().map(|l| LeaseTicket {
                id: r.node.id,
                key: TicketKey::Remote(l.number),
            }),
        }
    }

    /// Whether it is leased (false when received with auto-ack).
    pub fn is_leased(&self) -> bool {
        match &self.flavor {
            DeliveryFlavor::Local(l) => l.lease.is_some(),
            DeliveryFlavor::Remote(r) => r.lease.is_some(),
        }
    }

    /// When the lease ends (clock nanoseconds), while it is held.
    pub fn lease_deadline(&self) -> Option<u64> {
        match &self.flavor {
            DeliveryFlavor::Local(l) => {
                let h = l.lease.as_ref()?;
                h.queue.lease_deadline(l.node.id, h.key)
            }
            DeliveryFlavor::Remote(r) => {
                let l = r.lease.as_ref()?;
                l.queue.client.deadline(l.number)
            }
        }
    }

    /// Settles the lease as `how` says (the one place every settle goes through).
    fn settle(&self, how: Settle<'_>) -> Result<()> {
        match &self.flavor {
            DeliveryFlavor::Local(l) => {
                let h = l.held()?;
                h.queue.settle(l.node.id, h.key, how)
            }
            DeliveryFlavor::Remote(r) => {
                let l = r.held()?;
                let (nack, delay, reason) = match how {
                    Settle::Ack => (false, None, ""),
                    Settle::Nack { delay, reason } => {
                        (true, delay.map(std::time::Duration::from_nanos), reason)
                    }
                };
                l.done.store(true, std::sync::atomic::Ordering::SeqCst);
                l.queue
                    .client
                    .settle(l.number, nack, delay, reason)
                    .map_err(|e| r.lease_error(e))
            }
        }
    }

    /// Acknowledges: the message is done and removed. [`Error::LeaseExpired`] if the
    /// lease ran out first (the message went back to the queue);
    /// [`Error::Closed`] if its queue was closed (broker closed, queue deleted):
    /// nothing is settled and, persistent, the message is back after a reopen;
    /// [`Error::Storage`] if the journal could not record the ack (the message
    /// may come back after a restart).
    ///
    /// The same holds for every way of settling or extending: after the broker
    /// is closed each returns [`Error::Closed`].
    pub fn ack(self) -> Result<()> {
        self.settle(Settle::Ack)
    }

    /// Acknowledges many deliveries of one queue at once: each is acked as
    /// [`ack`](Self::ack) would, and the answer has one result per delivery, in
    /// order (one may fail, e.g. [`Error::LeaseExpired`], while the others are
    /// acked: not all or nothing). Attached to a host, that is one request for
    /// all of them rather than one each.
    ///
    /// Checked first, and then none is acked: every delivery must be of the
    /// same queue (the same handle's, or handles of the same queue;
    /// [`Error::InvalidArgument`] otherwise) and leased
    /// ([`Error::InvalidState`] for an auto-acked one). An empty list is `Ok`
    /// with no results.
    pub fn ack_all(deliveries: Vec<Delivery>) -> Result<Vec<Result<()>>> {
        let Some(first) = deliveries.first() else {
            return Ok(Vec::new());
        };
        for d in &deliveries {
            if !d.same_queue(first)? {
                return Err(Error::InvalidArgument(format!(
                    "ack_all: message {} is of another queue than message {}",
                    d.id(),
                    first.id()
                )));
            }
        }
        if let DeliveryFlavor::Remote(r) = &first.flavor {
            let client = r.held()?.queue.client.clone();
            let mut leases = Vec::with_capacity(deliveries.len());
            for d in &deliveries {
                if let DeliveryFlavor::Remote(r) = &d.flavor {
                    let l = r.held()?;
                    l.done.store(true, std::sync::atomic::Ordering::SeqCst);
                    leases.push(l.number);
                }
            }
            let results = client.ack_batch(&leases)?;
            return Ok(deliveries
                .iter()
                .zip(results)
                .map(|(d, r)| match &d.flavor {
                    DeliveryFlavor::Remote(rd) => r.map_err(|e| rd.lease_error(e)),
                    DeliveryFlavor::Local(_) => r,
                })
                .collect());
        }
        Ok(deliveries.into_iter().map(Delivery::ack).collect())
    }

    /// Whether `self` is of the same queue as `other`, both leased
    /// ([`Error::InvalidState`] if either is not).
    pub(crate) fn same_queue(&self, other: &Delivery) -> Result<bool> {
        Ok(match (&self.flavor, &other.flavor) {
            (DeliveryFlavor::Local(a), DeliveryFlavor::Local(b)) => {
                Arc::ptr_eq(&a.held()?.queue, &b.held()?.queue)
            }
            (DeliveryFlavor::Remote(a), DeliveryFlavor::Remote(b)) => {
                let (a, b) = (&a.held()?.queue, &b.held()?.queue);
                Arc::ptr_eq(&a.client, &b.client)
                    && a.ns == b.ns
                    && a.name == b.name
                    && a.serial == b.serial
            }
            (DeliveryFlavor::Local(a), DeliveryFlavor::Remote(b)) => {
                a.held()?;
                b.held()?;
                false
            }
            (DeliveryFlavor::Remote(a), DeliveryFlavor::Local(b)) => {
                a.held()?;
                b.held()?;
                false
            }
        })
    }

    /// Returns the message to the queue now (or to the dead-letter queue if it has
    /// been delivered `max_deliveries` times).
    pub fn nack(self) -> Result<()> {
        self.settle(Settle::Nack {
            delay: None,
            reason: "nacked",
        })
    }

    /// Returns the message to the queue (after `delay`, if given), recording `reason`:
    /// if this was its last allowed delivery it goes to the dead-letter queue with
    /// `reason` in its `x-dead-letter-reason` header.
    pub fn nack_with(self, delay: Option<Duration>, reason: &str) -> Result<()> {
        self.settle(Settle::Nack {
            delay: delay.map(nanos),
            reason,
        })
    }

    /// Returns the message to the queue after `delay`.
    pub fn nack_after(self, delay: Duration) -> Result<()> {
        self.settle(Settle::Nack {
            delay: Some(nanos(delay)),
            reason: "nacked",
        })
    }

    /// Renews the lease for the queue's lease time from now.
    pub fn extend(&self) -> Result<()> {
        let by = match &self.flavor {
            DeliveryFlavor::Local(l) => l.held()?.queue.opts.lease_time,
            DeliveryFlavor::Remote(r) => r.held()?.queue.opts.lease_time,
        };
        self.extend_by(by)
    }

    /// Renews the lease so it ends `by` from now.
    pub fn extend_by(&self, by: Duration) -> Result<()> {
        if by.is_zero() {
            return Err(Error::InvalidArgument(
                "a lease extension must be positive".into(),
            ));
        }
        match &self.flavor {
            DeliveryFlavor::Local(l) => {
                let h = l.held()?;
                h.queue.extend(l.node.id, h.key, nanos(by)).map(|_| ())
            }
            DeliveryFlavor::Remote(r) => {
                let l = r.held()?;
                l.queue
                    .client
                    .extend(l.number, by)
                    .map(|_| ())
                    .map_err(|e| r.lease_error(e))
            }
        }
    }
}

impl RemoteDelivery {
    fn held(&self) -> Result<&RemoteLease> {
        self.lease.as_ref().ok_or_else(|| {
            Error::InvalidState(format!(
                "message {} was received with auto-ack; there is no lease to settle",
                self.node.id
            ))
        })
    }

    /// The host knows leases by number; the caller by message id.
    fn lease_error(&self, e: Error) -> Error {
        match e {
            Error::LeaseExpired { .. } => Error::LeaseExpired { id: self.node.id },
            e => e,
        }
    }
}

impl LocalDelivery {
    /// Its lease, or why there is none to settle.
    fn held(&self) -> Result<&HeldLease> {
        self.lease.as_ref().ok_or_else(|| {
            Error::InvalidState(format!(
                "message {} was received with auto-ack; there is no lease to settle",
                self.node.id
            ))
        })
    }
}

/// A message seen by [`Queue::peek`]: a snapshot, not leased.
#[derive(Debug, Clone)]
pub struct Peeked(Arc<Node>);

impl Peeked {
    /// The message as the engine holds it.
    pub(crate) fn node(&self) -> &Node {
        &self.0
    }
}

impl Queue {
    /// Leases again the ready message `id` for a process that held it on the
    /// previous host of a shared data directory (its delivery count `seen`
    /// carries on); see `QueueCore::reclaim`. Local queues only.
    pub(crate) fn reclaim(&self, id: u64, seen: u32) -> Result<Delivery> {
        match &self.flavor {
            QueueFlavor::Local(q) => q.reclaim(id, seen).map(Delivery::local),
            QueueFlavor::Remote(_) => Err(Error::InvalidState(
                "an attached queue cannot reclaim a lease".into(),
            )),
        }
    }
}
