//! [`Broker`] and [`Namespace`]: the entry points of the Rust API.

use crate::clock::{Clock, SystemClock};
use crate::engine::namespace::NamespaceCore;
use crate::engine::{Declare, Engine, EngineOptions, Recording};
use crate::error::{validate_name, Error, Result};
use crate::queue::{Queue, RemoteQueue};
use crate::remote::client::Client;
use crate::remote::host::{socket_path, Host, HostInfo};
use crate::remote::wire::op;
use crate::store::journal::{JournalOptions, RecoveryReport, SyncMode};
use crate::store::{MemoryStorage, Storage};
use crate::topic::Topic;
use crate::types::{Message, QueueOptions, QueueStats, Quotas};
use std::path::PathBuf;
use std::sync::Arc;

/// Name of the namespace used when none is given.
pub const DEFAULT_NAMESPACE: &str = crate::engine::DEFAULT_NAMESPACE;
/// Name of the queue used when none is given.
pub const DEFAULT_QUEUE: &str = "default";

/// How to open a broker.
#[derive(Clone)]
pub struct BrokerOptions {
    clock: Arc<dyn Clock>,
    storage: Arc<dyn Storage>,
    default_quotas: Quotas,
    default_queue_options: QueueOptions,
    data_dir: Option<PathBuf>,
    journal: JournalOptions,
    exclusive: bool,
    allow_uids: Vec<u32>,
    host_limits: crate::remote::HostLimits,
}

impl std::fmt::Debug for BrokerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerOptions")
            .field("storage", &self.storage.name())
            .field("default_quotas", &self.default_quotas)
            .field("default_queue_options", &self.default_queue_options)
            .finish_non_exhaustive()
    }
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            clock: Arc::new(SystemClock::new()),
            storage: Arc::new(MemoryStorage),
            default_quotas: Quotas::default(),
            default_queue_options: QueueOptions::default(),
            data_dir: None,
            journal: JournalOptions::default(),
            exclusive: false,
            allow_uids: Vec::new(),
            host_limits: crate::remote::HostLimits::default(),
        }
    }
}

impl BrokerOptions {
    /// In memory, system clock, no quotas.
    pub fn new() -> Self {
        Self::default()
    }
    /// Uses this clock for every timer (e.g. a [`crate::ManualClock`] in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Uses this storage backend.
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = storage;
        self
    }
    /// Quotas of namespaces created without explicit ones (the default namespace too).
    pub fn default_quotas(mut self, q: Quotas) -> Self {
        self.default_quotas = q;
        self
    }
    /// Options of queues created on first use.
    pub fn default_queue_options(mut self, o: QueueOptions) -> Self {
        self.default_queue_options = o;
        self
    }
    /// Keeps persistent messages (and every queue definition) in a journal in
    /// `dir`, recovered when the broker opens. Any number of processes may
    /// open the same directory: the first becomes its *host*, the others
    /// *attach* to it (docs/multi-process.md); see [`exclusive`](Self::exclusive).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }
    /// When journal records reach the disk (default [`SyncMode::None`]).
    pub fn sync_mode(mut self, mode: SyncMode) -> Self {
        self.journal.sync = mode;
        self
    }
    /// `true`: this process alone may use the data directory — no other
    /// process can attach, and opening a directory another process holds
    /// fails with [`Error::Locked`] (the behaviour before several processes
    /// could share one). Default `false`.
    pub fn exclusive(mut self, yes: bool) -> Self {
        self.exclusive = yes;
        self
    }
    /// Users (besides this process's own) allowed to attach when this process
    /// hosts the data directory. The directory's permissions apply first: a
    /// new one is 0700.
    pub fn allow_uids(mut self, uids: impl IntoIterator<Item = u32>) -> Self {
        self.allow_uids = uids.into_iter().collect();
        self
    }
    /// The limits this process puts on its clients when it hosts the data
    /// directory (timeouts, connections; docs/wire.md). Tests shorten them.
    #[doc(hidden)]
    pub fn host_limits(mut self, limits: crate::remote::HostLimits) -> Self {
        self.host_limits = limits;
        self
    }
    /// Size of each journal segment file (default 64 MiB).
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.journal.segment_size = bytes;
        self
    }
}

