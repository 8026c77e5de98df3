//! `stats()` stays exact (issue 17): its counters, gauges and `oldest_age`
//! against what the queue really holds, after single-threaded sequences that
//! exercise the oldest-age cache and the TTL expiry heaps, and after threads
//! mixing send (TTL, delay, priority), receive, ack, nack (with and without
//! delay, to a dead-letter queue), cancel, purge and `stats()` itself while
//! the clock moves.
//!
//! "Exact" for TTL: a message whose TTL has passed at the instant `stats()`
//! reads the clock is counted `expired` and not `ready` (or `delayed`), and
//! its bytes are out of `bytes`, whether or not anything had dropped it
//! before; `stats()` drops it itself, through the expiry heaps, without
//! looking at the other messages.

use libqueue::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn manual() -> (Arc<ManualClock>, Broker) {
    let clock = ManualClock::new(1_000_000_000);
    let b = Broker::open(BrokerOptions::new().clock(clock.clone())).expect("broker");
    (clock, b)
}

fn age(s: &QueueStats) -> Option<u64> {
    s.oldest_age.map(|d| d.as_nanos() as u64)
}

/// The oldest-age cache: right after sends only, after the oldest leaves
/// (received and acked, cancelled, expired, purged), after a nack puts an old
/// message back, and for delayed and leased messages.
#[test]
fn oldest_age_follows_every_change() {
    let (clock, b) = manual();
    let q = b.queue("q").unwrap();
    assert_eq!(q.stats().oldest_age, None);
    let a = q.send(Message::new("a")).unwrap();
    clock.advance(5 * MS);
    assert_eq!(age(&q.stats()), Some(5_000_000));
    q.send(Message::new("b")).unwrap();
    clock.advance(5 * MS);
    q.send(Message::new("c").delay(100 * MS)).unwrap();
    assert_eq!(age(&q.stats()), Some(10_000_000), "a is the oldest");
    // a leased: still held, still the oldest.
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!(d.id(), a);
    assert_eq!(age(&q.stats()), Some(10_000_000));
    // nacked back: still the oldest.
    d.nack().unwrap();
    assert_eq!(age(&q.stats()), Some(10_000_000));
    // One of a and b received and acked (a went back behind b, or before it
    // if it was ordered by id): the other one is the oldest.
    let d = q.try_receive().unwrap().unwrap();
    let left = d.id();
    d.ack().unwrap();
    let want = if left == a { 5_000_000 } else { 10_000_000 };
    assert_eq!(age(&q.stats()), Some(want));
    // The other cancelled: the delayed c.
    let other = q.peek(1).unwrap()[0].id();
    assert_ne!(other, left);
    q.cancel(other).unwrap();
    assert_eq!(age(&q.stats()), Some(0));
    clock.advance(MS);
    assert_eq!(age(&q.stats()), Some(MS.as_nanos() as u64));
    // A message with a TTL, older than nothing; it expires: back to c.
    q.send(Message::new("t").ttl(2 * MS)).unwrap();
    clock.advance(3 * MS);
    let s = q.stats();
    assert_eq!((s.expired, s.ready, s.delayed), (1, 0, 1));
    assert_eq!(age(&s), Some(4_000_000));
    assert_eq!(q.purge().unwrap(), 1);
    let s = q.stats();
    assert_eq!((s.oldest_age, s.bytes, s.depth()), (None, 0, 0));
    q.send(Message::new("new")).unwrap();
    clock.advance(MS);
    assert_eq!(age(&q.stats()), Some(1_000_000));
    // Received oldest first (one producer: one FIFO), auto-acked, then
    // leased and acked: each time the next one is the oldest.
    let q2 = b.queue("q2").unwrap();
    for body in ["1", "2", "3"] {
        q2.send(Message::new(body)).unwrap();
        clock.advance(MS);
    }
    assert_eq!(age(&q2.stats()), Some(3_000_000));
    let d = q2.receive_auto_ack(Wait::Try).unwrap().unwrap();
    assert_eq!(d.body(), b"1");
    assert_eq!(age(&q2.stats()), Some(2_000_000));
    let d = q2.try_receive().unwrap().unwrap();
    assert_eq!(d.body(), b"2");
    assert_eq!(age(&q2.stats()), Some(2_000_000), "leased: still held");
    d.ack().unwrap();
    assert_eq!(age(&q2.stats()), Some(1_000_000));
}

/// TTL expiry is counted at the instant of `stats()`, message by message,
/// whatever order they were sent in and whatever else is held.
#[test]
fn ttl_expiry_is_exact_at_each_instant() {
    let (clock, b) = manual();
    let q = b.queue("q").unwrap();
    // Expiries 1..=50 ms, sent in a scrambled order, between messages without.
    for i in 0..50u64 {
        let ms_ = (i * 37) % 50 + 1;
        q.send(Message::new(vec![1u8; 10]).ttl(ms(ms_))).unwrap();
        q.send(Message::new(vec![2u8; 10])).unwrap();
    }
    // Ten of them leased and acked: their expiry entries go stale.
    for _ in 0..10 {
        let d = q.try_receive().unwrap().unwrap();
        d.ack().unwrap();
    }
    let s = q.stats();
    assert_eq!((s.ready, s.expired, s.bytes), (90, 0, 900));
    let mut taken_ttl = 0;
    let mut seen = std::collections::HashSet::new();
    // The ten received were the first ten sent (one shard, one thread): five
    // with a TTL (expiries (i * 37) % 50 + 1 for i in 0..5).
    for i in 0..5u64 {
        seen.insert((i * 37) % 50 + 1);
        taken_ttl += 1;
    }
    for at in 1..=50u64 {
        clock.advance(MS);
        let s = q.stats();
        let expired = (1..=at).filter(|m| !seen.contains(m)).count() as u64;
        assert_eq!(s.expired, expired, "at {at} ms");
        assert_eq!(s.ready, 90 - expired, "at {at} ms");
        assert_eq!(s.bytes, 10 * (90 - expired), "at {at} ms");
    }
    assert_eq!(q.stats().expired, 50 - taken_ttl);
}

