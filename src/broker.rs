//! [`Broker`] and [`Namespace`]: the entry points of the Rust API.

use crate::clock::{Clock, ClockListener, SystemClock};
use crate::engine::namespace::NamespaceCore;
use crate::engine::ticker::Ticker;
use crate::engine::topic::TopicCore;
use crate::error::{validate_name, Error, Result};
use crate::queue::Queue;
use crate::store::journal::{Journal, JournalOptions, RecoveryReport, SyncMode};
use crate::store::{MemoryStorage, Record, Storage};
use crate::sync::fork::Origin;
use crate::topic::Topic;
use crate::types::Quotas;
use crate::types::{Message, QueueOptions, QueueStats};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Weak};

/// Name of the namespace used when none is given.
pub const DEFAULT_NAMESPACE: &str = "default";
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
    /// `dir`, recovered when the broker opens. Only one process may open a
    /// directory ([`Error::Locked`]).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }
    /// When journal records reach the disk (default [`SyncMode::None`]).
    pub fn sync_mode(mut self, mode: SyncMode) -> Self {
        self.journal.sync = mode;
        self
    }
    /// Size of each journal segment file (default 64 MiB).
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.journal.segment_size = bytes;
        self
    }
}

struct BrokerInner {
    namespaces: RwLock<HashMap<String, Arc<NamespaceCore>>>,
    opts: BrokerOptions,
    closed: AtomicBool,
    ticker: Arc<Ticker>,
    /// Set once the recovered state is restored (what could not be is in it).
    report: std::sync::OnceLock<RecoveryReport>,
    /// The process (and fork generation) that opened it.
    origin: Origin,
}

impl ClockListener for BrokerInner {
    fn clock_advanced(&self) {
        let now = self.opts.clock.now();
        for ns in self.namespaces.read().values() {
            for q in ns.all() {
                // Whatever fell due runs now, so when `advance` returns every
                // expired lease is requeued or dead-lettered (waking receivers
                // of the dead-letter queue), delayed messages are ready, and a
                // watched queue's descriptor is up to date.
                if q.is_watched() || q.next_due().min(q.min_expiry()) <= now {
                    q.maintain_sync(now);
                }
                q.wake_all();
            }
        }
        self.ticker.kick();
    }
}

