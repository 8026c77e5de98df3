//! Topics: publish once, every subscription (a queue of its own) gets a copy.

use crate::engine::namespace::NamespaceCore;
use crate::engine::QueueCore;
use crate::error::{validate_name, Error, Result};
use crate::queue::Queue;
use crate::store::Record;
use crate::types::{Filter, Message};
use parking_lot::RwLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

struct Subscription {
    queue: Arc<QueueCore>,
    filter: Filter,
}

/// Counters of a topic (since its broker opened; not kept across a restart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStats {
    /// Publishes (whatever their outcome).
    pub published: u64,
    /// Publishes that found the topic without any subscription: the message
    /// went nowhere (not an error).
    pub dropped_no_subscriber: u64,
    /// Publishes that found subscriptions, none of whose filters matched.
    pub unmatched: u64,
    /// Subscriptions now.
    pub subscriptions: u64,
}

pub(crate) struct TopicCore {
    name: String,
    subs: RwLock<Vec<Subscription>>,
    published: AtomicU64,
    dropped_no_subscriber: AtomicU64,
    unmatched: AtomicU64,
}

impl TopicCore {
    pub(crate) fn new(name: &str) -> Self {
        TopicCore {
            name: name.to_string(),
            subs: RwLock::new(Vec::new()),
            published: AtomicU64::new(0),
            dropped_no_subscriber: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
        }
    }

    /// Adds a subscription found by recovery (recorded already).
    pub(crate) fn restore_subscription(&self, queue: Arc<QueueCore>, filter: Filter) {
        let mut subs = self.subs.write();
        subs.retain(|s| s.queue.name != queue.name);
        subs.push(Subscription { queue, filter });
    }

    /// Forgets the subscription of a deleted queue.
    pub(crate) fn drop_subscription(&self, queue: &str) {
        self.subs.write().retain(|s| s.queue.name != queue);
    }
}

/// A topic of a namespace. Cheap to clone; `Send + Sync`.
///
/// ```
/// use libqueue::{Broker, Filter, Message, MessageView};
/// let ns = Broker::new().namespace("octavia")?;
/// let topic = ns.topic("OCTAVIA_PROV")?;
/// let all = topic.subscribe("audit", Filter::All)?;
/// let lbs = topic.subscribe("lb-worker", Filter::name("create_load_balancer"))?;
/// assert_eq!(topic.publish(Message::new("{}").name("create_load_balancer"))?, 2);
/// assert_eq!(topic.publish(Message::new("{}").name("delete_member"))?, 1);
/// assert_eq!(all.stats().ready, 2);
/// assert_eq!(lbs.try_receive()?.unwrap().name(), Some("create_load_balancer"));
/// # Ok::<(), libqueue::Error>(())
/// ```
#[derive(Clone)]
pub struct Topic {
    pub(crate) core: Arc<TopicCore>,
    pub(crate) ns: Arc<NamespaceCore>,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.core.name)
            .field("subscriptions", &self.subscriptions())
            .finish()
    }
}