/// One engine instance. Cheap to clone (a handle); `Send + Sync`.
///
/// ```
/// use libqueue::{Broker, Message, MessageView};
/// let broker = Broker::new();
/// let q = broker.queue("jobs")?;
/// q.send(Message::new("hello").name("greet"))?;
/// let d = q.try_receive()?.expect("a message");
/// assert_eq!(d.body(), b"hello");
/// d.ack()?;
/// # Ok::<(), libqueue::Error>(())
/// ```
#[derive(Clone)]
pub struct Broker {
    flavor: BrokerFlavor,
}

/// Where a [`Broker`]'s calls go: an [`Engine`] in this process, or the host
/// of its data directory (see `Queue`'s flavor and `remote`).
#[derive(Clone)]
enum BrokerFlavor {
    Local(Arc<Engine>),
    Remote(Arc<Client>),
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("namespaces", &self.namespaces())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Default for Broker {
    fn default() -> Self {
        Self::new()
    }
}

impl Broker {
    /// An in-memory broker with default options.
    pub fn new() -> Self {
        Self::open(BrokerOptions::default()).expect("an in-memory broker always opens")
    }

    /// Opens a broker. With a data directory: locks it, replays the journal and
    /// brings back every queue and unacked persistent message (see
    /// [`recovery_report`](Self::recovery_report)).
    ///
    /// Without [`BrokerOptions::exclusive`], a data directory another process
    /// holds is *attached*: this broker's calls are served by that process
    /// (the host), with the same semantics and errors; its own clock,
    /// storage, quota and queue defaults, sync mode and segment size do not
    /// apply (the host's do) until it takes over from the host.
    pub fn open(opts: BrokerOptions) -> Result<Self> {
        match opts.data_dir.clone() {
            Some(dir) if !opts.exclusive => Self::open_shared(opts, dir),
            dir => {
                let engine = Self::open_engine(&opts)?;
                if let Some(dir) = dir {
                    let _ = crate::remote::handover::load(&engine, &dir);
                    // Nobody may attach: a socket left by an earlier host
                    // goes, and openers learn not to wait for one.
                    let _ = std::fs::remove_file(socket_path(&dir));
                    if let Some(m) = crate::remote::exclusive::mark(&dir) {
                        engine.set_companion(Box::new(m));
                    }
                }
                Ok(Broker::from_engine(engine))
            }
        }
    }

    fn open_engine(opts: &BrokerOptions) -> Result<Arc<Engine>> {
        let opts = opts.clone();
        Engine::open(EngineOptions {
            clock: opts.clock,
            storage: opts.storage,
            default_quotas: opts.default_quotas,
            default_queue_options: opts.default_queue_options,
            data_dir: opts.data_dir,
            journal: opts.journal,
        })
    }

    /// Hosts `dir` (this process takes its lock and serves it).
    fn host(opts: &BrokerOptions, dir: &std::path::Path, takeovers: u64) -> Result<Broker> {
        // A socket left behind: a host died; a handover file: one closed
        // while others were attached. Either way this is a takeover (even
        // by a process that was not attached): its receives wait for the
        // reclaims (docs/multi-process.md).
        let left = socket_path(dir).exists();
        let engine = Self::open_engine(opts)?;
        // What the previous host held in memory, if it closed cleanly.
        let handed = crate::remote::handover::load(&engine, dir);
        let takeovers = if takeovers == 0 && (left || handed) {
            1
        } else {
            takeovers
        };
        match Host::start(
            &engine,
            dir,
            opts.allow_uids.clone(),
            takeovers,
            opts.host_limits.clone(),
        ) {
            Ok(h) => engine.set_companion(Box::new(h)),
            Err(e) => {
                eprintln!(
                    "libqueue[{}]: {} is open, but no other process can attach: {e}",
                    std::process::id(),
                    dir.display()
                );
                // Openers learn not to wait for a socket (as with an exclusive broker).
                if let Some(m) = crate::remote::exclusive::mark(dir) {
                    engine.set_companion(Box::new(m));
                }
            }
        }
        Ok(Broker::from_engine(engine))
    }

