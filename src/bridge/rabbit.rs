//! The [`Remote`] of RabbitMQ (AMQP 0.9.1, the `amqprs` client) and its
//! configuration, [`RabbitBuilder`].
//!
//! Outbound: one publishing channel per connection in confirm mode; every
//! publish is `mandatory` and carries `message_id` = the bridge's stable id,
//! and counts as stored only once RabbitMQ acked it (a message returned as
//! unroutable, or nacked, is a retried failure). Inbound: one channel per
//! route consuming a queue with manual acks and a prefetch no larger than the
//! local queue's capacity. The connection is made again by whichever call
//! finds it gone; the loops' backoff paces the attempts.
//!
//! RabbitMQ has no duplicate window: a publish whose confirm was lost is
//! published again and stored twice (see `docs/bridges.md`).

use super::mapping::{self, Mapped};
use super::nats::ConnectSettings;
use super::remote::{Fetched, Remote, RemoteError, Stored};
use super::stats::Shared;
use super::{inbound, BridgeBuilder};
type AmqpResult<T> = std::result::Result<T, amqprs::error::Error>;
use crate::{Broker, Error, Result};
use amqprs::callbacks::{ChannelCallback, ConnectionCallback};
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicNackArguments, BasicPublishArguments,
    BasicQosArguments, Channel, ConfirmSelectArguments, ConsumerMessage, ExchangeDeclareArguments,
    QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{
    Ack, BasicProperties, Cancel, Close, CloseChannel, FieldTable, FieldValue, Nack, Return,
};
use parking_lot::Mutex;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::Notify;

/// The configuration of a bridge to RabbitMQ, from
/// [`Bridge::rabbitmq`](super::Bridge::rabbitmq); [`start`](Self::start) it.
///
/// A local queue is named `"queue"` (default namespace) or
/// `"namespace/queue"`; it is created if missing. The exchanges and the
/// remote queues must exist (the bridge declares nothing on the server).
#[derive(Debug, Clone)]
#[must_use = "a bridge does nothing until started"]
pub struct RabbitBuilder {
    inner: BridgeBuilder,
    invalid: Option<String>,
}

impl RabbitBuilder {
    pub(super) fn new(inner: BridgeBuilder) -> Self {
        RabbitBuilder {
            inner,
            invalid: None,
        }
    }

    /// Forwards the local `queue` to `exchange` (`""`: the default exchange)
    /// with `routing_key`. Publishes are mandatory: a message no queue takes
    /// stays local and is retried (`last_error` says "unroutable"). Exactly
    /// one bridge of a process may forward a queue.
    pub fn forward(mut self, queue: &str, exchange: &str, routing_key: &str) -> Self {
        if exchange.contains('/') && self.invalid.is_none() {
            self.invalid = Some(format!(
                "exchange {exchange:?}: the bridge forwards to exchanges without '/'"
            ));
        }
        self.inner
            .outbound
            .push((queue.into(), format!("{exchange}/{routing_key}")));
        self
    }

    /// Feeds the local `queue` from the RabbitMQ queue `remote_queue`, with
    /// manual acks, through a consumer tagged `lq-<namespace>-<queue>`.
    /// Several bridges consuming one remote queue share its messages.
    pub fn receive(mut self, remote_queue: &str, queue: &str) -> Self {
        self.inner = self.inner.receive(remote_queue, queue);
        self
    }

    /// The identity in every `message_id` (see [`BridgeBuilder::identity`]).
    pub fn identity(mut self, id: &str) -> Self {
        self.inner = self.inner.identity(id);
        self
    }

    /// Publishes awaiting their confirm per forwarded queue (default 256),
    /// and the largest prefetch of an inbound route (which is also at most
    /// the local queue's `max_messages`).
    pub fn window(mut self, n: usize) -> Self {
        self.inner = self.inner.window(n);
        self
    }

