//! What the reopen after each kill must find: nothing reported sent and not
//! taken missing, nothing acked back, no duplicates, no delivery count going
//! back, no id handed out twice (with the history across rounds).

use super::*;

/// What the crash test remembers from round to round.
#[derive(Default)]
pub(super) struct History {
    /// Messages left in jobs for the next child.
    pub(super) carry: HashSet<u64>,
    /// The highest delivery count seen for each message (jobs and dl).
    pub(super) counts: std::collections::HashMap<u64, u32>,
    /// Every id handed out, per queue (jobs 0, dl 1): never twice.
    pub(super) ids: [HashSet<u64>; 2],
    /// Totals for the summary line.
    pub(super) batches_in_flight: usize,
    pub(super) batches_cut_whole: usize,
    pub(super) dead_lettered: usize,
    pub(super) dead_at_open: usize,
    pub(super) both_checked: usize,
    /// Every namespace `d{n}` known to exist, and whether its subscription
    /// does (checked again after every later kill).
    pub(super) defs: std::collections::BTreeMap<u64, bool>,
    /// Definitions checked (namespaces, subscriptions) over all rounds.
    pub(super) defs_checked: (usize, usize),
    /// Namespace creations in flight at a kill: found whole / not there.
    pub(super) ns_in_flight: (usize, usize),
    /// Subscribes or unsubscribes in flight at a kill: found subscribed / not.
    pub(super) sub_in_flight: (usize, usize),
}

impl History {
    /// A delivery count observed for `n`: never at or below one seen before.
    pub(super) fn delivered(&mut self, ctx: &str, n: u64, c: u32, what: &str) {
        let last = self.counts.entry(n).or_insert(0);
        assert!(
            c > *last,
            "{ctx}: message {n} delivered with count {c} after count {last} ({what}): \
             a delivery count went back"
        );
        *last = c;
    }

    /// An id handed out in queue `q`.
    pub(super) fn id(&mut self, ctx: &str, q: usize, id: u64) {
        assert!(
            self.ids[q].insert(id),
            "{ctx}: id {id} handed out twice in queue {q}"
        );
    }
}

/// What the reopen found.
pub(super) struct Found {
    pub(super) report: RecoveryReport,
    /// jobs: (body, delivery count) in delivery order.
    pub(super) got: Vec<(u64, u32)>,
    pub(super) dl: Vec<(u64, u32)>,
    pub(super) dead: Vec<(u64, u32, Option<String>)>,
    /// Ids of the non-persistent messages sent after the check (jobs, dl).
    pub(super) fresh: [u64; 2],
    /// Namespaces `d{n}`: (n, quotas, the subscription's filter if any).
    pub(super) defs: Vec<(u64, Quotas, Option<Filter>)>,
}

