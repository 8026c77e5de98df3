//! [`Engine`]: the root of one engine instance. It owns the namespaces (and
//! through them the queues and topics), the ticker, the clock listener, the
//! storage, and the recovery that brings a data directory's state back.
//! The API's `Broker` is a handle on it.

mod handover;

use super::namespace::NamespaceCore;
use super::ticker::Ticker;
use super::QueueCore;
use crate::clock::{Clock, ClockListener};
use crate::error::{validate_name, Error, Result};
use crate::store::journal::{Journal, JournalOptions, Recovered, RecoveryReport};
use crate::store::{Record, Storage};
use crate::sync::fork::Origin;
use crate::types::{Node, QueueOptions, Quotas};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, OnceLock, Weak};

/// Name of the namespace used when none is given.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";

/// What an engine is opened with (the API's `BrokerOptions`, taken apart).
pub(crate) struct EngineOptions {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) default_quotas: Quotas,
    pub(crate) default_queue_options: QueueOptions,
    /// With a data directory, `storage` is replaced by its journal.
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) journal: JournalOptions,
}

/// How a declaration treats a namespace or queue that exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Declare {
    /// Returns it as it is.
    OpenOrCreate,
    /// A namespace: an error unless its quotas are the ones given (a
    /// declaration repeated). A queue: an error.
    Create,
}

/// Whether a new definition is recorded in the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recording {
    /// A new definition: recorded before it takes effect.
    Record,
    /// Brought back by recovery: recorded already.
    Restored,
}

/// See the module documentation.
pub(crate) struct Engine {
    namespaces: RwLock<HashMap<String, Arc<NamespaceCore>>>,
    clock: Arc<dyn Clock>,
    storage: Arc<dyn Storage>,
    default_quotas: Quotas,
    default_queue_options: QueueOptions,
    closed: AtomicBool,
    ticker: Arc<Ticker>,
    /// Set once the recovered state is restored (what could not be is in it).
    report: OnceLock<RecoveryReport>,
    /// The process (and fork generation) that opened it.
    origin: Origin,
    /// Something that lives as long as the engine stays open (the API layer
    /// keeps the server of a shared data directory here); dropped at close.
    companion: parking_lot::Mutex<Option<Box<dyn std::any::Any + Send + Sync>>>,
    /// Run once, first, when the engine closes or drops in its own process
    /// (the host of a shared data directory hands over there).
    close_hook: parking_lot::Mutex<Option<CloseHook>>,
    /// The data directory it was opened on, if any.
    data_dir: Option<PathBuf>,
}

/// See [`Engine::set_close_hook`].
pub(crate) type CloseHook = Box<dyn FnOnce(&Engine) + Send + Sync>;