    /// The first and the longest wait between retries (default 100 ms, 30 s).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.inner = self.inner.backoff(first, max);
        self
    }

    /// Dead-letters (locally) an outbound message not forwarded within `age`.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.inner = self.inner.max_age(age);
        self
    }

    /// How long a connection attempt may take (default 5 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.inner = self.inner.connect_timeout(t);
        self
    }

    /// How long a publish waits for its confirm (default 5 s).
    pub fn ack_timeout(mut self, t: Duration) -> Self {
        self.inner = self.inner.ack_timeout(t);
        self
    }

    /// With `true`, [`start`](Self::start) does not wait for RabbitMQ (see
    /// [`BridgeBuilder::connect_in_background`]).
    pub fn connect_in_background(mut self, yes: bool) -> Self {
        self.inner = self.inner.connect_in_background(yes);
        self
    }

    /// Starts the bridge on its own thread. Fails with
    /// [`Error::InvalidArgument`] for a malformed URL, exchange, routing key
    /// or queue name, [`Error::AlreadyExists`] for a queue another bridge
    /// forwards, and (unless connecting in the background) [`Error::Io`] when
    /// RabbitMQ cannot be reached or refuses the credentials and
    /// [`Error::NotFound`] for a missing exchange or remote queue.
    pub fn start(self, broker: &Broker) -> Result<super::Bridge> {
        if let Some(e) = self.invalid {
            return Err(Error::InvalidArgument(e));
        }
        self.inner.start(broker)
    }
}

/// The longest AMQP short string (names, keys, consumer tags).
const SHORT: usize = 255;

/// Checks a RabbitMQ bridge's settings (from `BridgeBuilder::check`).
pub(super) fn check(b: &BridgeBuilder) -> Result<()> {
    open_args(&b.url).map_err(Error::InvalidArgument)?;
    let short = |what: &str, s: &str| {
        if s.len() > SHORT {
            Err(Error::InvalidArgument(format!(
                "{what} {s:?}: at most {SHORT} bytes"
            )))
        } else {
            Ok(())
        }
    };
    for (spec, target) in &b.outbound {
        super::check_queue(spec)?;
        let (exchange, key) = target_parts(target);
        short("exchange", exchange)?;
        short("routing key", key)?;
        if let Some(id) = &b.identity {
            // message_id = lq:<identity>:<namespace>:<queue>:<u64>, a short string.
            let (ns, q) = super::split(spec);
            let longest = format!("lq:{id}:{ns}:{q}:{}", u64::MAX).len();
            if longest > SHORT {
                return Err(Error::InvalidArgument(format!(
                    "identity {id:?}: too long for an AMQP message_id \
                     (at most {SHORT} bytes with the queue's name)"
                )));
            }
        }
    }
    for (remote, spec, tag) in &b.inbound {
        super::check_queue(spec)?;
        if remote.is_empty() {
            return Err(Error::InvalidArgument(
                "remote queue name: empty (a server-named queue cannot be received from)".into(),
            ));
        }
        short("remote queue", remote)?;
        if let Some(t) = tag {
            short("consumer tag", t)?;
        }
    }
    if b.outbound.is_empty() && b.inbound.is_empty() {
        return Err(Error::InvalidArgument(
            "a bridge needs at least one forward or receive".into(),
        ));
    }
    if !b.streams.is_empty() || b.duplicate_window.is_some() {
        return Err(Error::InvalidArgument(
            "streams and duplicate windows are NATS JetStream settings".into(),
        ));
    }
    Ok(())
}

/// Checks `url` as [`RabbitBuilder::start`] does, without connecting
/// ([`Error::InvalidArgument`] with the reason, the password redacted).
pub(crate) fn check_url(url: &str) -> Result<()> {
    open_args(url).map(|_| ()).map_err(Error::InvalidArgument)
}

