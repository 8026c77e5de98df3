//! In-flight messages: who holds a lease and until when.
//!
//! Sharded like the ready lanes (a consumer records its lease in its home
//! shard's table, behind an uncontended mutex), with a deadline heap per shard
//! for expiry. Heap entries go stale when a lease is acked or extended; they
//! are skipped on expiry and the heap is rebuilt when stale ones dominate.

use crate::types::node::Node;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use std::sync::Arc;

use crate::types::IdMap;

#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) node: Arc<Node>,
    pub(crate) token: u64,
    pub(crate) deadline: u64,
}

/// One shard's leases.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    map: IdMap<Lease>,
    heap: BinaryHeap<Reverse<(u64, u64, u64)>>, // (deadline, id, token)
    next_token: u64,
}

impl LeaseTable {
    /// Records a lease; returns its token.
    pub(crate) fn insert(&mut self, node: Arc<Node>, deadline: u64) -> u64 {
        self.next_token += 1;
        let token = self.next_token;
        self.heap.push(Reverse((deadline, node.id, token)));
        self.map.insert(
            node.id,
            Lease {
                node,
                token,
                deadline,
            },
        );
        token
    }

    /// Removes the lease if `token` still holds it.
    pub(crate) fn remove(&mut self, id: u64, token: u64) -> Option<Arc<Node>> {
        match self.map.get(&id) {
            Some(l) if l.token == token => {
                let node = self.map.remove(&id).map(|l| l.node);
                self.compact();
                node
            }
            _ => None,
        }
    }

    /// Moves the deadline of a held lease; false if `token` no longer holds it.
    pub(crate) fn extend(&mut self, id: u64, token: u64, deadline: u64) -> bool {
        match self.map.get_mut(&id) {
            Some(l) if l.token == token => {
                l.deadline = deadline;
                self.heap.push(Reverse((deadline, id, token)));
                self.compact();
                true
            }
            _ => false,
        }
    }

    /// The current deadline of a held lease.
    pub(crate) fn deadline(&self, id: u64, token: u64) -> Option<u64> {
        self.map
            .get(&id)
            .filter(|l| l.token == token)
            .map(|l| l.deadline)
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.map.contains_key(&id)
    }

    /// Removes and returns every lease whose deadline is at or before `now`;
    /// returns the earliest remaining deadline (u64::MAX if none).
    pub(crate) fn expire(&mut self, now: u64, out: &mut Vec<Arc<Node>>) -> u64 {
        while let Some(&Reverse((deadline, id, token))) = self.heap.peek() {
            if deadline > now {
                return deadline;
            }
            self.heap.pop();
            if let Some(l) = self.map.get(&id) {
                if l.token == token && l.deadline == deadline {
                    out.push(self.map.remove(&id).expect("present").node);
                }
            }
        }
        u64::MAX
    }

    /// Oldest enqueue time among leased messages.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.map.values().map(|l| l.node.enqueued_at).min()
    }

    /// Every leased message (for a host's handover).
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.map.values().map(|l| &l.node)
    }

    /// Rebuilds the heap when stale entries outnumber live ones, so memory stays
    /// proportional to the leases actually held.
    fn compact(&mut self) {
        if self.heap.len() > 64 && self.heap.len() > 2 * self.map.len() {
            self.heap = self
                .map
                .values()
                .map(|l| Reverse((l.deadline, l.node.id, l.token)))
                .collect();
        }
    }
}

/// Delayed messages (sent with a delay, or nacked with one), by due time.
#[derive(Debug, Default)]
pub(crate) struct DelayTable {
    heap: BinaryHeap<Reverse<(u64, u64)>>, // (due, id)
    map: IdMap<(u64, Arc<Node>)>,
}