    /// Attaches to the host of `dir`, or becomes it.
    fn open_shared(opts: BrokerOptions, dir: PathBuf) -> Result<Broker> {
        let give_up = std::time::Instant::now() + crate::remote::client::TAKEOVER_LIMIT;
        loop {
            let o = opts.clone();
            let d = dir.clone();
            let become_host: crate::remote::client::BecomeHost = Box::new(move |takeovers| {
                Broker::host(&o, &d, takeovers)
                    .map(|b| Box::new(b) as Box<dyn std::any::Any + Send + Sync>)
            });
            if let Some(c) = Client::attach(&dir, become_host)? {
                return Ok(Broker {
                    flavor: BrokerFlavor::Remote(c),
                });
            }
            match Self::host(&opts, &dir, 0) {
                Ok(b) => return Ok(b),
                Err(Error::Locked(d)) => {
                    // Held by an exclusive broker, which nobody may attach
                    // to; otherwise by a host not serving yet (one taking
                    // over replays first): wait for it.
                    if crate::remote::exclusive::held(&dir) || std::time::Instant::now() >= give_up
                    {
                        return Err(Error::Locked(d));
                    }
                }
                Err(e) => return Err(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    pub(crate) fn from_engine(engine: Arc<Engine>) -> Broker {
        Broker {
            flavor: BrokerFlavor::Local(engine),
        }
    }

    /// What opening the data directory found (None without one, and None
    /// in an attached process: the host opened it).
    pub fn recovery_report(&self) -> Option<&RecoveryReport> {
        match &self.flavor {
            BrokerFlavor::Local(e) => e.recovery_report(),
            BrokerFlavor::Remote(_) => None,
        }
    }

    /// Whether this broker is attached to another process that hosts its
    /// data directory (false when this process hosts it, or has none).
    pub fn is_attached(&self) -> bool {
        match &self.flavor {
            BrokerFlavor::Local(_) => false,
            BrokerFlavor::Remote(c) => !c.is_hosting(),
        }
    }

    /// Who hosts the data directory, who is attached, and the host's counters.
    /// [`Error::InvalidState`] for a broker without a shared data directory.
    pub fn host_info(&self) -> Result<HostInfo> {
        match &self.flavor {
            BrokerFlavor::Local(e) => e
                .with_companion(|c| c.and_then(|c| c.downcast_ref::<Host>()).map(Host::info))
                .ok_or_else(|| {
                    Error::InvalidState("this broker does not share a data directory".into())
                }),
            BrokerFlavor::Remote(c) => c.host_info(),
        }
    }

    /// [`Error::Forked`] if this handle was inherited through `fork()`.
    pub(crate) fn check_fork(&self) -> Result<()> {
        match &self.flavor {
            BrokerFlavor::Local(e) => e.check_fork(),
            BrokerFlavor::Remote(c) => c.check_fork(),
        }
    }

    /// The clock every timer reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        match &self.flavor {
            BrokerFlavor::Local(e) => e.clock(),
            BrokerFlavor::Remote(c) => c.clock(),
        }
    }

    /// The data directory this broker was opened on, hosted or attached
    /// (None in memory): the bridges keep their identity, claims and files
    /// there, shared by the processes of the directory.
    #[cfg_attr(not(feature = "bridge"), allow(dead_code))]
    pub(crate) fn data_dir(&self) -> Option<PathBuf> {
        match &self.flavor {
            BrokerFlavor::Local(e) => e.data_dir().map(|d| d.to_path_buf()),
            BrokerFlavor::Remote(c) => Some(c.dir().to_path_buf()),
        }
    }

    /// Tells this broker's engine (or host connection) apart from others'
    /// in this process, while this handle lives.
    #[cfg_attr(not(feature = "bridge"), allow(dead_code))]
    pub(crate) fn engine_key(&self) -> usize {
        match &self.flavor {
            BrokerFlavor::Local(e) => Arc::as_ptr(e) as *const u8 as usize,
            BrokerFlavor::Remote(c) => Arc::as_ptr(c) as *const u8 as usize,
        }
    }

    /// The storage backend's name.
    pub fn storage_name(&self) -> &'static str {
        match &self.flavor {
            BrokerFlavor::Local(e) => e.storage_name(),
            BrokerFlavor::Remote(_) => "journal",
        }
    }

    fn ns(&self, name: &str, quotas: Option<Quotas>, declare: Declare) -> Result<Namespace> {
        match &self.flavor {
            BrokerFlavor::Local(e) => e
                .namespace(name, quotas, declare, Recording::Record)
                .map(Namespace::local),
            BrokerFlavor::Remote(c) => {
                validate_name(name)?;
                let q = c.namespace(name, quotas.as_ref(), declare == Declare::Create)?;
                Ok(Namespace::remote(c, name, q))
            }
        }
    }

    /// The namespace of that name, created with the default quotas if missing
    /// (and then journaled, with those quotas, like
    /// [`create_namespace`](Self::create_namespace)).
    pub fn namespace(&self, name: &str) -> Result<Namespace> {
        self.ns(name, None, Declare::OpenOrCreate)
    }

    /// Creates a namespace with these quotas. If it exists with the same
    /// quotas (declared again, e.g. at the next start of a program on the same
    /// data directory), returns it and changes nothing; if it exists with
    /// other quotas, [`Error::AlreadyExists`] (quotas are set once). With a
    /// data directory the namespace and its quotas are journaled before this
    /// returns and come back when the broker reopens.
    pub fn create_namespace(&self, name: &str, quotas: Quotas) -> Result<Namespace> {
        self.ns(name, Some(quotas), Declare::Create)
    }

    /// An existing namespace, or [`Error::NotFound`] ([`Error::InvalidName`] for
    /// a name no namespace could have).
    pub fn get_namespace(&self, name: &str) -> Result<Namespace> {
        match &self.flavor {
            BrokerFlavor::Local(e) => e.get_namespace(name).map(Namespace::local),
            BrokerFlavor::Remote(c) => {
                validate_name(name)?;
                let q = c.get_namespace(name)?;
                Ok(Namespace::remote(c, name, q))
            }
        }
    }

    /// The default namespace.
    pub fn default_namespace(&self) -> Result<Namespace> {
        self.get_namespace(DEFAULT_NAMESPACE)
    }

    /// Names of all namespaces, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        match &self.flavor {
            BrokerFlavor::Local(e) => e.namespace_names(),
            BrokerFlavor::Remote(c) => c.names(op::NAMESPACES, &[]).unwrap_or_default(),
        }
    }