/// Many TTL messages received before they expire (20,000: the expiry heap
/// is compacted several times meanwhile): the stale entries they leave behind
/// never count as expired.
#[test]
fn received_ttl_messages_never_count_as_expired() {
    let (clock, b) = manual();
    let q = b.queue("q").unwrap();
    for round in 0..20u64 {
        for i in 0..1000u64 {
            q.send(Message::new(i.to_le_bytes().to_vec()).ttl(ms(10 + round)))
                .unwrap();
        }
        for _ in 0..1000 {
            q.try_receive().unwrap().unwrap().ack().unwrap();
        }
        clock.advance(MS);
    }
    clock.advance(Duration::from_secs(1));
    let s = q.stats();
    assert_eq!((s.expired, s.ready, s.acked, s.bytes), (0, 0, 20_000, 0));
}

/// Threads mix every operation while the clock moves and another thread
/// reads stats; once they stop, every gauge and counter matches what the
/// queue holds and what the threads did.
#[test]
fn stats_exact_after_concurrent_mix() {
    let (clock, b) = manual();
    let ns = b.default_namespace().unwrap();
    ns.create_queue("dlq", QueueOptions::default()).unwrap();
    let q = ns
        .create_queue(
            "q",
            QueueOptions::default()
                .max_deliveries(2)
                .dead_letter_queue("dlq"),
        )
        .unwrap();
    let dlq = ns.queue("dlq").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let cancelled = Arc::new(AtomicU64::new(0));
    let purged = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let q = ns.queue("q").unwrap();
            let (sent, cancelled, purged) = (sent.clone(), cancelled.clone(), purged.clone());
            thread::spawn(move || {
                let mut held = Vec::new();
                let mut mine = Vec::new();
                let mut x = w.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..4000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    match x % 20 {
                        0..=7 => {
                            let mut m =
                                Message::new(vec![0u8; (x % 50) as usize]).priority((x % 3) as u8);
                            if x % 5 == 0 {
                                m = m.ttl(ms((x >> 8) % 20 + 1));
                            }
                            if x % 7 == 0 {
                                m = m.delay(ms((x >> 16) % 10 + 1));
                            }
                            mine.push(q.send(m).unwrap());
                            sent.fetch_add(1, SeqCst);
                        }
                        8..=12 => {
                            if let Some(d) = q.try_receive().unwrap() {
                                held.push(d);
                            }
                        }
                        13..=15 => {
                            if let Some(d) = held.pop() {
                                d.ack().unwrap();
                            }
                        }
                        16 | 17 => {
                            if let Some(d) = held.pop() {
                                if x % 2 == 0 {
                                    d.nack().unwrap();
                                } else {
                                    d.nack_after(ms((x >> 4) % 5 + 1)).unwrap();
                                }
                            }
                        }
                        18 => {
                            if let Some(id) = mine.pop() {
                                if q.cancel(id).is_ok() {
                                    cancelled.fetch_add(1, SeqCst);
                                }
                            }
                        }
                        _ => {
                            if x % 40 == 19 {
                                purged.fetch_add(q.purge().unwrap(), SeqCst);
                            } else {
                                let s = q.stats();
                                assert!(s.depth() <= sent.load(SeqCst) + 1000);
                            }
                        }
                    }
                }
                for d in held {
                    d.ack().unwrap();
                }
            })
        })
        .collect();
    let ticker = {
        let (clock, stop) = (clock.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(SeqCst) {
                clock.advance(MS / 2);
                thread::yield_now();
            }
        })
    };
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, SeqCst);
    ticker.join().unwrap();
    // Quiescent: nothing leased (every holder acked), delays and TTLs still
    // pending are checked at this instant, then after every one has passed.
    let check = |s: &QueueStats| {
        let all = q.peek(usize::MAX).unwrap();
        assert_eq!(s.ready, all.len() as u64, "{s:?}");
        assert_eq!(s.leased, 0);
        assert_eq!(s.sent, sent.load(SeqCst));
        assert_eq!(s.cancelled, cancelled.load(SeqCst));
        assert_eq!(s.purged, purged.load(SeqCst));
        // Every message sent is held, acked, expired, cancelled, purged or
        // dead-lettered, exactly once.
        assert_eq!(
            s.sent,
            s.depth() + s.acked + s.expired + s.cancelled + s.purged + s.dead_lettered,
            "{s:?}"
        );
        assert_eq!(dlq.stats().sent, s.dead_lettered);
        if s.delayed == 0 {
            let bytes: u64 = all.iter().map(|m| m.size()).sum();
            assert_eq!(s.bytes, bytes, "{s:?}");
            let now = clock.now();
            let oldest = all.iter().map(|m| m.enqueued_at()).min();
            assert_eq!(s.oldest_age, oldest.map(|o| Duration::from_nanos(now - o)));
        }
    };
    check(&q.stats());
    clock.advance(Duration::from_secs(1));
    let s = q.stats();
    assert_eq!(s.delayed, 0);
    check(&s);
    // And what is ready can be received, all of it.
    let mut n = 0;
    while let Some(d) = q.try_receive().unwrap() {
        d.ack().unwrap();
        n += 1;
    }
    assert_eq!(n, s.ready);
    let s = q.stats();
    assert_eq!((s.depth(), s.bytes, s.oldest_age), (0, 0, None));
}
