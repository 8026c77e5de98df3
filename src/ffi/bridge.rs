//! Bridges (cargo feature `bridge`, which `make lib` and the Python package
//! build with): `lq_bridge_builder`, `lq_bridge`, `lq_bridge_stats`.
//!
//! A builder is made for one kind of remote (`lq_bridge_nats_new`,
//! `lq_bridge_rabbitmq_new`), configured with the `lq_bridge_builder_*`
//! setters, then consumed by `lq_bridge_start`, which gives a running
//! `lq_bridge`. The routes and tuning setters serve both kinds; the
//! JetStream ones (`_stream`, `_receive_durable`, `_duplicate_window_ms`)
//! refuse a RabbitMQ builder and `_forward_exchange` a NATS one, with
//! `LQ_INVALID_ARGUMENT` (the builder is left as it was).
//!
//! Threads: an `lq_bridge_builder` is used from one thread at a time (it may
//! move); an `lq_bridge` may be shared (stats and stop from any thread, at
//! once), and is freed once, after every other call on it has returned.
//!
//! Fork: a bridge inherited through `fork()` has no thread in the child:
//! `lq_bridge_get_stats` returns `LQ_FORKED`, and `lq_bridge_stop` and
//! `lq_bridge_free` let go of it without touching the parent's bridge.

use super::boundary::{boxed, check_open, handle, handle_mut, ms, owned, run, text, Fail, Out};
use super::broker::lq_broker;
use super::status::{lq_status, lq_status::*};
use crate::bridge::{check_rabbit_url, Bridge, BridgeBuilder, BridgeStats, RabbitBuilder};
use crate::sync::fork::Origin;
use parking_lot::Mutex;
use std::ffi::c_char;
use std::time::{SystemTime, UNIX_EPOCH};

/// The configuration of a bridge, before `lq_bridge_start`.
pub struct lq_bridge_builder {
    b: Option<Kind>,
    /// Streams to create at start, by name, with their subjects in the order
    /// given (`lq_bridge_builder_stream` adds one subject per call).
    streams: Vec<(String, Vec<String>)>,
}

/// The remote a builder is for.
enum Kind {
    Nats(BridgeBuilder),
    Rabbit(RabbitBuilder),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Nats(_) => "NATS",
            Kind::Rabbit(_) => "RabbitMQ",
        }
    }
}

/// A running bridge (`lq_bridge_start`). Shareable between threads: stats
/// and stop may come from any thread, at once.
pub struct lq_bridge {
    state: Mutex<Running>,
    origin: Origin,
}

struct Running {
    b: Option<Bridge>,
    /// The counters once stopped (the last ones read while it stops).
    last: Option<BridgeStats>,
}

/// The bytes of `lq_bridge_stats::last_error` (NUL included; written as a
/// number in the struct so the header needs no macro).
const ERROR_MAX: usize = 512;

/// A bridge's counters and health (`lq_bridge_get_stats`).
///
/// Set `struct_size` to `sizeof(lq_bridge_stats)` before the call: fields added
/// by a later version go at the end, and a library only writes the fields that
/// fit in `struct_size` (a program built against an older header keeps
/// working).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct lq_bridge_stats {
    /// Set by the caller: `sizeof(lq_bridge_stats)` as it was compiled.
    pub struct_size: usize,
    /// Whether the connection to the remote is up now.
    pub connected: bool,
    /// Local messages the remote stored (and then acked locally).
    pub forwarded: u64,
    /// Remote messages sent to their local queue (and then acked remotely).
    pub received: u64,
    /// Messages waiting in the forwarded local queues (ready, delayed, leased).
    pub pending_outbound: u64,
    /// Messages waiting at the remote for the receiving routes, as it last said.
    pub pending_inbound: u64,
    /// Publishes (and inbound sends) tried again after a failure.
    pub retries: u64,
    /// Publishes the remote reported as duplicates (suppressed replays).
    pub duplicates: u64,
    /// Messages dead-lettered locally (unmappable, refused, or too old).
    pub dead_lettered: u64,
    /// When the last error happened, in milliseconds since the Unix epoch
    /// (0: none yet).
    pub last_error_at_ms: u64,
    /// When the current run of failures began, in milliseconds since the Unix
    /// epoch (0: the bridge has made progress since the last error).
    pub error_since_ms: u64,
    /// The last error's text, UTF-8, NUL-terminated, cut at a character
    /// boundary to fit (511 bytes at most); `""` when there was none. It stays
    /// after recovery (see `error_since_ms`).
    pub last_error: [c_char; 512],
}

