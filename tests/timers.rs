//! Timers run on time whether or not anyone touches their queue (issue 13, item 7):
//! a lease held by a consumer that went away expires and dead-letters, waking a
//! receiver blocked on the dead-letter queue; an expired message gives its
//! namespace quota back. With a ManualClock (advance, then a bounded wait for
//! the result) and with the system clock (the broker's ticker thread).

use libqueue::*;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);
/// How long a test waits (real time) for something that should happen at once.
const BOUND: Duration = Duration::from_secs(10);

/// `work` (lease 100 ms, max_deliveries 1, dead-letter queue `work.dlq`).
fn work_and_dlq(b: &Broker) -> (Queue, Queue) {
    let ns = b.default_namespace().unwrap();
    let dlq = ns
        .create_queue("work.dlq", QueueOptions::default())
        .unwrap();
    let work = ns
        .create_queue(
            "work",
            QueueOptions::default()
                .lease_time(100 * MS)
                .max_deliveries(1)
                .dead_letter_queue("work.dlq"),
        )
        .unwrap();
    (work, dlq)
}

/// A thread blocked in `receive_timeout(dlq, wait)`; its outcome (the body) comes
/// through the channel.
fn blocked_receiver(dlq: &Queue, wait: Duration) -> mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    let dlq = dlq.clone();
    thread::spawn(move || {
        let got = dlq.receive_timeout(wait).ok().flatten().map(|d| {
            let body = d.body().to_vec();
            d.ack().unwrap();
            body
        });
        let _ = tx.send(got);
    });
    rx
}

#[test]
fn expired_lease_dead_letters_to_a_blocked_receiver_manual_clock() {
    let clock = ManualClock::new(1_000_000_000);
    let b = Broker::open(BrokerOptions::new().clock(clock.clone())).unwrap();
    let (work, dlq) = work_and_dlq(&b);
    let rx = blocked_receiver(&dlq, Duration::from_secs(2));
    work.send(Message::new("job")).unwrap();
    let d = work.try_receive().unwrap().expect("the job");
    drop(d); // the consumer goes away holding the lease
    clock.advance(150 * MS); // past the lease, far from the receiver's 2 s
    let got = rx
        .recv_timeout(BOUND)
        .expect("the DLQ receiver got the dead letter");
    assert_eq!(got.as_deref(), Some(&b"job"[..]));
    assert_eq!(work.stats().dead_lettered, 1);
    b.close();
}

#[test]
fn expired_lease_dead_letters_to_a_blocked_receiver_system_clock() {
    let b = Broker::new();
    let (work, dlq) = work_and_dlq(&b);
    let rx = blocked_receiver(&dlq, Duration::from_secs(5));
    work.send(Message::new("job")).unwrap();
    let start = Instant::now();
    drop(work.try_receive().unwrap().expect("the job"));
    // Nobody touches `work` again: only the broker's ticker can expire the lease.
    let got = rx.recv_timeout(BOUND).expect("the receiver returned");
    assert_eq!(
        got.as_deref(),
        Some(&b"job"[..]),
        "the dead letter arrived within the receiver's 5 s (after {:?})",
        start.elapsed()
    );
    b.close();
}

#[test]
fn timers_run_after_the_broker_handle_is_dropped() {
    let b = Broker::new();
    let (work, dlq) = work_and_dlq(&b);
    drop(b); // the queue handles live on; so do their timers
    let rx = blocked_receiver(&dlq, Duration::from_secs(5));
    work.send(Message::new("job")).unwrap();
    drop(work.try_receive().unwrap().expect("the job"));
    let got = rx.recv_timeout(BOUND).expect("the receiver returned");
    assert_eq!(got.as_deref(), Some(&b"job"[..]));
}

/// Namespace with room for one message; queue `a` holds one with a TTL.
fn quota_held_by_ttl(b: &Broker) -> (Queue, Queue) {
    let ns = b
        .create_namespace("t", Quotas::default().max_messages(1))
        .unwrap();
    let a = ns.queue("a").unwrap();
    let other = ns.queue("b").unwrap();
    a.send(Message::new("short-lived").ttl(100 * MS)).unwrap();
    assert!(matches!(
        other.send(Message::new("x")),
        Err(Error::QuotaExceeded { .. })
    ));
    (a, other)
}

#[test]
fn expired_message_gives_its_quota_back_untouched_manual_clock() {
    let clock = ManualClock::new(1_000_000_000);
    let b = Broker::open(BrokerOptions::new().clock(clock.clone())).unwrap();
    let (a, other) = quota_held_by_ttl(&b);
    clock.advance(150 * MS);
    // Nothing touched `a`: its expiry ran when the clock moved.
    other.send(Message::new("x")).unwrap();
    assert_eq!(a.stats().expired, 1);
}

#[test]
fn expired_message_gives_its_quota_back_untouched_system_clock() {
    let b = Broker::new();
    let (a, other) = quota_held_by_ttl(&b);
    let start = Instant::now();
    // Bounded: retries every 10 ms for up to BOUND, never touching `a`.
    loop {
        match other.send(Message::new("x")) {
            Ok(_) => break,
            Err(Error::QuotaExceeded { .. }) if start.elapsed() < BOUND => thread::sleep(10 * MS),
            Err(e) => panic!("the expired message still holds the quota: {e}"),
        }
    }
    assert_eq!(a.stats().expired, 1);
}
