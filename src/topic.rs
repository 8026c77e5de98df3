//! Topics: publish once, every subscription (a queue of its own) gets a copy.

use crate::engine::namespace::NamespaceCore;
use crate::engine::topic::TopicCore;
use crate::error::{validate_name, Result};
use crate::queue::{Queue, RemoteQueue};
use crate::remote::client::Client;
use crate::types::{Filter, Message, TopicStats};
use std::sync::Arc;

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
    flavor: TopicFlavor,
}

/// Where a [`Topic`]'s calls go: today only the engine of this process (the
/// seam where a host-process flavor will plug in; see `Queue`'s flavor).
#[derive(Clone)]
enum TopicFlavor {
    /// The topic and the namespace its subscription queues live in.
    Local {
        topic: Arc<TopicCore>,
        ns: Arc<NamespaceCore>,
    },
    /// A topic of the host's: its namespace and name.
    Remote {
        client: Arc<Client>,
        ns: Arc<str>,
        name: Arc<str>,
    },
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name())
            .field("subscriptions", &self.subscriptions())
            .finish()
    }
}

impl Topic {
    pub(crate) fn local(topic: Arc<TopicCore>, ns: Arc<NamespaceCore>) -> Self {
        Topic {
            flavor: TopicFlavor::Local { topic, ns },
        }
    }

    pub(crate) fn remote(client: Arc<Client>, ns: &str, name: &str) -> Self {
        Topic {
            flavor: TopicFlavor::Remote {
                client,
                ns: ns.into(),
                name: name.into(),
            },
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        match &self.flavor {
            TopicFlavor::Local { topic, .. } => topic.name(),
            TopicFlavor::Remote { name, .. } => name,
        }
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
        match &self.flavor {
            TopicFlavor::Local { topic, ns } => {
                Ok(Queue::local(topic.subscribe(ns, queue, filter)?))
            }
            TopicFlavor::Remote { client, ns, name } => {
                let (opts, serial) = client.subscribe(ns, name, queue, &filter)?;
                Ok(Queue::remote(RemoteQueue::new(
                    client, ns, queue, opts, serial,
                )))
            }
        }
    }

    /// Removes a subscription (its queue stays, with what it holds). Deleting the
    /// queue removes its subscriptions too.
    /// (Recorded in a broker's journal before this returns.)
    pub fn unsubscribe(&self, queue: &str) -> Result<()> {
        match &self.flavor {
            TopicFlavor::Local { topic, ns } => topic.unsubscribe(ns, queue),
            TopicFlavor::Remote { client, ns, name } => {
                validate_name(queue)?;
                client.unit(crate::remote::wire::op::UNSUBSCRIBE, &[ns, name, queue])
            }
        }
    }

    /// The filter of `queue`'s subscription, if it is subscribed.
    pub fn filter(&self, queue: &str) -> Option<Filter> {
        match &self.flavor {
            TopicFlavor::Local { topic, .. } => topic.filter(queue),
            TopicFlavor::Remote { client, ns, name } => {
                client.topic_filter(ns, name, queue).ok().flatten()
            }
        }
    }

    /// Its counters: publishes, and those that went nowhere.
    pub fn stats(&self) -> TopicStats {
        match &self.flavor {
            TopicFlavor::Local { topic, .. } => topic.stats(),
            TopicFlavor::Remote { client, ns, name } => {
                client.topic_stats(ns, name).unwrap_or_default()
            }
        }
    }

    /// Names of the subscribed queues, in subscription order.
    pub fn subscriptions(&self) -> Vec<String> {
        match &self.flavor {
            TopicFlavor::Local { topic, .. } => topic.subscriptions(),
            TopicFlavor::Remote { client, ns, name } => client
                .names(crate::remote::wire::op::SUBSCRIPTIONS, &[ns, name])
                .unwrap_or_default(),
        }
    }

    /// Wakes every publish waiting for room in a subscription queue, so it
    /// re-checks its cancel flag (see [`publish_until`](Self::publish_until)).
    pub(crate) fn wake_publishers(&self) {
        match &self.flavor {
            TopicFlavor::Local { topic, .. } => topic.wake_publishers(),
            TopicFlavor::Remote { client, .. } => client.wake_waiters(),
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
        match &self.flavor {
            TopicFlavor::Local { topic, .. } => topic.publish(msg, cancel),
            TopicFlavor::Remote { client, ns, name } => client.publish(ns, name, &msg, cancel),
        }
    }
}