impl ClockListener for Engine {
    fn clock_advanced(&self) {
        let now = self.clock.now();
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

impl Drop for Engine {
    fn drop(&mut self) {
        // The storage stays open while a namespace or queue handle holds it (a
        // queue keeps working once every broker handle is gone, whatever the
        // backend); a journal closes, releasing its directory, with the last.
        // Their timers keep running: the ticker ends once none is pending. In a
        // forked child nothing is touched: the ticker is the parent's.
        if !self.origin.inherited() {
            if let Some(hook) = self.close_hook.get_mut().take() {
                if !self.closed.load(SeqCst) {
                    hook(self);
                }
            }
            self.ticker.orphan();
        } else if let Some(c) = self.companion.get_mut().take() {
            // A forked child's copy: nothing of it is ours to stop.
            std::mem::forget(c);
        }
    }
}

impl Engine {
    /// Opens an engine. With a data directory: locks it, replays the journal
    /// and brings back every namespace, queue, unacked persistent message,
    /// topic and subscription (see [`recovery_report`](Self::recovery_report)).
    pub(crate) fn open(opts: EngineOptions) -> Result<Arc<Engine>> {
        let origin = Origin::here();
        let mut storage = opts.storage;
        let mut recovered = None;
        if let Some(dir) = &opts.data_dir {
            let (journal, rec) = Journal::open(dir, opts.journal)?;
            storage = journal;
            recovered = Some(rec);
        }
        let engine = Arc::new(Engine {
            namespaces: RwLock::new(HashMap::new()),
            ticker: Ticker::new(opts.clock.clone()),
            report: OnceLock::new(),
            clock: opts.clock,
            storage,
            default_quotas: opts.default_quotas,
            default_queue_options: opts.default_queue_options,
            closed: AtomicBool::new(false),
            origin,
            companion: parking_lot::Mutex::new(None),
            close_hook: parking_lot::Mutex::new(None),
            data_dir: opts.data_dir.clone(),
        });
        let weak: Weak<Engine> = Arc::downgrade(&engine);
        engine.clock.add_listener(weak);
        engine.recover(recovered)?;
        Ok(engine)
    }

    /// Brings back what the journal held (the default namespace in any case).
    fn recover(&self, recovered: Option<Recovered>) -> Result<()> {
        // Namespaces with their recorded quotas, before anything creates one
        // with the defaults. One that cannot be restored (a name that is not
        // valid) is left out and reported, like a queue below.
        let mut ns_damage = Vec::new();
        if let Some(rec) = &recovered {
            for (name, quotas) in &rec.namespaces {
                let restored = self.namespace(
                    name,
                    Some(quotas.clone()),
                    Declare::OpenOrCreate,
                    Recording::Restored,
                );
                if let Err(e) = restored {
                    ns_damage.push(format!("namespace {name} not restored: {e}"));
                }
            }
        }
        self.open_namespace(DEFAULT_NAMESPACE)?;
        let Some(rec) = recovered else {
            return Ok(());
        };
        // Each queue's dead-letter queue first, with its recorded options
        // (creating a queue that names one would otherwise create it with
        // defaults); `seen` guards against cycles.
        let mut defs: HashMap<QueueKey, (QueueOptions, u64)> = HashMap::new();
        let order: Vec<QueueKey> = rec
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
            if let Err(e) = self.restore_queue(k, &defs, &mut seen) {
                report
                    .damage
                    .push(format!("queue {}/{} not restored: {e}", k.0, k.1));
                report.queues = report.queues.saturating_sub(1);
            }
        }
        // Messages in send order, put back queue by queue (each queue's in
        // one go, see `QueueCore::restore_all`); queues are looked up (and
        // made, without a definition) in the order messages first name them.
        let mut left_out: std::collections::BTreeMap<u32, (u64, Error)> = Default::default();
        let mut restored: HashMap<u32, Arc<QueueCore>> = HashMap::new();
        let mut per_queue: Vec<Vec<(Arc<Node>, Option<u64>)>> = Vec::new();
        per_queue.resize_with(rec.names.len(), Vec::new);
        let mut first_seen = Vec::new();
        for m in rec.messages {
            let v = &mut per_queue[m.queue as usize];
            if v.is_empty() {
                first_seen.push(m.queue);
            }
            v.push((m.node, m.deliver_at));
        }
        for i in first_seen {
            let msgs = std::mem::take(&mut per_queue[i as usize]);
            let (ns, name) = &rec.names[i as usize];
            let q = self
                .open_namespace(ns)
                .and_then(|n| n.restore_queue(name, self.default_queue_options.clone()));
            match q {
                Ok(q) => {
                    q.restore_all(msgs);
                    restored.entry(i).or_insert(q);
                }
                Err(e) => {
                    left_out.insert(i, (msgs.len() as u64, e));
                }
            }
        }
        // Restored on this thread's home shard: put them in id order where
        // every consumer takes first, so none — on whatever thread — gets a
        // message sent after the reopen before the older ones (per-producer
        // FIFO across a restart).
        for q in restored.values() {
            q.order_ready();
        }
        // Topics and their subscriptions, last: their queues exist now. A
        // topic or subscription that cannot be restored is left out and
        // reported.
        for t in rec.topics {
            let topic = self.open_namespace(&t.namespace).and_then(|ns| {
                ns.topic(&t.topic, Recording::Restored)
                    .map(|topic| (ns, topic))
            });
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
                match ns.open(&queue, None, Declare::OpenOrCreate) {
                    Ok(q) => topic.restore_subscription(q, filter),
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
        let _ = self.report.set(report);
        Ok(())
    }

    fn restore_queue(
        &self,
        k: &QueueKey,
        defs: &HashMap<QueueKey, (QueueOptions, u64)>,
        seen: &mut std::collections::HashSet<QueueKey>,
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
        self.open_namespace(&k.0)?
            .restore_queue(&k.1, opts.clone())?
            .continue_ids(*next_id);
        Ok(())
    }

    /// What opening the data directory found (None without one).
    pub(crate) fn recovery_report(&self) -> Option<&RecoveryReport> {
        self.report.get()
    }

    /// [`Error::Forked`] if it was inherited through `fork()`.
    pub(crate) fn check_fork(&self) -> Result<()> {
        if self.origin.inherited() {
            Err(Error::Forked)
        } else {
            Ok(())
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.origin.inherited() {
            Err(Error::Forked)
        } else if self.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// The clock every timer reads.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The data directory it was opened on, if any.
    pub(crate) fn data_dir(&self) -> Option<&std::path::Path> {
        self.data_dir.as_deref()
    }

    /// The storage backend's name.
    pub(crate) fn storage_name(&self) -> &'static str {
        self.storage.name()
    }

    /// The namespace `name`, created with the default quotas (and recorded)
    /// if missing.
    pub(crate) fn open_namespace(&self, name: &str) -> Result<Arc<NamespaceCore>> {
        self.namespace(name, None, Declare::OpenOrCreate, Recording::Record)
    }

    /// Gets or creates a namespace (with `quotas`, or the defaults). With
    /// [`Declare::Create`], an existing one is an error unless `quotas` are its
    /// own (a declaration repeated, at every start of a program). A new one is
    /// recorded in the storage as `recording` says.
    pub(crate) fn namespace(
        &self,
        name: &str,
        quotas: Option<Quotas>,
        declare: Declare,
        recording: Recording,
    ) -> Result<Arc<NamespaceCore>> {
        self.check_open()?;
        validate_name(name)?;
        let mut map = self.namespaces.write();
        if let Some(ns) = map.get(name) {
            if declare == Declare::Create && quotas.as_ref() != Some(&ns.shared.quotas) {
                return Err(Error::AlreadyExists(format!(
                    "namespace {name:?} (with other quotas)"
                )));
            }
            return Ok(ns.clone());
        }
        let quotas = quotas.unwrap_or_else(|| self.default_quotas.clone());
        if recording == Recording::Record {
            self.storage.append(&Record::NamespaceDefined {
                namespace: name,
                quotas: &quotas,
            })?;
        }
        let core = Arc::new(NamespaceCore::new(
            name.to_string(),
            quotas,
            self.default_queue_options.clone(),
            self.clock.clone(),
            self.storage.clone(),
            self.ticker.clone(),
        ));
        map.insert(name.to_string(), core.clone());
        Ok(core)
    }

    /// An existing namespace, or [`Error::NotFound`] ([`Error::InvalidName`]
    /// for a name no namespace could have).
    pub(crate) fn get_namespace(&self, name: &str) -> Result<Arc<NamespaceCore>> {
        self.check_open()?;
        validate_name(name)?;
        self.namespaces
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("namespace {name:?}")))
    }

    /// Names of all namespaces, sorted.
    pub(crate) fn namespace_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.namespaces.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// Makes everything persistent durable (a barrier).
    pub(crate) fn flush(&self) -> Result<()> {
        if self.origin.inherited() {
            return Err(Error::Forked);
        }
        self.storage.flush()
    }

    /// Closes every namespace, stops the ticker and closes the storage.
    /// Idempotent; in a forked child it only marks this copy closed.
    pub(crate) fn close(&self) {
        if self.closed.load(SeqCst) || self.origin.inherited_exact() {
            return;
        }
        // The hook runs while everything is open (it may still read every
        // queue); only one caller gets it, and a concurrent close waits for
        // it (the lock is held while it runs).
        {
            let mut hook = self.close_hook.lock();
            if let Some(hook) = hook.take() {
                hook(self);
            }
        }
        if self.closed.swap(true, SeqCst) {
            return;
        }
        let companion = self.companion.lock().take();
        drop(companion);
        for ns in self.namespaces.read().values() {
            ns.close();
        }
        self.ticker.shutdown();
        self.storage.close();
    }

    /// Runs `f` on the companion, if any.
    pub(crate) fn with_companion<R>(
        &self,
        f: impl FnOnce(Option<&(dyn std::any::Any + Send + Sync)>) -> R,
    ) -> R {
        let g = self.companion.lock();
        f(g.as_deref())
    }

    /// Runs `hook` once, while everything is still open, when the engine
    /// closes or (not closed) drops — not in a forked child.
    pub(crate) fn set_close_hook(&self, hook: CloseHook) {
        *self.close_hook.lock() = Some(hook);
    }

    /// Keeps `c` until the engine closes or drops (see the field).
    pub(crate) fn set_companion(&self, c: Box<dyn std::any::Any + Send + Sync>) {
        *self.companion.lock() = Some(c);
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }
}

/// A queue by (namespace, name), as recovery finds it.
type QueueKey = (String, String);
