//! The reference model: a single-threaded mirror of one queue and its
//! dead-letter queue that predicts every result (see the rules in `main.rs`).

use super::*;

/// One priority level: an id-ordered stash (filled by admin operations) that is
/// emptied first, then the FIFO of ids in the order they became ready.
#[derive(Default, Debug)]
pub(super) struct MLane {
    pub(super) stash: BTreeSet<u64>,
    pub(super) fifo: VecDeque<u64>,
}

impl MLane {
    pub(super) fn push(&mut self, id: u64) {
        self.fifo.push_back(id);
    }
    pub(super) fn pop(&mut self) -> Option<u64> {
        self.stash.pop_first().or_else(|| self.fifo.pop_front())
    }
    pub(super) fn stash(&mut self) {
        self.stash.extend(self.fifo.drain(..));
    }
    pub(super) fn len(&self) -> usize {
        self.stash.len() + self.fifo.len()
    }
    pub(super) fn drain_all(&mut self) -> Vec<u64> {
        let mut v: Vec<u64> = std::mem::take(&mut self.stash).into_iter().collect();
        v.extend(self.fifo.drain(..));
        v
    }
}

#[derive(Debug, Clone)]
pub(super) struct MMsg {
    pub(super) prio: u8,
    pub(super) body: Vec<u8>,
    pub(super) enqueued_at: u64,
    /// `u64::MAX`: never.
    pub(super) expires_at: u64,
    pub(super) size: u64,
    pub(super) deliveries: u32,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct MLease {
    pub(super) deadline: u64,
    /// Which delivery holds it (a new lease on the same message gets a new one).
    pub(super) generation: u64,
}

#[derive(Debug, Clone)]
pub(super) struct DlqMsg {
    pub(super) orig_id: u64,
    pub(super) prio: u8,
    pub(super) body: Vec<u8>,
    pub(super) reason: String,
    pub(super) deliveries: u32,
    pub(super) size: u64,
    pub(super) enqueued_at: u64,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Config {
    pub(super) shards: Option<usize>,
    pub(super) strict_fifo: bool,
    pub(super) lease_ms: u64,
    pub(super) max_deliveries: Option<u32>,
    pub(super) dlq: bool,
    pub(super) cap: Option<u64>,
    /// Call (and check) stats() after every step. Stats stash every lane when a
    /// message left since the last call, so these runs mostly exercise
    /// id-ordered delivery; the others exercise FIFO lanes.
    pub(super) stats_every_step: bool,
}

#[derive(Debug)]
pub(super) struct Model {
    pub(super) now: u64,
    pub(super) cfg: Config,
    /// Every message the queue holds (ready, delayed or leased), by id.
    pub(super) msgs: HashMap<u64, MMsg>,
    pub(super) lanes: [MLane; PRIOS],
    pub(super) delayed: BTreeSet<(u64, u64)>,
    pub(super) delayed_due: HashMap<u64, u64>,
    pub(super) leases: HashMap<u64, MLease>,
    /// The engine's lower bound on the expiry of ready messages (decides whether
    /// a sweep runs, and a sweep stashes every lane).
    pub(super) min_expiry: u64,
    /// Counters (the gauges are computed from the state).
    pub(super) st: QueueStats,
    pub(super) next_generation: u64,
    pub(super) dlq_lanes: [VecDeque<DlqMsg>; PRIOS],
    pub(super) dlq_st: QueueStats,
    /// The engine's expiry heap (one: a single thread, one home shard): an
    /// entry per ready message with a TTL, (expires_at, id, priority), left
    /// stale when the message leaves otherwise; a sweep stashes the lane of
    /// every due entry, stale or not.
    pub(super) ttl: BinaryHeap<Reverse<(u64, u64, u8)>>,
    /// Length past which the heap is compacted (stashing every lane).
    pub(super) ttl_limit: usize,
    /// Messages that had left the queue when stats last computed the oldest
    /// (stats stashes every lane when more have left since).
    pub(super) oldest_left: u64,
}

/// What the model expects of one delivery.
#[derive(Debug)]
pub(super) struct Expect {
    pub(super) id: u64,
    pub(super) count: u32,
    /// Lease generation when leased; `None` when auto-acked.
    pub(super) generation: Option<u64>,
    pub(super) prio: u8,
    pub(super) body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CancelErr {
    InvalidState,
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AdmitErr {
    InvalidArgument,
    Full,
}

pub(super) fn dlq_extra(reason: &str, orig_id: u64, deliveries: u32) -> u64 {
    ("x-dead-letter-reason".len()
        + reason.len()
        + "x-dead-letter-queue".len()
        + QUEUE.len()
        + "x-original-id".len()
        + orig_id.to_string().len()
        + "x-delivery-count".len()
        + deliveries.to_string().len()) as u64
}

impl Model {
    pub(super) fn new(cfg: Config) -> Self {
        Model {
            now: START,
            cfg,
            msgs: HashMap::new(),
            lanes: Default::default(),
            delayed: BTreeSet::new(),
            delayed_due: HashMap::new(),
            leases: HashMap::new(),
            min_expiry: u64::MAX,
            st: QueueStats::default(),
            next_generation: 1,
            dlq_lanes: Default::default(),
            dlq_st: QueueStats::default(),
            ttl: BinaryHeap::new(),
            ttl_limit: 1024,
            oldest_left: 0,
        }
    }

    pub(super) fn lease_ns(&self) -> u64 {
        self.cfg.lease_ms * MS
    }

    /// A send that finds the queue full first runs due timers and sweeps expired
    /// messages (they may be what holds the room), then decides.
    pub(super) fn admit(&mut self, n: usize) -> Result<(), AdmitErr> {
        if let Some(cap) = self.cfg.cap {
            if n as u64 > cap {
                return Err(AdmitErr::InvalidArgument);
            }
            if self.msgs.len() as u64 + n as u64 > cap {
                self.maintain();
                self.sweep();
            }
            if self.msgs.len() as u64 + n as u64 > cap {
                return Err(AdmitErr::Full);
            }
        }
        Ok(())
    }

    /// A message the engine accepted with this id.
    pub(super) fn sent(&mut self, id: u64, m: MMsg, delay: u64) {
        self.st.sent += 1;
        self.msgs.insert(id, m);
        if delay > 0 {
            self.delay(id, self.now + delay);
        } else {
            self.push_ready(id);
        }
    }

    pub(super) fn delay(&mut self, id: u64, due: u64) {
        self.min_expiry = self.min_expiry.min(self.msgs[&id].expires_at);
        self.delayed.insert((due, id));
        self.delayed_due.insert(id, due);
    }

    pub(super) fn push_ready(&mut self, id: u64) {
        let m = &self.msgs[&id];
        self.min_expiry = self.min_expiry.min(m.expires_at);
        let (prio, expires_at) = (m.prio, m.expires_at);
        self.lanes[prio as usize].push(id);
        if expires_at != u64::MAX {
            self.ttl.push(Reverse((expires_at, id, prio)));
            if self.ttl.len() > self.ttl_limit {
                for lane in self.lanes.iter_mut() {
                    lane.stash();
                }
                let lanes = &self.lanes;
                self.ttl
                    .retain(|Reverse((_, id, p))| lanes[*p as usize].stash.contains(id));
                self.ttl_limit = (2 * self.ttl.len()).max(1024);
            }
        }
    }

    pub(super) fn release(&mut self, id: u64) -> MMsg {
        self.msgs
            .remove(&id)
            .expect("model: released message is held")
    }

    /// Promotes due delayed messages, then expires due leases.
    pub(super) fn maintain(&mut self) {
        let now = self.now;
        while let Some(&(due, id)) = self.delayed.first() {
            if due > now {
                break;
            }
            self.delayed.pop_first();
            self.delayed_due.remove(&id);
            self.push_ready(id);
        }
        let mut expired: Vec<(u64, u64)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, l)| (l.deadline, *id))
            .collect();
        expired.sort_unstable();
        for (_, id) in expired {
            self.leases.remove(&id);
            self.requeue(id, 0, "lease expired");
        }
    }