/// The connection arguments of `url`, or why it is not an AMQP URL.
fn open_args(url: &str) -> std::result::Result<OpenConnectionArguments, String> {
    let bad = |why: String| {
        format!(
            "bridge URL {:?}: {why} (expected amqp://user:password@host:port/vhost)",
            redact(url)
        )
    };
    if !url.starts_with("amqp://") {
        return Err(bad("only amqp:// is supported".into()));
    }
    let mut args = OpenConnectionArguments::try_from(url).map_err(|e| bad(e.to_string()))?;
    if args.get_host().is_empty() {
        return Err(bad("no host".into()));
    }
    // The vhost is the path, percent-decoded ("%2f" is "/").
    let vhost = percent_decode(args.get_virtual_host()).ok_or_else(|| bad("bad vhost".into()))?;
    args.virtual_host(&vhost)
        .connection_name("libqueue-bridge")
        .heartbeat(10);
    Ok(args.finish())
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &url[..s + 3 + c], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

/// An outbound target, `exchange/routing_key`, as its parts.
fn target_parts(target: &str) -> (&str, &str) {
    target.split_once('/').unwrap_or(("", target))
}

fn transient(what: &str, e: impl std::fmt::Display) -> RemoteError {
    RemoteError::Transient(format!("{what}: {e}"))
}

/// Publisher confirms of one channel, fed by its callback.
#[derive(Default)]
struct Confirms {
    state: Mutex<ConfirmState>,
    notify: Notify,
}

#[derive(Default)]
struct ConfirmState {
    /// Delivery tags published and not yet confirmed.
    outstanding: BTreeSet<u64>,
    /// Confirmed tags: acked (true) or nacked.
    results: HashMap<u64, bool>,
    /// Message ids RabbitMQ returned as unroutable, with its reason.
    returned: HashMap<String, String>,
    /// Why the channel is gone, once it is.
    closed: Option<String>,
}

impl Confirms {
    fn settle(&self, tag: u64, multiple: bool, ok: bool) {
        let mut s = self.state.lock();
        if multiple {
            let rest = s.outstanding.split_off(&(tag + 1));
            for t in std::mem::replace(&mut s.outstanding, rest) {
                s.results.insert(t, ok);
            }
        } else if s.outstanding.remove(&tag) {
            s.results.insert(tag, ok);
        }
        drop(s);
        self.notify.notify_waiters();
    }

    fn close(&self, why: String) {
        self.state.lock().closed.get_or_insert(why);
        self.notify.notify_waiters();
    }

    /// The outcome of `tag`, once there is one.
    fn outcome(&self, tag: u64, msg_id: &str) -> Option<std::result::Result<Stored, RemoteError>> {
        let mut s = self.state.lock();
        if let Some(ok) = s.results.remove(&tag) {
            return Some(if let Some(why) = s.returned.remove(msg_id) {
                Err(RemoteError::Transient(format!("unroutable: {why}")))
            } else if ok {
                Ok(Stored { duplicate: false })
            } else {
                Err(RemoteError::Transient(
                    "RabbitMQ nacked the publish (an internal error of the server)".into(),
                ))
            });
        }
        s.closed.as_ref().map(|why| {
            Err(RemoteError::Transient(format!(
                "publish not confirmed: {why}"
            )))
        })
    }
}

/// The callback of every channel: confirms, returns, closes.
struct ChannelEvents {
    confirms: Option<Arc<Confirms>>,
    shared: Arc<Shared>,
}

impl Drop for ChannelEvents {
    /// The channel's dispatcher is gone (its connection dropped): nothing
    /// still waiting will be confirmed.
    fn drop(&mut self) {
        if let Some(c) = &self.confirms {
            c.close("the connection to RabbitMQ was lost".into());
        }
    }
}

#[async_trait::async_trait]
impl ChannelCallback for ChannelEvents {
    async fn close(&mut self, _: &Channel, close: CloseChannel) -> AmqpResult<()> {
        let why = format!(
            "RabbitMQ closed a channel: {} {}",
            close.reply_code(),
            close.reply_text()
        );
        if let Some(c) = &self.confirms {
            c.close(why.clone());
        }
        self.shared.error(&why);
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, cancel: Cancel) -> AmqpResult<()> {
        self.shared.error(&format!(
            "RabbitMQ cancelled the consumer {} (its queue was deleted?)",
            cancel.consumer_tag()
        ));
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> AmqpResult<bool> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        if let Some(c) = &self.confirms {
            c.settle(ack.delivery_tag(), ack.mutiple(), true);
        }
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        if let Some(c) = &self.confirms {
            c.settle(nack.delivery_tag(), nack.multiple(), false);
        }
    }
    async fn publish_return(&mut self, _: &Channel, ret: Return, p: BasicProperties, _: Vec<u8>) {
        if let (Some(c), Some(id)) = (&self.confirms, p.message_id()) {
            let why = format!(
                "{} {} (exchange {:?}, routing key {:?})",
                ret.reply_code(),
                ret.reply_text(),
                ret.exchange(),
                ret.routing_key()
            );
            c.state.lock().returned.insert(id.clone(), why);
        }
    }
}

/// The connection's callback: closes and flow control, into the stats.
struct ConnectionEvents(Arc<Shared>);

#[async_trait::async_trait]
impl ConnectionCallback for ConnectionEvents {
    async fn close(&mut self, _: &Connection, close: Close) -> AmqpResult<()> {
        self.0.set_connected(false);
        self.0
            .error(&format!("RabbitMQ closed the connection: {close}"));
        Ok(())
    }
    async fn blocked(&mut self, _: &Connection, reason: String) {
        self.0.error(&format!(
            "RabbitMQ blocks publishing (a resource alarm): {reason}"
        ));
    }
    async fn unblocked(&mut self, _: &Connection) {}
    async fn secret_updated(&mut self, _: &Connection) {}
}

/// One connection and its publishing channel.
struct Session {
    conn: Connection,
    publisher: Channel,
    confirms: Arc<Confirms>,
    /// The delivery tag of the next publish (RabbitMQ counts from 1).
    next_tag: Cell<u64>,
    /// Held from taking a tag until the publish is handed to the connection,
    /// so tags follow the order on the wire.
    publishing: tokio::sync::Mutex<()>,
}

impl Session {
    /// Open, and its publisher channel still confirming.
    fn alive(&self) -> bool {
        self.conn.is_open()
            && self.publisher.is_open()
            && self.confirms.state.lock().closed.is_none()
    }
}

/// A connection to RabbitMQ, made again when lost.
pub(crate) struct Rabbit {
    args: OpenConnectionArguments,
    url: String,
    connect_timeout: Duration,
    ack_timeout: Duration,
    shared: Arc<Shared>,
    session: RefCell<Option<Rc<Session>>>,
    connecting: tokio::sync::Mutex<()>,
    /// Prefetch per consumer tag (at most the local queue's capacity).
    prefetch: HashMap<String, u16>,
}

/// A publish handed to the connection, awaiting its confirm.
pub(crate) struct PendingPublish {
    confirms: Arc<Confirms>,
    tag: u64,
    msg_id: String,
}

/// A delivered message, not yet acked.
pub(crate) struct Incoming {
    channel: Channel,
    tag: u64,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    pending: Option<u64>,
}

/// An inbound route's consumer on the current connection (made again after
/// a reconnect by the next fetch).
pub(crate) struct Source {
    queue: String,
    tag: String,
    prefetch: u16,
    current: RefCell<Option<Consumer>>,
    /// The remote queue's ready messages, as last asked, and when.
    pending: Cell<Option<(u64, Instant)>>,
}

struct Consumer {
    channel: Channel,
    rx: UnboundedReceiver<ConsumerMessage>,
}

impl Rabbit {
    /// Connects (unless in the background: then the first call that needs
    /// the connection makes it).
    pub(super) async fn connect(
        s: &ConnectSettings,
        b: &BridgeBuilder,
        routes: &[inbound::Route],
        shared: &Arc<Shared>,
    ) -> Result<Rabbit> {
        let args = open_args(&s.url).map_err(Error::InvalidArgument)?;
        let window = u16::try_from(b.tuning.window).unwrap_or(u16::MAX);
        let prefetch = routes
            .iter()
            .map(|r| {
                let cap = r.queue.options().max_messages.unwrap_or(u64::MAX);
                let p = u64::from(window).min(cap).max(1);
                (r.durable.clone(), u16::try_from(p).unwrap_or(u16::MAX))
            })
            .collect();
        let rabbit = Rabbit {
            args,
            url: redact(&s.url),
            connect_timeout: s.connect_timeout,
            ack_timeout: s.ack_timeout,
            shared: shared.clone(),
            session: RefCell::new(None),
            connecting: tokio::sync::Mutex::new(()),
            prefetch,
        };
        if !s.background {
            rabbit
                .session()
                .await
                .map_err(|e| Error::Io(e.text().into()))?;
        }
        Ok(rabbit)
    }

    /// The live session, connecting if there is none (one attempt).
    async fn session(&self) -> std::result::Result<Rc<Session>, RemoteError> {
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let _one = self.connecting.lock().await;
        if let Some(s) = self.live() {
            return Ok(s);
        }
        if let Some(old) = self.session.borrow_mut().take() {
            if let Ok(old) = Rc::try_unwrap(old) {
                tokio::task::spawn_local(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(2), old.conn.close()).await;
                });
            }
        }
        match tokio::time::timeout(self.connect_timeout, self.open()).await {
            Ok(Ok(s)) => {
                let s = Rc::new(s);
                *self.session.borrow_mut() = Some(s.clone());
                self.shared.set_connected(true);
                Ok(s)
            }
            Ok(Err(e)) => {
                self.shared.set_connected(false);
                // RabbitMQ refuses a user, a password or a vhost by closing
                // the connection in the handshake.
                let t = e.to_string();
                let hint = if t.contains("reset by peer") || t.contains("ACCESS_REFUSED") {
                    " (RabbitMQ closed the connection during the handshake: \
                     wrong user, password or vhost?)"
                } else {
                    ""
                };
                Err(RemoteError::Transient(format!(
                    "cannot connect to {}: {e}{hint}",
                    self.url
                )))
            }
            Err(_) => {
                self.shared.set_connected(false);
                Err(RemoteError::Transient(format!(
                    "cannot connect to {}: no answer within {:?}",
                    self.url, self.connect_timeout
                )))
            }
        }
    }

    /// Closes the connection (at stop), so the acks sent reach RabbitMQ
    /// before the runtime ends; bounded by two seconds.
    pub(super) async fn close(&self) {
        let session = self.session.borrow_mut().take();
        if let Some(s) = session {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.conn.clone().close()).await;
        }
    }

    fn live(&self) -> Option<Rc<Session>> {
        self.session
            .borrow()
            .as_ref()
            .filter(|s| s.alive())
            .cloned()
    }

    async fn open(&self) -> AmqpResult<Session> {
        let conn = Connection::open(&self.args).await?;
        conn.register_callback(ConnectionEvents(self.shared.clone()))
            .await?;
        let publisher = conn.open_channel(None).await?;
        let confirms = Arc::new(Confirms::default());
        publisher
            .register_callback(ChannelEvents {
                confirms: Some(confirms.clone()),
                shared: self.shared.clone(),
            })
            .await?;
        publisher
            .confirm_select(ConfirmSelectArguments::default())
            .await?;
        Ok(Session {
            conn,
            publisher,
            confirms,
            next_tag: Cell::new(1),
            publishing: tokio::sync::Mutex::new(()),
        })
    }

    /// A channel of its own (for a check or a consumer).
    async fn channel(&self) -> std::result::Result<(Rc<Session>, Channel), RemoteError> {
        let s = self.session().await?;
        let ch = s
            .conn
            .open_channel(None)
            .await
            .map_err(|e| transient("cannot open a channel", e))?;
        ch.register_callback(ChannelEvents {
            confirms: None,
            shared: self.shared.clone(),
        })
        .await
        .map_err(|e| transient("cannot open a channel", e))?;
        Ok((s, ch))
    }

    /// A failure on a live connection is about the object (missing, no
    /// access); on a lost one it is the connection's.
    fn sort(&self, s: &Session, what: String, e: amqprs::error::Error) -> RemoteError {
        if s.conn.is_open() {
            RemoteError::Permanent(format!("{what}: {e}"))
        } else {
            RemoteError::Transient(format!("{what}: the connection was lost ({e})"))
        }
    }

    /// Opens a consumer for `src` on the live connection. Checks the queue
    /// first (passive declare): a missing queue is `Permanent`.
    async fn consume(&self, src: &Source) -> std::result::Result<Consumer, RemoteError> {
        let (s, channel) = self.channel().await?;
        let q = &src.queue;
        let declared = channel
            .queue_declare(QueueDeclareArguments::new(q).passive(true).finish())
            .await;
        match declared {
            Ok(Some((_, ready, _))) => src.pending.set(Some((ready.into(), Instant::now()))),
            Ok(None) => {}
            Err(e) => return Err(self.sort(&s, format!("no RabbitMQ queue {q:?}"), e)),
        }
        channel
            .basic_qos(BasicQosArguments::new(0, src.prefetch, false))
            .await
            .map_err(|e| transient("basic.qos", e))?;
        let args = BasicConsumeArguments::new(q, &src.tag)
            .manual_ack(true)
            .finish();
        let (_, rx) = channel
            .basic_consume_rx(args)
            .await
            .map_err(|e| self.sort(&s, format!("cannot consume queue {q:?}"), e))?;
        Ok(Consumer { channel, rx })
    }

    /// The remote queue's ready messages, asked at most once a second.
    async fn pending(&self, src: &Source, channel: &Channel) -> Option<u64> {
        let last = src.pending.get();
        if let Some((n, at)) = last {
            if at.elapsed() < Duration::from_secs(1) {
                return Some(n);
            }
        }
        let args = QueueDeclareArguments::new(&src.queue)
            .passive(true)
            .finish();
        match channel.queue_declare(args).await {
            Ok(Some((_, n, _))) => {
                src.pending.set(Some((n.into(), Instant::now())));
                Some(n.into())
            }
            _ => last.map(|(n, _)| n),
        }
    }
}