impl Topic {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Subscribes the queue `queue` (created with the namespace's defaults if it
    /// does not exist; create it first with
    /// [`Namespace::create_queue`](crate::Namespace::create_queue) for other
    /// options) with `filter`. A subscription is an ordinary queue: it keeps
    /// its messages while nobody listens, and competing consumers share them.
    ///
    /// Subscribing a queue again with the same filter changes nothing (so a
    /// program may declare its subscriptions at every start); with another
    /// filter it replaces the filter (recorded, like the subscription itself,
    /// in a broker's journal before this returns: subscriptions survive a
    /// restart).
    pub fn subscribe(&self, queue: &str, filter: Filter) -> Result<Queue> {
        validate_name(queue)?;
        let q = self.ns.open(queue, None, false)?;
        let mut subs = self.core.subs.write();
        let unchanged = subs
            .iter()
            .any(|s| s.queue.name == queue && Arc::ptr_eq(&s.queue, &q) && s.filter == filter);
        if unchanged {
            return Ok(Queue { core: q });
        }
        self.ns.check_open()?;
        self.ns.storage().append(&Record::Subscribed {
            namespace: &self.ns.shared.name,
            topic: &self.core.name,
            queue,
            filter: &filter,
        })?;
        match subs.iter_mut().find(|s| s.queue.name == queue) {
            Some(s) => {
                s.queue = q.clone();
                s.filter = filter;
            }
            None => subs.push(Subscription {
                queue: q.clone(),
                filter,
            }),
        }
        Ok(Queue { core: q })
    }

    /// Removes a subscription (its queue stays, with what it holds). Deleting the
    /// queue removes its subscriptions too.
    /// (Recorded in a broker's journal before this returns.)
    pub fn unsubscribe(&self, queue: &str) -> Result<()> {
        let mut subs = self.core.subs.write();
        if !subs.iter().any(|s| s.queue.name == queue) {
            return Err(Error::NotFound(format!(
                "subscription {queue:?} of topic {:?}",
                self.core.name
            )));
        }
        self.ns.check_open()?;
        self.ns.storage().append(&Record::Unsubscribed {
            namespace: &self.ns.shared.name,
            topic: &self.core.name,
            queue,
        })?;
        subs.retain(|s| s.queue.name != queue);
        Ok(())
    }

    /// The filter of `queue`'s subscription, if it is subscribed.
    pub fn filter(&self, queue: &str) -> Option<Filter> {
        self.core
            .subs
            .read()
            .iter()
            .find(|s| s.queue.name == queue)
            .map(|s| s.filter.clone())
    }

    /// Its counters: publishes, and those that went nowhere.
    pub fn stats(&self) -> TopicStats {
        TopicStats {
            published: self.core.published.load(Relaxed),
            dropped_no_subscriber: self.core.dropped_no_subscriber.load(Relaxed),
            unmatched: self.core.unmatched.load(Relaxed),
            subscriptions: self.core.subs.read().len() as u64,
        }
    }

    /// Names of the subscribed queues, in subscription order.
    pub fn subscriptions(&self) -> Vec<String> {
        self.core
            .subs
            .read()
            .iter()
            .map(|s| s.queue.name.clone())
            .collect()
    }

    /// Wakes every publish waiting for room in a subscription queue, so it
    /// re-checks its cancel flag (see [`publish_until`](Self::publish_until)).
    pub(crate) fn wake_publishers(&self) {
        for s in self.core.subs.read().iter() {
            s.queue.wake_all();
        }
    }

    /// Publishes `msg`: every subscription whose filter matches gets one copy
    /// (sent as its queue's `on_full` option says). Returns how many got it. If a
    /// subscription refuses it (full, quota, closed), the others still get their
    /// copy and the first error is returned.
    ///
    /// A publish that no subscription takes is not an error (it returns 0),
    /// but it is counted: [`TopicStats::dropped_no_subscriber`] when the topic
    /// has no subscription, [`TopicStats::unmatched`] when no filter matched.
    pub fn publish(&self, msg: Message) -> Result<usize> {
        self.publish_until(msg, None)
    }

    /// [`publish`](Self::publish) whose waits for room (a full subscription
    /// queue whose `on_full` blocks) end with [`Error::Closed`] once `cancel` is
    /// set and [`wake_publishers`](Self::wake_publishers) called.
    pub(crate) fn publish_until(
        &self,
        msg: Message,
        cancel: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<usize> {
        let (any, targets): (bool, Vec<Arc<QueueCore>>) = {
            let subs = self.core.subs.read();
            let targets = subs
                .iter()
                .filter(|s| s.filter.matches(&msg))
                .map(|s| s.queue.clone())
                .collect();
            (!subs.is_empty(), targets)
        };
        self.core.published.fetch_add(1, Relaxed);
        if !any {
            self.core.dropped_no_subscriber.fetch_add(1, Relaxed);
        } else if targets.is_empty() {
            self.core.unmatched.fetch_add(1, Relaxed);
        }
        let mut first_err = None;
        let mut sent = 0;
        let last = targets.len().saturating_sub(1);
        let mut msg = Some(msg);
        for (i, q) in targets.iter().enumerate() {
            let m = if i == last {
                msg.take().expect("kept for the last")
            } else {
                msg.clone().expect("kept for the last")
            };
            match q.send_one(m, q.opts.on_full, cancel) {
                Ok(_) => sent += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    }
}