    pub(super) fn requeue(&mut self, id: u64, delay: u64, why: &str) {
        let d = self.msgs[&id].deliveries;
        if let Some(max) = self.cfg.max_deliveries {
            if d >= max {
                let reason = format!("{why}; delivered {d} times (max_deliveries {max})");
                return self.dead_letter(id, reason);
            }
        }
        if delay > 0 {
            self.delay(id, self.now + delay);
        } else {
            self.push_ready(id);
        }
    }

    pub(super) fn dead_letter(&mut self, id: u64, reason: String) {
        self.st.dead_lettered += 1;
        let m = self.release(id);
        if self.cfg.dlq {
            self.dlq_st.sent += 1;
            let size = m.size + dlq_extra(&reason, id, m.deliveries);
            self.dlq_lanes[m.prio as usize].push_back(DlqMsg {
                orig_id: id,
                prio: m.prio,
                body: m.body,
                reason,
                deliveries: m.deliveries,
                size,
                enqueued_at: self.now,
            });
        }
    }

    /// Pops up to `max` ready messages, dropping (counting) expired ones.
    pub(super) fn take(&mut self, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for p in (0..PRIOS).rev() {
            while out.len() < max {
                let Some(id) = self.lanes[p].pop() else {
                    break;
                };
                if self.msgs[&id].expires_at <= self.now {
                    self.st.expired += 1;
                    self.release(id);
                    continue;
                }
                out.push(id);
            }
            if out.len() >= max {
                break;
            }
        }
        out
    }