/// A message's AMQP properties from its mapped headers: the natural ones as
/// properties, the rest (user headers, the name) as a header table.
fn properties(msg_id: &str, m: &Mapped) -> std::result::Result<BasicProperties, RemoteError> {
    if msg_id.len() > SHORT {
        // check() refuses identities that long; never a panic in amqprs.
        return Err(RemoteError::Permanent(format!(
            "message id {msg_id:?}: AMQP takes at most {SHORT} bytes"
        )));
    }
    let mut p = BasicProperties::default();
    p.with_message_id(msg_id).with_delivery_mode(1);
    let mut table = FieldTable::new();
    for (k, v) in &m.headers {
        match k.as_str() {
            mapping::CORRELATION_ID => {
                if v.len() > SHORT {
                    return Err(RemoteError::Permanent(format!(
                        "correlation id: AMQP takes at most {SHORT} bytes"
                    )));
                }
                p.with_correlation_id(v);
            }
            mapping::PRIORITY => {
                p.with_priority(v.parse().unwrap_or(0));
            }
            mapping::TTL_MS if v.len() <= SHORT => {
                p.with_expiration(v);
            }
            mapping::PERSISTENT => {
                p.with_delivery_mode(if v == "1" { 2 } else { 1 });
            }
            _ => {
                let name = k.as_str().try_into().map_err(|_| {
                    RemoteError::Permanent(format!(
                        "header {k:?}: AMQP header names are at most {SHORT} bytes"
                    ))
                })?;
                table.insert(name, FieldValue::from(v.as_str()));
            }
        }
    }
    p.with_headers(table);
    Ok(p.finish())
}

