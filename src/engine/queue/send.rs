//! The send path: ids (per-thread blocks, durable reservations), admission
//! (capacity, quotas, waiting for room), recording persistent messages, and
//! placing a message on its lane or the delay heap; putting back what
//! recovery found.

use super::*;

impl QueueCore {
    /// A new message id. Unique within the queue and increasing per producer thread:
    /// each thread reserves a block of [`ID_BLOCK`] ids, so producers never contend
    /// on one counter. With `strict_fifo` ids are taken one by one (increasing in
    /// send order queue-wide).
    ///
    /// On a durable storage every id handed out is below a durably recorded
    /// high-water mark ([`reserve_ids`](Self::reserve_ids)), so no id is
    /// handed out again after a restart; failing to record one fails the call.
    #[inline]
    pub(crate) fn next_id(&self) -> Result<u64> {
        if self.opts.strict_fifo {
            let id = self.ids.fetch_add(1, Relaxed);
            self.ensure_reserved(id + 1)?;
            return Ok(id);
        }
        ID_CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if let Some(e) = c.iter_mut().find(|e| e.0 == self.serial) {
                if e.1 < e.2 {
                    e.1 += 1;
                    return Ok(e.1 - 1);
                }
                let start = self.ids.fetch_add(ID_BLOCK, Relaxed);
                // The block is cached only once it is reserved.
                self.ensure_reserved(start + ID_BLOCK)?;
                *e = (self.serial, start + 1, start + ID_BLOCK);
                return Ok(start);
            }
            let start = self.ids.fetch_add(ID_BLOCK, Relaxed);
            self.ensure_reserved(start + ID_BLOCK)?;
            c.rotate_right(1);
            c[0] = (self.serial, start + 1, start + ID_BLOCK);
            Ok(start)
        })
    }

    /// Makes sure ids below `end` are durably reserved.
    #[inline]
    pub(super) fn ensure_reserved(&self, end: u64) -> Result<()> {
        if end <= self.ids_durable.load(Acquire) {
            return Ok(());
        }
        self.reserve_ids(end)
    }

    /// Records that ids below `end` + [`ID_RESERVE`] are used (a `NextId`
    /// record): one record per [`ID_RESERVE`] ids, whether the messages are
    /// persistent or not. After a restart ids continue from the reserved mark.
    #[cold]
    pub(super) fn reserve_ids(&self, end: u64) -> Result<()> {
        let _g = self.ids_lock.lock();
        if end <= self.ids_durable.load(Acquire) {
            return Ok(());
        }
        let upto = end.saturating_add(ID_RESERVE);
        self.record(Record::NextId {
            namespace: &self.ns.name,
            queue: &self.name,
            next_id: upto,
        })?;
        self.ids_durable
            .store(upto, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Checks a message and makes its node. The send time comes from the coarse
    /// clock (it only feeds `oldest_age`); TTL and delay deadlines from the precise one.
    ///
    /// With `copy`, the body is `copy` (copied when the node is made, see
    /// [`pool::make`]) and `msg`'s own body must be empty.
    pub(super) fn build(
        &self,
        msg: Message,
        copy: Option<&[u8]>,
        now: &mut LazyNow<'_>,
    ) -> Result<(Node, Option<u64>)> {
        let priority = msg.priority.unwrap_or(self.opts.default_priority);
        if priority > MAX_PRIORITY {
            return Err(Error::InvalidArgument(format!(
                "priority {priority} is outside 0..={MAX_PRIORITY}"
            )));
        }
        debug_assert!(copy.is_none() || msg.body.is_empty());
        let size = msg.size() + copy.map_or(0, |b| b.len() as u64);
        let limit = self.ns.quotas.max_message_size;
        if size > limit {
            return Err(Error::MessageTooLarge { size, limit });
        }
        if let Some(cap) = self.cap_bytes.limit() {
            if size > cap {
                return Err(Error::MessageTooLarge { size, limit: cap });
            }
        }
        let ttl = msg.ttl.or(self.opts.default_ttl);
        let delay = msg
            .delay
            .or(self.opts.default_delay)
            .map(nanos)
            .filter(|d| *d > 0);
        let precise = if ttl.is_some() || delay.is_some() {
            now.get()
        } else {
            0
        };
        let node = Node {
            id: 0,
            priority,
            persistent: msg.persistent.unwrap_or(self.opts.persistent),
            body: msg.body.into_boxed_slice(),
            extra: Extra::new(msg.headers, msg.name, msg.correlation_id),
            enqueued_at: if precise != 0 { precise } else { now.coarse() },
            expires_at: ttl.map_or(u64::MAX, |t| precise.saturating_add(nanos(t))),
            size,
            deliveries: AtomicU32::new(0),
        };
        Ok((node, delay.map(|d| precise.saturating_add(d))))
    }

    /// Reserves room for `n` messages of `bytes` in all: queue capacity (waiting as
    /// `on_full` says), then the namespace quotas (never waiting). A wait ends
    /// with [`Error::Closed`] when the queue closes or `cancel` is set (and the
    /// waiters woken, see [`QueueCore::wake_all`]).
    pub(super) fn admit(
        &self,
        n: u64,
        bytes: u64,
        on_full: OnFull,
        cancel: Option<&AtomicBool>,
    ) -> Result<()> {
        if self.cap_msgs.is_limited() || self.cap_bytes.is_limited() {
            if n > self.cap_msgs.limit().unwrap_or(u64::MAX) {
                return Err(Error::InvalidArgument(format!(
                    "a batch of {n} messages can never fit a queue of capacity {}",
                    self.cap_msgs.limit().unwrap_or(0)
                )));
            }
            if bytes > self.cap_bytes.limit().unwrap_or(u64::MAX) {
                return Err(Error::MessageTooLarge {
                    size: bytes,
                    limit: self.cap_bytes.limit().unwrap_or(0),
                });
            }
            let deadline = match on_full {
                OnFull::Timeout(d) => Some(self.clock.now().saturating_add(nanos(d))),
                _ => None,
            };
            let take = || {
                if self.cap_msgs.try_take(n) {
                    if self.cap_bytes.try_take(bytes) {
                        return true;
                    }
                    self.cap_msgs.give(n);
                }
                false
            };
            let mut swept = false;
            let mut backoff = Backoff::new();
            while !take() {
                if !swept {
                    // Expired messages (and leases that dead-letter) may be holding
                    // the room: collect them before calling the queue full.
                    swept = true;
                    let now = self.clock.now();
                    self.maintain(now);
                    self.sweep_expired(now);
                    continue;
                }
                if matches!(on_full, OnFull::Reject) {
                    return Err(Error::Full);
                }
                if !backoff.is_completed() {
                    // Consumers free room continuously under load: spin briefly
                    // before parking, so a full queue costs no syscall per message.
                    backoff.snooze();
                    continue;
                }
                if n > 1 {
                    self.batch_waiters.fetch_add(1, SeqCst);
                }
                let t = self.not_full.prepare();
                let leave = |this: &Self| {
                    if n > 1 {
                        this.batch_waiters.fetch_sub(1, SeqCst);
                    }
                };
                if take() {
                    leave(self);
                    self.not_full.cancel(t);
                    break;
                }
                if self.is_closed() || cancel.is_some_and(|c| c.load(SeqCst)) {
                    self.not_full.cancel(t);
                    leave(self);
                    return Err(Error::Closed);
                }
                let now = self.clock.now();
                if deadline.is_some_and(|dl| now >= dl) {
                    self.not_full.cancel(t);
                    leave(self);
                    return Err(Error::Timeout);
                }
                // Wake at the deadline, or when a message may expire or a lease end.
                let wake_at = deadline
                    .unwrap_or(u64::MAX)
                    .min(self.min_expiry.load(SeqCst))
                    .min(self.next_due.load(SeqCst));
                let limit = if wake_at == u64::MAX {
                    None
                } else {
                    self.clock.park_limit(wake_at.saturating_sub(now).max(1))
                };
                // Woken for one freed slot: the loop retries at once; if another
                // sender took the slot first, the room is used and nothing is lost.
                self.not_full.wait(t, limit);
                leave(self);
                swept = false;
                backoff = Backoff::new();
            }
        }
        let ns = &self.ns;
        let quota = |q: &'static str, b: &Budget| Error::QuotaExceeded {
            namespace: ns.name.clone(),
            quota: q,
            limit: b.limit().unwrap_or(0),
        };
        let err = if !ns.msgs.try_take(n) {
            Some(quota("max_messages", &ns.msgs))
        } else if !ns.bytes.try_take(bytes) {
            ns.msgs.give(n);
            Some(quota("max_bytes", &ns.bytes))
        } else {
            None
        };
        if let Some(e) = err {
            self.unadmit(n, bytes);
            return Err(e);
        }
        Ok(())
    }

    pub(super) fn unadmit(&self, n: u64, bytes: u64) {
        if self.cap_msgs.is_limited() || self.cap_bytes.is_limited() {
            self.cap_msgs.give(n);
            self.cap_bytes.give(bytes);
            // One freed message makes room for one sender, unless a batch (or a
            // byte-limited send, whose need is unknown here) waits: then all look.
            if n == 1 && self.batch_waiters.load(SeqCst) == 0 && !self.cap_bytes.is_limited() {
                self.not_full.notify_one();
            } else {
                self.not_full.notify_all();
            }
        }
    }

    /// A message left the queue for good: give its room back.
    #[inline]
    pub(super) fn release(&self, node: &Node, home: usize) {
        self.release_size(node.size, home);
    }

    #[inline]
    pub(super) fn release_size(&self, size: u64, home: usize) {
        bump(&self.c(home).bytes_out, size);
        self.ns.msgs.give(1);
        self.ns.bytes.give(size);
        self.unadmit(1, size);
    }

    pub(super) fn record(&self, r: Record<'_>) -> Result<()> {
        self.storage.append(&r)
    }

    pub(super) fn record_enqueued(&self, node: &Node, due: Option<u64>) -> Result<()> {
        self.record(Record::Enqueued {
            namespace: &self.ns.name,
            queue: &self.name,
            message: node,
            deliver_at: due,
        })
    }

    /// Records a persistent message's delivery count. A failure only means the
    /// count may read lower after a restart.
    pub(super) fn record_delivered(&self, node: &Node, deliveries: u32) {
        if node.persistent {
            let _ = self.record(Record::Delivered {
                namespace: &self.ns.name,
                queue: &self.name,
                id: node.id,
                deliveries,
            });
        }
    }

    /// Records a removal where nobody can be told of a failure (expiry, purge,
    /// cancel, deletion): at worst the message comes back after a restart
    /// (at-least-once).
    pub(super) fn record_removed(&self, node: &Node, reason: RemoveReason) {
        let _ = self.record_removed_id(node.id, node.persistent, reason);
    }

    /// Records that a persistent message is gone. The message is gone from memory
    /// whatever the backend says; an error means it may come back after a restart,
    /// and a caller that reports success (an ack) must return it instead.
    pub(super) fn record_removed_id(
        &self,
        id: u64,
        persistent: bool,
        reason: RemoveReason,
    ) -> Result<()> {
        // A deleted queue's messages are covered by its `QueueDeleted` record
        // (written first); a record per message would be redundant, and could
        // name a message of a queue created again under the same name.
        if persistent && reason != RemoveReason::QueueDeleted {
            self.record(Record::Removed {
                namespace: &self.ns.name,
                queue: &self.name,
                id,
                reason,
            })?;
        }
        Ok(())
    }

    /// Sends one message. A wait for room ends with [`Error::Closed`] once
    /// `cancel` is set and the waiters woken.
    pub(crate) fn send_one(
        &self,
        msg: Message,
        on_full: OnFull,
        cancel: Option<&AtomicBool>,
    ) -> Result<u64> {
        self.send_built(msg, None, on_full, cancel)
    }

    /// Sends a message with nothing set but a body copied from `body`. The copy
    /// goes into a recycled node's buffer when one of that length is at hand,
    /// so fixed-size messages from C or Python cost no allocation.
    pub(crate) fn send_copy(
        &self,
        body: &[u8],
        on_full: OnFull,
        cancel: Option<&AtomicBool>,
    ) -> Result<u64> {
        self.send_built(Message::default(), Some(body), on_full, cancel)
    }

    #[inline]
    pub(super) fn send_built(
        &self,
        msg: Message,
        copy: Option<&[u8]>,
        on_full: OnFull,
        cancel: Option<&AtomicBool>,
    ) -> Result<u64> {
        self.check_open()?;
        let (node, due) = self.build(msg, copy, &mut LazyNow::new(&*self.clock))?;
        self.admit(1, node.size, on_full, cancel)?;
        self.commit(node, copy, due, home_shard(), true, true)
    }

    /// Sends a batch: all are admitted together or none is. Its persistent
    /// messages are recorded as one journal unit (a `Group` record when there
    /// are several, synced once): after a crash the batch is there whole or
    /// not at all. A storage error refuses the whole batch.
    pub(crate) fn send(
        &self,
        msgs: Vec<Message>,
        on_full: OnFull,
        cancel: Option<&AtomicBool>,
    ) -> Result<Vec<u64>> {
        self.check_open()?;
        let mut now = LazyNow::new(&*self.clock);
        let built = msgs
            .into_iter()
            .map(|m| self.build(m, None, &mut now))
            .collect::<Result<Vec<_>>>()?;
        let n = built.len() as u64;
        if n == 0 {
            return Ok(Vec::new());
        }
        let bytes: u64 = built.iter().map(|(node, _)| node.size).sum();
        self.admit(n, bytes, on_full, cancel)?;
        let refuse = |nodes: Vec<(Arc<Node>, Option<u64>)>, e: Error| {
            self.ns.msgs.give(n);
            self.ns.bytes.give(bytes);
            self.unadmit(n, bytes);
            for (node, _) in nodes {
                pool::recycle(node);
            }
            Err(e)
        };
        let mut nodes = Vec::with_capacity(built.len());
        for (mut node, due) in built {
            match self.next_id() {
                Ok(id) => node.id = id,
                Err(e) => return refuse(nodes, e),
            }
            nodes.push((pool::make(node, None), due));
        }
        let mut recs: Vec<Record<'_>> = nodes
            .iter()
            .filter(|(node, _)| node.persistent)
            .map(|(node, due)| Record::Enqueued {
                namespace: &self.ns.name,
                queue: &self.name,
                message: node,
                deliver_at: *due,
            })
            .collect();
        let recorded = match recs.len() {
            0 => Ok(()),
            1 => self.record(recs.pop().expect("one")),
            _ => self.record(Record::Group(&recs)),
        };
        drop(recs);
        if let Err(e) = recorded {
            return refuse(nodes, e);
        }
        let home = home_shard();
        let ids: Vec<u64> = nodes.iter().map(|(node, _)| node.id).collect();
        for (node, due) in nodes {
            self.place(node, due, home, n == 1);
        }
        // Counted once for the batch (two counter bumps instead of two per message).
        let c = self.c(home);
        bump(&c.sent, n);
        bump(&c.bytes_in, bytes);
        if n > 1 {
            self.not_empty.notify_all();
        }
        Ok(ids)
    }

    /// Gives an admitted message its id, records it if persistent, and queues it
    /// (counting it as sent if `count`). On a storage error its room is given back.
    #[inline]
    pub(super) fn commit(
        &self,
        mut node: Node,
        copy: Option<&[u8]>,
        due: Option<u64>,
        home: usize,
        notify: bool,
        count: bool,
    ) -> Result<u64> {
        node.id = match self.next_id() {
            Ok(id) => id,
            Err(e) => {
                self.ns.msgs.give(1);
                self.ns.bytes.give(node.size);
                self.unadmit(1, node.size);
                return Err(e);
            }
        };
        let node = pool::make(node, copy);
        if node.persistent {
            if let Err(e) = self.record_enqueued(&node, due) {
                self.ns.msgs.give(1);
                self.ns.bytes.give(node.size);
                self.unadmit(1, node.size);
                pool::recycle(node);
                return Err(e);
            }
        }
        let id = node.id;
        if count {
            self.enqueue(node, due, home, notify);
        } else {
            self.place(node, due, home, notify);
        }
        Ok(id)
    }

    pub(super) fn enqueue(&self, node: Arc<Node>, due: Option<u64>, home: usize, notify: bool) {
        let c = self.c(home);
        bump(&c.sent, 1);
        bump(&c.bytes_in, node.size);
        self.place(node, due, home, notify);
    }

    /// [`enqueue`](Self::enqueue) without counting it as sent.
    pub(super) fn place(&self, node: Arc<Node>, due: Option<u64>, home: usize, notify: bool) {
        match due {
            Some(due) => {
                bump(&self.c(home).sent_delayed, 1);
                self.delay(node, due);
            }
            None => self.push_ready(node, home, notify),
        }
    }

    pub(super) fn delay(&self, node: Arc<Node>, due: u64) {
        let (expires_at, enqueued_at) = (node.expires_at, node.enqueued_at);
        self.delayed.lock().insert(due, node);
        self.note_expiry(expires_at);
        self.note_added(enqueued_at);
        self.note_due(due);
    }

    #[inline]
    pub(super) fn push_ready(&self, node: Arc<Node>, home: usize, notify: bool) {
        let p = node.priority;
        let lane = self.lane(p);
        let bit = 1u16 << p;
        if self.used_prios.load(Relaxed) & bit == 0 {
            self.used_prios.fetch_or(bit, AcqRel);
        }
        let (id, expires_at, enqueued_at) = (node.id, node.expires_at, node.enqueued_at);
        lane.push(home, node);
        // After the push (a sweep or compaction that misses the message in the
        // lane misses its entry too), before `note_expiry` (a sweep that reset
        // `min_expiry` before it sees the entry).
        if expires_at != u64::MAX {
            self.enter_expiry(expires_at, id, p, home);
            self.note_expiry(expires_at);
        }
        self.note_added(enqueued_at);
        if notify {
            self.not_empty.notify_one();
        }
        self.watch_raise();
    }

    #[inline]
    pub(super) fn note_expiry(&self, t: u64) {
        if t < self.min_expiry.load(Relaxed) && t < self.min_expiry.fetch_min(t, SeqCst) {
            // The broker's ticker sweeps it when it expires (a watched queue's
            // descriptor must clear then, and its room be given back).
            self.ticker.schedule(t);
        }
    }

    /// A message enqueued at `t` is held from now on: lowers `oldest_added`
    /// (one load of a line written only when it is lowered: after the first
    /// message since `stats` last computed the oldest, nothing is written).
    /// Called after the message is placed (see `stats`).
    #[inline]
    pub(super) fn note_added(&self, t: u64) {
        if t < self.oldest_added.load(Relaxed) {
            self.oldest_added.fetch_min(t, SeqCst);
        }
    }

    /// Enters a ready message with a TTL in its producer's expiry heap; drops
    /// the heap's stale entries when they may dominate.
    fn enter_expiry(&self, expires_at: u64, id: u64, priority: u8, home: usize) {
        let mut heap = self.ttl[home & self.mask].lock();
        if heap.push(expires_at, id, priority) {
            self.compact_expiry(&mut heap);
        }
    }

    /// Drops the entries of `heap` (locked by the caller) whose message is
    /// not ready any more. The caller holds the heap, so everything it holds
    /// was pushed to its lane before: the drained stashes show which are
    /// still there (lock order: expiry heap, then stash; nothing takes them
    /// the other way round). O(ready messages); asked for only when the heap
    /// has doubled since the last time.
    pub(super) fn compact_expiry(&self, heap: &mut ExpiryHeap) {
        let stashes: Vec<_> = self
            .lanes
            .iter()
            .map(|l| l.get().map(|l| l.stash()))
            .collect();
        heap.retain(|id, p| {
            stashes[p as usize]
                .as_ref()
                .is_some_and(|st| st.contains_key(&id))
        });
    }

    /// Lowers `next_due` to `t` if it is earlier. Sleeping consumers computed how
    /// long to sleep from the old value, so they are woken to look again.
    #[inline]
    pub(super) fn note_due(&self, t: u64) {
        if t < self.next_due.load(SeqCst) && t < self.next_due.fetch_min(t, SeqCst) {
            self.not_empty.notify_all();
            // The broker's ticker runs it on time even if nobody calls in.
            self.ticker.schedule(t);
        }
    }

    /// Ids below `next` were used before a restart: never hand them out again.
    pub(crate) fn continue_ids(&self, next: u64) {
        self.ids.fetch_max(next, Relaxed);
        // Recovered from the journal: durably used already.
        self.ids_durable.fetch_max(next, AcqRel);
    }

    /// Puts back a message found by recovery (already in the journal): never
    /// refused; later ids continue after its id. A message that has used up its
    /// `max_deliveries` (its last delivery's lease was ended by the restart, as
    /// by a lease expiry) is dead-lettered instead of delivered again.
    pub(crate) fn restore(&self, node: Arc<Node>, deliver_at: Option<u64>) {
        self.continue_ids(node.id + 1);
        self.ns.msgs.force_take(1);
        self.ns.bytes.force_take(node.size);
        self.cap_msgs.force_take(1);
        self.cap_bytes.force_take(node.size);
        let home = home_shard();
        let d = node.deliveries.load(Relaxed);
        if let Some(max) = self.opts.max_deliveries.filter(|max| d >= *max) {
            let reason =
                format!("lease ended by a restart; delivered {d} times (max_deliveries {max})");
            return self.dead_letter(node, &reason, home);
        }
        let due = deliver_at.filter(|d| *d > self.clock.now());
        self.enqueue(node, due, home, true);
    }

    /// Puts back every message recovery found for this queue, in journal
    /// order, each as [`restore`](Self::restore) would — but the ready ones
    /// go straight into their lane's stash, built at once from their id order
    /// (the state a `restore` per message followed by
    /// [`order_ready`](Self::order_ready) leaves, without a push, a pop and a
    /// map insert per message), their budgets and counters taken once.
    pub(crate) fn restore_all(&self, msgs: Vec<(Arc<Node>, Option<u64>)>) {
        let home = home_shard();
        let now = self.clock.now();
        let mut ready: [Vec<(u64, Arc<Node>)>; PRIORITIES] = Default::default();
        let (mut n, mut bytes, mut next, mut oldest) = (0u64, 0u64, 0u64, u64::MAX);
        let mut ttl = Vec::new();
        for (node, deliver_at) in msgs {
            let d = node.deliveries.load(Relaxed);
            let due = deliver_at.filter(|d| *d > now);
            if due.is_some() || self.opts.max_deliveries.is_some_and(|max| d >= max) {
                self.restore(node, deliver_at);
                continue;
            }
            n += 1;
            bytes += node.size;
            next = next.max(node.id + 1);
            oldest = oldest.min(node.enqueued_at);
            if node.expires_at != u64::MAX {
                ttl.push((node.expires_at, node.id, node.priority));
            }
            ready[node.priority as usize].push((node.id, node));
        }
        if n == 0 {
            return;
        }
        self.continue_ids(next);
        self.ns.msgs.force_take(n);
        self.ns.bytes.force_take(bytes);
        self.cap_msgs.force_take(n);
        self.cap_bytes.force_take(bytes);
        let c = self.c(home);
        bump(&c.sent, n);
        bump(&c.bytes_in, bytes);
        for (p, mut v) in ready.into_iter().enumerate() {
            if v.is_empty() {
                continue;
            }
            // Mostly in order already (a linear pass then).
            v.sort_by_key(|(id, _)| *id);
            // Built at once from sorted keys (one pass), then moved in whole.
            let mut built: std::collections::BTreeMap<u64, Arc<Node>> = v.into_iter().collect();
            self.used_prios.fetch_or(1 << p, AcqRel);
            self.lane(p as u8).stash().append(&mut built);
        }
        // After the messages are in their lanes (see `push_ready`).
        for (expires_at, id, p) in ttl {
            self.enter_expiry(expires_at, id, p, home);
            self.note_expiry(expires_at);
        }
        self.note_added(oldest);
        self.not_empty.notify_all();
        self.watch_raise();
    }
}