fn epoch_ms(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        })
}

impl From<&BridgeStats> for lq_bridge_stats {
    fn from(s: &BridgeStats) -> Self {
        let mut last_error: [c_char; ERROR_MAX] = [0; ERROR_MAX];
        if let Some(e) = &s.last_error {
            let mut n = e.len().min(ERROR_MAX - 1);
            while !e.is_char_boundary(n) {
                n -= 1;
            }
            // A NUL inside would cut the C string short: shown as a space.
            for (to, b) in last_error.iter_mut().zip(&e.as_bytes()[..n]) {
                *to = if *b == 0 { b' ' } else { *b } as c_char;
            }
        }
        lq_bridge_stats {
            struct_size: std::mem::size_of::<lq_bridge_stats>(),
            connected: s.connected,
            forwarded: s.forwarded,
            received: s.received,
            pending_outbound: s.pending_outbound,
            pending_inbound: s.pending_inbound,
            retries: s.retries,
            duplicates: s.duplicates,
            dead_lettered: s.dead_lettered,
            last_error_at_ms: epoch_ms(s.last_error_at),
            error_since_ms: epoch_ms(s.error_since),
            last_error,
        }
    }
}

/// Checks the syntax of a bridge URL: one or more `[scheme://][user[:pass]@]host[:port]`,
/// comma-separated, no whitespace, a port of 1–65535. The remote's client
/// checks the rest when it connects.
fn check_url(url: &str, schemes: &[&str]) -> Result<(), Fail> {
    let bad = |why: &str| {
        Fail::new(
            LQ_INVALID_ARGUMENT,
            format!(
                "bridge URL {url:?}: {why} (expected {}://host:port, comma-separated for several)",
                schemes[0]
            ),
        )
    };
    if url.trim().is_empty() {
        return Err(bad("empty"));
    }
    for part in url.split(',') {
        if part.is_empty() || part.contains(char::is_whitespace) {
            return Err(bad("an empty part or whitespace"));
        }
        let rest = match part.split_once("://") {
            Some((scheme, rest)) if schemes.contains(&scheme) => rest,
            Some((scheme, _)) => return Err(bad(&format!("unknown scheme {scheme:?}"))),
            None => part,
        };
        let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("no ']'"))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() || host.contains(['/', '?', '#']) {
            return Err(bad("no host"));
        }
        if let Some(p) = port {
            if !matches!(p.parse::<u16>(), Ok(1..)) {
                return Err(bad(&format!("port {p:?} is not a number in 1-65535")));
            }
        }
    }
    Ok(())
}

/// A builder for a bridge to NATS JetStream at `url` (`nats://host:port`, or
/// several comma-separated; `tls://` for TLS). `LQ_INVALID_ARGUMENT` for a
/// malformed URL (nothing is connected here: `lq_bridge_start` connects).
/// `*out` is owned until `lq_bridge_start` consumes it, or
/// `lq_bridge_builder_free`.
///
/// # Safety
/// `url` points to `url_len` bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_nats_new(
    url: *const u8,
    url_len: usize,
    out: *mut *mut lq_bridge_builder,
) -> lq_status {
    run(|| {
        let (url, out) = (text(url, url_len, "url")?, Out::new(out, "out")?);
        check_url(url, &["nats", "tls"])?;
        out.set(boxed(lq_bridge_builder {
            b: Some(Kind::Nats(Bridge::nats(url))),
            streams: Vec::new(),
        }));
        Ok(())
    })
}

/// A builder for a bridge to RabbitMQ at `url`
/// (`amqp://user:password@host:port/vhost`; the vhost percent-encoded,
/// `%2f` for `/`). `LQ_INVALID_ARGUMENT` for a malformed URL (nothing is
/// connected here: `lq_bridge_start` connects). The bridge declares nothing
/// on the server: the exchanges and remote queues must exist. `*out` is
/// owned until `lq_bridge_start` consumes it, or `lq_bridge_builder_free`.
///
/// # Safety
/// `url` points to `url_len` bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_rabbitmq_new(
    url: *const u8,
    url_len: usize,
    out: *mut *mut lq_bridge_builder,
) -> lq_status {
    run(|| {
        let (url, out) = (text(url, url_len, "url")?, Out::new(out, "out")?);
        check_rabbit_url(url)?;
        out.set(boxed(lq_bridge_builder {
            b: Some(Kind::Rabbit(Bridge::rabbitmq(url))),
            streams: Vec::new(),
        }));
        Ok(())
    })
}