/// A header value as text, or why it cannot be one.
fn field_text(v: &FieldValue) -> std::result::Result<String, &'static str> {
    Ok(match v {
        FieldValue::S(s) => s.to_string(),
        FieldValue::t(b) => b.to_string(),
        FieldValue::b(n) => n.to_string(),
        FieldValue::B(n) => n.to_string(),
        FieldValue::s(n) => n.to_string(),
        FieldValue::u(n) => n.to_string(),
        FieldValue::I(n) => n.to_string(),
        FieldValue::i(n) => n.to_string(),
        FieldValue::l(n) => n.to_string(),
        FieldValue::f(n) => n.to_string(),
        FieldValue::d(n) => n.to_string(),
        FieldValue::T(n) => n.to_string(),
        FieldValue::x(b) => {
            String::from_utf8(Vec::from(b.clone())).map_err(|_| "bytes that are not UTF-8")?
        }
        FieldValue::D(_) => return Err("a decimal"),
        FieldValue::A(_) => return Err("an array"),
        FieldValue::F(_) => return Err("a table"),
        FieldValue::V => return Err("void"),
    })
}

/// A delivery's properties and headers as the text headers the mapping
/// reads: the natural properties as `Lq-*` headers (checked there), the
/// others under their names; a value that has no text form marks the
/// message unmappable, with the reason.
fn received_headers(p: &BasicProperties) -> Vec<(String, String)> {
    let mut h = Vec::new();
    if let Some(t) = p.headers() {
        let mut names: Vec<_> = t.as_ref().iter().collect();
        names.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        for (k, v) in names {
            match field_text(v) {
                Ok(v) => h.push((k.to_string(), v)),
                Err(what) => h.push((
                    mapping::UNMAPPABLE.into(),
                    format!("header {:?}: {what} has no libqueue form", k.as_ref()),
                )),
            }
        }
    }
    if let Some(c) = p.correlation_id() {
        h.push((mapping::CORRELATION_ID.into(), c.clone()));
    }
    if let Some(n) = p.priority() {
        h.push((mapping::PRIORITY.into(), n.to_string()));
    }
    if let Some(e) = p.expiration() {
        h.push((mapping::TTL_MS.into(), e.clone()));
    }
    if let Some(d) = p.delivery_mode() {
        h.push((
            mapping::PERSISTENT.into(),
            if d == 2 { "1" } else { "0" }.into(),
        ));
    }
    // The unmappable mark goes first, so its reason is the one given.
    h.sort_by_key(|(k, _)| k != mapping::UNMAPPABLE);
    h
}

