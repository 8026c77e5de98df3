//! The journal's index of what is live: every queue it knows (with its latest
//! definition and the next unused message id) and, for every unacked persistent
//! message, where its `Enqueued` record lies (segment, offset, length) and its
//! current delivery count. Plus, per segment, how many of its bytes are live.
//!
//! Replay builds it; every append keeps it current (under the writer lock).
//! It is what lets a checkpoint copy the live records forward and delete the
//! rest while the broker runs, and lets an open skip rewriting a clean journal.

use super::codec::{encode, GROUP_HEADER, MEMBER_HEADER};
use super::codec::{Count, Enc, RECORD_HEADER};
use crate::store::Record;
use crate::types::Filter;
use crate::types::IdHasher;
use crate::types::QueueOptions;
use crate::types::Quotas;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::Ordering::Relaxed;

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<SeqIdHasher>>;

/// Hashes a message id so that nearby ids land in nearby buckets: the low
/// 57 bits of the hash are the id's own (the table picks a bucket from the
/// low bits), the top 7 bits, which the table compares before a key, are
/// mixed. A replay inserts ids in nearly increasing order, so it walks the
/// table nearly sequentially instead of missing the cache on every insert
/// (`crate::types::IdHasher` mixes every bit).
#[derive(Debug, Default)]
pub(crate) struct SeqIdHasher(u64);

impl Hasher for SeqIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used for `u64` keys; any other key is hashed as `IdHasher` would.
        let mut h = IdHasher::default();
        h.write_u64(self.0);
        h.write(bytes);
        self.0 = h.finish();
    }
    fn write_u64(&mut self, n: u64) {
        const LOW: u64 = (1 << 57) - 1;
        self.0 = (n & LOW) | (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) & !LOW);
    }
}

/// Where a live message's `Enqueued` record is, and what has happened to it since.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loc {
    pub seg: u64,
    pub off: u64,
    /// Framed length of the record.
    pub len: u32,
    /// Current delivery count.
    pub deliveries: u32,
    /// A `Delivered` record followed the `Enqueued` one (count changed, delay
    /// cleared): a copy of the record must be followed by one too.
    pub delivered: bool,
    /// Replay only: the message's slot in the recovered list.
    pub slot: u32,
    /// The record is a member of a group: `off`/`len` are its payload's (a
    /// checkpoint frames it as a record of its own).
    pub embedded: bool,
}

impl Loc {
    /// Bytes the record takes (as a record of its own).
    pub fn framed(&self) -> u64 {
        if self.embedded {
            super::codec::framed_len(self.len as usize) as u64
        } else {
            u64::from(self.len)
        }
    }
}

/// One queue, by interned id.
#[derive(Debug)]
pub(crate) struct QueueEntry {
    pub namespace: Box<str>,
    pub queue: Box<str>,
    /// The latest definition; `None` once deleted (or never defined).
    pub options: Option<QueueOptions>,
    /// Order of the latest definition (queues are restored in this order).
    pub def_order: u64,
    /// One past the highest id ever enqueued (ids are never reused).
    pub next_id: u64,
    pub msgs: IdMap<Loc>,
}

/// Bytes in one segment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SegStat {
    /// Written (header included).
    pub used: u64,
    /// Framed bytes of live `Enqueued` records in it.
    pub live: u64,
}

/// A topic and its subscriptions (queue, filter), in subscription order.
#[derive(Debug)]
pub(crate) struct TopicEntry {
    pub namespace: Box<str>,
    pub topic: Box<str>,
    pub subs: Vec<(Box<str>, Filter)>,
}

/// Namespaces, topics and subscriptions: small, kept whole (a checkpoint
/// writes them all again).
#[derive(Debug, Default)]
pub(crate) struct Defs {
    /// Namespaces in the order they were first defined, with their latest quotas.
    pub namespaces: Vec<(Box<str>, Quotas)>,
    ns_at: HashMap<Box<str>, usize>,
    /// Topics in the order they were first defined.
    pub topics: Vec<TopicEntry>,
    topic_at: HashMap<(Box<str>, Box<str>), usize>,
}

impl Defs {
    /// A namespace defined (again: its quotas replaced).
    pub fn namespace(&mut self, ns: &str, quotas: &Quotas) {
        match self.ns_at.get(ns) {
            Some(&i) => self.namespaces[i].1 = quotas.clone(),
            None => {
                self.ns_at.insert(ns.into(), self.namespaces.len());
                self.namespaces.push((ns.into(), quotas.clone()));
            }
        }
    }

    /// The topic's entry, created on first sight.
    pub fn topic(&mut self, ns: &str, topic: &str) -> &mut TopicEntry {
        let key: (Box<str>, Box<str>) = (ns.into(), topic.into());
        let i = match self.topic_at.get(&key) {
            Some(&i) => i,
            None => {
                let i = self.topics.len();
                self.topic_at.insert(key, i);
                self.topics.push(TopicEntry {
                    namespace: ns.into(),
                    topic: topic.into(),
                    subs: Vec::new(),
                });
                i
            }
        };
        &mut self.topics[i]
    }

