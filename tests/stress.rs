//! Multi-threaded stress: N producers, M consumers; every message delivered and
//! acked exactly once, counts exact, per-producer order kept — also while admin
//! operations (peek, stats, cancel) and lease expiries race the hot path.

use libqueue::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const PRODUCERS: u64 = 4;
const CONSUMERS: usize = 4;
const PER_PRODUCER: u64 = 25_000;

fn body(p: u64, i: u64) -> Vec<u8> {
    let mut v = p.to_le_bytes().to_vec();
    v.extend_from_slice(&i.to_le_bytes());
    v
}

/// `body` plus 0–36 bytes of padding that depend on the message, so that bodies
/// of many lengths go through (and are recycled by) `send_bytes`.
fn padded_body(p: u64, i: u64) -> Vec<u8> {
    let mut v = body(p, i);
    v.resize(16 + (i % 37) as usize, pad(p, i));
    v
}

fn pad(p: u64, i: u64) -> u8 {
    (p * 31 + i) as u8
}

/// The producer and sequence number; checks any padding is intact.
fn parse(b: &[u8]) -> (u64, u64) {
    let (p, i) = (
        u64::from_le_bytes(b[..8].try_into().unwrap()),
        u64::from_le_bytes(b[8..16].try_into().unwrap()),
    );
    assert!(
        b[16..].iter().all(|&x| x == pad(p, i)),
        "body of {p}/{i} damaged: {b:?}"
    );
    (p, i)
}

/// How producers send.
#[derive(Clone, Copy, PartialEq)]
enum Sends {
    One,
    Batch,
    /// `send_bytes` of padded bodies (copied into recycled buffers).
    Bytes,
}

