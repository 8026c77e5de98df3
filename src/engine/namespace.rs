//! A namespace (tenant): its queues and its quotas.

use super::counters::Budget;
use super::queue::QueueCore;
use super::root::{Declare, Recording};
use super::ticker::Ticker;
use super::topic::TopicCore;
use crate::clock::Clock;
use crate::error::{validate_name, Error, Result};
use crate::store::{Record, Storage};
use crate::types::QueueOptions;
use crate::types::Quotas;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

/// What a namespace's queues share: its name and its quota budgets.
#[derive(Debug)]
pub(crate) struct NsShared {
    pub(crate) name: String,
    pub(crate) quotas: Quotas,
    pub(crate) msgs: Budget,
    pub(crate) bytes: Budget,
}

pub(crate) struct NamespaceCore {
    pub(crate) shared: Arc<NsShared>,
    queues: RwLock<HashMap<String, Arc<QueueCore>>>,
    topics: RwLock<HashMap<String, Arc<TopicCore>>>,
    clock: Arc<dyn Clock>,
    storage: Arc<dyn Storage>,
    ticker: Arc<Ticker>,
    pub(crate) default_queue_options: QueueOptions,
    /// Its broker closed: no queue or topic is created any more.
    closed: std::sync::atomic::AtomicBool,
    /// The process that made it (a forked child may not use it).
    origin: crate::sync::fork::Origin,
}

impl NamespaceCore {
    pub(crate) fn new(
        name: String,
        quotas: Quotas,
        default_queue_options: QueueOptions,
        clock: Arc<dyn Clock>,
        storage: Arc<dyn Storage>,
        ticker: Arc<Ticker>,
    ) -> Self {
        NamespaceCore {
            shared: Arc::new(NsShared {
                name,
                msgs: Budget::new(quotas.max_messages),
                bytes: Budget::new(quotas.max_bytes),
                quotas,
            }),
            queues: RwLock::new(HashMap::new()),
            topics: RwLock::new(HashMap::new()),
            clock,
            storage,
            ticker,
            default_queue_options,
            closed: std::sync::atomic::AtomicBool::new(false),
            origin: crate::sync::fork::Origin::here(),
        }
    }

    /// The storage its definitions are recorded in.
    pub(crate) fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Closes every queue; later creations fail with [`Error::Closed`].
    pub(crate) fn close(&self) {
        let queues = self.queues.write();
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        for q in queues.values() {
            q.close();
        }
    }

    /// [`Error::Forked`] in a forked child.
    pub(crate) fn check_fork(&self) -> Result<()> {
        if self.origin.inherited() {
            return Err(Error::Forked);
        }
        Ok(())
    }

    /// [`Error::Closed`] once its broker closed ([`Error::Forked`] in a forked child).
    pub(crate) fn check_open(&self) -> Result<()> {
        self.check_fork()?;
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<QueueCore>> {
        self.queues.read().get(name).cloned()
    }

    /// Gets a queue, creating it with `opts` (or the defaults) if missing. With
    /// [`Declare::Create`], an existing queue is an error.
    pub(crate) fn open(
        &self,
        name: &str,
        opts: Option<QueueOptions>,
        declare: Declare,
    ) -> Result<Arc<QueueCore>> {
        self.open_as(name, opts, declare, Recording::Record)
    }

    /// Re-creates a queue found by recovery (its definition is in the journal already).
    pub(crate) fn restore_queue(&self, name: &str, opts: QueueOptions) -> Result<Arc<QueueCore>> {
        self.open_as(name, Some(opts), Declare::OpenOrCreate, Recording::Restored)
    }

    fn open_as(
        &self,
        name: &str,
        opts: Option<QueueOptions>,
        declare: Declare,
        recording: Recording,
    ) -> Result<Arc<QueueCore>> {
        validate_name(name)?;
        self.check_open()?;
        if let Some(q) = self.get(name) {
            if declare == Declare::Create {
                return Err(Error::AlreadyExists(format!("queue {name:?}")));
            }
            return Ok(q);
        }
        let opts = opts.unwrap_or_else(|| self.default_queue_options.clone());
        opts.validate()?;
        let dlq = match &opts.dead_letter_queue {
            Some(d) if d == name => {
                return Err(Error::InvalidArgument(format!(
                    "queue {name:?} cannot be its own dead-letter queue"
                )))
            }
            Some(d) => Some(self.open_as(d, None, Declare::OpenOrCreate, recording)?),
            None => None,
        };
        let mut queues = self.queues.write();
        self.check_open()?;
        if let Some(q) = queues.get(name) {
            if declare == Declare::Create {
                return Err(Error::AlreadyExists(format!("queue {name:?}")));
            }
            return Ok(q.clone());
        }
        if let Some(max) = self.shared.quotas.max_queues {
            if queues.len() as u64 >= max {
                return Err(Error::QuotaExceeded {
                    namespace: self.shared.name.clone(),
                    quota: "max_queues",
                    limit: max,
                });
            }
        }
        if recording == Recording::Record {
            self.storage.append(&Record::QueueDefined {
                namespace: &self.shared.name,
                queue: name,
                options: &opts,
            })?;
        }
        let q = Arc::new(QueueCore::new(
            name.to_string(),
            self.shared.clone(),
            opts,
            dlq,
            self.clock.clone(),
            self.storage.clone(),
            self.ticker.clone(),
        ));
        self.ticker.register(&q);
        queues.insert(name.to_string(), q.clone());
        Ok(q)
    }

    pub(crate) fn delete(&self, name: &str) -> Result<()> {
        let mut queues = self.queues.write();
        self.check_open()?;
        if !queues.contains_key(name) {
            return Err(Error::NotFound(format!("queue {name:?}")));
        }
        self.storage.append(&Record::QueueDeleted {
            namespace: &self.shared.name,
            queue: name,
        })?;
        let q = queues.remove(name).expect("checked above");
        drop(queues);
        q.destroy();
        Ok(())
    }

    /// Deletes a queue and its subscriptions to any topic.
    pub(crate) fn delete_queue(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        self.delete(name)?;
        for t in self.topics.read().values() {
            t.drop_subscription(name);
        }
        Ok(())
    }

    /// Gets or creates a topic; a new one is recorded as `recording` says.
    pub(crate) fn topic(&self, name: &str, recording: Recording) -> Result<Arc<TopicCore>> {
        validate_name(name)?;
        self.check_open()?;
        let mut topics = self.topics.write();
        if let Some(t) = topics.get(name) {
            return Ok(t.clone());
        }
        if recording == Recording::Record {
            self.storage.append(&Record::TopicDefined {
                namespace: &self.shared.name,
                topic: name,
            })?;
        }
        let t = Arc::new(TopicCore::new(name));
        topics.insert(name.to_string(), t.clone());
        Ok(t)
    }

    /// Names of its topics, sorted.
    pub(crate) fn topic_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.topics.read().keys().cloned().collect();
        v.sort();
        v
    }

    pub(crate) fn list(&self) -> Vec<String> {
        let mut v: Vec<String> = self.queues.read().keys().cloned().collect();
        v.sort();
        v
    }

    pub(crate) fn all(&self) -> Vec<Arc<QueueCore>> {
        self.queues.read().values().cloned().collect()
    }
}