/// Frees a builder that was not started; NULL is a no-op.
///
/// # Safety
/// `builder` must be NULL or an owned builder, not used again.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_builder_free(builder: *mut lq_bridge_builder) {
    super::boundary::run_free(builder)
}

/// Checks the arguments with `check`, then applies `apply` to the builder (a
/// refused argument leaves the builder as it was).
///
/// Pointers (the exported function's, see `boundary.rs`):
/// `builder` NULL or live and unshared.
/// `setter` names the exported function, for the message when `apply`
/// refuses the builder's kind (it then gives the builder back unchanged,
/// boxed).
fn with_builder<T>(
    builder: *mut lq_bridge_builder,
    setter: &str,
    check: impl FnOnce() -> Result<T, Fail>,
    apply: impl FnOnce(&mut Vec<(String, Vec<String>)>, Kind, T) -> Result<Kind, Box<Kind>>,
) -> lq_status {
    run(|| {
        let h = handle_mut(builder, "builder")?;
        let v = check()?;
        let b =
            h.b.take()
                .ok_or_else(|| Fail::new(LQ_INVALID_STATE, "the builder is spent"))?;
        match apply(&mut h.streams, b, v) {
            Ok(b) => {
                h.b = Some(b);
                Ok(())
            }
            Err(b) => {
                let kind = b.name();
                h.b = Some(*b);
                Err(Fail::new(
                    LQ_INVALID_ARGUMENT,
                    format!("{setter} does not apply to a {kind} bridge builder"),
                ))
            }
        }
    })
}

/// A tuning setting both kinds of builder take, under the same setter name.
#[derive(Clone, Copy)]
enum Tuning<'a> {
    Identity(&'a str),
    Window(usize),
    Backoff(u64, u64),
    MaxAge(u64),
    ConnectTimeout(u64),
    AckTimeout(u64),
    Background(bool),
}

/// Applies a [`Tuning`] to `$b`, a NATS or a RabbitMQ builder (their tuning
/// setters share names and arguments, not a type).
macro_rules! tune {
    ($b:expr, $s:expr) => {
        match $s {
            Tuning::Identity(id) => $b.identity(id),
            Tuning::Window(n) => $b.window(n),
            Tuning::Backoff(first, max) => $b.backoff(ms(first), ms(max)),
            Tuning::MaxAge(v) => $b.max_age(ms(v)),
            Tuning::ConnectTimeout(v) => $b.connect_timeout(ms(v)),
            Tuning::AckTimeout(v) => $b.ack_timeout(ms(v)),
            Tuning::Background(yes) => $b.connect_in_background(yes),
        }
    };
}

/// A setter both kinds share: `check` validates the arguments and names the
/// setting, applied to whichever kind the builder is.
fn shared<'a>(
    builder: *mut lq_bridge_builder,
    check: impl FnOnce() -> Result<Tuning<'a>, Fail>,
) -> lq_status {
    with_builder(builder, "", check, |_, k, s| {
        Ok(match k {
            Kind::Nats(b) => Kind::Nats(tune!(b, s)),
            Kind::Rabbit(b) => Kind::Rabbit(tune!(b, s)),
        })
    })
}

fn positive(v: u64, what: &str) -> Result<u64, Fail> {
    if v == 0 {
        Err(Fail::new(
            LQ_INVALID_ARGUMENT,
            format!("{what} must be > 0"),
        ))
    } else {
        Ok(v)
    }
}