    /// Delivers taken messages, as the engine's `deliver` does.
    pub(super) fn deliver(&mut self, ids: &[u64], auto_ack: bool) -> Vec<Expect> {
        self.st.received += ids.len() as u64;
        let mut out = Vec::new();
        for &id in ids {
            let m = self.msgs.get_mut(&id).expect("taken message is held");
            m.deliveries += 1;
            let d = m.deliveries;
            let (prio, body) = (m.prio, m.body.clone());
            if d > 1 {
                self.st.redelivered += 1;
            }
            let mut e = Expect {
                id,
                count: d,
                generation: None,
                prio,
                body,
            };
            if auto_ack {
                self.st.acked += 1;
                self.release(id);
                out.push(e);
            } else {
                let generation = self.next_generation;
                self.next_generation += 1;
                let deadline = self.now + self.lease_ns();
                self.leases.insert(
                    id,
                    MLease {
                        deadline,
                        generation,
                    },
                );
                e.generation = Some(generation);
                out.push(e);
            }
        }
        out
    }

    pub(super) fn receive(&mut self, max: usize, auto_ack: bool) -> Vec<Expect> {
        self.maintain();
        let ids = self.take(max);
        self.deliver(&ids, auto_ack)
    }

    pub(super) fn holds_lease(&self, id: u64, generation: u64) -> bool {
        matches!(self.leases.get(&id), Some(l) if l.generation == generation)
    }

    pub(super) fn settle(
        &mut self,
        id: u64,
        generation: u64,
        ack: bool,
        delay: u64,
    ) -> Result<(), Error> {
        // Due timers run first: a lease past its deadline cannot be settled.
        self.maintain();
        if !self.holds_lease(id, generation) {
            return Err(Error::LeaseExpired { id });
        }
        self.leases.remove(&id);
        if ack {
            self.st.acked += 1;
            self.release(id);
        } else {
            self.st.nacked += 1;
            self.requeue(id, delay, "nacked");
        }
        Ok(())
    }

    pub(super) fn extend(&mut self, id: u64, generation: u64, by: u64) -> Result<u64, Error> {
        self.maintain();
        if !self.holds_lease(id, generation) {
            return Err(Error::LeaseExpired { id });
        }
        let deadline = self.now + by;
        self.leases.get_mut(&id).expect("held").deadline = deadline;
        Ok(deadline)
    }

    pub(super) fn sweep(&mut self) {
        if self.min_expiry > self.now {
            return;
        }
        self.min_expiry = u64::MAX;
        let now = self.now;
        let mut due = Vec::new();
        while let Some(&Reverse((at, id, p))) = self.ttl.peek() {
            if at > now {
                break;
            }
            self.ttl.pop();
            due.push((id, p));
        }
        let mut min = self.ttl.peek().map_or(u64::MAX, |Reverse((at, _, _))| *at);
        due.sort_unstable_by_key(|&(id, p)| (p, id));
        for (i, &(id, p)) in due.iter().enumerate() {
            let lane = &mut self.lanes[p as usize];
            if i == 0 || due[i - 1].1 != p {
                lane.stash();
            }
            if lane.stash.remove(&id) {
                if self.msgs[&id].expires_at <= now {
                    self.st.expired += 1;
                    self.release(id);
                } else {
                    lane.stash.insert(id);
                }
            }
        }
        // Delayed messages whose TTL passed go too.
        let dead: Vec<(u64, u64)> = self
            .delayed
            .iter()
            .filter(|(_, id)| self.msgs[id].expires_at <= now)
            .copied()
            .collect();
        for (due, id) in dead {
            self.delayed.remove(&(due, id));
            self.delayed_due.remove(&id);
            self.st.expired += 1;
            self.release(id);
        }
        for (_, id) in &self.delayed {
            min = min.min(self.msgs[id].expires_at);
        }
        self.min_expiry = min;
    }