impl DelayTable {
    pub(crate) fn insert(&mut self, due: u64, node: Arc<Node>) {
        self.heap.push(Reverse((due, node.id)));
        self.map.insert(node.id, (due, node));
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Arc<Node>> {
        let n = self.map.remove(&id).map(|(_, n)| n);
        if self.heap.len() > 64 && self.heap.len() > 2 * self.map.len() {
            self.heap = self
                .map
                .iter()
                .map(|(id, (due, _))| Reverse((*due, *id)))
                .collect();
        }
        n
    }

    /// Moves every message due at or before `now` into `out`; returns the next due time.
    pub(crate) fn due(&mut self, now: u64, out: &mut Vec<Arc<Node>>) -> u64 {
        while let Some(&Reverse((due, id))) = self.heap.peek() {
            if due > now {
                return due;
            }
            self.heap.pop();
            if matches!(self.map.get(&id), Some((d, _)) if *d == due) {
                out.push(self.map.remove(&id).expect("present").1);
            }
        }
        u64::MAX
    }

    /// Removes every message whose TTL has passed into `out`; returns the earliest
    /// expiry among those left.
    pub(crate) fn take_expired(&mut self, now: u64, out: &mut Vec<Arc<Node>>) -> u64 {
        let dead: Vec<u64> = self
            .map
            .iter()
            .filter(|(_, (_, n))| n.expired(now))
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            out.extend(self.remove(id));
        }
        self.map
            .values()
            .map(|(_, n)| n.expires_at)
            .min()
            .unwrap_or(u64::MAX)
    }

    pub(crate) fn drain(&mut self) -> Vec<Arc<Node>> {
        self.heap.clear();
        self.map.drain().map(|(_, (_, n))| n).collect()
    }

    pub(crate) fn oldest(&self) -> Option<u64> {
        self.map.values().map(|(_, n)| n.enqueued_at).min()
    }

    /// Every delayed message with its due time (for a host's handover).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, &Arc<Node>)> {
        self.map.values().map(|(due, n)| (*due, n))
    }
}

/// Ready messages with a TTL, by expiry time: what lets a TTL sweep find the
/// expired ones without looking at every ready message. One per shard (a
/// producer adds to its home shard's, behind an uncontended mutex); only
/// messages with a TTL are entered, so the ready path of the others pays
/// nothing.
///
/// Entries go stale when their message leaves the lanes another way (received,
/// cancelled, purged): a sweep skips an entry whose message is not in its lane
/// any more. [`ExpiryHeap::push`] says when stale entries may dominate, so the
/// queue can drop them ([`ExpiryHeap::retain`]) and memory stays proportional
/// to the ready messages with a TTL.
#[derive(Debug)]
pub(crate) struct ExpiryHeap {
    heap: BinaryHeap<Reverse<(u64, u64, u8)>>, // (expires_at, id, priority)
    /// Length past which [`ExpiryHeap::push`] asks for a compaction.
    limit: usize,
}

impl Default for ExpiryHeap {
    fn default() -> Self {
        ExpiryHeap {
            heap: BinaryHeap::new(),
            limit: 1024,
        }
    }
}

impl ExpiryHeap {
    /// Enters a ready message; true when the heap has grown past its limit and
    /// should be compacted.
    #[inline]
    pub(crate) fn push(&mut self, expires_at: u64, id: u64, priority: u8) -> bool {
        self.heap.push(Reverse((expires_at, id, priority)));
        self.heap.len() > self.limit
    }

    /// Moves the entries due at or before `now` into `out` (as `(id, priority)`);
    /// returns the earliest expiry left.
    pub(crate) fn due(&mut self, now: u64, out: &mut Vec<(u64, u8)>) -> u64 {
        while let Some(&Reverse((at, id, p))) = self.heap.peek() {
            if at > now {
                return at;
            }
            self.heap.pop();
            out.push((id, p));
        }
        u64::MAX
    }

    /// Keeps the entries `live` says are still ready; the next compaction is
    /// asked for when the heap has doubled since.
    pub(crate) fn retain(&mut self, mut live: impl FnMut(u64, u8) -> bool) {
        self.heap.retain(|Reverse((_, id, p))| live(*id, *p));
        self.limit = (2 * self.heap.len()).max(1024);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