/// Runs producers and consumers; consumers ack every message. With `admin`, a
/// thread keeps calling peek/stats on the queue meanwhile.
fn run(q: Queue, admin: bool, sends: Sends) {
    let total = PRODUCERS * PER_PRODUCER;
    let seen = Arc::new(Mutex::new(HashSet::with_capacity(total as usize)));
    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            thread::spawn(move || {
                if sends == Sends::Bytes {
                    for i in 0..PER_PRODUCER {
                        q.send_bytes(&padded_body(p, i)).unwrap();
                    }
                } else if sends == Sends::Batch {
                    for chunk in (0..PER_PRODUCER).collect::<Vec<_>>().chunks(50) {
                        q.send_batch(chunk.iter().map(|&i| Message::new(body(p, i))))
                            .unwrap();
                    }
                } else {
                    for i in 0..PER_PRODUCER {
                        q.send(Message::new(body(p, i))).unwrap();
                    }
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let (q, seen, acked) = (q.clone(), seen.clone(), acked.clone());
            thread::spawn(move || {
                // Per-producer order as seen by this consumer.
                let mut last = [None::<u64>; PRODUCERS as usize];
                while acked.load(SeqCst) < total {
                    let ds = q
                        .receive_batch(16, Wait::For(Duration::from_millis(20)))
                        .unwrap();
                    for d in ds {
                        let (p, i) = parse(d.body());
                        if let Some(l) = last[p as usize] {
                            assert!(
                                i > l,
                                "producer {p}: {i} after {l} (id {}, delivery {})",
                                d.id(),
                                d.delivery_count()
                            );
                        }
                        last[p as usize] = Some(i);
                        assert!(seen.lock().unwrap().insert((p, i)), "duplicate {p}/{i}");
                        d.ack().unwrap();
                        acked.fetch_add(1, SeqCst);
                    }
                }
            })
        })
        .collect();
    let admin_thread = admin.then(|| {
        let (q, done) = (q.clone(), done.clone());
        thread::spawn(move || {
            let mut rounds = 0u64;
            while !done.load(SeqCst) {
                let s = q.stats();
                assert!(s.acked <= total);
                let _ = q.peek(8).unwrap();
                rounds += 1;
                thread::sleep(Duration::from_micros(200));
            }
            rounds
        })
    });
    for p in producers {
        p.join().unwrap();
    }
    for c in consumers {
        c.join().unwrap();
    }
    done.store(true, SeqCst);
    if let Some(a) = admin_thread {
        assert!(a.join().unwrap() > 0);
    }
    assert_eq!(seen.lock().unwrap().len() as u64, total);
    let s = q.stats();
    assert_eq!(
        (
            s.sent,
            s.received,
            s.acked,
            s.ready,
            s.leased,
            s.bytes,
            s.redelivered
        ),
        (total, total, total, 0, 0, 0, 0)
    );
}

#[test]
fn producers_consumers_exactly_once() {
    run(Broker::new().queue("q").unwrap(), false, Sends::One);
}

#[test]
fn exactly_once_with_batches() {
    run(Broker::new().queue("q").unwrap(), false, Sends::Batch);
}

#[test]
fn exactly_once_while_admin_peeks_and_counts() {
    run(Broker::new().queue("q").unwrap(), true, Sends::One);
}

/// Bodies copied in by `send_bytes` (into recycled buffers when the length
/// matches) arrive intact and exactly once, through a bounded queue so that
/// nodes circulate between producers and consumers many times.
#[test]
fn exactly_once_with_send_bytes_and_recycled_nodes() {
    let q = Broker::new()
        .namespace("n")
        .unwrap()
        .create_queue("q", QueueOptions::default().max_messages(256))
        .unwrap();
    run(q, true, Sends::Bytes);
}

#[test]
fn exactly_once_through_a_bounded_queue() {
    let q = Broker::new()
        .namespace("n")
        .unwrap()
        .create_queue("q", QueueOptions::default().max_messages(64))
        .unwrap();
    run(q, false, Sends::One);
}

#[test]
fn exactly_once_with_more_shards_than_threads() {
    let q = Broker::new()
        .namespace("n")
        .unwrap()
        .create_queue("q", QueueOptions::default().shards(16))
        .unwrap();
    run(q, true, Sends::One);
}

/// Consumers that nack or drop (lease expiry) some deliveries: every message is
/// still acked exactly once; stale acks fail with LeaseExpired and change nothing.
#[test]
fn redeliveries_under_load_ack_exactly_once() {
    let b = Broker::new();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue(
            "q",
            QueueOptions::default().lease_time(Duration::from_millis(5)),
        )
        .unwrap();
    let total = 20_000u64;
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stale = Arc::new(AtomicU64::new(0));
    let p = {
        let q = q.clone();
        thread::spawn(move || {
            for i in 0..total {
                q.send(Message::new(i.to_le_bytes().to_vec())).unwrap();
            }
        })
    };
    let consumers: Vec<_> = (0..3)
        .map(|c| {
            let (q, acked, stale) = (q.clone(), acked.clone(), stale.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while (acked.lock().unwrap().len() as u64) < total {
                    let Some(d) = q.receive_timeout(Duration::from_millis(20)).unwrap() else {
                        continue;
                    };
                    n += 1;
                    let i = u64::from_le_bytes(d.body().try_into().unwrap());
                    match (n + c) % 17 {
                        0 => d.nack().unwrap_or(()),
                        1 => drop(d), // lease expires, redelivered later
                        2 => {
                            thread::sleep(Duration::from_millis(8)); // outlives its lease
                            match d.ack() {
                                Ok(()) => assert!(acked.lock().unwrap().insert(i)),
                                Err(Error::LeaseExpired { .. }) => {
                                    stale.fetch_add(1, SeqCst);
                                }
                                Err(e) => panic!("{e}"),
                            }
                        }
                        _ => {
                            if d.ack().is_ok() {
                                assert!(acked.lock().unwrap().insert(i), "acked twice: {i}");
                            } else {
                                stale.fetch_add(1, SeqCst);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    p.join().unwrap();
    for c in consumers {
        c.join().unwrap();
    }
    let s = q.stats();
    assert_eq!(acked.lock().unwrap().len() as u64, total);
    assert_eq!(
        (s.acked, s.ready, s.leased, s.delayed, s.bytes),
        (total, 0, 0, 0, 0)
    );
    assert!(s.redelivered > 0 && s.nacked > 0);
    assert_eq!(s.received, total + s.redelivered);
}

/// Cancels race with consumers: each message is either cancelled or acked, never both.
#[test]
fn cancel_races_consumers() {
    let q = Broker::new().queue("q").unwrap();
    let total = 20_000u64;
    let ids: Vec<u64> = (0..total)
        .map(|i| q.send(Message::new(i.to_le_bytes().to_vec())).unwrap())
        .collect();
    let got = Arc::new(Mutex::new(HashSet::new()));
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let (q, got) = (q.clone(), got.clone());
            thread::spawn(move || {
                while let Some(d) = q.receive_auto_ack(Wait::Try).unwrap() {
                    assert!(got.lock().unwrap().insert(d.id()));
                }
            })
        })
        .collect();
    let mut cancelled = HashSet::new();
    for id in ids.iter().rev().step_by(7) {
        if q.cancel(*id).is_ok() {
            cancelled.insert(*id);
        }
    }
    for c in consumers {
        c.join().unwrap();
    }
    while let Some(d) = q.receive_auto_ack(Wait::Try).unwrap() {
        assert!(got.lock().unwrap().insert(d.id()));
    }
    let got = got.lock().unwrap();
    assert!(got.is_disjoint(&cancelled));
    assert_eq!(got.len() + cancelled.len(), total as usize);
    let s = q.stats();
    assert_eq!(
        (s.cancelled, s.acked, s.ready),
        (cancelled.len() as u64, got.len() as u64, 0)
    );
}