impl Remote for Rabbit {
    type Pending = PendingPublish;
    type Incoming = Incoming;
    type Source = Source;

    fn connected(&self) -> bool {
        self.live().is_some()
    }

    async fn check_target(&self, target: &str) -> std::result::Result<(), RemoteError> {
        let (exchange, _) = target_parts(target);
        if exchange.is_empty() || exchange.starts_with("amq.") {
            return Ok(()); // the default and the predeclared ones
        }
        let (s, ch) = self.channel().await?;
        let args = ExchangeDeclareArguments::new(exchange, "direct")
            .passive(true)
            .finish();
        let r = ch.exchange_declare(args).await;
        let _ = ch.close().await;
        r.map_err(|e| self.sort(&s, format!("no RabbitMQ exchange {exchange:?}"), e))
    }

    async fn publish(
        &self,
        target: &str,
        msg_id: &str,
        m: &Mapped,
    ) -> std::result::Result<Self::Pending, RemoteError> {
        let (exchange, key) = target_parts(target);
        let props = properties(msg_id, m)?;
        let s = self.session().await?;
        let _order = s.publishing.lock().await;
        if !s.alive() {
            return Err(RemoteError::Transient(
                "the connection to RabbitMQ was lost".into(),
            ));
        }
        let tag = s.next_tag.get();
        s.next_tag.set(tag + 1);
        s.confirms.state.lock().outstanding.insert(tag);
        let mut args = BasicPublishArguments::new(exchange, key);
        args.mandatory(true);
        s.publisher
            .basic_publish(props, m.body.clone(), args)
            .await
            .map_err(|e| transient("publish", e))?;
        Ok(PendingPublish {
            confirms: s.confirms.clone(),
            tag,
            msg_id: msg_id.to_string(),
        })
    }