/// Forwards the local `queue` (`"queue"` in the default namespace, or
/// `"namespace/queue"`; created if missing) to the remote `subject`, which a
/// stream must take. On a RabbitMQ builder, `subject` is the routing key on
/// the default exchange `""` (which delivers to the queue of that name), as
/// `lq_bridge_builder_forward_exchange(builder, queue, "", subject)`. Names
/// are checked by `lq_bridge_start`.
///
/// # Safety
/// `builder` NULL or live and unshared; `queue` and `subject` point to their
/// lengths in bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_builder_forward(
    builder: *mut lq_bridge_builder,
    queue: *const u8,
    queue_len: usize,
    subject: *const u8,
    subject_len: usize,
) -> lq_status {
    with_builder(
        builder,
        "lq_bridge_builder_forward",
        || {
            Ok((
                text(queue, queue_len, "queue")?,
                text(subject, subject_len, "subject")?,
            ))
        },
        |_, k, (q, s)| {
            Ok(match k {
                Kind::Nats(b) => Kind::Nats(b.forward(q, s)),
                Kind::Rabbit(b) => Kind::Rabbit(b.forward(q, "", s)),
            })
        },
    )
}

/// RabbitMQ: forwards the local `queue` to `exchange` (`""`: the default
/// exchange; no `/`) with `routing_key`. Publishes are mandatory: a message
/// no remote queue takes stays local and is retried (the stats' `last_error`
/// says "unroutable"). `LQ_INVALID_ARGUMENT` on a NATS builder.
///
/// # Safety
/// `builder` NULL or live and unshared; `queue`, `exchange` and
/// `routing_key` point to their lengths in bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_builder_forward_exchange(
    builder: *mut lq_bridge_builder,
    queue: *const u8,
    queue_len: usize,
    exchange: *const u8,
    exchange_len: usize,
    routing_key: *const u8,
    routing_key_len: usize,
) -> lq_status {
    with_builder(
        builder,
        "lq_bridge_builder_forward_exchange",
        || {
            Ok((
                text(queue, queue_len, "queue")?,
                text(exchange, exchange_len, "exchange")?,
                text(routing_key, routing_key_len, "routing_key")?,
            ))
        },
        |_, k, (q, e, r)| match k {
            Kind::Rabbit(b) => Ok(Kind::Rabbit(b.forward(q, e, r))),
            nats => Err(Box::new(nats)),
        },
    )
}

/// Feeds the local `queue` from the remote `subject` (wildcards allowed)
/// through a durable consumer named `lq-<namespace>-<queue>` (dots become
/// `_`), which keeps its place across restarts. On a RabbitMQ builder,
/// `subject` is the remote queue, consumed with manual acks (consumer tag
/// `lq-<namespace>-<queue>`).
///
/// # Safety
/// As for `lq_bridge_builder_forward`.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_builder_receive(
    builder: *mut lq_bridge_builder,
    subject: *const u8,
    subject_len: usize,
    queue: *const u8,
    queue_len: usize,
) -> lq_status {
    with_builder(
        builder,
        "lq_bridge_builder_receive",
        || {
            Ok((
                text(subject, subject_len, "subject")?,
                text(queue, queue_len, "queue")?,
            ))
        },
        |_, k, (s, q)| {
            Ok(match k {
                Kind::Nats(b) => Kind::Nats(b.receive(s, q)),
                Kind::Rabbit(b) => Kind::Rabbit(b.receive(s, q)),
            })
        },
    )
}

/// NATS: `lq_bridge_builder_receive` through the durable consumer `durable`
/// (no `.`, `*`, `>` or whitespace). `LQ_INVALID_ARGUMENT` on a RabbitMQ
/// builder.
///
/// # Safety
/// As for `lq_bridge_builder_forward`; `durable` points to `durable_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_builder_receive_durable(
    builder: *mut lq_bridge_builder,
    subject: *const u8,
    subject_len: usize,
    queue: *const u8,
    queue_len: usize,
    durable: *const u8,
    durable_len: usize,
) -> lq_status {
    with_builder(
        builder,
        "lq_bridge_builder_receive_durable",
        || {
            Ok((
                text(subject, subject_len, "subject")?,
                text(queue, queue_len, "queue")?,
                text(durable, durable_len, "durable")?,
            ))
        },
        |_, k, (s, q, d)| match k {
            Kind::Nats(b) => Ok(Kind::Nats(b.receive_durable(s, q, d))),
            rabbit => Err(Box::new(rabbit)),
        },
    )
}

