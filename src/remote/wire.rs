//! The wire format between an attached process and its host (version 1),
//! documented in `docs/wire.md`: length-prefixed frames on a Unix stream socket.
//!
//! ```text
//! frame    = len:u32le  body            (len = size of body, 9 ..= MAX_FRAME)
//! body     = request_id:u64le  op:u8  fields…
//! ```
//!
//! Every integer is little-endian; a string or byte string is a `u32`
//! length, then the bytes; an `Option` is a `u8` tag (0 none, 1 some), then
//! the value; a list is a `u32` count, then the items. A request's response
//! carries the same `request_id` and op [`op::REPLY`](crate::wire::op::REPLY): `u8 status` (0 ok,
//! then the op's result; 1 an [`Error`](crate::Error)). The host also sends unsolicited
//! frames (request id 0): [`op::NOTIFY`](crate::wire::op::NOTIFY).
//!
//! Decoding never trusts a length: each is checked against the bytes left
//! before anything is allocated, so a hostile frame costs at most its own size.
//! The decoder is fuzzed (`tests/fuzz_wire.rs`, `tests/fuzz/` target `decode_frame`).

use crate::error::Error;
use crate::types::{
    Filter, Headers, Message, Node, OnFull, QueueOptions, QueueStats, Quotas, TopicStats, Wait,
};
use std::time::Duration;

/// The decoders' fuzzing entry points (not part of the API).
#[doc(hidden)]
pub use super::fuzz;

/// Version of the protocol spoken by this build (exchanged in `HELLO`).
pub const VERSION: u16 = 1;
/// The largest frame body either side accepts (256 MiB): a message at the
/// default `max_message_size` (64 MiB) fits with room for a batch around it.
pub const MAX_FRAME: usize = 256 << 20;
/// Bytes of the frame header after the length (request id + op).
pub const HEADER: usize = 9;
/// The largest `HELLO` body a host reads (a longer first frame is dropped
/// unread): room for the fields a later version may add after `version`.
pub const MAX_HELLO: usize = 4096;