    /// A queue of the default namespace, created on first use.
    pub fn queue(&self, name: &str) -> Result<Queue> {
        self.default_namespace()?.queue(name)
    }

    /// The default queue of the default namespace.
    pub fn default_queue(&self) -> Result<Queue> {
        self.queue(DEFAULT_QUEUE)
    }

    /// Sends to the default queue of the default namespace.
    pub fn send(&self, msg: Message) -> Result<u64> {
        self.default_queue()?.send(msg)
    }

    /// Makes everything persistent durable (a barrier).
    pub fn flush(&self) -> Result<()> {
        match &self.flavor {
            BrokerFlavor::Local(e) => e.flush(),
            BrokerFlavor::Remote(c) => c.unit(op::FLUSH, &[]),
        }
    }

    /// Closes the broker: every queue closes, blocked calls return
    /// [`Error::Closed`], later calls fail with it; a journal is synced and its
    /// data directory released. Idempotent. (Without it, a journal closes when
    /// the last broker, namespace or queue handle is dropped.)
    ///
    /// In a forked child, closing a broker inherited from the parent only marks
    /// this copy closed: the parent's journal, queues and threads are not touched.
    pub fn close(&self) {
        match &self.flavor {
            BrokerFlavor::Local(e) => e.close(),
            BrokerFlavor::Remote(c) => c.close(),
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        match &self.flavor {
            BrokerFlavor::Local(e) => e.is_closed(),
            BrokerFlavor::Remote(c) => c.is_closed(),
        }
    }
}

/// Statistics of a namespace: its queues' stats summed, and its quota use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceStats {
    /// Number of queues.
    pub queues: u64,
    /// Sum of the queues' statistics (`oldest_age`: the oldest over all).
    pub totals: QueueStats,
    /// The namespace's quotas.
    pub quotas: Quotas,
}

