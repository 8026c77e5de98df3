//! A queue's options and statistics, and how a send or receive waits: [`QueueOptions`],
//! [`OnFull`], [`Wait`], [`QueueStats`].

use crate::error::{validate_name, Error, Result};
use crate::types::{DEFAULT_PRIORITY, MAX_PRIORITY};
use std::time::Duration;

/// What a send does when the queue is at capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFull {
    /// Wait until there is room (or the queue closes).
    #[default]
    Block,
    /// Fail at once with [`Error::Full`].
    Reject,
    /// Wait at most this long, then fail with [`Error::Timeout`].
    Timeout(Duration),
}

/// How long a receive waits for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Do not wait.
    Try,
    /// Wait until a message arrives (or the queue closes).
    Forever,
    /// Wait at most this long (measured on the broker's clock).
    For(Duration),
}

/// Per-queue options. Build with [`QueueOptions::default`] and the setters.
///
/// ```
/// use libqueue::QueueOptions;
/// use std::time::Duration;
/// let o = QueueOptions::default()
///     .max_messages(10_000)
///     .lease_time(Duration::from_secs(5))
///     .max_deliveries(3)
///     .dead_letter_queue("orders.dlq");
/// assert_eq!(o.max_deliveries, Some(3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// Capacity in messages (ready + delayed + leased); `None`: unbounded.
    pub max_messages: Option<u64>,
    /// Capacity in bytes; `None`: unbounded.
    pub max_bytes: Option<u64>,
    /// What [`Queue::send`](crate::Queue::send) does when full (each call may choose with [`Queue::send_with`](crate::Queue::send_with)).
    pub on_full: OnFull,
    /// TTL of messages that set none.
    pub default_ttl: Option<Duration>,
    /// Delay of messages that set none.
    pub default_delay: Option<Duration>,
    /// Priority of messages that set none.
    pub default_priority: u8,
    /// How long a received message stays leased before it is redelivered.
    pub lease_time: Duration,
    /// Deliveries after which a message that is nacked or whose lease expires goes
    /// to the dead-letter queue (or is dropped, counted as dead-lettered, if there
    /// is none). `None`: redeliver forever.
    pub max_deliveries: Option<u32>,
    /// Dead-letter queue (same namespace; created with the queue if missing).
    pub dead_letter_queue: Option<String>,
    /// Whether messages that say nothing are persistent.
    pub persistent: bool,
    /// One lane instead of one per shard: delivery in queue-wide send order
    /// (within a priority), at the cost of scaling with cores.
    pub strict_fifo: bool,
    /// Number of shards (lanes per priority); default: the number of CPUs.
    pub shards: Option<usize>,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            max_messages: None,
            max_bytes: None,
            on_full: OnFull::Block,
            default_ttl: None,
            default_delay: None,
            default_priority: DEFAULT_PRIORITY,
            lease_time: Duration::from_secs(30),
            max_deliveries: None,
            dead_letter_queue: None,
            persistent: false,
            strict_fifo: false,
            shards: None,
        }
    }
}

