//! # Bridges: store-and-forward to a distributed engine (feature `bridge`)
//!
//! When work must leave the host, libqueue hands it to an existing distributed
//! engine instead of clustering itself: a [`Bridge`] drains local queues to
//! NATS JetStream subjects or RabbitMQ exchanges (*outbound*) and feeds local
//! queues from durable JetStream consumers or RabbitMQ queues (*inbound*), at
//! least once both ways. The local queue
//! (and its journal) keeps accepting work at memory speed while the remote is
//! down; the bridge reconnects and resumes by itself.
//!
//! - `mod.rs`: the configuration ([`BridgeBuilder`]) and the running handle
//!   ([`Bridge`]): one OS thread per bridge running a single-threaded tokio
//!   runtime. Nothing async leaves this folder; a broker without bridges
//!   starts no runtime.
//! - `remote.rs`: the `Remote` trait, what the loops need of an engine.
//! - `nats.rs`: its NATS JetStream implementation (`async-nats`).
//! - `rabbit.rs`: its RabbitMQ (AMQP 0.9.1) implementation (`amqprs`) and
//!   [`RabbitBuilder`], the configuration [`Bridge::rabbitmq`] returns.
//! - `outbound.rs`, `inbound.rs`: the forwarding loops, which hold the
//!   guarantees (ack after PubAck, stable `Nats-Msg-Id`, order, back-pressure,
//!   backoff, dead letters).
//! - `mapping.rs`: a message's fields as `Lq-*` headers and back.
//! - `stats.rs`: [`BridgeStats`].
//! - `claim.rs`: one forwarder per queue across the processes of a data
//!   directory (a lock file per route; the others wait as standby).
//! - `report.rs`: writes the bridges file (`file.rs`, the format, which
//!   `libqueue stats` reads) into the data directory.
//!
//! It uses the public API of the crate (queues, deliveries) and nothing below
//! it, except the broker's data directory for the bridge identity.
//! Guarantees and limits: `docs/bridges.md`.

mod claim;
mod inbound;
mod mapping;
mod nats;
mod outbound;
mod rabbit;
mod remote;
mod report;
mod stats;

pub use mapping::{CORRELATION_ID, NAME, PERSISTENT, PRIORITY, TTL_MS};
pub(crate) use rabbit::check_url as check_rabbit_url;
pub use rabbit::RabbitBuilder;
pub use stats::BridgeStats;

use crate::{Broker, Error, Queue, Result};
use nats::{ConnectSettings, Nats};
use remote::Remote;
use stats::Shared;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The file in a data directory that holds the bridge identity.
pub const IDENTITY_FILE: &str = "bridge-id";

/// The distributed engine a bridge speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Nats,
    RabbitMq,
}

/// Tuning shared by the routes of one bridge.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    pub(crate) window: usize,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_age: Option<Duration>,
}

/// The configuration of a bridge: where to connect, which local queues to
/// forward and which to feed. Build with [`Bridge::nats`], then
/// [`start`](Self::start).
///
/// A queue is named `"queue"` (in the default namespace) or
/// `"namespace/queue"`; it is created if missing.
#[derive(Debug, Clone)]
#[must_use = "a bridge does nothing until started"]
pub struct BridgeBuilder {
    engine: Engine,
    url: String,
    outbound: Vec<(String, String)>,
    inbound: Vec<(String, String, Option<String>)>,
    streams: Vec<(String, Vec<String>)>,
    duplicate_window: Option<Duration>,
    identity: Option<String>,
    tuning: Tuning,
    connect_timeout: Duration,
    ack_timeout: Duration,
    background: bool,
}

impl BridgeBuilder {
    /// Forwards the local `queue` to the JetStream `subject` (which a stream
    /// must take). Exactly one bridge of a process may forward a queue; of
    /// the processes of one data directory, one forwards it and the others'
    /// routes wait as standby (`docs/bridges.md`).
    pub fn forward(mut self, queue: &str, subject: &str) -> Self {
        self.outbound.push((queue.into(), subject.into()));
        self
    }