/// A tenant: a set of queues with quotas. Nothing in one namespace can see or
/// change another's queues. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Namespace {
    flavor: NamespaceFlavor,
}

/// Where a [`Namespace`]'s calls go (see [`BrokerFlavor`]).
#[derive(Clone)]
enum NamespaceFlavor {
    Local(Arc<NamespaceCore>),
    Remote(Arc<RemoteNamespace>),
}

/// A namespace of the host's.
pub(crate) struct RemoteNamespace {
    pub(crate) client: Arc<Client>,
    pub(crate) name: String,
    quotas: Quotas,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name())
            .finish()
    }
}

impl Namespace {
    fn local(core: Arc<NamespaceCore>) -> Self {
        Namespace {
            flavor: NamespaceFlavor::Local(core),
        }
    }

    fn remote(client: &Arc<Client>, name: &str, quotas: Quotas) -> Self {
        Namespace {
            flavor: NamespaceFlavor::Remote(Arc::new(RemoteNamespace {
                client: client.clone(),
                name: name.to_string(),
                quotas,
            })),
        }
    }

    /// A queue of the host's, declared or looked up as `mode` says
    /// (0 open or create, 1 create, 2 get).
    fn remote_queue(
        n: &RemoteNamespace,
        name: &str,
        opts: Option<&QueueOptions>,
        mode: u8,
    ) -> Result<Queue> {
        validate_name(name)?;
        let (opts, serial) = n.client.queue(&n.name, name, opts, mode)?;
        Ok(Queue::remote(RemoteQueue::new(
            &n.client, &n.name, name, opts, serial,
        )))
    }

    /// Its name.
    pub fn name(&self) -> &str {
        match &self.flavor {
            NamespaceFlavor::Local(n) => &n.shared.name,
            NamespaceFlavor::Remote(n) => &n.name,
        }
    }

    /// Its quotas.
    pub fn quotas(&self) -> &Quotas {
        match &self.flavor {
            NamespaceFlavor::Local(n) => &n.shared.quotas,
            NamespaceFlavor::Remote(n) => &n.quotas,
        }
    }

    /// The queue of that name, created with the default options if missing.
    pub fn queue(&self, name: &str) -> Result<Queue> {
        match &self.flavor {
            NamespaceFlavor::Local(n) => {
                n.open(name, None, Declare::OpenOrCreate).map(Queue::local)
            }
            NamespaceFlavor::Remote(n) => Self::remote_queue(n, name, None, 0),
        }
    }