/// Operation codes.
pub mod op {
    /// First frame of a connection: `version:u16 pid:u32` → `version:u16 host_pid:u32`.
    pub const HELLO: u8 = 1;
    /// A response (to the request with the same id).
    pub const REPLY: u8 = 2;
    /// Host → client, unsolicited (request id 0): `watch:u64 readable:bool`.
    /// The queue that watch `watch` follows (see [`WATCH`]) is now readable
    /// (a receive would find a message, or fail because the queue closed:
    /// then it stays readable) or not. Sent whenever that state differs from
    /// the one last sent for the watch (the first time after each `WATCH`
    /// that made or re-pointed it), and always before the answer to a
    /// request of the same connection that changed it (a send, a receive, a
    /// settle, a purge…), so the client's descriptor is up to date when that
    /// request returns. Changes nobody of the connection asked for (other
    /// processes, timers) follow as soon as the host sees them. No response.
    pub const NOTIFY: u8 = 3;
    /// `name quotas?:Quotas create:bool` → `Quotas`.
    pub const NAMESPACE: u8 = 10;
    /// `name` → `Quotas` (NotFound if missing).
    pub const GET_NAMESPACE: u8 = 11;
    /// → `[name]`.
    pub const NAMESPACES: u8 = 12;
    /// → `()` once everything persistent is on disk.
    pub const FLUSH: u8 = 13;
    /// → `HostInfo`.
    pub const HOST_INFO: u8 = 14;
    /// `ns name opts?:QueueOptions mode:u8 (0 open or create, 1 create, 2 get)`
    /// → `QueueOptions serial:u64`.
    ///
    /// `serial` names this queue rather than whichever queue has the name:
    /// the ops on a queue (`SEND` … `QUEUE_STATS`, `WATCH`, `GIVE_BACK`) say
    /// `ns queue serial`, and a host answers one whose `serial` is one of its
    /// own numbers but not the queue's that the name names now (it was
    /// deleted, perhaps made again) with `Closed` — a handle of a deleted
    /// queue stays closed, as a local one does. `serial` 0, or a number of
    /// another host (the high 32 bits are the pid of the host that gave it;
    /// after a takeover), names whichever queue has the name.
    pub const QUEUE: u8 = 20;
    /// `ns name` → `serial:u64` of the queue deleted (see [`QUEUE`]; 0 if
    /// unknown): the client marks its handles of that queue closed.
    pub const DELETE_QUEUE: u8 = 21;
    /// `ns` → `[name]`.
    pub const LIST_QUEUES: u8 = 22;
    /// `ns` → `queues:u64 QueueStats Quotas`.
    pub const NS_STATS: u8 = 23;
    /// `ns name` → `()`: declares a topic.
    pub const TOPIC: u8 = 24;
    /// `ns` → `[name]`.
    pub const LIST_TOPICS: u8 = 25;
    /// `ns queue serial:u64 on_full?:OnFull batch:bool [Message]` → `[id:u64]`.
    /// (`serial`: see [`QUEUE`]; a single send carries exactly one message.)
    pub const SEND: u8 = 30;
    /// `ns queue serial:u64 max:u32 wait:Wait auto_ack:bool` → `[Delivered]`,
    /// `Delivered = lease:u64 (0 when auto-acked) delivery_count:u32 Node`.
    /// `max` 0 is `InvalidArgument`; more than 65,536 is taken as 65,536.
    pub const RECEIVE: u8 = 31;
    /// `ns queue serial:u64 max:u32` → `[Node]`.
    pub const PEEK: u8 = 32;
    /// `ns queue serial:u64 id:u64` → `()`.
    pub const CANCEL: u8 = 33;
    /// `ns queue serial:u64` → `count:u64`.
    pub const PURGE: u8 = 34;
    /// `ns queue serial:u64` → `QueueStats` (of a queue deleted on this
    /// connection: its last counters, as a local handle reads them).
    pub const QUEUE_STATS: u8 = 35;
    /// `ns queue serial:u64 watch:u64` → `()`: `watch` (a number the client chooses,
    /// one per queue it watches, unique on its connection) follows the
    /// readiness of the queue as its pollable descriptor shows it
    /// (`Queue::fd`): the host sends [`NOTIFY`] frames for it from now on
    /// until the connection ends, the first one before this answer. Sent
    /// again with the same number: checks the queue (`Closed` if it is
    /// gone), re-points the watch if the name now names another queue, and
    /// otherwise changes nothing. There is no unwatch.
    pub const WATCH: u8 = 38;
    /// `request_id:u64`: ends that request's wait (it answers `Ok(nothing)`
    /// for a receive, `Closed` for a send). No response of its own.
    pub const ABORT: u8 = 37;
    /// `lease:u64 nack:bool delay?:u64ns reason` → `()`.
    pub const SETTLE: u8 = 40;
    /// `lease:u64 by:u64ns` → `deadline:u64`.
    pub const EXTEND: u8 = 41;
    /// `lease:u64` → `deadline?:u64`.
    pub const DEADLINE: u8 = 42;
    /// `ns queue serial:u64 lease:u64` → `()`: the message goes back
    /// uncounted (`Queue::give_back` on the queue `ns queue` names);
    /// `LeaseExpired` if the lease is not held or is of another queue (it is
    /// then left as it was).
    pub const GIVE_BACK: u8 = 43;
    /// `lease:u64`: the client dropped the delivery unsettled; the host
    /// forgets its number and the lease runs out as it would have. No response.
    pub const FORGET: u8 = 44;
    /// `[ns queue id:u64 seen:u32]` → `[lease:u64]` (0: not reclaimed): after
    /// a takeover, the leases a client held on the old host, leased again to
    /// it under new numbers if the message is ready here with a delivery
    /// count of at most `seen` (docs/multi-process.md, "Takeover").
    pub const RECLAIM: u8 = 45;
    /// `[lease:u64]` → `[ok:bool Error?]`, one per lease, in order: acks each
    /// as [`SETTLE`] would (a lease this connection does not hold is
    /// `LeaseExpired`, the others are still acked). An empty list is
    /// `InvalidArgument`.
    pub const ACK_BATCH: u8 = 46;
    /// `ns topic Message` → `count:u64`.
    pub const PUBLISH: u8 = 50;
    /// `ns topic queue Filter` → `QueueOptions serial:u64` of the
    /// subscription queue (`serial`: see [`QUEUE`]).
    pub const SUBSCRIBE: u8 = 51;
    /// `ns topic queue` → `()`.
    pub const UNSUBSCRIBE: u8 = 52;
    /// `ns topic` → `[name]`.
    pub const SUBSCRIPTIONS: u8 = 53;
    /// `ns topic` → `TopicStats`.
    pub const TOPIC_STATS: u8 = 54;
    /// `ns topic queue` → `filter?:Filter`.
    pub const TOPIC_FILTER: u8 = 55;
}

