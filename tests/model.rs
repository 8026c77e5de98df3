//! Randomized model test: long seeded sequences of operations on one queue (and
//! its dead-letter queue), checked after every step against a single-threaded
//! reference model written here.
//!
//! The model predicts exactly which message every receive returns, the result
//! of every ack / nack / extend / cancel / purge / peek / send, and the full
//! [`QueueStats`] of both queues. It mirrors the engine's documented ordering:
//!
//! * highest priority first;
//! * within a priority, a lane is a FIFO of ids in the order they became ready
//!   (a single producer thread sends in increasing id order; messages promoted
//!   from a delay or returned by nack / lease expiry go to the back);
//! * timers (delay promotion, lease expiry) fire only in `maintain`, which runs
//!   at the start of receive, ack / nack, extend, peek and stats, and when a send
//!   finds the queue full: first the due delayed messages in (due, id) order, then
//!   the expired leases in (deadline, id) order;
//! * admin operations (peek, stats, cancel, purge, TTL sweeps) drain a lane into
//!   an id-ordered "stash" that consumers empty first, so after one of them the
//!   lane delivers in id order (see `src/sync/lane.rs`);
//! * TTL expiry is lazy: an expired ready message is counted when a pop meets it
//!   or when a sweep (peek, stats, a send that finds the queue full; only if the
//!   lower bound `min_expiry` says one may have expired) removes it, ready or
//!   delayed. Until then it can be cancelled or purged.
//!
//! Reproduce a failure with `MODEL_SEED=<seed> [MODEL_STEPS=<n>] cargo test
//! --release --test model -- <test>` (every assertion message names the seed,
//! the step, the test and the last operations).

