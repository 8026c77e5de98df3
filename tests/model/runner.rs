//! The runner: drives the engine and the model side by side, one random
//! operation per step, and checks every result and both queues' stats against
//! the model.

use super::*;

pub(super) struct Held {
    pub(super) d: Delivery,
    pub(super) id: u64,
    pub(super) generation: u64,
}

pub(super) struct Runner {
    /// The `#[test]` running it (for the reproduce hint).
    pub(super) test: &'static str,
    pub(super) seed: u64,
    pub(super) step: usize,
    pub(super) rng: SmallRng,
    pub(super) clock: Arc<ManualClock>,
    pub(super) _broker: Broker,
    /// The data directory when running over the journal.
    pub(super) journal: Option<tempfile::TempDir>,
    pub(super) q: Queue,
    pub(super) dlq: Option<Queue>,
    pub(super) m: Model,
    pub(super) held: Vec<Held>,
    /// Ids ever returned by send (for cancel targets).
    pub(super) ids: Vec<u64>,
    pub(super) last_id: u64,
    pub(super) dlq_ids: BTreeSet<u64>,
    pub(super) bodies: u64,
    /// Sends refused with `Error::Full`.
    pub(super) full: u64,
    pub(super) log: VecDeque<String>,
}

/// The message a send step builds, and what the model must remember of it.
pub(super) struct Spec {
    pub(super) msg: Message,
    pub(super) prio: u8,
    pub(super) ttl: Option<u64>,
    pub(super) delay: u64,
    pub(super) body: Vec<u8>,
    pub(super) size: u64,
    pub(super) valid: bool,
}

impl Runner {
    /// A fresh broker and queue with a configuration drawn from the seed;
    /// `cap` forces a capacity.
    pub(super) fn new(test: &'static str, seed: u64, cap: Option<u64>) -> Self {
        Self::with_backend(test, seed, cap, false)
    }

    /// With `journal`, the broker keeps a data directory and the queue's
    /// messages are persistent: the same model must hold (the conformance of
    /// the journal backend), and the journal's live set must match it.
    pub(super) fn with_backend(
        test: &'static str,
        seed: u64,
        cap: Option<u64>,
        journal: bool,
    ) -> Self {
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
    pub(super) fn ctx(&self) -> String {
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

    pub(super) fn note(&mut self, s: String) {
        if self.log.len() >= 40 {
            self.log.pop_front();
        }
        self.log.push_back(format!("#{} {s}", self.step));
    }

    pub(super) fn gen_msg(&mut self) -> Spec {
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

    pub(super) fn accept(&mut self, id: u64, s: Spec) {
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

    pub(super) fn op_send(&mut self) {
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

    pub(super) fn op_send_batch(&mut self) {
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
    pub(super) fn check_deliveries(&mut self, got: Vec<Delivery>, want: Vec<Expect>) {
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

    pub(super) fn op_receive(&mut self, max: usize, auto_ack: bool) {
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

    pub(super) fn pick_held(&mut self) -> Option<Held> {
        if self.held.is_empty() {
            return None;
        }
        let i = self.rng.gen_range(0..self.held.len());
        Some(self.held.swap_remove(i))
    }

    pub(super) fn op_settle(&mut self, kind: u8) {
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

    pub(super) fn op_extend(&mut self) {
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

    pub(super) fn op_cancel(&mut self) {
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

    pub(super) fn op_purge(&mut self) {
        self.note("purge".into());
        let want = self.m.purge();
        let got = self.q.purge();
        assert_eq!(got, Ok(want), "purge{}", self.ctx());
    }

    pub(super) fn op_peek(&mut self) {
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

    pub(super) fn op_stats(&mut self) {
        let want = self.m.stats();
        let got = self.q.stats();
        assert_eq!(got, want, "stats (engine left, model right){}", self.ctx());
    }

    pub(super) fn op_advance(&mut self) {
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

    pub(super) fn op_drop_delivery(&mut self) {
        if let Some(h) = self.pick_held() {
            self.note(format!("drop delivery of {} unsettled", h.id));
        }
    }

    pub(super) fn op_check_deadlines(&mut self) {
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

    pub(super) fn op_dlq_receive(&mut self) {
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

    pub(super) fn op_dlq_stats(&mut self) {
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

    pub(super) fn step(&mut self) {
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
    pub(super) fn check_journal(&self) {
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

    pub(super) fn run(mut self, steps: usize) -> Runner {
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