macro_rules! setter {
    ($(#[$m:meta])* $f:ident: $t:ty => $v:expr) => {
        $(#[$m])*
        pub fn $f(mut self, v: $t) -> Self {
            self.$f = $v(v);
            self
        }
    };
}

impl QueueOptions {
    setter!(/// Sets the capacity in messages.
        max_messages: u64 => Some);
    setter!(/// Sets the capacity in bytes.
        max_bytes: u64 => Some);
    setter!(/// Sets the full policy.
        on_full: OnFull => std::convert::identity);
    setter!(/// Sets the default TTL.
        default_ttl: Duration => Some);
    setter!(/// Sets the default delay.
        default_delay: Duration => Some);
    setter!(/// Sets the default priority.
        default_priority: u8 => std::convert::identity);
    setter!(/// Sets the lease time.
        lease_time: Duration => std::convert::identity);
    setter!(/// Sets the maximum deliveries.
        max_deliveries: u32 => Some);
    setter!(/// Sets the persistence default.
        persistent: bool => std::convert::identity);
    setter!(/// Asks for strict queue-wide FIFO.
        strict_fifo: bool => std::convert::identity);
    setter!(/// Sets the number of shards.
        shards: usize => Some);

    /// Sets the dead-letter queue.
    pub fn dead_letter_queue(mut self, name: impl Into<String>) -> Self {
        self.dead_letter_queue = Some(name.into());
        self
    }

    /// The options as `key=value` lines (the journal's queue definition record).
    pub(crate) fn to_text(&self) -> String {
        let ms = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).to_string();
        let mut out = Vec::new();
        let mut kv = |k: &str, v: String| out.push(format!("{k}={v}"));
        if let Some(v) = self.max_messages {
            kv("max_messages", v.to_string());
        }
        if let Some(v) = self.max_bytes {
            kv("max_bytes", v.to_string());
        }
        kv(
            "on_full",
            match self.on_full {
                OnFull::Block => "block".into(),
                OnFull::Reject => "reject".into(),
                OnFull::Timeout(d) => format!("timeout_ns:{}", ms(d)),
            },
        );
        if let Some(v) = self.default_ttl {
            kv("default_ttl_ns", ms(v));
        }
        if let Some(v) = self.default_delay {
            kv("default_delay_ns", ms(v));
        }
        kv("default_priority", self.default_priority.to_string());
        kv("lease_time_ns", ms(self.lease_time));
        if let Some(v) = self.max_deliveries {
            kv("max_deliveries", v.to_string());
        }
        if let Some(v) = &self.dead_letter_queue {
            kv("dead_letter_queue", v.clone());
        }
        kv("persistent", self.persistent.to_string());
        kv("strict_fifo", self.strict_fifo.to_string());
        if let Some(v) = self.shards {
            kv("shards", v.to_string());
        }
        out.join("\n")
    }

    /// Parses [`to_text`](Self::to_text). Unknown keys and malformed values are
    /// skipped (the default stays): a definition never makes a journal unreadable.
    pub(crate) fn from_text(text: &str) -> Result<Self> {
        let mut o = QueueOptions::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let r: Result<(), ()> = (|| {
                let n = || v.parse::<u64>().map_err(|_| ());
                let b = || v.parse::<bool>().map_err(|_| ());
                let ns = || n().map(Duration::from_nanos);
                match k {
                    "max_messages" => o.max_messages = Some(n()?.max(1)),
                    "max_bytes" => o.max_bytes = Some(n()?.max(1)),
                    "on_full" => {
                        o.on_full = match v {
                            "block" => OnFull::Block,
                            "reject" => OnFull::Reject,
                            t => OnFull::Timeout(Duration::from_nanos(
                                t.strip_prefix("timeout_ns:")
                                    .and_then(|x| x.parse().ok())
                                    .ok_or(())?,
                            )),
                        }
                    }
                    "default_ttl_ns" => o.default_ttl = Some(ns()?),
                    "default_delay_ns" => o.default_delay = Some(ns()?),
                    "default_priority" => o.default_priority = n()?.min(9) as u8,
                    "lease_time_ns" => o.lease_time = ns()?.max(Duration::from_nanos(1)),
                    "max_deliveries" => {
                        o.max_deliveries = Some(n()?.clamp(1, u32::MAX as u64) as u32)
                    }
                    "dead_letter_queue" if crate::error::validate_name(v).is_ok() => {
                        o.dead_letter_queue = Some(v.to_string())
                    }
                    "persistent" => o.persistent = b()?,
                    "strict_fifo" => o.strict_fifo = b()?,
                    "shards" => o.shards = Some(n()?.max(1) as usize),
                    _ => {}
                }
                Ok(())
            })();
            let _ = r; // a malformed value keeps the default
        }
        Ok(o)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.to_string()));
        if self.max_messages == Some(0) {
            return bad("max_messages must be at least 1");
        }
        if self.max_bytes == Some(0) {
            return bad("max_bytes must be at least 1");
        }
        if self.default_priority > MAX_PRIORITY {
            return bad("default_priority must be 0..=9");
        }
        if self.lease_time.is_zero() {
            return bad("lease_time must be positive");
        }
        if self.max_deliveries == Some(0) {
            return bad("max_deliveries must be at least 1");
        }
        if self.shards == Some(0) {
            return bad("shards must be at least 1");
        }
        if let Some(d) = &self.dead_letter_queue {
            validate_name(d)?;
        }
        Ok(())
    }
}

/// Exact statistics of one queue.
///
/// Gauges (`ready`, `leased`, `delayed`, `bytes`) are what the queue holds now;
/// the rest are totals since the queue was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Messages ready to be received.
    pub ready: u64,
    /// Messages leased to consumers (received, not yet acked).
    pub leased: u64,
    /// Messages waiting for their delay to pass.
    pub delayed: u64,
    /// Bytes held (ready + leased + delayed).
    pub bytes: u64,
    /// Age of the oldest message held, if any.
    pub oldest_age: Option<Duration>,
    /// Messages accepted by send (dead letters moved in included).
    pub sent: u64,
    /// Deliveries handed to consumers (redeliveries included).
    pub received: u64,
    /// Messages acked (auto-acked included).
    pub acked: u64,
    /// Nacks.
    pub nacked: u64,
    /// Deliveries of a message delivered before.
    pub redelivered: u64,
    /// Messages dropped because their TTL passed.
    pub expired: u64,
    /// Messages moved to the dead-letter queue (or dropped) after max deliveries.
    pub dead_lettered: u64,
    /// Messages cancelled by id.
    pub cancelled: u64,
    /// Messages removed by purge.
    pub purged: u64,
}

impl QueueStats {
    /// Messages held in all: ready + leased + delayed.
    pub fn depth(&self) -> u64 {
        self.ready + self.leased + self.delayed
    }

    pub(crate) fn add(&mut self, o: &QueueStats) {
        self.ready += o.ready;
        self.leased += o.leased;
        self.delayed += o.delayed;
        self.bytes += o.bytes;
        self.oldest_age = match (self.oldest_age, o.oldest_age) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.sent += o.sent;
        self.received += o.received;
        self.acked += o.acked;
        self.nacked += o.nacked;
        self.redelivered += o.redelivered;
        self.expired += o.expired;
        self.dead_lettered += o.dead_lettered;
        self.cancelled += o.cancelled;
        self.purged += o.purged;
    }
}