/// The bytes [`Enc::node`] appends for `n`.
pub fn node_len(n: &Node) -> usize {
    let h: usize = n.headers().iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let opt = |s: Option<&str>| 1 + s.map_or(0, |s| 4 + s.len());
    8 + 4 + n.body.len() + 4 + h + opt(n.name()) + opt(n.correlation_id()) + 8 + 8 + 8 + 4 + 1 + 1
}

/// The bytes [`Enc::message`] appends for `m` (to size a batch's frame once).
pub fn message_len(m: &Message) -> usize {
    let h: usize = m.headers.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let opt = |s: Option<&str>| 1 + s.map_or(0, |s| 4 + s.len());
    let tag = |some: bool, n: usize| 1 + if some { n } else { 0 };
    4 + m.body.len()
        + 4
        + h
        + opt(m.name.as_deref())
        + opt(m.correlation_id.as_deref())
        + tag(m.priority.is_some(), 1)
        + tag(m.ttl.is_some(), 8)
        + tag(m.delay.is_some(), 8)
        + tag(m.persistent.is_some(), 1)
}

/// Why a frame could not be decoded (the connection that sent it is dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Error {
        Error::Io(format!("malformed frame from the host: {}", m.0))
    }
}

/// Decoding result.
pub type DResult<T> = std::result::Result<T, Malformed>;

/// Builds one frame: the length is filled in by [`Enc::finish`].
pub struct Enc {
    buf: Vec<u8>,
}

