//! [`TopicCore`]: a topic's subscriptions (queues with filters) and counters,
//! and publishing a copy to each matching subscription.

use super::namespace::NamespaceCore;
use super::root::Declare;
use super::QueueCore;
use crate::error::{Error, Result};
use crate::store::Record;
use crate::types::{Filter, Message, TopicStats};
use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

struct Subscription {
    queue: Arc<QueueCore>,
    filter: Filter,
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

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Subscribes `queue` of `ns` (opened with the namespace's defaults if it
    /// does not exist) with `filter`, recording it first; the same filter again
    /// changes nothing, another one replaces it.
    pub(crate) fn subscribe(
        &self,
        ns: &NamespaceCore,
        queue: &str,
        filter: Filter,
    ) -> Result<Arc<QueueCore>> {
        let q = ns.open(queue, None, Declare::OpenOrCreate)?;
        let mut subs = self.subs.write();
        let unchanged = subs
            .iter()
            .any(|s| s.queue.name == queue && Arc::ptr_eq(&s.queue, &q) && s.filter == filter);
        if unchanged {
            return Ok(q);
        }
        ns.check_open()?;
        ns.storage().append(&Record::Subscribed {
            namespace: &ns.shared.name,
            topic: &self.name,
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
        Ok(q)
    }

    /// Removes `queue`'s subscription, recording it first.
    pub(crate) fn unsubscribe(&self, ns: &NamespaceCore, queue: &str) -> Result<()> {
        let mut subs = self.subs.write();
        if !subs.iter().any(|s| s.queue.name == queue) {
            return Err(Error::NotFound(format!(
                "subscription {queue:?} of topic {:?}",
                self.name
            )));
        }
        ns.check_open()?;
        ns.storage().append(&Record::Unsubscribed {
            namespace: &ns.shared.name,
            topic: &self.name,
            queue,
        })?;
        subs.retain(|s| s.queue.name != queue);
        Ok(())
    }

    /// The filter of `queue`'s subscription, if it is subscribed.
    pub(crate) fn filter(&self, queue: &str) -> Option<Filter> {
        self.subs
            .read()
            .iter()
            .find(|s| s.queue.name == queue)
            .map(|s| s.filter.clone())
    }

    /// Its counters.
    pub(crate) fn stats(&self) -> TopicStats {
        TopicStats {
            published: self.published.load(Relaxed),
            dropped_no_subscriber: self.dropped_no_subscriber.load(Relaxed),
            unmatched: self.unmatched.load(Relaxed),
            subscriptions: self.subs.read().len() as u64,
        }
    }

    /// Names of the subscribed queues, in subscription order.
    pub(crate) fn subscriptions(&self) -> Vec<String> {
        self.subs
            .read()
            .iter()
            .map(|s| s.queue.name.clone())
            .collect()
    }

    /// Wakes every publish waiting for room in a subscription queue.
    pub(crate) fn wake_publishers(&self) {
        for s in self.subs.read().iter() {
            s.queue.wake_all();
        }
    }

    /// Sends a copy of `msg` to every subscription whose filter matches (each
    /// as its queue's `on_full` says; waits for room end once `cancel` is set
    /// and the publishers woken). Returns how many got it, or the first error
    /// (the others still get their copy).
    pub(crate) fn publish(&self, msg: Message, cancel: Option<&AtomicBool>) -> Result<usize> {
        let (any, targets): (bool, Vec<Arc<QueueCore>>) = {
            let subs = self.subs.read();
            let targets = subs
                .iter()
                .filter(|s| s.filter.matches(&msg))
                .map(|s| s.queue.clone())
                .collect();
            (!subs.is_empty(), targets)
        };
        self.published.fetch_add(1, Relaxed);
        if !any {
            self.dropped_no_subscriber.fetch_add(1, Relaxed);
        } else if targets.is_empty() {
            self.unmatched.fetch_add(1, Relaxed);
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