    async fn confirm(&self, p: Self::Pending) -> std::result::Result<Stored, RemoteError> {
        let deadline = tokio::time::Instant::now() + self.ack_timeout;
        loop {
            let notified = p.confirms.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = p.confirms.outcome(p.tag, &p.msg_id) {
                return r;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                // A connection that stopped confirming is not trusted again:
                // the next publish connects anew.
                let why = format!("no publisher confirm within {:?}", self.ack_timeout);
                p.confirms.close(why.clone());
                return Err(RemoteError::Transient(why));
            }
        }
    }

    async fn open_source(
        &self,
        origin: &str,
        durable: &str,
    ) -> std::result::Result<Self::Source, RemoteError> {
        let src = Source {
            queue: origin.to_string(),
            tag: durable.to_string(),
            prefetch: self.prefetch.get(durable).copied().unwrap_or(256),
            current: RefCell::new(None),
            pending: Cell::new(None),
        };
        let c = self.consume(&src).await?;
        *src.current.borrow_mut() = Some(c);
        Ok(src)
    }

    async fn fetch(
        &self,
        src: &Self::Source,
        max: usize,
        wait: Duration,
    ) -> std::result::Result<Vec<Self::Incoming>, RemoteError> {
        let taken = src.current.borrow_mut().take();
        let mut c = match taken {
            Some(c) if c.channel.is_open() && c.channel.is_connection_open() => c,
            _ => self.consume(src).await.map_err(|e| match e {
                // A queue deleted meanwhile may come back: keep trying.
                RemoteError::Permanent(t) => RemoteError::Transient(t),
                t => t,
            })?,
        };
        let mut got = Vec::new();
        match tokio::time::timeout(wait, c.rx.recv()).await {
            Err(_) => {}
            // The channel is gone: the next fetch consumes again.
            Ok(None) => {
                return Err(RemoteError::Transient(
                    "the consumer's channel closed".into(),
                ))
            }
            Ok(Some(m)) => {
                got.push(m);
                while got.len() < max {
                    match c.rx.try_recv() {
                        Ok(m) => got.push(m),
                        Err(_) => break,
                    }
                }
            }
        }
        let pending = self.pending(src, &c.channel).await;
        let mut out = Vec::with_capacity(got.len());
        for m in got {
            let (Some(d), Some(p), Some(body)) = (m.deliver, m.basic_properties, m.content) else {
                continue; // never sent by amqprs
            };
            if d.redelivered() {
                Shared::add(&self.shared.duplicates, 1);
            }
            out.push(Incoming {
                channel: c.channel.clone(),
                tag: d.delivery_tag(),
                headers: received_headers(&p),
                body,
                pending,
            });
        }
        *src.current.borrow_mut() = Some(c);
        Ok(out)
    }