    /// Feeds the local `queue` from the JetStream `subject` through a durable
    /// pull consumer named `lq-<namespace>-<queue>` (dots become `_`), which
    /// keeps its place across restarts. Bridges (on any host) that receive
    /// into a queue of the same name share that consumer: each message goes
    /// to one of them.
    pub fn receive(mut self, subject: &str, queue: &str) -> Self {
        self.inbound.push((subject.into(), queue.into(), None));
        self
    }

    /// [`receive`](Self::receive) through the durable consumer `durable`.
    pub fn receive_durable(mut self, subject: &str, queue: &str, durable: &str) -> Self {
        self.inbound
            .push((subject.into(), queue.into(), Some(durable.into())));
        self
    }

    /// Creates the stream `name` (file storage) taking `subjects` at start, if
    /// no stream of that name exists (an existing one is left as it is).
    pub fn stream<S: Into<String>>(
        mut self,
        name: &str,
        subjects: impl IntoIterator<Item = S>,
    ) -> Self {
        self.streams
            .push((name.into(), subjects.into_iter().map(Into::into).collect()));
        self
    }

    /// The duplicate window of the streams [`stream`](Self::stream) creates
    /// (JetStream's default: 2 minutes). Replays are suppressed within it.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = Some(window);
        self
    }

    /// The identity in every `Nats-Msg-Id` (default: kept in the data
    /// directory's `bridge-id` file, made at the first start; a random one
    /// per start for a broker without a data directory).
    pub fn identity(mut self, id: &str) -> Self {
        self.identity = Some(id.into());
        self
    }

    /// Publishes in flight per outbound queue, confirmed in order (default
    /// 256; 1 sends one at a time), and the largest inbound fetch.
    pub fn window(mut self, n: usize) -> Self {
        self.tuning.window = n.max(1);
        self
    }

    /// The first and the longest wait between retries (default 100 ms, 30 s;
    /// each failure doubles the wait).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.tuning.backoff_min = first.max(Duration::from_millis(1));
        self.tuning.backoff_max = max.max(self.tuning.backoff_min);
        self
    }

    /// Dead-letters (locally, with the reason) an outbound message that could
    /// not be forwarded within `age` of its send. Default: retried forever.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.tuning.max_age = Some(age);
        self
    }

    /// How long the first connection may take (default 5 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// How long a publish waits for its PubAck before it counts as failed
    /// (default 5 s).
    pub fn ack_timeout(mut self, t: Duration) -> Self {
        self.ack_timeout = t;
        self
    }

    /// With `true`, [`start`](Self::start) does not wait for the remote: it
    /// returns at once and the bridge connects (and checks its subjects)
    /// when the remote is there; until then `stats().last_error` says why not.
    /// Default `false`: `start` fails with the reason.
    pub fn connect_in_background(mut self, yes: bool) -> Self {
        self.background = yes;
        self
    }

    /// Starts the bridge on its own thread. Fails with
    /// [`Error::InvalidArgument`] for a malformed URL, subject or queue name,
    /// [`Error::AlreadyExists`] for a queue another bridge forwards, and
    /// (unless connecting in the background) [`Error::Io`] when the remote
    /// cannot be reached and [`Error::NotFound`] when no stream takes a subject.
    pub fn start(self, broker: &Broker) -> Result<Bridge> {
        self.check()?;
        let identity = match &self.identity {
            Some(i) => i.clone(),
            None => match broker.data_dir() {
                Some(dir) => dir_identity(&dir)?,
                None => random_hex(),
            },
        };
        let engine = broker.engine_key();
        let data_dir = broker.data_dir();
        let mut record = report::base(&self.url, &identity);
        let mut standby = Vec::new();
        let mut slot = |lock: Option<std::path::PathBuf>| {
            let flag = Arc::new(AtomicBool::new(false));
            standby.push(flag.clone());
            claim::Slot {
                path: lock,
                standby: flag,
            }
        };
        let mut outbound = Vec::new();
        let mut claims = Vec::new();
        let claim = Claim(Vec::new());
        for (spec, subject) in &self.outbound {
            let (ns, q) = split(spec);
            let queue = broker.namespace(ns)?.queue(q)?;
            let dlq = dead_letter_queue(broker, ns, &queue)?;
            claims.push((engine, ns.to_string(), q.to_string()));
            let lock = data_dir.as_ref().map(|d| claim::outbound_lock(d, ns, q));
            record
                .routes
                .push(route_record("out", ns, q, subject.clone()));
            outbound.push(outbound::Route {
                queue,
                dlq,
                target: subject.clone(),
                id_prefix: format!("lq:{identity}:{ns}:{q}:"),
                claim: slot(lock),
            });
        }
        let claim = claim.take(claims)?;
        let mut inbound = Vec::new();
        for (subject, spec, durable) in &self.inbound {
            let (ns, q) = split(spec);
            let queue = broker.namespace(ns)?.queue(q)?;
            let dlq = dead_letter_queue(broker, ns, &queue)?;
            let durable = durable
                .clone()
                .unwrap_or_else(|| format!("lq-{ns}-{q}").replace('.', "_"));
            let lock = data_dir.as_ref().map(|d| claim::inbound_lock(d, &durable));
            record
                .routes
                .push(route_record("in", ns, q, format!("{subject} {durable}")));
            inbound.push(inbound::Route {
                queue,
                dlq,
                origin: subject.clone(),
                durable,
                claim: slot(lock),
            });
        }
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let queues: Vec<Queue> = outbound.iter().map(|r| r.queue.clone()).collect();
        let (tx, rx) = std::sync::mpsc::channel::<std::result::Result<(), Error>>();
        let settings = ConnectSettings {
            url: self.url.clone(),
            connect_timeout: self.connect_timeout,
            ack_timeout: self.ack_timeout,
            backoff_max: self.tuning.backoff_max,
            background: self.background,
        };
        let (sh, st) = (shared.clone(), stop.clone());
        let limit = self.connect_timeout + self.ack_timeout * 4 + Duration::from_secs(5);
        let url = self.url.clone();
        let thread = std::thread::Builder::new()
            .name("lq-bridge".into())
            .spawn(move || self.run(settings, outbound, inbound, sh, st, tx))
            .map_err(|e| Error::Io(format!("cannot start the bridge thread: {e}")))?;
        let started = rx
            .recv_timeout(limit)
            .unwrap_or_else(|_| Err(Error::Io(format!("{url}: no answer within {limit:?}"))));
        let view = Arc::new(report::View {
            shared,
            queues,
            standby,
        });
        let reporter = match (&data_dir, &started) {
            (Some(d), Ok(())) => report::Reporter::start(d, record, view.clone()),
            _ => None,
        };
        let bridge = Bridge {
            stop,
            thread: Some(thread),
            _claim: claim,
            ops: Ops { view, reporter },
        };
        started.map(|()| bridge)
    }

    fn check(&self) -> Result<()> {
        if self.engine == Engine::RabbitMq {
            return rabbit::check(self);
        }
        let scheme_ok = self
            .url
            .split(',')
            .all(|u| !u.trim().is_empty() && !u.contains(char::is_whitespace));
        if !scheme_ok || self.url.trim().is_empty() {
            return Err(Error::InvalidArgument(format!(
                "bridge URL {:?}: expected nats://host:port (comma-separated for several)",
                self.url
            )));
        }
        for (spec, subject) in &self.outbound {
            check_subject(subject, false)?;
            check_queue(spec)?;
        }
        for (subject, spec, durable) in &self.inbound {
            check_subject(subject, true)?;
            check_queue(spec)?;
            if let Some(d) = durable {
                if d.is_empty() || d.contains(['.', '*', '>', ' ', '\t']) {
                    return Err(Error::InvalidArgument(format!(
                        "durable consumer name {d:?}: no '.', '*', '>' or whitespace"
                    )));
                }
            }
        }
        if self.outbound.is_empty() && self.inbound.is_empty() {
            return Err(Error::InvalidArgument(
                "a bridge needs at least one forward or receive".into(),
            ));
        }
        Ok(())
    }

    /// The bridge's thread: connect, check, then run every route.
    fn run(
        self,
        settings: ConnectSettings,
        outbound: Vec<outbound::Route>,
        inbound: Vec<inbound::Route>,
        shared: Arc<Shared>,
        stop: Arc<AtomicBool>,
        started: std::sync::mpsc::Sender<Result<()>>,
    ) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = started.send(Err(Error::Io(format!("bridge runtime: {e}"))));
                return;
            }
        };
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let fail = |e: Error| {
                let _ = started.send(Err(e));
            };
            if self.engine == Engine::RabbitMq {
                let rabbit =
                    match rabbit::Rabbit::connect(&settings, &self, &inbound, &shared).await {
                        Ok(r) => Rc::new(r),
                        Err(e) => return fail(e),
                    };
                let ready = std::future::ready(true);
                let r = rabbit.clone();
                self.serve(r, outbound, inbound, shared, stop, started, ready)
                    .await;
                return rabbit.close().await;
            }
            let nats = match Nats::connect(&settings, shared.clone()).await {
                Ok(n) => Rc::new(n),
                Err(e) => return fail(Error::Io(e)),
            };
            if !self.background {
                for (name, subjects) in &self.streams {
                    if let Err(e) = nats
                        .ensure_stream(name, subjects, self.duplicate_window)
                        .await
                    {
                        return fail(Error::Io(e));
                    }
                }
            }
            // In the background, the streams are made once the remote is there.
            let streams = async {
                if self.background {
                    let mut delay = self.tuning.backoff_min;
                    for (name, subjects) in &self.streams {
                        while let Err(e) = nats
                            .ensure_stream(name, subjects, self.duplicate_window)
                            .await
                        {
                            shared.error(&e);
                            if stop.load(Relaxed) {
                                return false;
                            }
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(self.tuning.backoff_max);
                        }
                    }
                }
                true
            };
            let (n, sh, st) = (nats.clone(), shared.clone(), stop.clone());
            self.serve(n, outbound, inbound, sh, st, started, streams)
                .await;
        });
        // Blocking receives still waiting end within their own timeout.
        rt.shutdown_timeout(Duration::from_secs(1));
    }

    /// Checks every route on the connected `remote` (unless in the
    /// background), says `started`, runs `after_start` (false: stopping),
    /// then runs every route until the bridge stops.
    #[allow(clippy::too_many_arguments)]
    async fn serve<R: Remote>(
        &self,
        remote: Rc<R>,
        outbound: Vec<outbound::Route>,
        inbound: Vec<inbound::Route>,
        shared: Arc<Shared>,
        stop: Arc<AtomicBool>,
        started: std::sync::mpsc::Sender<Result<()>>,
        after_start: impl std::future::Future<Output = bool>,
    ) {
        let fail = |e: Error| {
            let _ = started.send(Err(e));
        };
        shared.set_connected(remote.connected());
        let mut sources = Vec::new();
        if !self.background {
            for r in &outbound {
                if let Err(e) = remote.check_target(&r.target).await {
                    return fail(Error::NotFound(e.text().to_string()));
                }
            }
            for r in &inbound {
                match remote.open_source(&r.origin, &r.durable).await {
                    Ok(s) => sources.push(Some(s)),
                    Err(e) => return fail(Error::NotFound(e.text().to_string())),
                }
            }
        } else {
            sources.resize_with(inbound.len(), || None);
        }
        let _ = started.send(Ok(()));
        if !after_start.await {
            return;
        }
        let mut tasks = Vec::new();
        for r in outbound {
            let what = format!("forwarding {} to {}", r.queue.name(), r.target);
            let task = outbound::run(remote.clone(), r, self.tuning, shared.clone(), stop.clone());
            tasks.push(watched(what, task, &shared));
        }
        for (r, s) in inbound.into_iter().zip(sources) {
            let what = format!("receiving {} into {}", r.origin, r.queue.name());
            let task = inbound::run(
                remote.clone(),
                r,
                s,
                self.tuning,
                shared.clone(),
                stop.clone(),
            );
            tasks.push(watched(what, task, &shared));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Runs a route as a task of its own; if it ends by a panic (a bug), the
/// bridge's `last_error` says so instead of the route stalling silently.
fn watched(
    what: String,
    task: impl std::future::Future<Output = ()> + 'static,
    shared: &Arc<Shared>,
) -> tokio::task::JoinHandle<()> {
    let shared = shared.clone();
    let inner = tokio::task::spawn_local(task);
    tokio::task::spawn_local(async move {
        if let Err(e) = inner.await {
            shared.error(&format!("{what} stopped: {e}"));
        }
    })
}

/// A running bridge. Dropping it (or [`stop`](Self::stop)) stops it: what
/// is in flight is confirmed or given back to its queue.
pub struct Bridge {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _claim: Claim,
    ops: Ops,
}

/// What `claim.rs` and `report.rs` add to a running bridge: the routes'
/// standby flags and the bridges file's writer.
struct Ops {
    view: Arc<report::View>,
    reporter: Option<report::Reporter>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Bridge {
    /// A bridge to NATS JetStream at `url` (`nats://host:port`, or several,
    /// comma-separated), to configure and [`start`](BridgeBuilder::start).
    ///
    /// ```no_run
    /// use libqueue::{Bridge, Broker};
    /// let broker = Broker::new();
    /// let bridge = Bridge::nats("nats://127.0.0.1:4222")
    ///     .stream("ORDERS", ["orders.>"])
    ///     .forward("jobs", "orders.created")
    ///     .receive("orders.in", "inbox")
    ///     .start(&broker)?;
    /// println!("{:?}", bridge.stats());
    /// # Ok::<(), libqueue::Error>(())
    /// ```
    pub fn nats(url: &str) -> BridgeBuilder {
        BridgeBuilder {
            engine: Engine::Nats,
            url: url.into(),
            outbound: Vec::new(),
            inbound: Vec::new(),
            streams: Vec::new(),
            duplicate_window: None,
            identity: None,
            tuning: Tuning {
                window: 256,
                backoff_min: Duration::from_millis(100),
                backoff_max: Duration::from_secs(30),
                max_age: None,
            },
            connect_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(5),
            background: false,
        }
    }

    /// A bridge to RabbitMQ (AMQP 0.9.1) at `url`
    /// (`amqp://user:password@host:port/vhost`), to configure and
    /// [`start`](RabbitBuilder::start).
    ///
    /// ```no_run
    /// use libqueue::{Bridge, Broker};
    /// let broker = Broker::new();
    /// let bridge = Bridge::rabbitmq("amqp://guest:guest@127.0.0.1:5672")
    ///     .forward("jobs", "orders", "orders.created")
    ///     .receive("orders.in", "inbox")
    ///     .start(&broker)?;
    /// println!("{:?}", bridge.stats());
    /// # Ok::<(), libqueue::Error>(())
    /// ```
    pub fn rabbitmq(url: &str) -> RabbitBuilder {
        let mut b = Bridge::nats(url);
        b.engine = Engine::RabbitMq;
        RabbitBuilder::new(b)
    }

    /// The counters and health of this bridge now.
    pub fn stats(&self) -> BridgeStats {
        self.ops.view.stats()
    }

    /// Stops the bridge and waits for its thread (at most about the ack
    /// timeout): in-flight publishes are confirmed or their messages given
    /// back to their queues.
    pub fn stop(mut self) {
        self.halt();
    }

    /// [`stop`](Self::stop), then the final counters (what was in flight
    /// counted as forwarded or given back).
    pub fn stop_with_stats(mut self) -> BridgeStats {
        self.halt();
        self.stats()
    }

    fn halt(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // After the routes ended (their claims released): the file goes.
        if let Some(mut r) = self.ops.reporter.take() {
            r.stop();
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The local queues this process's bridges forward (one forwarder per queue).
static FORWARDED: Mutex<Option<HashSet<(usize, String, String)>>> = Mutex::new(None);

/// A claim on some queues in `FORWARDED`, released when dropped.
#[derive(Debug)]
struct Claim(Vec<(usize, String, String)>);

impl Claim {
    fn take(self, keys: Vec<(usize, String, String)>) -> Result<Claim> {
        let mut set = FORWARDED.lock().unwrap_or_else(|p| p.into_inner());
        let set = set.get_or_insert_with(HashSet::new);
        let mut seen = HashSet::new();
        for k in &keys {
            if set.contains(k) || !seen.insert(k) {
                return Err(Error::AlreadyExists(format!(
                    "queue {}/{} is forwarded by another bridge already",
                    k.1, k.2
                )));
            }
        }
        set.extend(keys.iter().cloned());
        Ok(Claim(keys))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut set = FORWARDED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = set.as_mut() {
            for k in &self.0 {
                set.remove(k);
            }
        }
    }
}

fn route_record(
    direction: &str,
    ns: &str,
    q: &str,
    remote: String,
) -> crate::bridge_file::RouteRecord {
    crate::bridge_file::RouteRecord {
        direction: direction.into(),
        queue: format!("{ns}/{q}"),
        remote,
        standby: false,
    }
}

fn split(spec: &str) -> (&str, &str) {
    spec.split_once('/')
        .unwrap_or((crate::DEFAULT_NAMESPACE, spec))
}

fn check_queue(spec: &str) -> Result<()> {
    let (ns, q) = split(spec);
    crate::validate_name(ns)?;
    crate::validate_name(q)
}

/// A NATS subject: dot-separated non-empty tokens of visible ASCII; wildcards
/// only where a consumer filter may have them.
fn check_subject(s: &str, wildcards: bool) -> Result<()> {
    let ok = !s.is_empty()
        && s.split('.').all(|t| {
            !t.is_empty()
                && t.chars().all(|c| c.is_ascii_graphic())
                && (wildcards || (t != "*" && t != ">"))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "subject {s:?}: expected dot-separated tokens{}",
            if wildcards { "" } else { " without wildcards" }
        )))
    }
}

/// The queue's dead-letter queue, or `<queue>.dlq` if it names none.
fn dead_letter_queue(broker: &Broker, ns: &str, q: &Queue) -> Result<Queue> {
    let name = match &q.options().dead_letter_queue {
        Some(d) => d.clone(),
        None => format!("{}.dlq", q.name()),
    };
    broker.namespace(ns)?.queue(&name)
}

/// The identity kept in `dir`, made (random) at the first call.
fn dir_identity(dir: &Path) -> Result<String> {
    let path = dir.join(IDENTITY_FILE);
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if !s.is_empty() {
            return Ok(s.to_string());
        }
    }
    // Processes of one directory may race to make it: each writes its own
    // temporary file and links it into place, which fails if another won;
    // then everyone reads the winner's.
    let id = random_hex();
    let tmp = dir.join(format!("{IDENTITY_FILE}.{}.tmp", std::process::id()));
    let io = |e: std::io::Error| Error::Io(format!("cannot write {}: {e}", path.display()));
    std::fs::write(&tmp, format!("{id}\n")).map_err(io)?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(id),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let s = std::fs::read_to_string(&path).map_err(io)?;
            let s = s.trim();
            if s.is_empty() {
                return Err(Error::Io(format!("{} is empty", path.display())));
            }
            Ok(s.to_string())
        }
        Err(e) => Err(io(e)),
    }
}

/// 64 random bits as hex (std's per-process random hash keys, the time and
/// the process id).
fn random_hex() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}