impl Enc {
    /// A frame for `request_id` and `op`.
    pub fn new(request_id: u64, op: u8) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&request_id.to_le_bytes());
        buf.push(op);
        Enc { buf }
    }
    /// Makes room for `n` more bytes (a frame whose size is known: one allocation).
    pub fn reserve(&mut self, n: usize) -> &mut Self {
        self.buf.reserve(n);
        self
    }
    /// The frame's bytes, length prefix included; `None` if over [`MAX_FRAME`].
    pub fn finish(mut self) -> Option<Vec<u8>> {
        let len = self.buf.len() - 4;
        if len > MAX_FRAME {
            return None;
        }
        self.buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
        Some(self.buf)
    }
    /// Appends a byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// Appends a bool (0 or 1).
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(v as u8)
    }
    /// Appends a u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a length (saturating: an over-long item makes the frame too big).
    fn len(&mut self, n: usize) -> &mut Self {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX))
    }
    /// Appends a byte string.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.len(v.len());
        self.buf.extend_from_slice(v);
        self
    }
    /// Appends a string.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    /// Appends an optional u64.
    pub fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(v) => self.u8(1).u64(v),
        }
    }
    /// Appends an optional string.
    pub fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(v) => self.u8(1).str(v),
        }
    }
    /// Appends a duration in nanoseconds (saturating).
    pub fn dur(&mut self, d: Duration) -> &mut Self {
        self.u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
    /// Appends an optional duration.
    pub fn opt_dur(&mut self, d: Option<Duration>) -> &mut Self {
        self.opt_u64(d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }
    /// Appends a list of strings.
    pub fn strs(&mut self, v: &[String]) -> &mut Self {
        self.len(v.len());
        for s in v {
            self.str(s);
        }
        self
    }
    fn headers(&mut self, h: &Headers) -> &mut Self {
        self.len(h.len());
        for (k, v) in h {
            self.str(k).bytes(v);
        }
        self
    }
    /// Appends a message to send.
    pub fn message(&mut self, m: &Message) -> &mut Self {
        self.bytes(&m.body).headers(&m.headers);
        self.opt_str(m.name.as_deref())
            .opt_str(m.correlation_id.as_deref());
        match m.priority {
            None => self.u8(0),
            Some(p) => self.u8(1).u8(p),
        };
        self.opt_dur(m.ttl).opt_dur(m.delay);
        match m.persistent {
            None => self.u8(0),
            Some(p) => self.u8(1).bool(p),
        }
    }
    /// The size of the frame so far (length prefix included).
    pub fn len_so_far(&self) -> usize {
        self.buf.len()
    }
    /// Appends a message as the engine holds it (a delivery or a peek).
    pub fn node(&mut self, n: &Node) -> &mut Self {
        self.u64(n.id).bytes(&n.body).headers(n.headers());
        self.opt_str(n.name()).opt_str(n.correlation_id());
        self.u64(n.enqueued_at)
            .u64(n.expires_at)
            .u64(n.size)
            .u32(n.deliveries.load(std::sync::atomic::Ordering::Relaxed))
            .u8(n.priority)
            .bool(n.persistent)
    }
    /// Appends a full policy.
    pub fn on_full(&mut self, f: OnFull) -> &mut Self {
        match f {
            OnFull::Block => self.u8(0),
            OnFull::Reject => self.u8(1),
            OnFull::Timeout(d) => self.u8(2).dur(d),
        }
    }
    /// Appends a wait.
    pub fn wait(&mut self, w: Wait) -> &mut Self {
        match w {
            Wait::Try => self.u8(0),
            Wait::Forever => self.u8(1),
            Wait::For(d) => self.u8(2).dur(d),
        }
    }
    /// Appends quotas.
    pub fn quotas(&mut self, q: &Quotas) -> &mut Self {
        self.opt_u64(q.max_queues)
            .opt_u64(q.max_messages)
            .opt_u64(q.max_bytes)
            .u64(q.max_message_size)
    }
    /// Appends queue options.
    pub fn options(&mut self, o: &QueueOptions) -> &mut Self {
        self.opt_u64(o.max_messages)
            .opt_u64(o.max_bytes)
            .on_full(o.on_full);
        self.opt_dur(o.default_ttl)
            .opt_dur(o.default_delay)
            .u8(o.default_priority)
            .dur(o.lease_time)
            .opt_u64(o.max_deliveries.map(u64::from))
            .opt_str(o.dead_letter_queue.as_deref())
            .bool(o.persistent)
            .bool(o.strict_fifo)
            .opt_u64(o.shards.map(|s| s as u64))
    }
    /// Appends queue statistics.
    pub fn queue_stats(&mut self, s: &QueueStats) -> &mut Self {
        self.u64(s.ready).u64(s.leased).u64(s.delayed).u64(s.bytes);
        self.opt_dur(s.oldest_age);
        for v in [
            s.sent,
            s.received,
            s.acked,
            s.nacked,
            s.redelivered,
            s.expired,
            s.dead_lettered,
            s.cancelled,
            s.purged,
        ] {
            self.u64(v);
        }
        self
    }
    /// Appends topic statistics.
    pub fn topic_stats(&mut self, s: &TopicStats) -> &mut Self {
        self.u64(s.published)
            .u64(s.dropped_no_subscriber)
            .u64(s.unmatched)
            .u64(s.subscriptions)
    }
    /// Appends a subscription filter.
    pub fn filter(&mut self, f: &Filter) -> &mut Self {
        match f {
            Filter::All => self.u8(0),
            Filter::Name(n) => self.u8(1).str(n),
            Filter::Header { key, value } => self.u8(2).str(key).bytes(value),
        }
    }
    /// Appends an error.
    pub fn error(&mut self, e: &Error) -> &mut Self {
        match e {
            Error::InvalidName(s) => self.u8(1).str(s),
            Error::InvalidArgument(s) => self.u8(2).str(s),
            Error::MessageTooLarge { size, limit } => self.u8(3).u64(*size).u64(*limit),
            Error::Full => self.u8(4),
            Error::QuotaExceeded {
                namespace,
                quota,
                limit,
            } => self.u8(5).str(namespace).str(quota).u64(*limit),
            Error::Timeout => self.u8(6),
            Error::Closed => self.u8(7),
            Error::NotFound(s) => self.u8(8).str(s),
            Error::AlreadyExists(s) => self.u8(9).str(s),
            Error::LeaseExpired { id } => self.u8(10).u64(*id),
            Error::InvalidState(s) => self.u8(11).str(s),
            Error::Storage(s) => self.u8(12).str(s),
            Error::Remote(s) => self.u8(13).str(s),
            Error::Locked(s) => self.u8(14).str(s),
            Error::Io(s) => self.u8(15).str(s),
            Error::Forked => self.u8(16),
        }
    }
}

/// Reads one frame body (after the length prefix).
pub struct Dec<'a> {
    buf: &'a [u8],
}