    /// `queue` subscribed to `topic` with `filter` (again: the filter replaced,
    /// the place kept).
    pub fn subscribe(&mut self, ns: &str, topic: &str, queue: &str, filter: &Filter) {
        let t = self.topic(ns, topic);
        match t.subs.iter_mut().find(|s| &*s.0 == queue) {
            Some(s) => s.1 = filter.clone(),
            None => t.subs.push((queue.into(), filter.clone())),
        }
    }

    /// `queue`'s subscription of `topic` removed.
    pub fn unsubscribe(&mut self, ns: &str, topic: &str, queue: &str) {
        self.topic(ns, topic).subs.retain(|s| &*s.0 != queue);
    }

    /// A deleted queue's subscriptions go with it.
    pub fn queue_deleted(&mut self, ns: &str, queue: &str) {
        for t in self.topics.iter_mut().filter(|t| &*t.namespace == ns) {
            t.subs.retain(|s| &*s.0 != queue);
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    names: HashMap<Box<str>, HashMap<Box<str>, u32>>,
    pub queues: Vec<QueueEntry>,
    /// Namespaces, topics, subscriptions.
    pub defs: Defs,
    /// Segments of the journal (since its newest checkpoint), by number.
    pub segs: BTreeMap<u64, SegStat>,
    /// Live bytes in all segments.
    pub live_bytes: u64,
    /// Live messages in all segments.
    pub live_msgs: u64,
    last: Option<u32>,
    order: u64,
}

impl Index {
    /// The interned id of `namespace/queue`, created on first sight.
    pub fn qid(&mut self, namespace: &str, queue: &str) -> u32 {
        // Consecutive records mostly name the same queue.
        if let Some(id) = self.last {
            let e = &self.queues[id as usize];
            if &*e.queue == queue && &*e.namespace == namespace {
                return id;
            }
        }
        let id = match self.names.get(namespace).and_then(|m| m.get(queue)) {
            Some(id) => *id,
            None => {
                let id = self.queues.len() as u32;
                self.queues.push(QueueEntry {
                    namespace: namespace.into(),
                    queue: queue.into(),
                    options: None,
                    def_order: 0,
                    next_id: 1,
                    msgs: IdMap::default(),
                });
                self.names
                    .entry(namespace.into())
                    .or_default()
                    .insert(queue.into(), id);
                id
            }
        };
        self.last = Some(id);
        id
    }

    pub fn define(&mut self, q: u32, options: QueueOptions, next_id: u64) {
        self.order += 1;
        let e = &mut self.queues[q as usize];
        e.options = Some(options);
        e.def_order = self.order;
        e.next_id = e.next_id.max(next_id);
    }

    /// Ids below `next` were used in the queue.
    pub fn raise_next_id(&mut self, q: u32, next: u64) {
        let e = &mut self.queues[q as usize];
        e.next_id = e.next_id.max(next);
    }

    /// Drops a queue and its messages; calls `gone` with each message's slot.
    pub fn delete(&mut self, q: u32, mut gone: impl FnMut(u32)) {
        let e = &mut self.queues[q as usize];
        e.options = None;
        self.defs.queue_deleted(&e.namespace, &e.queue);
        for loc in std::mem::take(&mut e.msgs).into_values() {
            self.unlink(&loc);
            gone(loc.slot);
        }
    }

    /// Notes a live message; returns the location it replaces (same id again:
    /// a checkpoint's copy), whose replay slot, delivery count (if higher) and
    /// `delivered` mark the message then keeps: a restatement never makes a
    /// delivery count go back.
    pub fn enqueue(&mut self, q: u32, id: u64, mut loc: Loc) -> Option<Loc> {
        let e = &mut self.queues[q as usize];
        e.next_id = e.next_id.max(id.saturating_add(1));
        let old = match e.msgs.entry(id) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(loc);
                None
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let was = *o.get();
                loc.slot = was.slot;
                loc.deliveries = loc.deliveries.max(was.deliveries);
                loc.delivered |= was.delivered;
                Some(o.insert(loc))
            }
        };
        if let Some(s) = self.segs.get_mut(&loc.seg) {
            s.live += loc.framed();
        }
        self.live_bytes += loc.framed();
        self.live_msgs += 1;
        if let Some(o) = old {
            self.unlink(&o);
        }
        old
    }

    /// Where a live message is.
    pub fn get(&self, q: u32, id: u64) -> Option<&Loc> {
        self.queues[q as usize].msgs.get(&id)
    }