use libqueue::{
    Broker, BrokerOptions, Delivery, Error, ManualClock, Message, MessageView, OnFull, Queue,
    QueueOptions, QueueStats, Wait,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

const MS: u64 = 1_000_000;
const START: u64 = 1_000_000_000;
const PRIOS: usize = 10;
const QUEUE: &str = "work";
const DLQ: &str = "dlq";

// ---------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------

/// One priority level: an id-ordered stash (filled by admin operations) that is
/// emptied first, then the FIFO of ids in the order they became ready.
#[derive(Default, Debug)]
struct MLane {
    stash: BTreeSet<u64>,
    fifo: VecDeque<u64>,
}

impl MLane {
    fn push(&mut self, id: u64) {
        self.fifo.push_back(id);
    }
    fn pop(&mut self) -> Option<u64> {
        self.stash.pop_first().or_else(|| self.fifo.pop_front())
    }
    fn stash(&mut self) {
        self.stash.extend(self.fifo.drain(..));
    }
    fn len(&self) -> usize {
        self.stash.len() + self.fifo.len()
    }
    fn drain_all(&mut self) -> Vec<u64> {
        let mut v: Vec<u64> = std::mem::take(&mut self.stash).into_iter().collect();
        v.extend(self.fifo.drain(..));
        v
    }
}

#[derive(Debug, Clone)]
struct MMsg {
    prio: u8,
    body: Vec<u8>,
    enqueued_at: u64,
    /// `u64::MAX`: never.
    expires_at: u64,
    size: u64,
    deliveries: u32,
}

#[derive(Debug, Clone, Copy)]
struct MLease {
    deadline: u64,
    /// Which delivery holds it (a new lease on the same message gets a new one).
    generation: u64,
}

#[derive(Debug, Clone)]
struct DlqMsg {
    orig_id: u64,
    prio: u8,
    body: Vec<u8>,
    reason: String,
    deliveries: u32,
    size: u64,
    enqueued_at: u64,
}

#[derive(Debug, Clone, Copy)]
struct Config {
    shards: Option<usize>,
    strict_fifo: bool,
    lease_ms: u64,
    max_deliveries: Option<u32>,
    dlq: bool,
    cap: Option<u64>,
    /// Call (and check) stats() after every step. Stats stash every lane, so these
    /// runs mostly exercise id-ordered delivery; the others exercise FIFO lanes.
    stats_every_step: bool,
}

#[derive(Debug)]
struct Model {
    now: u64,
    cfg: Config,
    /// Every message the queue holds (ready, delayed or leased), by id.
    msgs: HashMap<u64, MMsg>,
    lanes: [MLane; PRIOS],
    delayed: BTreeSet<(u64, u64)>,
    delayed_due: HashMap<u64, u64>,
    leases: HashMap<u64, MLease>,
    /// The engine's lower bound on the expiry of ready messages (decides whether
    /// a sweep runs, and a sweep stashes every lane).
    min_expiry: u64,
    /// Counters (the gauges are computed from the state).
    st: QueueStats,
    next_generation: u64,
    dlq_lanes: [VecDeque<DlqMsg>; PRIOS],
    dlq_st: QueueStats,
}

/// What the model expects of one delivery.
#[derive(Debug)]
struct Expect {
    id: u64,
    count: u32,
    /// Lease generation when leased; `None` when auto-acked.
    generation: Option<u64>,
    prio: u8,
    body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelErr {
    InvalidState,
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdmitErr {
    InvalidArgument,
    Full,
}

fn dlq_extra(reason: &str, orig_id: u64, deliveries: u32) -> u64 {
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
    fn new(cfg: Config) -> Self {
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
        }
    }

    fn lease_ns(&self) -> u64 {
        self.cfg.lease_ms * MS
    }

    /// A send that finds the queue full first runs due timers and sweeps expired
    /// messages (they may be what holds the room), then decides.
    fn admit(&mut self, n: usize) -> Result<(), AdmitErr> {
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
    fn sent(&mut self, id: u64, m: MMsg, delay: u64) {
        self.st.sent += 1;
        self.msgs.insert(id, m);
        if delay > 0 {
            self.delay(id, self.now + delay);
        } else {
            self.push_ready(id);
        }
    }

    fn delay(&mut self, id: u64, due: u64) {
        self.min_expiry = self.min_expiry.min(self.msgs[&id].expires_at);
        self.delayed.insert((due, id));
        self.delayed_due.insert(id, due);
    }

    fn push_ready(&mut self, id: u64) {
        let m = &self.msgs[&id];
        self.min_expiry = self.min_expiry.min(m.expires_at);
        self.lanes[m.prio as usize].push(id);
    }

    fn release(&mut self, id: u64) -> MMsg {
        self.msgs
            .remove(&id)
            .expect("model: released message is held")
    }

    /// Promotes due delayed messages, then expires due leases.
    fn maintain(&mut self) {
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

    fn requeue(&mut self, id: u64, delay: u64, why: &str) {
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

    fn dead_letter(&mut self, id: u64, reason: String) {
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
    fn take(&mut self, max: usize) -> Vec<u64> {
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
    fn deliver(&mut self, ids: &[u64], auto_ack: bool) -> Vec<Expect> {
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

    fn receive(&mut self, max: usize, auto_ack: bool) -> Vec<Expect> {
        self.maintain();
        let ids = self.take(max);
        self.deliver(&ids, auto_ack)
    }

    fn holds_lease(&self, id: u64, generation: u64) -> bool {
        matches!(self.leases.get(&id), Some(l) if l.generation == generation)
    }

    fn settle(&mut self, id: u64, generation: u64, ack: bool, delay: u64) -> Result<(), Error> {
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

    fn extend(&mut self, id: u64, generation: u64, by: u64) -> Result<u64, Error> {
        self.maintain();
        if !self.holds_lease(id, generation) {
            return Err(Error::LeaseExpired { id });
        }
        let deadline = self.now + by;
        self.leases.get_mut(&id).expect("held").deadline = deadline;
        Ok(deadline)
    }

    fn sweep(&mut self) {
        if self.min_expiry > self.now {
            return;
        }
        self.min_expiry = u64::MAX;
        let now = self.now;
        let mut min = u64::MAX;
        for p in 0..PRIOS {
            self.lanes[p].stash();
            let dead: Vec<u64> = self.lanes[p]
                .stash
                .iter()
                .filter(|id| self.msgs[id].expires_at <= now)
                .copied()
                .collect();
            for id in dead {
                self.lanes[p].stash.remove(&id);
                self.st.expired += 1;
                self.release(id);
            }
            for id in &self.lanes[p].stash {
                min = min.min(self.msgs[id].expires_at);
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

    fn peek(&mut self, max: usize) -> Vec<u64> {
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

    fn cancel(&mut self, id: u64) -> Result<(), CancelErr> {
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

    fn purge(&mut self) -> u64 {
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
        ids.len() as u64
    }

    fn stats(&mut self) -> QueueStats {
        self.maintain();
        self.sweep();
        for lane in self.lanes.iter_mut() {
            lane.stash();
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

    fn dlq_receive(&mut self) -> Option<DlqMsg> {
        let m = self
            .dlq_lanes
            .iter_mut()
            .rev()
            .find_map(|l| l.pop_front())?;
        self.dlq_st.received += 1;
        self.dlq_st.acked += 1;
        Some(m)
    }

    fn dlq_stats(&self) -> QueueStats {
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
    fn next_event(&self) -> Option<u64> {
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

// ---------------------------------------------------------------------------
// The runner: drives the engine and the model side by side.
// ---------------------------------------------------------------------------

struct Held {
    d: Delivery,
    id: u64,
    generation: u64,
}

struct Runner {
    /// The `#[test]` running it (for the reproduce hint).
    test: &'static str,
    seed: u64,
    step: usize,
    rng: SmallRng,
    clock: Arc<ManualClock>,
    _broker: Broker,
    /// The data directory when running over the journal.
    journal: Option<tempfile::TempDir>,
    q: Queue,
    dlq: Option<Queue>,
    m: Model,
    held: Vec<Held>,
    /// Ids ever returned by send (for cancel targets).
    ids: Vec<u64>,
    last_id: u64,
    dlq_ids: BTreeSet<u64>,
    bodies: u64,
    /// Sends refused with `Error::Full`.
    full: u64,
    log: VecDeque<String>,
}

/// The message a send step builds, and what the model must remember of it.
struct Spec {
    msg: Message,
    prio: u8,
    ttl: Option<u64>,
    delay: u64,
    body: Vec<u8>,
    size: u64,
    valid: bool,
}

impl Runner {
    /// A fresh broker and queue with a configuration drawn from the seed;
    /// `cap` forces a capacity.
    fn new(test: &'static str, seed: u64, cap: Option<u64>) -> Self {
        Self::with_backend(test, seed, cap, false)
    }

    /// With `journal`, the broker keeps a data directory and the queue's
    /// messages are persistent: the same model must hold (the conformance of
    /// the journal backend), and the journal's live set must match it.
    fn with_backend(test: &'static str, seed: u64, cap: Option<u64>, journal: bool) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let max_deliveries = rng.gen_bool(0.8).then(|| rng.gen_range(1..=4));
        let cfg = Config {
            shards: match rng.gen_range(0..3) {
                0 => Some(1),
                1 => Some(4),
                _ => None,
            },
            strict_fifo: rng.gen_bool(0.15),
            lease_ms: rng.gen_range(50..=200),
            max_deliveries,
            dlq: max_deliveries.is_some() && rng.gen_bool(0.8),
            cap: {
                let drawn = rng.gen_bool(0.4).then(|| rng.gen_range(1..=16));
                cap.or(drawn)
            },
            stats_every_step: rng.gen_bool(0.3),
        };
        let clock = ManualClock::new(START);
        let dir = journal.then(|| tempfile::tempdir().expect("tempdir"));
        let mut bo = BrokerOptions::new().clock(clock.clone());
        if let Some(d) = &dir {
            bo = bo.data_dir(d.path()).segment_size(256 * 1024);
        }
        let broker = Broker::open(bo).expect("open broker");
        let mut o = QueueOptions::default()
            .persistent(journal)
            .lease_time(Duration::from_millis(cfg.lease_ms))
            .on_full(OnFull::Reject)
            .strict_fifo(cfg.strict_fifo);
        if let Some(s) = cfg.shards {
            o = o.shards(s);
        }
        if let Some(m) = cfg.max_deliveries {
            o = o.max_deliveries(m);
        }
        if cfg.dlq {
            o = o.dead_letter_queue(DLQ);
        }
        if let Some(c) = cfg.cap {
            o = o.max_messages(c);
        }
        let ns = broker.default_namespace().expect("default namespace");
        let q = ns.create_queue(QUEUE, o).expect("create queue");
        let dlq = cfg.dlq.then(|| ns.get_queue(DLQ).expect("dlq created"));
        Runner {
            test,
            seed,
            step: 0,
            rng,
            clock,
            _broker: broker,
            journal: dir,
            q,
            dlq,
            m: Model::new(cfg),
            held: Vec::new(),
            ids: Vec::new(),
            last_id: 0,
            dlq_ids: BTreeSet::new(),
            bodies: 0,
            full: 0,
            log: VecDeque::new(),
        }
    }

    /// Failure context: seed, step, configuration and the last operations.
    fn ctx(&self) -> String {
        let mut s = format!(
            "\n  seed {} step {} (reproduce: MODEL_SEED={} cargo test --release --test model -- {})\n  config {:?}\n  now +{} ms\n  last ops:",
            self.seed,
            self.step,
            self.seed,
            self.test,
            self.m.cfg,
            (self.m.now - START) / MS
        );
        for l in &self.log {
            let _ = write!(s, "\n    {l}");
        }
        s
    }

    fn note(&mut self, s: String) {
        if self.log.len() >= 40 {
            self.log.pop_front();
        }
        self.log.push_back(format!("#{} {s}", self.step));
    }

    fn gen_msg(&mut self) -> Spec {
        let r = &mut self.rng;
        self.bodies += 1;
        let mut body = format!("b{}", self.bodies).into_bytes();
        body.resize(body.len() + r.gen_range(0..16), b'.');
        let mut size = body.len() as u64;
        let mut msg = Message::new(body.clone());
        let mut valid = true;
        let prio = if r.gen_bool(0.1) {
            4 // the default priority
        } else if r.gen_bool(0.005) {
            valid = false;
            msg = msg.priority(10);
            10
        } else {
            let p = r.gen_range(0..=9);
            msg = msg.priority(p);
            p
        };
        let ttl = r.gen_bool(0.3).then(|| r.gen_range(0..=400) * MS);
        if let Some(t) = ttl {
            msg = msg.ttl(Duration::from_nanos(t));
        }
        let delay = if r.gen_bool(0.25) {
            let d = r.gen_range(0..=300) * MS;
            msg = msg.delay(Duration::from_nanos(d));
            d
        } else {
            0
        };
        if r.gen_bool(0.3) {
            let v = "v".repeat(r.gen_range(0..8));
            size += 1 + v.len() as u64;
            msg = msg.header("k", v);
        }
        if r.gen_bool(0.2) {
            size += 3;
            msg = msg.name("job");
        }
        Spec {
            msg,
            prio,
            ttl,
            delay,
            body,
            size,
            valid,
        }
    }

    fn accept(&mut self, id: u64, s: Spec) {
        assert!(
            id > self.last_id,
            "ids must increase in send order: {id} after {}{}",
            self.last_id,
            self.ctx()
        );
        self.last_id = id;
        self.ids.push(id);
        let now = self.m.now;
        let m = MMsg {
            prio: s.prio,
            body: s.body,
            enqueued_at: now,
            expires_at: s.ttl.map_or(u64::MAX, |t| now + t),
            size: s.size,
            deliveries: 0,
        };
        self.m.sent(id, m, s.delay);
    }

    fn op_send(&mut self) {
        let s = self.gen_msg();
        self.note(format!(
            "send prio {} ttl {:?} delay {} ms",
            s.prio,
            s.ttl.map(|t| t / MS),
            s.delay / MS
        ));
        let got = self.q.send_with(s.msg.clone(), OnFull::Reject);
        if !s.valid {
            assert!(
                matches!(got, Err(Error::InvalidArgument(_))),
                "priority 10: {got:?}{}",
                self.ctx()
            );
            return;
        }
        match self.m.admit(1) {
            Ok(()) => {
                let id = got.unwrap_or_else(|e| panic!("send failed: {e:?}{}", self.ctx()));
                self.note(format!("  -> id {id}"));
                self.accept(id, s);
            }
            Err(e) => {
                assert_eq!(e, AdmitErr::Full, "{}", self.ctx());
                assert_eq!(got, Err(Error::Full), "send when full{}", self.ctx());
                self.full += 1;
            }
        }
    }

    fn op_send_batch(&mut self) {
        let n = self.rng.gen_range(0..=5);
        let specs: Vec<Spec> = (0..n).map(|_| self.gen_msg()).collect();
        self.note(format!(
            "send_batch {:?}",
            specs
                .iter()
                .map(|s| (s.prio, s.ttl.map(|t| t / MS), s.delay / MS))
                .collect::<Vec<_>>()
        ));
        let got = self
            .q
            .send_batch_with(specs.iter().map(|s| s.msg.clone()), OnFull::Reject);
        if specs.iter().any(|s| !s.valid) {
            assert!(
                matches!(got, Err(Error::InvalidArgument(_))),
                "batch with priority 10: {got:?}{}",
                self.ctx()
            );
            return;
        }
        if n == 0 {
            assert_eq!(got, Ok(vec![]), "empty batch{}", self.ctx());
            return;
        }
        match self.m.admit(n) {
            Ok(()) => {
                let ids = got.unwrap_or_else(|e| panic!("send_batch failed: {e:?}{}", self.ctx()));
                assert_eq!(ids.len(), n, "{}", self.ctx());
                self.note(format!("  -> ids {ids:?}"));
                for (id, s) in ids.into_iter().zip(specs) {
                    self.accept(id, s);
                }
            }
            Err(AdmitErr::Full) => {
                assert_eq!(got, Err(Error::Full), "batch when full{}", self.ctx());
                self.full += 1;
            }
            Err(AdmitErr::InvalidArgument) => assert!(
                matches!(got, Err(Error::InvalidArgument(_))),
                "batch larger than capacity: {got:?}{}",
                self.ctx()
            ),
        }
    }

    /// Checks deliveries against the model's prediction and keeps the leased ones.
    fn check_deliveries(&mut self, got: Vec<Delivery>, want: Vec<Expect>) {
        let got_ids: Vec<u64> = got.iter().map(|d| d.id()).collect();
        let want_ids: Vec<u64> = want.iter().map(|w| w.id).collect();
        self.note(format!("  -> {got_ids:?} (model {want_ids:?})"));
        assert_eq!(got_ids, want_ids, "delivered ids{}", self.ctx());
        for (d, w) in got.into_iter().zip(want) {
            assert_eq!(
                (d.delivery_count(), d.is_leased(), d.priority(), d.body()),
                (w.count, w.generation.is_some(), w.prio, &w.body[..]),
                "delivery of {} (count, leased, priority, body){}",
                w.id,
                self.ctx()
            );
            if let Some(generation) = w.generation {
                assert_eq!(
                    d.lease_deadline(),
                    Some(self.m.now + self.m.lease_ns()),
                    "lease deadline of {}{}",
                    w.id,
                    self.ctx()
                );
                self.held.push(Held {
                    d,
                    id: w.id,
                    generation,
                });
            } else if self.rng.gen_bool(0.1) {
                assert!(
                    matches!(d.ack(), Err(Error::InvalidState(_))),
                    "ack of an auto-acked delivery{}",
                    self.ctx()
                );
            }
        }
        // Keep the number of outstanding deliveries bounded: forget the oldest
        // (its lease will run out).
        while self.held.len() > 24 {
            self.held.remove(0);
        }
    }

    fn op_receive(&mut self, max: usize, auto_ack: bool) {
        self.note(format!("receive max {max} auto_ack {auto_ack}"));
        let want = self.m.receive(max, auto_ack);
        let got = match (max, auto_ack) {
            (1, false) => self.q.try_receive().map(|d| d.into_iter().collect()),
            (1, true) => self
                .q
                .receive_auto_ack(Wait::Try)
                .map(|d| d.into_iter().collect()),
            (_, false) => self.q.receive_batch(max, Wait::Try),
            (_, true) => self.q.receive_batch_auto_ack(max, Wait::Try),
        }
        .unwrap_or_else(|e| panic!("receive failed: {e:?}{}", self.ctx()));
        self.check_deliveries(got, want);
    }

    fn pick_held(&mut self) -> Option<Held> {
        if self.held.is_empty() {
            return None;
        }
        let i = self.rng.gen_range(0..self.held.len());
        Some(self.held.swap_remove(i))
    }

    fn op_settle(&mut self, kind: u8) {
        let Some(h) = self.pick_held() else {
            return;
        };
        let (ack, delay) = match kind {
            0 => (true, None),
            1 => (false, None),
            _ => (false, Some(self.rng.gen_range(0..=200) * MS)),
        };
        self.note(format!(
            "{} {} (gen {}) delay {:?}",
            if ack { "ack" } else { "nack" },
            h.id,
            h.generation,
            delay.map(|d| d / MS)
        ));
        let want = self.m.settle(h.id, h.generation, ack, delay.unwrap_or(0));
        let got = match (ack, delay) {
            (true, _) => h.d.ack(),
            (false, None) => h.d.nack(),
            (false, Some(d)) => h.d.nack_after(Duration::from_nanos(d)),
        };
        self.note(format!("  -> {got:?}"));
        assert_eq!(got, want, "settle of {}{}", h.id, self.ctx());
    }

    fn op_extend(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let i = self.rng.gen_range(0..self.held.len());
        let by = match self.rng.gen_range(0..4) {
            0 => None,
            1 => Some(0),
            _ => Some(self.rng.gen_range(1..=300) * MS),
        };
        let (id, generation) = (self.held[i].id, self.held[i].generation);
        self.note(format!("extend {id} by {:?}", by.map(|b| b / MS)));
        let got = match by {
            None => self.held[i].d.extend(),
            Some(b) => self.held[i].d.extend_by(Duration::from_nanos(b)),
        };
        self.note(format!("  -> {got:?}"));
        if by == Some(0) {
            // Rejected before anything runs (no maintenance).
            assert!(
                matches!(got, Err(Error::InvalidArgument(_))),
                "extend_by(0): {got:?}{}",
                self.ctx()
            );
            return;
        }
        let want = self
            .m
            .extend(id, generation, by.unwrap_or(self.m.lease_ns()));
        assert_eq!(
            got,
            want.clone().map(|_| ()),
            "extend of {id}{}",
            self.ctx()
        );
        if let Ok(deadline) = want {
            assert_eq!(
                self.held[i].d.lease_deadline(),
                Some(deadline),
                "deadline after extend of {id}{}",
                self.ctx()
            );
        } else {
            assert_eq!(self.held[i].d.lease_deadline(), None, "{}", self.ctx());
            self.held.swap_remove(i);
        }
    }

    fn op_cancel(&mut self) {
        let id = match self.rng.gen_range(0..10) {
            0 => self.last_id + 1 + self.rng.gen_range(0..100), // never sent
            1..=3 if !self.held.is_empty() => self.held[self.rng.gen_range(0..self.held.len())].id,
            _ if !self.ids.is_empty() => {
                // Mostly recent ids (likely still held).
                let n = self.ids.len();
                let back = self.rng.gen_range(0..n.min(30));
                self.ids[n - 1 - back]
            }
            _ => 1,
        };
        self.note(format!("cancel {id}"));
        let want = self.m.cancel(id);
        let got = self.q.cancel(id);
        self.note(format!("  -> {got:?}"));
        let ok = matches!(
            (want, &got),
            (Ok(()), Ok(()))
                | (Err(CancelErr::InvalidState), Err(Error::InvalidState(_)))
                | (Err(CancelErr::NotFound), Err(Error::NotFound(_)))
        );
        assert!(
            ok,
            "cancel {id}: engine {got:?}, model {want:?}{}",
            self.ctx()
        );
    }

    fn op_purge(&mut self) {
        self.note("purge".into());
        let want = self.m.purge();
        let got = self.q.purge();
        assert_eq!(got, Ok(want), "purge{}", self.ctx());
    }

    fn op_peek(&mut self) {
        let max = self.rng.gen_range(0..=12);
        self.note(format!("peek {max}"));
        let want = self.m.peek(max);
        let got = self
            .q
            .peek(max)
            .unwrap_or_else(|e| panic!("peek failed: {e:?}{}", self.ctx()));
        let got_ids: Vec<u64> = got.iter().map(|p| p.id()).collect();
        assert_eq!(got_ids, want, "peek {max}{}", self.ctx());
        for p in &got {
            let m = &self.m.msgs[&p.id()];
            assert_eq!(
                (p.priority(), p.body()),
                (m.prio, &m.body[..]),
                "{}",
                self.ctx()
            );
        }
    }

    fn op_stats(&mut self) {
        let want = self.m.stats();
        let got = self.q.stats();
        assert_eq!(got, want, "stats (engine left, model right){}", self.ctx());
    }

    fn op_advance(&mut self) {
        let by = match self.m.next_event() {
            Some(t) if self.rng.gen_bool(0.3) => t - self.m.now,
            _ => self.rng.gen_range(0..=250) * MS,
        };
        self.note(format!("advance {} ms", by / MS));
        self.clock.advance(Duration::from_nanos(by));
        self.m.now += by;
        // The broker runs whatever fell due before `advance` returns (timers
        // run whether or not anyone touches the queue).
        self.m.maintain();
        self.m.sweep();
    }

    fn op_drop_delivery(&mut self) {
        if let Some(h) = self.pick_held() {
            self.note(format!("drop delivery of {} unsettled", h.id));
        }
    }

    fn op_check_deadlines(&mut self) {
        for h in &self.held {
            let want = self
                .m
                .leases
                .get(&h.id)
                .filter(|l| l.generation == h.generation)
                .map(|l| l.deadline);
            assert_eq!(
                h.d.lease_deadline(),
                want,
                "lease deadline of {} (gen {}){}",
                h.id,
                h.generation,
                self.ctx()
            );
        }
    }

    fn op_dlq_receive(&mut self) {
        let Some(dlq) = self.dlq.clone() else {
            return;
        };
        self.note("dlq receive_auto_ack".into());
        let want = self.m.dlq_receive();
        let got = dlq
            .receive_auto_ack(Wait::Try)
            .unwrap_or_else(|e| panic!("dlq receive failed: {e:?}{}", self.ctx()));
        match (got, want) {
            (None, None) => {}
            (Some(d), Some(w)) => {
                self.note(format!("  -> dlq id {} original {}", d.id(), w.orig_id));
                assert!(self.dlq_ids.insert(d.id()), "dlq id reused{}", self.ctx());
                let orig = w.orig_id.to_string();
                let count = w.deliveries.to_string();
                assert_eq!(
                    (
                        d.header_str("x-original-id"),
                        d.header_str("x-dead-letter-reason"),
                        d.header_str("x-dead-letter-queue"),
                        d.header_str("x-delivery-count"),
                        d.priority(),
                        d.body(),
                        d.size(),
                    ),
                    (
                        Some(orig.as_str()),
                        Some(w.reason.as_str()),
                        Some(QUEUE),
                        Some(count.as_str()),
                        w.prio,
                        &w.body[..],
                        w.size,
                    ),
                    "dead letter (engine left, model right){}",
                    self.ctx()
                );
            }
            (got, want) => panic!(
                "dlq receive: engine {:?}, model {:?}{}",
                got.map(|d| d.id()),
                want.map(|w| w.orig_id),
                self.ctx()
            ),
        }
    }

    fn op_dlq_stats(&mut self) {
        let Some(dlq) = &self.dlq else {
            return;
        };
        let got = dlq.stats();
        let want = self.m.dlq_stats();
        assert_eq!(
            got,
            want,
            "dlq stats (engine left, model right){}",
            self.ctx()
        );
    }

    fn step(&mut self) {
        match self.rng.gen_range(0..200) {
            0..=35 => self.op_send(),
            36..=43 => self.op_send_batch(),
            44..=71 => self.op_receive(1, false),
            72..=77 => {
                let n = self.rng.gen_range(2..=4);
                self.op_receive(n, false)
            }
            78..=85 => self.op_receive(1, true),
            86..=87 => {
                let n = self.rng.gen_range(2..=4);
                self.op_receive(n, true)
            }
            88..=105 => self.op_settle(0),
            106..=115 => self.op_settle(1),
            116..=121 => self.op_settle(2),
            122..=128 => self.op_extend(),
            129..=136 => self.op_cancel(),
            137 => self.op_purge(),
            138..=145 => self.op_peek(),
            146..=153 => {
                self.note("stats".into());
                self.op_stats()
            }
            154..=179 => self.op_advance(),
            180..=183 => self.op_drop_delivery(),
            184..=189 => self.op_dlq_receive(),
            190..=193 => self.op_dlq_stats(),
            _ => self.op_check_deadlines(),
        }
        // Side-effect-free checks after every step.
        self.op_check_deadlines();
        if self.m.cfg.stats_every_step {
            self.op_stats();
            self.op_dlq_stats();
        }
    }

    /// Over the journal: a read-only replay of the data directory holds exactly
    /// the messages the model says the queue holds.
    fn check_journal(&self) {
        let Some(dir) = &self.journal else { return };
        let i = libqueue::store::journal::inspect(dir.path())
            .unwrap_or_else(|e| panic!("inspect: {e}{}", self.ctx()));
        assert!(i.report.damage.is_empty(), "{:?}{}", i.report, self.ctx());
        let key = format!("{}/{QUEUE}", libqueue::DEFAULT_NAMESPACE);
        let in_journal = i.queues.iter().find(|q| q.0 == key).map_or(0, |q| q.1);
        assert_eq!(
            in_journal,
            self.m.msgs.len() as u64,
            "journal's live messages vs the model{}",
            self.ctx()
        );
    }

    fn run(mut self, steps: usize) -> Runner {
        for step in 0..steps {
            self.step = step;
            self.step();
            if step % 500 == 499 {
                self.check_journal();
            }
        }
        self.check_journal();
        // Settle everything at the end and check the books balance.
        self.step = steps;
        self.note("final: stats, ack all, drain".into());
        self.op_stats();
        while let Some(h) = self.held.pop() {
            let want = self.m.settle(h.id, h.generation, true, 0);
            assert_eq!(h.d.ack(), want, "final ack of {}{}", h.id, self.ctx());
        }
        loop {
            let want = self.m.receive(1, true);
            let got = self
                .q
                .receive_auto_ack(Wait::Try)
                .unwrap_or_else(|e| panic!("receive failed: {e:?}{}", self.ctx()));
            let done = want.is_empty();
            self.check_deliveries(got.into_iter().collect(), want);
            if done {
                break;
            }
        }
        self.op_stats();
        self.op_dlq_stats();
        self
    }
}

fn steps_from_env(default: usize) -> usize {
    std::env::var("MODEL_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn seeds(base: u64, n: u64) -> Vec<u64> {
    match std::env::var("MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (0..n).map(|i| base + i).collect(),
    }
}

/// The main model run: many seeds, each with its own random configuration.
#[test]
fn model_random_sequences() {
    let steps = steps_from_env(3000);
    let mut totals = QueueStats::default();
    for seed in seeds(0x5eed_0000, 64) {
        let r = Runner::new("model_random_sequences", seed, None).run(steps);
        let st = r.q.stats();
        totals.sent += st.sent;
        totals.received += st.received;
        totals.redelivered += st.redelivered;
        totals.expired += st.expired;
        totals.dead_lettered += st.dead_lettered;
        totals.cancelled += st.cancelled;
        totals.nacked += st.nacked;
        totals.purged += st.purged;
    }
    // The runs must actually exercise the interesting paths.
    if std::env::var("MODEL_SEED").is_err() {
        assert!(totals.redelivered > 0, "{totals:?}");
        assert!(totals.expired > 0, "{totals:?}");
        assert!(totals.dead_lettered > 0, "{totals:?}");
        assert!(totals.cancelled > 0, "{totals:?}");
        assert!(totals.nacked > 0, "{totals:?}");
    }
    println!("model totals over all seeds: {totals:?}");
}

/// The same model over the journal backend (persistent queue, data directory):
/// every step must agree with the model as in memory, and the journal's live set
/// must equal the model's at checkpoints.
#[test]
fn model_over_the_journal() {
    let steps = steps_from_env(1500);
    for seed in seeds(0x10a1_0000, 12) {
        Runner::with_backend("model_over_the_journal", seed, None, true).run(steps);
    }
}

/// Small capacities: Full / InvalidArgument exactly when the model says so.
#[test]
fn model_with_small_capacity() {
    let steps = steps_from_env(2000);
    let mut full_rejections = 0u64;
    for seed in seeds(0xca9_0000, 24) {
        let r = Runner::new("model_with_small_capacity", seed, Some(1 + seed % 6)).run(steps);
        full_rejections += r.full;
    }
    if std::env::var("MODEL_SEED").is_err() {
        assert!(full_rejections > 0, "no send was ever refused as full");
    }
}
