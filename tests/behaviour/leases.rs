//! Leases: ack, expiry and redelivery (stale acks fail), extend, nack now and
//! later, auto-ack, a dropped unsettled delivery.

use super::*;

pub(super) fn ack_removes_for_good(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    q.send(Message::new("x")).unwrap();
    q.try_receive().unwrap().unwrap().ack().unwrap();
    clock.advance(Duration::from_secs(3600));
    assert!(q.try_receive().unwrap().is_none());
    let s = q.stats();
    assert_eq!(
        (s.sent, s.received, s.acked, s.ready, s.leased, s.bytes),
        (1, 1, 1, 0, 0, 0)
    );
}

pub(super) fn expired_lease_redelivers_and_stale_ack_fails(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().lease_time(100 * MS))
        .unwrap();
    let id = q.send(Message::new("x")).unwrap();
    let d1 = q.try_receive().unwrap().unwrap();
    assert_eq!(d1.lease_deadline(), Some(clock.now() + 100_000_000));
    assert!(q.try_receive().unwrap().is_none());
    clock.advance(99 * MS);
    assert!(q.try_receive().unwrap().is_none());
    clock.advance(MS);
    let d2 = q.try_receive().unwrap().unwrap();
    assert_eq!((d2.id(), d2.delivery_count()), (id, 2));
    assert_eq!(d1.lease_deadline(), None);
    assert_eq!(d1.ack().unwrap_err(), Error::LeaseExpired { id });
    d2.ack().unwrap();
    let s = q.stats();
    assert_eq!((s.received, s.redelivered, s.acked), (2, 1, 1));
}

pub(super) fn blocked_receiver_gets_redelivery_when_clock_moves(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().lease_time(100 * MS))
        .unwrap();
    q.send(Message::new("x")).unwrap();
    let held = q.try_receive().unwrap().unwrap();
    let q2 = q.clone();
    let h = thread::spawn(move || q2.receive().unwrap().delivery_count());
    thread::sleep(Duration::from_millis(20));
    clock.advance(150 * MS);
    assert_eq!(h.join().unwrap(), 2);
    drop(held);
}

pub(super) fn extend_renews_the_lease(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().lease_time(100 * MS))
        .unwrap();
    q.send(Message::new("x")).unwrap();
    let d = q.try_receive().unwrap().unwrap();
    clock.advance(80 * MS);
    d.extend().unwrap();
    clock.advance(80 * MS);
    assert!(
        q.try_receive().unwrap().is_none(),
        "extended lease still held"
    );
    d.extend_by(500 * MS).unwrap();
    clock.advance(450 * MS);
    assert!(q.try_receive().unwrap().is_none());
    assert!(matches!(
        d.extend_by(Duration::ZERO),
        Err(Error::InvalidArgument(_))
    ));
    clock.advance(100 * MS);
    assert!(q.try_receive().unwrap().is_some());
    assert!(matches!(d.extend(), Err(Error::LeaseExpired { .. })));
}

pub(super) fn nack_now_and_later(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    q.send(Message::new("a")).unwrap();
    q.try_receive().unwrap().unwrap().nack().unwrap();
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!(d.delivery_count(), 2);
    d.nack_after(50 * MS).unwrap();
    assert!(q.try_receive().unwrap().is_none());
    assert_eq!(q.stats().delayed, 1);
    clock.advance(50 * MS);
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!(d.delivery_count(), 3);
    d.ack().unwrap();
    let s = q.stats();
    assert_eq!((s.nacked, s.redelivered, s.acked, s.delayed), (2, 2, 1, 0));
}

pub(super) fn auto_ack_is_at_most_once(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    q.send(Message::new("x")).unwrap();
    let d = q.receive_auto_ack(Wait::Try).unwrap().unwrap();
    assert!(!d.is_leased());
    assert!(matches!(d.extend(), Err(Error::InvalidState(_))));
    clock.advance(Duration::from_secs(3600));
    assert!(q.try_receive().unwrap().is_none());
    assert!(matches!(d.ack(), Err(Error::InvalidState(_))));
    assert_eq!(q.stats().acked, 1);
}

pub(super) fn unsettled_delivery_dropped_is_redelivered_after_lease(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    q.send(Message::new("x")).unwrap();
    drop(q.try_receive().unwrap().unwrap());
    clock.advance(f.opts().lease_time);
    assert_eq!(q.try_receive().unwrap().unwrap().delivery_count(), 2);
}

pub(super) fn blocked_receiver_sees_lease_expiry_on_system_clock(f: &Fixture) {
    // The receiver parks before any timer exists; the lease taken afterwards
    // must still wake it when it expires (no manual clock to nudge it).
    let q = f
        .broker()
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().lease_time(Duration::from_millis(30)))
        .unwrap();
    let q2 = q.clone();
    let h = thread::spawn(move || {
        let first = q2.receive().unwrap();
        let again = q2.receive().unwrap(); // the same message, after its lease expired
        (first.id(), again.id(), again.delivery_count())
    });
    thread::sleep(Duration::from_millis(10));
    let id = q.send(Message::new("x")).unwrap();
    let (a, b, n) = h.join().unwrap();
    assert_eq!((a, b, n), (id, id, 2));
}

pub(super) fn late_ack_fails_even_if_nothing_else_ran(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().lease_time(10 * MS))
        .unwrap();
    let id = q.send(Message::new("x")).unwrap();
    let d = q.try_receive().unwrap().unwrap();
    clock.advance(11 * MS);
    assert_eq!(d.ack().unwrap_err(), Error::LeaseExpired { id });
    assert_eq!(q.try_receive().unwrap().unwrap().delivery_count(), 2);
}

/// `give_back` returns a leased message uncounted, once, and only on the
/// queue the lease is of.
pub(super) fn give_back_by_ticket(f: &Fixture) {
    let b = f.broker();
    let q = b.queue("q").unwrap();
    let other = b.queue("other").unwrap();
    let id = q.send(Message::new("job")).unwrap();
    let d = q.try_receive().unwrap().unwrap();
    let t = d.ticket().expect("leased");
    assert_eq!(other.give_back(t), Err(Error::LeaseExpired { id }));
    assert_eq!(
        q.stats().leased,
        1,
        "another queue's refusal changes nothing"
    );
    q.give_back(t).unwrap();
    assert_eq!(q.give_back(t), Err(Error::LeaseExpired { id }));
    assert_eq!(d.ack(), Err(Error::LeaseExpired { id }));
    let again = q.try_receive().unwrap().unwrap();
    assert_eq!((again.id(), again.delivery_count()), (id, 1));
    assert!(q.receive_auto_ack(Wait::Try).unwrap().is_none());
    again.ack().unwrap();
    q.send(Message::new("auto")).unwrap();
    assert!(q
        .receive_auto_ack(Wait::Try)
        .unwrap()
        .unwrap()
        .ticket()
        .is_none());
}