    /// Forgets a message (acked, expired, moved...); returns where it was.
    pub fn remove(&mut self, q: u32, id: u64) -> Option<Loc> {
        let old = self.queues[q as usize].msgs.remove(&id)?;
        self.unlink(&old);
        Some(old)
    }

    fn unlink(&mut self, loc: &Loc) {
        if let Some(s) = self.segs.get_mut(&loc.seg) {
            s.live -= loc.framed();
        }
        self.live_bytes -= loc.framed();
        self.live_msgs -= 1;
    }

    /// Notes a new delivery count; returns the message's location if live.
    pub fn delivered(&mut self, q: u32, id: u64, deliveries: u32) -> Option<&Loc> {
        let loc = self.queues[q as usize].msgs.get_mut(&id)?;
        loc.deliveries = deliveries;
        loc.delivered = true;
        Some(loc)
    }

    /// Bytes written in all segments.
    pub fn used_bytes(&self) -> u64 {
        self.segs.values().map(|s| s.used).sum()
    }

    /// Whether a checkpoint should copy the live records forward and delete the
    /// rest: at least three segments, and more than half of what they hold is
    /// dead. Disk use so stays under about twice the live data (or three
    /// segments), and each live byte is copied at most once per halving.
    pub fn wants_checkpoint(&self) -> bool {
        self.segs.len() >= 3 && self.live_bytes.saturating_mul(2) < self.used_bytes()
    }
}

impl Index {
    /// Moves a live record to where a checkpoint copied it (as a record of
    /// its own, `len` bytes framed).
    pub fn relocate(&mut self, q: u32, id: u64, seg: u64, off: u64, len: u32) {
        let Some(loc) = self.queues[q as usize].msgs.get_mut(&id) else {
            return;
        };
        let len = u64::from(len);
        debug_assert_eq!(len, loc.framed());
        if let Some(s) = self.segs.get_mut(&loc.seg) {
            s.live -= loc.framed();
        }
        loc.seg = seg;
        loc.off = off;
        loc.len = len as u32;
        loc.embedded = false;
        if let Some(s) = self.segs.get_mut(&seg) {
            s.live += len;
        }
    }

    /// Keeps the index current with a record just appended at `seg`/`off`.
    pub fn note(&mut self, r: &Record<'_>, seg: u64, off: u64, len: u32) {
        self.note_at(r, seg, off, len, false);
    }

    /// [`note`](Self::note) of a record, or of a group member (`embedded`: `off`
    /// and `len` are its payload's).
    fn note_at(&mut self, r: &Record<'_>, seg: u64, off: u64, len: u32, embedded: bool) {
        match r {
            Record::QueueDefined {
                namespace,
                queue,
                options,
            } => {
                let q = self.qid(namespace, queue);
                self.define(q, (*options).clone(), 0);
            }
            Record::QueueDeleted { namespace, queue } => {
                let q = self.qid(namespace, queue);
                self.delete(q, |_| {});
            }
            Record::Enqueued {
                namespace,
                queue,
                message,
                ..
            } => {
                let q = self.qid(namespace, queue);
                let loc = Loc {
                    seg,
                    off,
                    len,
                    deliveries: message.deliveries.load(Relaxed),
                    delivered: false,
                    slot: u32::MAX,
                    embedded,
                };
                self.enqueue(q, message.id, loc);
            }
            Record::Group(records) => {
                // Members' payloads follow the record header, the count and
                // each member's own type and length.
                let mut at = off + (RECORD_HEADER + GROUP_HEADER) as u64;
                for r in records.iter() {
                    let mut count = Enc(Count(0));
                    encode(r, &mut count);
                    let n = count.0 .0 as u64;
                    at += MEMBER_HEADER as u64;
                    self.note_at(r, seg, at, n as u32, true);
                    at += n;
                }
            }
            Record::NextId {
                namespace,
                queue,
                next_id,
            } => {
                let q = self.qid(namespace, queue);
                self.raise_next_id(q, *next_id);
            }
            Record::NamespaceDefined { namespace, quotas } => {
                self.defs.namespace(namespace, quotas);
            }
            Record::TopicDefined { namespace, topic } => {
                self.defs.topic(namespace, topic);
            }
            Record::Subscribed {
                namespace,
                topic,
                queue,
                filter,
            } => self.defs.subscribe(namespace, topic, queue, filter),
            Record::Unsubscribed {
                namespace,
                topic,
                queue,
            } => self.defs.unsubscribe(namespace, topic, queue),
            Record::Removed {
                namespace,
                queue,
                id,
                ..
            } => {
                let q = self.qid(namespace, queue);
                self.remove(q, *id);
            }
            Record::Delivered {
                namespace,
                queue,
                id,
                deliveries,
            } => {
                let q = self.qid(namespace, queue);
                self.delivered(q, *id, *deliveries);
            }
        }
    }
}