/// NATS: creates the stream `name` (file storage) at start, if no stream of
/// that name exists, taking `subject`; call again with the same `name` for
/// each further subject. An existing stream is left as it is.
/// `LQ_INVALID_ARGUMENT` on a RabbitMQ builder.
///
/// # Safety
/// As for `lq_bridge_builder_forward`; `name` points to `name_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_builder_stream(
    builder: *mut lq_bridge_builder,
    name: *const u8,
    name_len: usize,
    subject: *const u8,
    subject_len: usize,
) -> lq_status {
    with_builder(
        builder,
        "lq_bridge_builder_stream",
        || {
            let name = text(name, name_len, "name")?;
            if name.is_empty() {
                return Err(Fail::new(LQ_INVALID_ARGUMENT, "the stream name is empty"));
            }
            Ok((name, text(subject, subject_len, "subject")?))
        },
        |streams, k, (n, s)| {
            if !matches!(k, Kind::Nats(_)) {
                return Err(Box::new(k));
            }
            match streams.iter_mut().find(|(name, _)| name == n) {
                Some((_, subjects)) => subjects.push(s.into()),
                None => streams.push((n.into(), vec![s.into()])),
            }
            Ok(k)
        },
    )
}

/// NATS: the duplicate window of the streams `lq_bridge_builder_stream`
/// creates (the remote's default otherwise: 2 minutes for JetStream).
/// `LQ_INVALID_ARGUMENT` on a RabbitMQ builder.
///
/// # Safety
/// `builder` NULL or live and unshared.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_builder_duplicate_window_ms(
    builder: *mut lq_bridge_builder,
    window_ms: u64,
) -> lq_status {
    with_builder(
        builder,
        "lq_bridge_builder_duplicate_window_ms",
        || positive(window_ms, "window_ms"),
        |_, k, v| match k {
            Kind::Nats(b) => Ok(Kind::Nats(b.duplicate_window(ms(v)))),
            rabbit => Err(Box::new(rabbit)),
        },
    )
}

/// The identity in every outbound message id (default: kept in the data
/// directory's `bridge-id` file; random per start without a data directory).
///
/// # Safety
/// `builder` NULL or live and unshared; `id` points to `id_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_builder_identity(
    builder: *mut lq_bridge_builder,
    id: *const u8,
    id_len: usize,
) -> lq_status {
    shared(builder, || {
        let id = text(id, id_len, "id")?;
        if id.is_empty() || id.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(Fail::new(
                LQ_INVALID_ARGUMENT,
                format!("identity {id:?}: not empty, no whitespace"),
            ));
        }
        Ok(Tuning::Identity(id))
    })
}

/// Publishes in flight per forwarded queue, confirmed in order, and the
/// largest inbound fetch (default 256; 1 sends one at a time).
///
/// # Safety
/// `builder` NULL or live and unshared.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_builder_window(
    builder: *mut lq_bridge_builder,
    n: usize,
) -> lq_status {
    shared(builder, || {
        if !(1..=1_000_000).contains(&n) {
            return Err(Fail::new(
                LQ_INVALID_ARGUMENT,
                format!("window {n} is not in 1..=1000000"),
            ));
        }
        Ok(Tuning::Window(n))
    })
}

/// The first and the longest wait between retries, in milliseconds (default
/// 100, 30000; each failure doubles the wait). `LQ_INVALID_ARGUMENT` unless
/// `0 < first_ms <= max_ms`.
///
/// # Safety
/// `builder` NULL or live and unshared.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_builder_backoff_ms(
    builder: *mut lq_bridge_builder,
    first_ms: u64,
    max_ms: u64,
) -> lq_status {
    shared(builder, || {
        if first_ms == 0 || first_ms > max_ms {
            return Err(Fail::new(
                LQ_INVALID_ARGUMENT,
                format!("backoff {first_ms}..{max_ms} ms: need 0 < first <= max"),
            ));
        }
        Ok(Tuning::Backoff(first_ms, max_ms))
    })
}

/// Dead-letters (locally, with the reason) an outbound message not forwarded
/// within `age_ms` of its send. Default: retried forever.
///
/// # Safety
/// `builder` NULL or live and unshared.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_builder_max_age_ms(
    builder: *mut lq_bridge_builder,
    age_ms: u64,
) -> lq_status {
    shared(builder, || positive(age_ms, "age_ms").map(Tuning::MaxAge))
}

/// How long the first connection may take (default 5000 ms).
///
/// # Safety
/// `builder` NULL or live and unshared.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_builder_connect_timeout_ms(
    builder: *mut lq_bridge_builder,
    timeout_ms: u64,
) -> lq_status {
    shared(builder, || {
        positive(timeout_ms, "timeout_ms").map(Tuning::ConnectTimeout)
    })
}