impl Drop for BrokerInner {
    fn drop(&mut self) {
        // The storage stays open while a namespace or queue handle holds it (a
        // queue keeps working once every broker handle is gone, whatever the
        // backend); a journal closes, releasing its directory, with the last.
        // Their timers keep running: the ticker ends once none is pending. In a
        // forked child nothing is touched: the ticker is the parent's.
        if !self.origin.inherited() {
            self.ticker.orphan();
        }
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
    inner: Arc<BrokerInner>,
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
    pub fn open(mut opts: BrokerOptions) -> Result<Self> {
        let origin = Origin::here();
        let mut recovered = None;
        if let Some(dir) = opts.data_dir.clone() {
            let (journal, rec) = Journal::open(&dir, opts.journal)?;
            opts.storage = journal;
            recovered = Some(rec);
        }
        let inner = Arc::new(BrokerInner {
            namespaces: RwLock::new(HashMap::new()),
            ticker: Ticker::new(opts.clock.clone()),
            report: std::sync::OnceLock::new(),
            opts,
            closed: AtomicBool::new(false),
            origin,
        });
        let weak: Weak<BrokerInner> = Arc::downgrade(&inner);
        inner.opts.clock.add_listener(weak);
        let b = Broker { inner };
        // Namespaces with their recorded quotas, before anything creates one
        // with the defaults. One that cannot be restored (a name that is not
        // valid) is left out and reported, like a queue below.
        let mut ns_damage = Vec::new();
        if let Some(rec) = &recovered {
            for (name, quotas) in &rec.namespaces {
                if let Err(e) = b.ns_as(name, Some(quotas.clone()), false, false) {
                    ns_damage.push(format!("namespace {name} not restored: {e}"));
                }
            }
        }
        b.namespace(DEFAULT_NAMESPACE)?;
        if let Some(rec) = recovered {
            // Each queue's dead-letter queue first, with its recorded options
            // (creating a queue that names one would otherwise create it with
            // defaults); `seen` guards against cycles.
            let mut defs: HashMap<(String, String), (QueueOptions, u64)> = HashMap::new();
            let order: Vec<(String, String)> = rec
                .queues
                .into_iter()
                .map(|q| {
                    let k = (q.namespace, q.queue);
                    defs.insert(k.clone(), (q.options, q.next_id));
                    k
                })
                .collect();
            // A queue or message that cannot be restored (a name that is not
            // valid, a queue that names itself as its dead-letter queue, the
            // default quota of queues exceeded: a journal written by something
            // else, or damage a checksum missed) is left out and reported: it
            // never makes the directory unopenable. It stays in the journal.
            let mut report = rec.report;
            report.damage.append(&mut ns_damage);
            let mut seen = std::collections::HashSet::new();
            for k in &order {
                if let Err(e) = b.restore_queue(k, &defs, &mut seen) {
                    report
                        .damage
                        .push(format!("queue {}/{} not restored: {e}", k.0, k.1));
                    report.queues = report.queues.saturating_sub(1);
                }
            }
            // Messages in send order; the queue looked up once per run of
            // messages to the same queue.
            let mut cur = None;
            let mut left_out: std::collections::BTreeMap<u32, (u64, Error)> = Default::default();
            for m in rec.messages {
                let q = match &cur {
                    Some((i, q)) if *i == m.queue => q,
                    _ => {
                        let (ns, name) = &rec.names[m.queue as usize];
                        let q = b.namespace(ns).and_then(|n| {
                            n.core
                                .restore_queue(name, b.inner.opts.default_queue_options.clone())
                        });
                        &cur.insert((m.queue, q)).1
                    }
                };
                match q {
                    Ok(q) => q.restore(m.node, m.deliver_at),
                    Err(e) => left_out.entry(m.queue).or_insert((0, e.clone())).0 += 1,
                }
            }
            // Topics and their subscriptions, last: their queues exist now. A
            // topic or subscription that cannot be restored is left out and
            // reported.
            for t in rec.topics {
                let topic = b
                    .namespace(&t.namespace)
                    .and_then(|ns| ns.topic_as(&t.topic, false).map(|t| (ns, t)));
                let (ns, topic) = match topic {
                    Ok(x) => x,
                    Err(e) => {
                        report.damage.push(format!(
                            "topic {}/{} not restored: {e}",
                            t.namespace, t.topic
                        ));
                        continue;
                    }
                };
                for (queue, filter) in t.subs {
                    match ns.core.open(&queue, None, false) {
                        Ok(q) => topic.core.restore_subscription(q, filter),
                        Err(e) => report.damage.push(format!(
                            "subscription {}/{queue} of topic {} not restored: {e}",
                            t.namespace, t.topic
                        )),
                    }
                }
            }
            for (i, (n, e)) in left_out {
                let (ns, name) = &rec.names[i as usize];
                report.damage.push(format!(
                    "{n} messages of queue {ns}/{name} not restored: {e}"
                ));
                report.messages_recovered = report.messages_recovered.saturating_sub(n);
            }
            let _ = b.inner.report.set(report);
        }
        Ok(b)
    }

    fn restore_queue(
        &self,
        k: &(String, String),
        defs: &HashMap<(String, String), (QueueOptions, u64)>,
        seen: &mut std::collections::HashSet<(String, String)>,
    ) -> Result<()> {
        if !seen.insert(k.clone()) {
            return Ok(());
        }
        let Some((opts, next_id)) = defs.get(k) else {
            return Ok(());
        };
        if let Some(d) = &opts.dead_letter_queue {
            self.restore_queue(&(k.0.clone(), d.clone()), defs, seen)?;
        }
        self.namespace(&k.0)?
            .core
            .restore_queue(&k.1, opts.clone())?
            .continue_ids(*next_id);
        Ok(())
    }

    /// What opening the data directory found (None without one).
    pub fn recovery_report(&self) -> Option<&RecoveryReport> {
        self.inner.report.get()
    }

    /// [`Error::Forked`] if this handle was inherited through `fork()`.
    pub(crate) fn check_fork(&self) -> Result<()> {
        if self.inner.origin.inherited() {
            Err(Error::Forked)
        } else {
            Ok(())
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.origin.inherited() {
            Err(Error::Forked)
        } else if self.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// The clock every timer reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.opts.clock
    }

    /// The storage backend's name.
    pub fn storage_name(&self) -> &'static str {
        self.inner.opts.storage.name()
    }

    fn ns(&self, name: &str, quotas: Option<Quotas>, exclusive: bool) -> Result<Namespace> {
        self.ns_as(name, quotas, exclusive, true)
    }

    /// Gets or creates a namespace. With `exclusive`, an existing one is an
    /// error unless `quotas` are its own (a declaration repeated, at every
    /// start of a program). A new one is recorded in the storage when `record`
    /// (not when recovery brings it back).
    fn ns_as(
        &self,
        name: &str,
        quotas: Option<Quotas>,
        exclusive: bool,
        record: bool,
    ) -> Result<Namespace> {
        self.check_open()?;
        validate_name(name)?;
        let mut map = self.inner.namespaces.write();
        if let Some(ns) = map.get(name) {
            if exclusive && quotas.as_ref() != Some(&ns.shared.quotas) {
                return Err(Error::AlreadyExists(format!(
                    "namespace {name:?} (with other quotas)"
                )));
            }
            return Ok(Namespace { core: ns.clone() });
        }
        let o = &self.inner.opts;
        let quotas = quotas.unwrap_or_else(|| o.default_quotas.clone());
        if record {
            o.storage.append(&Record::NamespaceDefined {
                namespace: name,
                quotas: &quotas,
            })?;
        }
        let core = Arc::new(NamespaceCore::new(
            name.to_string(),
            quotas,
            o.default_queue_options.clone(),
            o.clock.clone(),
            o.storage.clone(),
            self.inner.ticker.clone(),
        ));
        map.insert(name.to_string(), core.clone());
        Ok(Namespace { core })
    }

    /// The namespace of that name, created with the default quotas if missing
    /// (and then journaled, with those quotas, like
    /// [`create_namespace`](Self::create_namespace)).
    pub fn namespace(&self, name: &str) -> Result<Namespace> {
        self.ns(name, None, false)
    }

    /// Creates a namespace with these quotas. If it exists with the same
    /// quotas (declared again, e.g. at the next start of a program on the same
    /// data directory), returns it and changes nothing; if it exists with
    /// other quotas, [`Error::AlreadyExists`] (quotas are set once). With a
    /// data directory the namespace and its quotas are journaled before this
    /// returns and come back when the broker reopens.
    pub fn create_namespace(&self, name: &str, quotas: Quotas) -> Result<Namespace> {
        self.ns(name, Some(quotas), true)
    }

    /// An existing namespace, or [`Error::NotFound`] ([`Error::InvalidName`] for
    /// a name no namespace could have).
    pub fn get_namespace(&self, name: &str) -> Result<Namespace> {
        self.check_open()?;
        validate_name(name)?;
        self.inner
            .namespaces
            .read()
            .get(name)
            .map(|core| Namespace { core: core.clone() })
            .ok_or_else(|| Error::NotFound(format!("namespace {name:?}")))
    }

    /// The default namespace.
    pub fn default_namespace(&self) -> Result<Namespace> {
        self.get_namespace(DEFAULT_NAMESPACE)
    }

    /// Names of all namespaces, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.namespaces.read().keys().cloned().collect();
        v.sort();
        v
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
        if self.inner.origin.inherited() {
            return Err(Error::Forked);
        }
        self.inner.opts.storage.flush()
    }