impl<'a> Dec<'a> {
    /// Over a frame body.
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf }
    }
    /// The header: request id and op.
    pub fn header(&mut self) -> DResult<(u64, u8)> {
        Ok((self.u64()?, self.u8()?))
    }
    /// Fails unless every byte was read.
    pub fn end(&self) -> DResult<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Malformed("trailing bytes"))
        }
    }
    fn take(&mut self, n: usize) -> DResult<&'a [u8]> {
        if n > self.buf.len() {
            return Err(Malformed("truncated"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    /// Reads a byte.
    pub fn u8(&mut self) -> DResult<u8> {
        Ok(self.take(1)?[0])
    }
    /// Reads a bool (0 or 1 only).
    pub fn bool(&mut self) -> DResult<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed("bad bool")),
        }
    }
    /// Reads a u16.
    pub fn u16(&mut self) -> DResult<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    /// Reads a u32.
    pub fn u32(&mut self) -> DResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    /// Reads a u64.
    pub fn u64(&mut self) -> DResult<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    /// Reads a list length, each item at least `min_item` bytes: a count the
    /// frame could not hold is refused before anything is allocated.
    pub fn count(&mut self, min_item: usize) -> DResult<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.buf.len() {
            return Err(Malformed("count larger than the frame"));
        }
        Ok(n)
    }
    /// Reads a byte string.
    pub fn bytes(&mut self) -> DResult<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// Reads a string (UTF-8).
    pub fn str(&mut self) -> DResult<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Malformed("string not UTF-8"))
    }
    /// Reads an owned string.
    pub fn string(&mut self) -> DResult<String> {
        self.str().map(str::to_string)
    }
    fn tag(&mut self) -> DResult<bool> {
        self.bool().map_err(|_| Malformed("bad option tag"))
    }
    /// Reads an optional u64.
    pub fn opt_u64(&mut self) -> DResult<Option<u64>> {
        Ok(if self.tag()? { Some(self.u64()?) } else { None })
    }
    /// Reads an optional string.
    pub fn opt_string(&mut self) -> DResult<Option<String>> {
        Ok(if self.tag()? {
            Some(self.string()?)
        } else {
            None
        })
    }
    /// Reads a duration.
    pub fn dur(&mut self) -> DResult<Duration> {
        Ok(Duration::from_nanos(self.u64()?))
    }
    /// Reads an optional duration.
    pub fn opt_dur(&mut self) -> DResult<Option<Duration>> {
        Ok(self.opt_u64()?.map(Duration::from_nanos))
    }
    /// Reads a list of strings.
    pub fn strs(&mut self) -> DResult<Vec<String>> {
        let n = self.count(4)?;
        (0..n).map(|_| self.string()).collect()
    }
    fn headers(&mut self) -> DResult<Headers> {
        let n = self.count(8)?;
        let mut h = Headers::new();
        for _ in 0..n {
            let k = self.string()?;
            let v = self.bytes()?.to_vec();
            h.insert(k, v);
        }
        Ok(h)
    }
    /// Reads a message to send.
    pub fn message(&mut self) -> DResult<Message> {
        let body = self.bytes()?.to_vec();
        let headers = self.headers()?;
        let name = self.opt_string()?;
        let correlation_id = self.opt_string()?;
        let priority = if self.tag()? { Some(self.u8()?) } else { None };
        let ttl = self.opt_dur()?;
        let delay = self.opt_dur()?;
        let persistent = if self.tag()? {
            Some(self.bool()?)
        } else {
            None
        };
        Ok(Message {
            body,
            headers,
            name,
            correlation_id,
            priority,
            ttl,
            delay,
            persistent,
        })
    }
    /// Reads a list of messages.
    pub fn messages(&mut self) -> DResult<Vec<Message>> {
        let n = self.count(14)?;
        (0..n).map(|_| self.message()).collect()
    }
    /// Reads a message as the engine held it.
    pub fn node(&mut self) -> DResult<Node> {
        let id = self.u64()?;
        let body = self.bytes()?.to_vec().into_boxed_slice();
        let headers = self.headers()?;
        let name = self.opt_string()?;
        let correlation_id = self.opt_string()?;
        Ok(Node {
            id,
            body,
            extra: crate::types::node::Extra::new(headers, name, correlation_id),
            enqueued_at: self.u64()?,
            expires_at: self.u64()?,
            size: self.u64()?,
            deliveries: std::sync::atomic::AtomicU32::new(self.u32()?),
            priority: self.u8()?,
            persistent: self.bool()?,
        })
    }
    /// Reads a full policy.
    pub fn on_full(&mut self) -> DResult<OnFull> {
        match self.u8()? {
            0 => Ok(OnFull::Block),
            1 => Ok(OnFull::Reject),
            2 => Ok(OnFull::Timeout(self.dur()?)),
            _ => Err(Malformed("bad on_full")),
        }
    }
    /// Reads a wait.
    pub fn wait(&mut self) -> DResult<Wait> {
        match self.u8()? {
            0 => Ok(Wait::Try),
            1 => Ok(Wait::Forever),
            2 => Ok(Wait::For(self.dur()?)),
            _ => Err(Malformed("bad wait")),
        }
    }
    /// Reads quotas.
    pub fn quotas(&mut self) -> DResult<Quotas> {
        Ok(Quotas {
            max_queues: self.opt_u64()?,
            max_messages: self.opt_u64()?,
            max_bytes: self.opt_u64()?,
            max_message_size: self.u64()?,
        })
    }
    /// Reads queue options.
    pub fn options(&mut self) -> DResult<QueueOptions> {
        let max_messages = self.opt_u64()?;
        let max_bytes = self.opt_u64()?;
        let on_full = self.on_full()?;
        let default_ttl = self.opt_dur()?;
        let default_delay = self.opt_dur()?;
        let default_priority = self.u8()?;
        let lease_time = self.dur()?;
        let max_deliveries = match self.opt_u64()? {
            None => None,
            Some(v) => Some(u32::try_from(v).map_err(|_| Malformed("max_deliveries"))?),
        };
        let dead_letter_queue = self.opt_string()?;
        let persistent = self.bool()?;
        let strict_fifo = self.bool()?;
        let shards = match self.opt_u64()? {
            None => None,
            Some(v) => Some(usize::try_from(v).map_err(|_| Malformed("shards"))?),
        };
        Ok(QueueOptions {
            max_messages,
            max_bytes,
            on_full,
            default_ttl,
            default_delay,
            default_priority,
            lease_time,
            max_deliveries,
            dead_letter_queue,
            persistent,
            strict_fifo,
            shards,
        })
    }
    /// Reads queue statistics.
    pub fn queue_stats(&mut self) -> DResult<QueueStats> {
        Ok(QueueStats {
            ready: self.u64()?,
            leased: self.u64()?,
            delayed: self.u64()?,
            bytes: self.u64()?,
            oldest_age: self.opt_dur()?,
            sent: self.u64()?,
            received: self.u64()?,
            acked: self.u64()?,
            nacked: self.u64()?,
            redelivered: self.u64()?,
            expired: self.u64()?,
            dead_lettered: self.u64()?,
            cancelled: self.u64()?,
            purged: self.u64()?,
        })
    }
    /// Reads topic statistics.
    pub fn topic_stats(&mut self) -> DResult<TopicStats> {
        Ok(TopicStats {
            published: self.u64()?,
            dropped_no_subscriber: self.u64()?,
            unmatched: self.u64()?,
            subscriptions: self.u64()?,
        })
    }
    /// Reads a subscription filter.
    pub fn filter(&mut self) -> DResult<Filter> {
        match self.u8()? {
            0 => Ok(Filter::All),
            1 => Ok(Filter::Name(self.string()?)),
            2 => Ok(Filter::Header {
                key: self.string()?,
                value: self.bytes()?.to_vec(),
            }),
            _ => Err(Malformed("bad filter")),
        }
    }
    /// Reads an error.
    pub fn error(&mut self) -> DResult<Error> {
        Ok(match self.u8()? {
            1 => Error::InvalidName(self.string()?),
            2 => Error::InvalidArgument(self.string()?),
            3 => Error::MessageTooLarge {
                size: self.u64()?,
                limit: self.u64()?,
            },
            4 => Error::Full,
            5 => Error::QuotaExceeded {
                namespace: self.string()?,
                quota: quota_name(self.str()?)?,
                limit: self.u64()?,
            },
            6 => Error::Timeout,
            7 => Error::Closed,
            8 => Error::NotFound(self.string()?),
            9 => Error::AlreadyExists(self.string()?),
            10 => Error::LeaseExpired { id: self.u64()? },
            11 => Error::InvalidState(self.string()?),
            12 => Error::Storage(self.string()?),
            13 => Error::Remote(self.string()?),
            14 => Error::Locked(self.string()?),
            15 => Error::Io(self.string()?),
            16 => Error::Forked,
            _ => return Err(Malformed("unknown error code")),
        })
    }
}

/// The `&'static str` of a quota's name (the error type holds one).
fn quota_name(s: &str) -> DResult<&'static str> {
    [
        "max_queues",
        "max_messages",
        "max_bytes",
        "max_message_size",
    ]
    .into_iter()
    .find(|q| *q == s)
    .ok_or(Malformed("unknown quota name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_len_is_what_message_appends() {
        let plain = Message::new(vec![1u8; 64]);
        let mut full = Message::new(b"body".to_vec());
        full.name = Some("n".into());
        full.correlation_id = Some("corr".into());
        full.priority = Some(3);
        full.ttl = Some(Duration::from_secs(1));
        full.delay = Some(Duration::from_millis(5));
        full.persistent = Some(true);
        full.headers.insert("k".into(), b"v".to_vec());
        for m in [plain, full, Message::new(Vec::new())] {
            let mut e = Enc::new(1, op::SEND);
            let before = e.len_so_far();
            e.message(&m);
            assert_eq!(e.len_so_far() - before, message_len(&m));
        }
    }
}