    /// Creates a queue with these options; [`Error::AlreadyExists`] if it exists.
    pub fn create_queue(&self, name: &str, opts: QueueOptions) -> Result<Queue> {
        match &self.flavor {
            NamespaceFlavor::Local(n) => {
                n.open(name, Some(opts), Declare::Create).map(Queue::local)
            }
            NamespaceFlavor::Remote(n) => Self::remote_queue(n, name, Some(&opts), 1),
        }
    }

    /// An existing queue, or [`Error::NotFound`] ([`Error::InvalidName`] for a
    /// name no queue could have).
    pub fn get_queue(&self, name: &str) -> Result<Queue> {
        match &self.flavor {
            NamespaceFlavor::Local(n) => {
                n.check_fork()?;
                validate_name(name)?;
                n.get(name)
                    .map(Queue::local)
                    .ok_or_else(|| Error::NotFound(format!("queue {name:?}")))
            }
            NamespaceFlavor::Remote(n) => Self::remote_queue(n, name, None, 2),
        }
    }

    /// The namespace's default queue.
    pub fn default_queue(&self) -> Result<Queue> {
        self.queue(DEFAULT_QUEUE)
    }

    /// Deletes a queue: its messages are dropped, its handles see [`Error::Closed`],
    /// and it stops being a subscription of any topic. [`Error::NotFound`] if there
    /// is none, [`Error::InvalidName`] for a name no queue could have.
    pub fn delete_queue(&self, name: &str) -> Result<()> {
        match &self.flavor {
            NamespaceFlavor::Local(n) => n.delete_queue(name),
            NamespaceFlavor::Remote(n) => {
                validate_name(name)?;
                n.client.delete_queue(&n.name, name)
            }
        }
    }

    /// Names of its queues, sorted.
    pub fn list_queues(&self) -> Vec<String> {
        match &self.flavor {
            NamespaceFlavor::Local(n) => n.list(),
            NamespaceFlavor::Remote(n) => n
                .client
                .names(op::LIST_QUEUES, &[&n.name])
                .unwrap_or_default(),
        }
    }

    /// Sends to a queue by name (created on first use).
    pub fn send(&self, queue: &str, msg: Message) -> Result<u64> {
        self.queue(queue)?.send(msg)
    }

    /// The topic of that name, created if missing. Topics share the namespace's
    /// name space with nothing: a topic and a queue may have the same name.
    /// A new topic is journaled (with a data directory) before this returns.
    pub fn topic(&self, name: &str) -> Result<Topic> {
        match &self.flavor {
            NamespaceFlavor::Local(n) => {
                Ok(Topic::local(n.topic(name, Recording::Record)?, n.clone()))
            }
            NamespaceFlavor::Remote(n) => {
                validate_name(name)?;
                n.client.unit(op::TOPIC, &[&n.name, name])?;
                Ok(Topic::remote(n.client.clone(), &n.name, name))
            }
        }
    }

    /// Names of its topics, sorted.
    pub fn list_topics(&self) -> Vec<String> {
        match &self.flavor {
            NamespaceFlavor::Local(n) => n.topic_names(),
            NamespaceFlavor::Remote(n) => n
                .client
                .names(op::LIST_TOPICS, &[&n.name])
                .unwrap_or_default(),
        }
    }

    /// Exact statistics over all its queues.
    pub fn stats(&self) -> NamespaceStats {
        match &self.flavor {
            NamespaceFlavor::Local(n) => {
                let queues = n.all();
                let mut totals = QueueStats::default();
                for q in &queues {
                    totals.add(&q.stats());
                }
                NamespaceStats {
                    queues: queues.len() as u64,
                    totals,
                    quotas: n.shared.quotas.clone(),
                }
            }
            NamespaceFlavor::Remote(n) => match n.client.ns_stats(&n.name) {
                Ok((queues, totals, quotas)) => NamespaceStats {
                    queues,
                    totals,
                    quotas,
                },
                Err(_) => NamespaceStats {
                    queues: 0,
                    totals: QueueStats::default(),
                    quotas: n.quotas.clone(),
                },
            },
        }
    }
}