/// How long a publish waits for the remote's confirmation before it counts
/// as failed (default 5000 ms).
///
/// # Safety
/// `builder` NULL or live and unshared.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_builder_ack_timeout_ms(
    builder: *mut lq_bridge_builder,
    timeout_ms: u64,
) -> lq_status {
    shared(builder, || {
        positive(timeout_ms, "timeout_ms").map(Tuning::AckTimeout)
    })
}

/// With `true`, `lq_bridge_start` does not wait for the remote: it returns at
/// once and the bridge connects when it can (until then the stats'
/// `last_error` says why not). Default `false`: start fails with the reason.
///
/// # Safety
/// `builder` NULL or live and unshared.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_builder_connect_in_background(
    builder: *mut lq_bridge_builder,
    yes: bool,
) -> lq_status {
    shared(builder, || Ok(Tuning::Background(yes)))
}

/// Starts the bridge on its own thread, **consuming** `builder` (also on
/// failure). Fails with `LQ_INVALID_ARGUMENT` (a malformed subject, queue or
/// consumer name, or no route), `LQ_INVALID_NAME`, `LQ_ALREADY_EXISTS` (a
/// queue another bridge of this process forwards), `LQ_CLOSED` (the broker is
/// closed), and — unless connecting in the background — `LQ_IO` (the remote
/// cannot be reached; the message names the URL and the cause) or
/// `LQ_NOT_FOUND` (no stream takes a subject). `*out` is owned: stop it with
/// `lq_bridge_stop` (optional) and free it with `lq_bridge_free`. The bridge
/// keeps what it uses of the broker alive; once the broker is closed its
/// routes end.
///
/// # Safety
/// `builder` NULL or an owned builder, not used again; `broker` NULL or live;
/// `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_start(
    builder: *mut lq_bridge_builder,
    broker: *const lq_broker,
    out: *mut *mut lq_bridge,
) -> lq_status {
    run(|| {
        let h = owned(builder, "builder")?;
        let (broker, out) = (handle(broker, "broker")?, Out::new(out, "out")?);
        let lq_bridge_builder { b, streams } = *h;
        let b = b.ok_or_else(|| Fail::new(LQ_INVALID_STATE, "the builder is spent"))?;
        check_open(&broker.b)?;
        let bridge = match b {
            Kind::Nats(mut b) => {
                for (name, subjects) in &streams {
                    b = b.stream(name, subjects);
                }
                b.start(&broker.b)?
            }
            Kind::Rabbit(b) => b.start(&broker.b)?,
        };
        out.set(boxed(lq_bridge {
            state: Mutex::new(Running {
                b: Some(bridge),
                last: None,
            }),
            origin: Origin::here(),
        }));
        Ok(())
    })
}

/// Reads the stats of a running (or stopped) bridge into the caller's struct.
fn get_stats(h: &lq_bridge, out: Out<lq_bridge_stats>) -> Result<(), Fail> {
    if h.origin.inherited() {
        return Err(Fail::new(
            LQ_FORKED,
            "the bridge was inherited through fork(): it runs in the parent only",
        ));
    }
    let at = out.as_ptr().cast::<u8>();
    // SAFETY: `out` is non-NULL and the caller guarantees (the exported
    // function's `# Safety`) it points to an `lq_bridge_stats` whose first
    // field, a `usize` in every version, is set; read unaligned in case the
    // caller's struct is not aligned.
    let size = unsafe { at.cast::<usize>().read_unaligned() };
    let head = std::mem::size_of::<usize>();
    if size < std::mem::offset_of!(lq_bridge_stats, forwarded) + std::mem::size_of::<u64>() {
        return Err(Fail::new(
            LQ_INVALID_ARGUMENT,
            "out->struct_size must be sizeof(lq_bridge_stats)",
        ));
    }
    let s = {
        let r = h.state.lock();
        match (&r.b, &r.last) {
            (Some(b), _) => b.stats(),
            (None, Some(last)) => last.clone(),
            (None, None) => BridgeStats::default(),
        }
    };
    let full = lq_bridge_stats::from(&s);
    let n = size.min(std::mem::size_of::<lq_bridge_stats>());
    // SAFETY: `full` is a plain `repr(C)` value on our stack and `n` does not
    // exceed its size; the caller's struct is valid for `size >= n` bytes (its
    // `# Safety`); the two do not overlap. `struct_size` (the first `head`
    // bytes) is left as the caller set it.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&full as *const lq_bridge_stats).cast::<u8>().add(head),
            at.add(head),
            n - head,
        )
    };
    Ok(())
}

