//! Timers run on time whether or not anyone touches their queue (issue 13, item 7):
//! a lease held by a consumer that went away expires and dead-letters, waking a
//! receiver blocked on the dead-letter queue; an expired message gives its
//! namespace quota back. With a ManualClock (advance, then a bounded wait for
//! the result) and with the system clock (the broker's ticker thread).
//! Each also runs attached (`attached_*`): the broker attached to a host of a
//! data directory, whose ticker runs the timers.

use libqueue::*;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);
/// How long a test waits (real time) for something that should happen at once.
const BOUND: Duration = Duration::from_secs(10);

/// A broker on `clock` (or the system clock): of this process, or (`attached`)
/// attached to a host of a fresh data directory, on that clock: the host's
/// timers, run by its ticker, serve the attached process. The host and the
/// directory live as long as the returned guard.
fn open(
    clock: Option<&std::sync::Arc<ManualClock>>,
    attached: bool,
) -> (Broker, Option<(Broker, tempfile::TempDir)>) {
    let mut o = BrokerOptions::new();
    if let Some(c) = clock {
        o = o.clock(c.clone());
    }
    if !attached {
        return (Broker::open(o).unwrap(), None);
    }
    let dir = tempfile::tempdir().unwrap();
    let o = o.data_dir(dir.path());
    let host = Broker::open(o.clone()).unwrap();
    let b = Broker::open(o).unwrap();
    assert!(b.is_attached());
    (b, Some((host, dir)))
}

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
    lease_dead_letters_manual(false);
}

#[test]
fn attached_expired_lease_dead_letters_to_a_blocked_receiver_manual_clock() {
    lease_dead_letters_manual(true);
}

fn lease_dead_letters_manual(attached: bool) {
    let clock = ManualClock::new(1_000_000_000);
    let (b, _host) = open(Some(&clock), attached);
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
    lease_dead_letters_system(false);
}

#[test]
fn attached_expired_lease_dead_letters_to_a_blocked_receiver_system_clock() {
    lease_dead_letters_system(true);
}

fn lease_dead_letters_system(attached: bool) {
    let (b, _host) = open(None, attached);
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
    timers_after_drop(false);
}

#[test]
fn attached_timers_run_after_the_broker_handle_is_dropped() {
    timers_after_drop(true);
}

fn timers_after_drop(attached: bool) {
    let (b, _host) = open(None, attached);
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
    quota_back_manual(false);
}

#[test]
fn attached_expired_message_gives_its_quota_back_untouched_manual_clock() {
    quota_back_manual(true);
}

fn quota_back_manual(attached: bool) {
    let clock = ManualClock::new(1_000_000_000);
    let (b, _host) = open(Some(&clock), attached);
    let (a, other) = quota_held_by_ttl(&b);
    clock.advance(150 * MS);
    // Nothing touched `a`: its expiry ran when the clock moved.
    other.send(Message::new("x")).unwrap();
    assert_eq!(a.stats().expired, 1);
}

#[test]
fn expired_message_gives_its_quota_back_untouched_system_clock() {
    quota_back_system(false);
}

#[test]
fn attached_expired_message_gives_its_quota_back_untouched_system_clock() {
    quota_back_system(true);
}

fn quota_back_system(attached: bool) {
    let (b, _host) = open(None, attached);
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