    pub(super) fn peek(&mut self, max: usize) -> Vec<u64> {
        self.maintain();
        self.sweep();
        let mut out = Vec::new();
        for p in (0..PRIOS).rev() {
            if out.len() >= max {
                break;
            }
            self.lanes[p].stash();
            let n = max - out.len();
            out.extend(self.lanes[p].stash.iter().take(n).copied());
        }
        out
    }

    pub(super) fn cancel(&mut self, id: u64) -> Result<(), CancelErr> {
        if let Some(due) = self.delayed_due.remove(&id) {
            self.delayed.remove(&(due, id));
            self.st.cancelled += 1;
            self.release(id);
            return Ok(());
        }
        for p in 0..PRIOS {
            self.lanes[p].stash();
            if self.lanes[p].stash.remove(&id) {
                self.st.cancelled += 1;
                self.release(id);
                return Ok(());
            }
        }
        if self.leases.contains_key(&id) {
            Err(CancelErr::InvalidState)
        } else {
            Err(CancelErr::NotFound)
        }
    }

    pub(super) fn purge(&mut self) -> u64 {
        let mut ids = Vec::new();
        for lane in self.lanes.iter_mut() {
            ids.extend(lane.drain_all());
        }
        ids.extend(self.delayed_due.drain().map(|(id, _)| id));
        self.delayed.clear();
        for &id in &ids {
            self.release(id);
        }
        self.st.purged += ids.len() as u64;
        if !self.ttl.is_empty() {
            self.ttl.clear();
            self.ttl_limit = 1024;
        }
        ids.len() as u64
    }

    pub(super) fn stats(&mut self) -> QueueStats {
        self.maintain();
        self.sweep();
        let st = &self.st;
        let left = st.acked + st.dead_lettered + st.expired + st.cancelled + st.purged;
        if left != self.oldest_left {
            for lane in self.lanes.iter_mut() {
                lane.stash();
            }
            self.oldest_left = left;
        }
        let oldest = self.msgs.values().map(|m| m.enqueued_at).min();
        QueueStats {
            ready: self.lanes.iter().map(|l| l.len() as u64).sum(),
            leased: self.leases.len() as u64,
            delayed: self.delayed_due.len() as u64,
            bytes: self.msgs.values().map(|m| m.size).sum(),
            oldest_age: oldest.map(|o| Duration::from_nanos(self.now - o)),
            ..self.st
        }
    }

    pub(super) fn dlq_receive(&mut self) -> Option<DlqMsg> {
        let m = self
            .dlq_lanes
            .iter_mut()
            .rev()
            .find_map(|l| l.pop_front())?;
        self.dlq_st.received += 1;
        self.dlq_st.acked += 1;
        Some(m)
    }

    pub(super) fn dlq_stats(&self) -> QueueStats {
        let all = self.dlq_lanes.iter().flatten();
        QueueStats {
            ready: all.clone().count() as u64,
            bytes: all.clone().map(|m| m.size).sum(),
            oldest_age: all
                .map(|m| m.enqueued_at)
                .min()
                .map(|o| Duration::from_nanos(self.now - o)),
            ..self.dlq_st
        }
    }

    /// The next time something happens by itself (a delay ends, a lease ends, a
    /// ready message expires), if after now.
    pub(super) fn next_event(&self) -> Option<u64> {
        let delays = self.delayed.first().map(|&(due, _)| due);
        let leases = self.leases.values().map(|l| l.deadline).min();
        let expiry = self
            .lanes
            .iter()
            .flat_map(|l| l.stash.iter().chain(l.fifo.iter()))
            .map(|id| self.msgs[id].expires_at)
            .min();
        [delays, leases, expiry]
            .into_iter()
            .flatten()
            .filter(|&t| t > self.now && t != u64::MAX)
            .min()
    }
}