/// The bridge's counters and health now (the final ones after
/// `lq_bridge_stop`). Fills the fields of `*out` that fit in
/// `out->struct_size` (which the caller sets to `sizeof(lq_bridge_stats)`;
/// `struct_size` itself is left as it is). `LQ_INVALID_ARGUMENT` if
/// `struct_size` does not reach `forwarded`; `LQ_FORKED` in a forked child.
///
/// # Safety
/// `bridge` NULL or live; `out` NULL or valid for `out->struct_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_get_stats(
    bridge: *const lq_bridge,
    out: *mut lq_bridge_stats,
) -> lq_status {
    run(|| {
        let (h, out) = (handle(bridge, "bridge")?, Out::new(out, "out")?);
        get_stats(h, out)
    })
}

/// Stops the bridge and waits for its thread (at most about the ack
/// timeout): in-flight publishes are confirmed or their messages given back
/// to their queues. The handle stays allocated (stats work, the final
/// counters) until `lq_bridge_free`. May come from any thread, also while
/// others read the stats; a second stop is `LQ_INVALID_STATE`. In a forked
/// child it does nothing (the bridge runs in the parent).
///
/// # Safety
/// `bridge` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_stop(bridge: *const lq_bridge) -> lq_status {
    run(|| {
        let h = handle(bridge, "bridge")?;
        if h.origin.inherited_exact() {
            // Its thread is the parent's; its locks may be held: touch nothing.
            return Ok(());
        }
        let b = {
            let mut r = h.state.lock();
            let b =
                r.b.take()
                    .ok_or_else(|| Fail::new(LQ_INVALID_STATE, "the bridge was stopped already"))?;
            r.last = Some(b.stats());
            b
        };
        // Outside the lock: stats read meanwhile give the counters above.
        let last = b.stop_with_stats();
        h.state.lock().last = Some(last);
        Ok(())
    })
}

impl Drop for lq_bridge {
    fn drop(&mut self) {
        if self.origin.inherited_exact() {
            // A forked child: the bridge's thread is the parent's; let go of
            // it without joining (no lock is taken: `get_mut`).
            if let Some(b) = self.state.get_mut().b.take() {
                std::mem::forget(b);
            }
        }
    }
}

/// Stops the bridge (as `lq_bridge_stop`) if it runs, and frees it; NULL is
/// a no-op.
///
/// # Safety
/// `bridge` must be NULL or an owned bridge, not used again.
#[no_mangle]
pub unsafe extern "C" fn lq_bridge_free(bridge: *mut lq_bridge) {
    super::boundary::run_free(bridge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let s = ["nats", "tls"];
        for ok in [
            "nats://127.0.0.1:4222",
            "127.0.0.1:4222",
            "localhost",
            "tls://u:p@host:1",
            "nats://a:1,nats://b:2",
            "nats://[::1]:4222",
            "nats://host:4222/",
        ] {
            assert!(check_url(ok, &s).is_ok(), "{ok}");
        }
        for bad in [
            "",
            " ",
            "nats://a b:1",
            "http://host:1",
            "nats://:4222",
            "nats://host:0",
            "nats://host:99999",
            "nats://host:x",
            "nats://a:1,",
            "nats://[::1:4222",
        ] {
            assert_eq!(run(|| check_url(bad, &s)), LQ_INVALID_ARGUMENT, "{bad}");
        }
    }

    #[test]
    fn the_error_text_is_cut_at_a_character_and_ends_in_nul() {
        let s = BridgeStats {
            last_error: Some("é".repeat(ERROR_MAX)),
            ..Default::default()
        };
        let c = lq_bridge_stats::from(&s);
        let bytes: Vec<u8> = c.last_error.iter().map(|b| *b as u8).collect();
        let end = bytes.iter().position(|b| *b == 0).unwrap();
        assert!(end == ERROR_MAX - 2, "{end}");
        assert!(std::str::from_utf8(&bytes[..end]).is_ok());
        let none = lq_bridge_stats::from(&BridgeStats::default());
        assert_eq!(none.last_error[0], 0);
        assert_eq!(none.last_error_at_ms, 0);
    }
}