    /// Closes the broker: every queue closes, blocked calls return
    /// [`Error::Closed`], later calls fail with it; a journal is synced and its
    /// data directory released. Idempotent. (Without it, a journal closes when
    /// the last broker, namespace or queue handle is dropped.)
    ///
    /// In a forked child, closing a broker inherited from the parent only marks
    /// this copy closed: the parent's journal, queues and threads are not touched.
    pub fn close(&self) {
        if self.inner.closed.swap(true, SeqCst) || self.inner.origin.inherited_exact() {
            return;
        }
        for ns in self.inner.namespaces.read().values() {
            ns.close();
        }
        self.inner.ticker.shutdown();
        self.inner.opts.storage.close();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(SeqCst)
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
    core: Arc<NamespaceCore>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name())
            .finish()
    }
}

impl Namespace {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.core.shared.name
    }

    /// Its quotas.
    pub fn quotas(&self) -> &Quotas {
        &self.core.shared.quotas
    }

    /// The queue of that name, created with the default options if missing.
    pub fn queue(&self, name: &str) -> Result<Queue> {
        self.core.open(name, None, false).map(Queue::local)
    }

    /// Creates a queue with these options; [`Error::AlreadyExists`] if it exists.
    pub fn create_queue(&self, name: &str, opts: QueueOptions) -> Result<Queue> {
        self.core.open(name, Some(opts), true).map(Queue::local)
    }

    /// An existing queue, or [`Error::NotFound`] ([`Error::InvalidName`] for a
    /// name no queue could have).
    pub fn get_queue(&self, name: &str) -> Result<Queue> {
        self.core.check_fork()?;
        validate_name(name)?;
        self.core
            .get(name)
            .map(Queue::local)
            .ok_or_else(|| Error::NotFound(format!("queue {name:?}")))
    }

    /// The namespace's default queue.
    pub fn default_queue(&self) -> Result<Queue> {
        self.queue(DEFAULT_QUEUE)
    }

    /// Deletes a queue: its messages are dropped, its handles see [`Error::Closed`],
    /// and it stops being a subscription of any topic. [`Error::NotFound`] if there
    /// is none, [`Error::InvalidName`] for a name no queue could have.
    pub fn delete_queue(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        self.core.delete(name)?;
        for t in self.core.topics.read().values() {
            t.drop_subscription(name);
        }
        Ok(())
    }

    /// Names of its queues, sorted.
    pub fn list_queues(&self) -> Vec<String> {
        self.core.list()
    }

    /// Sends to a queue by name (created on first use).
    pub fn send(&self, queue: &str, msg: Message) -> Result<u64> {
        self.queue(queue)?.send(msg)
    }

    /// The topic of that name, created if missing. Topics share the namespace's
    /// name space with nothing: a topic and a queue may have the same name.
    /// A new topic is journaled (with a data directory) before this returns.
    pub fn topic(&self, name: &str) -> Result<Topic> {
        self.topic_as(name, true)
    }

    /// Gets or creates a topic, recording a new one when `record`.
    fn topic_as(&self, name: &str, record: bool) -> Result<Topic> {
        validate_name(name)?;
        self.core.check_open()?;
        let mut topics = self.core.topics.write();
        let core = match topics.get(name) {
            Some(t) => t.clone(),
            None => {
                if record {
                    self.core.storage().append(&Record::TopicDefined {
                        namespace: &self.core.shared.name,
                        topic: name,
                    })?;
                }
                let t = Arc::new(TopicCore::new(name));
                topics.insert(name.to_string(), t.clone());
                t
            }
        };
        Ok(Topic {
            core,
            ns: self.core.clone(),
        })
    }

    /// Names of its topics, sorted.
    pub fn list_topics(&self) -> Vec<String> {
        let mut v: Vec<String> = self.core.topics.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// Exact statistics over all its queues.
    pub fn stats(&self) -> NamespaceStats {
        let queues = self.core.all();
        let mut totals = QueueStats::default();
        for q in &queues {
            totals.add(&q.stats());
        }
        NamespaceStats {
            queues: queues.len() as u64,
            totals,
            quotas: self.core.shared.quotas.clone(),
        }
    }
}
