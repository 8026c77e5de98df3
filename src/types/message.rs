//! What a producer sends ([`Message`]) and what a consumer gets back ([`Delivery`]
//! is in `queue.rs`; its read accessors come from [`MessageView`] here).

use std::collections::BTreeMap;
use std::time::Duration;

/// Highest priority (delivered first).
pub const MAX_PRIORITY: u8 = 9;
/// Priority of a message that names none (the JMS convention: 0–3 low, 5–9 high).
pub const DEFAULT_PRIORITY: u8 = 4;

/// The header that carries a workflow execution id (the TripleO convention).
pub const EXECUTION_ID: &str = "execution_id";

/// Message headers: string keys to byte values (UTF-8 text or not), sorted by key.
pub type Headers = BTreeMap<String, Vec<u8>>;

/// A message to send: a body plus optional headers, name, correlation id, priority,
/// time to live, delay and persistence flag.
///
/// ```
/// use libqueue::Message;
/// use std::time::Duration;
/// let m = Message::new("payload")
///     .name("create_load_balancer")
///     .header("execution_id", "e-42")
///     .priority(7)
///     .ttl(Duration::from_secs(60));
/// assert_eq!(m.size(), 7 + 20 + 12 + 4);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub(crate) body: Vec<u8>,
    pub(crate) headers: Headers,
    pub(crate) name: Option<String>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) priority: Option<u8>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) delay: Option<Duration>,
    pub(crate) persistent: Option<bool>,
}

impl Message {
    /// A message with this body and nothing else set.
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Message {
            body: body.into(),
            ..Default::default()
        }
    }

    /// The message envelope convention (from the TripleO/Zaqar thread): `name` says
    /// what happened (`"tripleo.deployment.v1.deploy_plan"`, `"create_member"`), the
    /// `execution_id` header says which execution it belongs to, the body is the
    /// data. Listeners pick out their own messages by execution id (see
    /// [`crate::Filter::execution_id`]).
    ///
    /// ```
    /// use libqueue::{Message, MessageView, Broker};
    /// let q = Broker::new().default_queue()?;
    /// q.send(Message::envelope("deploy_plan", "e-7", r#"{"status": "RUNNING"}"#))?;
    /// let d = q.try_receive()?.unwrap();
    /// assert_eq!((d.name(), d.execution_id()), (Some("deploy_plan"), Some("e-7")));
    /// # Ok::<(), libqueue::Error>(())
    /// ```
    pub fn envelope(
        name: impl Into<String>,
        execution_id: impl Into<String>,
        data: impl Into<Vec<u8>>,
    ) -> Self {
        Message::new(data)
            .name(name)
            .header(EXECUTION_ID, execution_id.into())
    }

    /// The name, if set.
    pub fn get_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Sets the name (what the message is about; used for routing and dispatch).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds (or replaces) a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }

    /// Sets the correlation id (RPC replies, execution ids).
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the priority, 0 (lowest) to 9 (highest). Out of range is rejected at send.
    pub fn priority(mut self, p: u8) -> Self {
        self.priority = Some(p);
        self
    }

    /// Time to live from the moment of sending; an expired message is never delivered.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Delay: the message becomes receivable only this long after sending.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Marks the message persistent (or not), overriding the queue's default.
    /// It takes effect with a storage backend that persists (the journal).
    pub fn persistent(mut self, yes: bool) -> Self {
        self.persistent = Some(yes);
        self
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Size counted against quotas and capacities: body + name + correlation id +
    /// every header key and value, in bytes.
    pub fn size(&self) -> u64 {
        size_of(
            &self.body,
            &self.headers,
            self.name.as_deref(),
            self.correlation_id.as_deref(),
        )
    }
}

/// The size of a message as quotas count it.
pub(crate) fn size_of(
    body: &[u8],
    headers: &Headers,
    name: Option<&str>,
    corr: Option<&str>,
) -> u64 {
    let h: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    (body.len() + h + name.map_or(0, str::len) + corr.map_or(0, str::len)) as u64
}

/// Read access to a message held by the engine (a delivery or a peeked message,
/// or a storage record's [`Node`](crate::Node)): a set of accessors, so that a
/// handle may hold its message however its flavor keeps it.
pub trait MessageView {
    /// The message id, unique within its queue.
    fn id(&self) -> u64;
    /// The body, borrowed from the engine without a copy.
    fn body(&self) -> &[u8];
    /// All headers.
    fn headers(&self) -> &Headers;
    /// One header's value.
    fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers().get(key).map(|v| v.as_slice())
    }
    /// One header as UTF-8 text (None if absent or not UTF-8).
    fn header_str(&self, key: &str) -> Option<&str> {
        self.header(key).and_then(|v| std::str::from_utf8(v).ok())
    }
    /// The message name.
    fn name(&self) -> Option<&str>;
    /// The `execution_id` header (the envelope convention), if it is UTF-8.
    fn execution_id(&self) -> Option<&str> {
        self.header_str(EXECUTION_ID)
    }
    /// The correlation id.
    fn correlation_id(&self) -> Option<&str>;
    /// Priority 0–9.
    fn priority(&self) -> u8;
    /// When it was sent (clock nanoseconds).
    fn enqueued_at(&self) -> u64;
    /// When it expires (clock nanoseconds), if it has a TTL.
    fn expires_at(&self) -> Option<u64>;
    /// Whether it is persistent.
    fn is_persistent(&self) -> bool;
    /// Size counted against quotas (see [`Message::size`]).
    fn size(&self) -> u64;
    /// A copy of it as a [`Message`] (e.g. to forward it elsewhere).
    fn to_message(&self) -> Message {
        Message {
            body: self.body().to_vec(),
            headers: self.headers().clone(),
            name: self.name().map(str::to_string),
            correlation_id: self.correlation_id().map(str::to_string),
            priority: Some(self.priority()),
            ttl: None,
            delay: None,
            persistent: Some(self.is_persistent()),
        }
    }
}