    fn view(m: &Self::Incoming) -> Fetched<'_> {
        Fetched {
            headers: m
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            body: &m.body,
            pending: m.pending,
        }
    }

    async fn ack(&self, m: Self::Incoming) -> std::result::Result<(), RemoteError> {
        if !m.channel.is_open() || !m.channel.is_connection_open() {
            return Err(RemoteError::Transient(
                "the connection was lost before the ack: RabbitMQ delivers it again".into(),
            ));
        }
        m.channel
            .basic_ack(BasicAckArguments::new(m.tag, false))
            .await
            .map_err(|e| transient("ack", e))
    }

    async fn retry_later(
        &self,
        m: Self::Incoming,
        _delay: Duration,
    ) -> std::result::Result<(), RemoteError> {
        // AMQP has no delayed requeue: back to the queue now (in its place).
        m.channel
            .basic_nack(BasicNackArguments::new(m.tag, false, true))
            .await
            .map_err(|e| transient("nack", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_redacted() {
        assert!(open_args("amqp://guest:guest@127.0.0.1:5672/").is_ok());
        assert_eq!(
            open_args("amqp://u:p@h:1/%2f").unwrap().get_virtual_host(),
            "/"
        );
        assert_eq!(
            open_args("amqp://u:p@h:1/v").unwrap().get_virtual_host(),
            "v"
        );
        for bad in [
            "nats://h:1",
            "amqps://h:1",
            "amqp://",
            "",
            "amqp://u:p@h:1/%zz",
        ] {
            let e = open_args(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(e.contains("expected amqp://"), "{bad}: {e}");
        }
        assert_eq!(redact("amqp://u:secret@h:1/"), "amqp://u:***@h:1/");
        let e = open_args("amqp://u:secret@h:1/%zz").err().expect("refused");
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn properties_and_headers_round_trip() {
        let m = Mapped {
            headers: vec![
                ("k".into(), "v".into()),
                (mapping::NAME.into(), "n".into()),
                (mapping::CORRELATION_ID.into(), "c".into()),
                (mapping::PRIORITY.into(), "7".into()),
                (mapping::TTL_MS.into(), "60000".into()),
                (mapping::PERSISTENT.into(), "1".into()),
            ],
            body: b"b".to_vec(),
        };
        let p = properties("id-1", &m).unwrap();
        assert_eq!(p.message_id().map(String::as_str), Some("id-1"));
        assert_eq!(p.correlation_id().map(String::as_str), Some("c"));
        assert_eq!(p.priority(), Some(7));
        assert_eq!(p.expiration().map(String::as_str), Some("60000"));
        assert_eq!(p.delivery_mode(), Some(2));
        let back = mapping::inbound(
            received_headers(&p)
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
            b"b",
        )
        .unwrap();
        assert_eq!(back.get_name(), Some("n"));
        assert_eq!(back.correlation_id.as_deref(), Some("c"));
        assert_eq!(back.priority, Some(7));
        assert_eq!(back.persistent, Some(true));
        assert_eq!(back.ttl, Some(Duration::from_secs(60)));
        assert_eq!(back.headers().get("k").map(Vec::as_slice), Some(&b"v"[..]));

        let long = Mapped {
            headers: vec![("k".repeat(300), "v".into())],
            body: Vec::new(),
        };
        assert!(matches!(
            properties("i", &long),
            Err(RemoteError::Permanent(_))
        ));
    }

    #[test]
    fn unmappable_deliveries_carry_their_reason() {
        let mut t = FieldTable::new();
        t.insert(
            "nested".try_into().unwrap(),
            FieldValue::F(FieldTable::new()),
        );
        let mut p = BasicProperties::default();
        p.with_headers(t).with_priority(3);
        let e = mapping::inbound(
            received_headers(&p)
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
            b"",
        )
        .unwrap_err();
        assert!(e.contains("\"nested\": a table"), "{e}");
        let mut p = BasicProperties::default();
        p.with_priority(200);
        let e = mapping::inbound(
            received_headers(&p)
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
            b"",
        )
        .unwrap_err();
        assert!(e.contains("priority"), "{e}");
    }
}
