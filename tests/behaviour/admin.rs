//! Peek, cancel, purge, stats and queue deletion; the errors' text for C users.

use super::*;

pub(super) fn peek_does_not_lease(f: &Fixture) {
    let q = f.broker().queue("q").unwrap();
    let a = q.send(Message::new("a").priority(1)).unwrap();
    let b_ = q.send(Message::new("b").priority(9)).unwrap();
    let c = q.send(Message::new("c").priority(1)).unwrap();
    let seen: Vec<u64> = q.peek(10).unwrap().iter().map(|m| m.id()).collect();
    assert_eq!(seen, vec![b_, a, c]);
    assert_eq!(q.peek(1).unwrap()[0].body(), b"b");
    assert_eq!(q.stats().ready, 3);
    assert_eq!(ids(&q), vec![b_, a, c]);
    assert!(q.peek(5).unwrap().is_empty());
}

pub(super) fn cancel_pending_by_id(f: &Fixture) {
    let (_clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    let a = q.send(Message::new("a")).unwrap();
    let d = q.send(Message::new("d").delay(50 * MS)).unwrap();
    let c = q.send(Message::new("c")).unwrap();
    let l = q.send(Message::new("l")).unwrap();
    q.cancel(c).unwrap();
    q.cancel(d).unwrap();
    let held = q.try_receive().unwrap().unwrap();
    assert_eq!(held.id(), a);
    assert!(matches!(q.cancel(a), Err(Error::InvalidState(_))));
    assert!(matches!(q.cancel(c), Err(Error::NotFound(_))));
    assert!(matches!(q.cancel(999_999), Err(Error::NotFound(_))));
    assert_eq!(ids(&q), vec![l]);
    let s = q.stats();
    assert_eq!((s.cancelled, s.delayed, s.leased), (2, 0, 1));
}

pub(super) fn purge_removes_ready_and_delayed(f: &Fixture) {
    let q = f.broker().queue("q").unwrap();
    q.send_batch((0..5).map(|_| Message::new("x"))).unwrap();
    q.send(Message::new("later").delay(Duration::from_secs(60)))
        .unwrap();
    let held = q.try_receive().unwrap().unwrap();
    assert_eq!(q.purge().unwrap(), 5);
    let s = q.stats();
    assert_eq!((s.ready, s.delayed, s.leased, s.purged), (0, 0, 1, 5));
    held.ack().unwrap();
    assert_eq!(q.stats().bytes, 0);
}

pub(super) fn stats_are_exact(f: &Fixture) {
    let (clock, b) = f.manual();
    let ns = b.namespace("n").unwrap();
    let q = ns.queue("q").unwrap();
    assert_eq!(q.stats(), QueueStats::default());
    q.send(Message::new("12345")).unwrap();
    clock.advance(5 * MS);
    q.send(Message::new("123")).unwrap();
    q.send(Message::new("1").delay(MS)).unwrap();
    let d = q.try_receive().unwrap().unwrap();
    let s = q.stats();
    assert_eq!(
        (s.ready, s.leased, s.delayed, s.bytes, s.sent, s.received),
        (1, 1, 1, 9, 3, 1)
    );
    assert_eq!(s.oldest_age, Some(5 * MS));
    assert_eq!(s.depth(), 3);
    d.ack().unwrap();
    let ns_stats = ns.stats();
    assert_eq!(ns_stats.queues, 1);
    assert_eq!(ns_stats.totals.acked, 1);
    assert_eq!(ns_stats.totals.bytes, 4);
}

pub(super) fn delete_queue_frees_quota_and_closes_handles(f: &Fixture) {
    let b = f.broker();
    let ns = b
        .create_namespace("t", Quotas::default().max_messages(2))
        .unwrap();
    let q = ns.queue("q").unwrap();
    q.send(Message::new("1")).unwrap();
    let _held = q.try_receive().unwrap().unwrap();
    q.send(Message::new("2")).unwrap();
    ns.delete_queue("q").unwrap();
    assert_eq!(q.send(Message::new("x")).unwrap_err(), Error::Closed);
    assert!(matches!(ns.delete_queue("q"), Err(Error::NotFound(_))));
    let q2 = ns.queue("q").unwrap();
    q2.send(Message::new("a")).unwrap();
    q2.send(Message::new("b")).unwrap();
}

/// No broker involved: the same for every backend.
#[test]
fn errors_display_for_c_users() {
    let cases = [
        (Error::Full, "queue is full"),
        (Error::Timeout, "timed out"),
        (Error::Closed, "closed"),
        (Error::LeaseExpired { id: 7 }, "lease on message 7"),
        (
            Error::MessageTooLarge { size: 2, limit: 1 },
            "message of 2 bytes exceeds the limit of 1 bytes",
        ),
    ];
    for (e, text) in cases {
        assert!(e.to_string().contains(text), "{e}");
    }
}

/// A handle of a deleted queue stays closed, even once a queue of the same
/// name is made again (that one is another queue); its statistics keep the
/// deleted queue's counters.
pub(super) fn deleted_queue_handles_stay_closed(f: &Fixture) {
    let b = f.broker();
    let ns = b.namespace("n").unwrap();
    let q = ns.create_queue("q", f.opts()).unwrap();
    q.send(Message::new("1")).unwrap();
    q.try_receive().unwrap().unwrap().ack().unwrap();
    assert!(!q.is_closed());
    ns.delete_queue("q").unwrap();
    assert!(q.is_closed());
    let s = q.stats();
    assert_eq!((s.sent, s.acked, s.depth()), (1, 1, 0));
    let again = ns.queue("q").unwrap();
    again.send(Message::new("new")).unwrap();
    assert!(q.is_closed());
    assert_eq!(q.send(Message::new("x")), Err(Error::Closed));
    assert!(matches!(q.try_receive(), Err(Error::Closed)));
    assert!(matches!(q.peek(1), Err(Error::Closed)));
    assert_eq!(q.purge(), Err(Error::Closed));
    assert_eq!(q.stats().sent, 1, "the deleted queue's counters");
    assert_eq!(again.stats().ready, 1, "the new queue untouched");
    assert!(!again.is_closed());
}