/// One verification after a kill. With `keep` the jobs messages are received
/// leased and left in the journal (they become the next round's carry),
/// otherwise they are auto-acked (the next round must not see them again).
/// Both dead-letter queues are drained (acked) every round. Returns the
/// report's damage findings.
pub(super) fn verify_after_kill(
    dir: &Path,
    ctx: &str,
    base: u64,
    rep: &Reported,
    h: &mut History,
    keep: bool,
) -> Vec<String> {
    // Sanity of what the child said: per producer, sends are 0..m contiguous
    // (batches included: their lines come after the batch returned); an ack
    // is reported only after its receive.
    let mut inflight = HashSet::new();
    let mut batch_inflight = Vec::new();
    for p in 0..PRODUCERS {
        let lo = base + p * STRIDE;
        let mut idx: Vec<u64> = rep
            .sent
            .keys()
            .filter(|n| (lo..lo + STRIDE).contains(*n))
            .map(|n| n - lo)
            .collect();
        idx.sort_unstable();
        assert!(
            idx.iter().enumerate().all(|(i, v)| i as u64 == *v),
            "{ctx}: producer {p}'s reported sends are not contiguous"
        );
        // Sent (maybe recorded) but killed before it was reported.
        let m = idx.len() as u64;
        if p == 1 {
            // Producer 1's batches start where batch_len says.
            let mut start = 0;
            while start < m {
                start += batch_len(start);
            }
            assert_eq!(start, m, "{ctx}: a batch was reported in part");
            batch_inflight = (m..m + batch_len(m)).map(|i| lo + i).collect();
            inflight.extend(batch_inflight.iter().copied());
        } else {
            inflight.insert(lo + m);
        }
    }
    assert!(
        rep.acked.is_subset(&rep.received),
        "{ctx}: ack before receive?"
    );
    for (n, id) in &rep.sent {
        assert!(
            n.checked_sub(base).is_some_and(|i| i < PRODUCERS * STRIDE),
            "{ctx}: body {n}"
        );
        h.id(ctx, 0, *id);
    }
    for id in rep.dl_sent.values() {
        h.id(ctx, 1, *id);
    }
    for (n, c) in &rep.deliveries {
        h.delivered(ctx, *n, *c, "reported by the child");
    }
    for (n, c) in &rep.dl_deliveries {
        assert!(*c <= DL_MAX, "{ctx}: {n} delivered {c} times from dl");
        h.delivered(ctx, *n, *c, "reported by the child from dl");
    }

    let d = dir.to_path_buf();
    let found = within(
        &format!("{ctx}: reopen"),
        Duration::from_secs(60),
        move || {
            let b = Broker::open(opts(&d)).expect("reopen after kill");
            let report = b.recovery_report().unwrap().clone();
            let ns = b.namespace(CRASH_NS).unwrap();
            let q = ns.queue(CRASH_QUEUE).unwrap();
            let mut got = Vec::new();
            let mut held = Vec::new();
            loop {
                let batch = if keep {
                    q.receive_batch(4096, Wait::Try).unwrap()
                } else {
                    q.receive_batch_auto_ack(4096, Wait::Try).unwrap()
                };
                if batch.is_empty() {
                    break;
                }
                for d in batch {
                    got.push((body_u64(d.body()), d.delivery_count()));
                    held.push(d);
                }
            }
            drop(held);
            let take = |name: &str| {
                let q = ns.queue(name).unwrap();
                let mut v = Vec::new();
                while let Some(d) = q.try_receive().unwrap() {
                    v.push((
                        body_u64(d.body()),
                        d.delivery_count(),
                        d.header_str("x-dead-letter-reason").map(str::to_string),
                    ));
                    d.ack().unwrap();
                }
                v
            };
            let dl = take(DL_QUEUE).into_iter().map(|(n, c, _)| (n, c)).collect();
            let dead = take(DL_DEAD);
            let defs = found_definitions(&b, base + DEFS_AT);
            // The highest ids are now non-persistent ones: the next child must
            // not hand them out again.
            let fresh = [
                q.send(Message::new("fresh").persistent(false)).unwrap(),
                ns.queue(DL_QUEUE)
                    .unwrap()
                    .send(Message::new("fresh").persistent(false))
                    .unwrap(),
            ];
            drop(q);
            drop(ns);
            b.close();
            Found {
                report,
                got,
                dl,
                dead,
                fresh,
                defs,
            }
        },
    );
    let Found {
        report,
        got,
        dl,
        dead,
        fresh,
        defs,
    } = found;
    check_definitions(ctx, base, rep, h, &defs);
    h.id(ctx, 0, fresh[0]);
    h.id(ctx, 1, fresh[1]);
    let set: HashSet<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        set.len(),
        got.len(),
        "{ctx}: duplicates recovered; {report:?}"
    );
    assert_eq!(
        report.messages_recovered,
        (got.len() + dl.len() + dead.len()) as u64,
        "{ctx}: report disagrees with what was delivered; {report:?}"
    );
    for (n, c) in &got {
        if keep {
            h.delivered(ctx, *n, *c, "after the reopen");
        }
    }
    // Sent (or carried) and not taken by the consumer: must be there.
    let missing: Vec<u64> = h
        .carry
        .iter()
        .chain(rep.sent.keys())
        .filter(|n| !rep.received.contains(n) && !set.contains(n))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{ctx}: {} reported-sent, not-received messages lost (e.g. {:?}); {report:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Acked (Removed written before `A` was printed): must not come back.
    let back: Vec<u64> = set.intersection(&rep.acked).copied().collect();
    assert!(
        back.is_empty(),
        "{ctx}: {} acked messages came back (e.g. {:?}); {report:?}",
        back.len(),
        &back[..back.len().min(10)]
    );
    // Nothing that was never sent (or was drained by an earlier round).
    let alien: Vec<u64> = set
        .iter()
        .filter(|n| !h.carry.contains(n) && !rep.sent.contains_key(n) && !inflight.contains(n))
        .copied()
        .collect();
    assert!(
        alien.is_empty(),
        "{ctx}: {} recovered messages were never sent or were already drained \
         (e.g. {:?}); {report:?}",
        alien.len(),
        &alien[..alien.len().min(10)]
    );
    // The batch in flight: whole or not at all (its members the consumer did
    // not take).
    let rest: Vec<u64> = batch_inflight
        .iter()
        .filter(|n| !rep.received.contains(n))
        .copied()
        .collect();
    let there = rest.iter().filter(|n| set.contains(n)).count();
    let committed = there > 0 || batch_inflight.iter().any(|n| rep.received.contains(n));
    assert!(
        !committed || there == rest.len(),
        "{ctx}: the batch in flight {batch_inflight:?} came back in part \
         ({there} of {} not received); {report:?}",
        rest.len()
    );
    h.batches_in_flight += 1;
    h.batches_cut_whole += usize::from(committed && batch_inflight.len() > 1);

    // Dead-letter moves: never in both queues, never delivered more than
    // max_deliveries times, an acked dead letter never back, nothing lost.
    let dl_set: HashSet<u64> = dl.iter().map(|g| g.0).collect();
    let dead_set: HashSet<u64> = dead.iter().map(|g| g.0).collect();
    assert_eq!(dl_set.len(), dl.len(), "{ctx}: duplicates in dl");
    assert_eq!(dead_set.len(), dead.len(), "{ctx}: duplicates in dl.dead");
    let both: Vec<_> = dl_set.intersection(&dead_set).collect();
    assert!(
        both.is_empty(),
        "{ctx}: messages both in dl and in its dead-letter queue: {both:?}; {report:?}"
    );
    h.both_checked += dl_set.len() + dead_set.len();
    for (n, c) in &dl {
        assert!(
            *c <= DL_MAX,
            "{ctx}: {n} delivered {c} times from dl; {report:?}"
        );
        h.delivered(ctx, *n, *c, "from dl after the reopen");
    }
    for (n, _, why) in &dead {
        assert!(
            !rep.dead_acked.contains(n),
            "{ctx}: dead letter {n} was acked and came back; {report:?}"
        );
        h.dead_at_open += usize::from(why.as_deref().is_some_and(|w| w.contains("restart")));
    }
    let dl_back: Vec<_> = dl_set.intersection(&rep.dead_acked).collect();
    assert!(
        dl_back.is_empty(),
        "{ctx}: original of an acked dead letter came back in dl: {dl_back:?}; {report:?}"
    );
    let dl_lost: Vec<_> = rep
        .dl_sent
        .keys()
        .filter(|n| !rep.dead_received.contains(n) && !dl_set.contains(n) && !dead_set.contains(n))
        .collect();
    assert!(
        dl_lost.is_empty(),
        "{ctx}: messages sent to dl lost: {dl_lost:?}; {report:?}"
    );
    let dl_alien: Vec<_> = dl_set
        .union(&dead_set)
        .filter(|n| (*n - base) / STRIDE != 2)
        .collect();
    assert!(
        dl_alien.is_empty(),
        "{ctx}: dl messages from another round: {dl_alien:?}"
    );
    h.dead_lettered += rep.dead_received.len();
    h.carry = if keep { set } else { HashSet::new() };
    report.damage
}
