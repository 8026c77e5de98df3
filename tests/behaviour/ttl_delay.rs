//! TTL and delay: expired messages are never delivered, queue defaults,
//! delayed messages not before their time (and waking a blocked receiver on
//! either clock), a message expiring while delayed.

use super::*;

pub(super) fn expired_messages_are_never_delivered(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    q.send(Message::new("short").ttl(10 * MS)).unwrap();
    q.send(Message::new("long").ttl(100 * MS)).unwrap();
    q.send(Message::new("forever")).unwrap();
    clock.advance(10 * MS);
    let s = q.stats();
    assert_eq!((s.ready, s.expired), (2, 1));
    clock.advance(90 * MS);
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!(d.body(), b"forever");
    assert!(q.try_receive().unwrap().is_none());
    assert_eq!(q.stats().expired, 2);
    assert_eq!(q.stats().bytes, 7);
}

pub(super) fn queue_default_ttl_and_delay(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().default_ttl(100 * MS).default_delay(10 * MS))
        .unwrap();
    q.send(Message::new("x")).unwrap();
    q.send(Message::new("now").delay(Duration::ZERO)).unwrap();
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!(d.body(), b"now");
    assert_eq!(d.expires_at(), Some(clock.now() + 100_000_000));
    assert!(q.try_receive().unwrap().is_none());
    clock.advance(10 * MS);
    assert_eq!(q.try_receive().unwrap().unwrap().body(), b"x");
}

pub(super) fn delayed_not_before_their_time(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    q.send(Message::new("late").delay(100 * MS)).unwrap();
    q.send(Message::new("early").delay(50 * MS)).unwrap();
    assert_eq!(q.stats().delayed, 2);
    assert!(q.try_receive().unwrap().is_none());
    clock.advance(49 * MS);
    assert!(q.try_receive().unwrap().is_none());
    clock.advance(MS);
    assert_eq!(q.try_receive().unwrap().unwrap().body(), b"early");
    assert!(q.try_receive().unwrap().is_none());
    clock.advance(50 * MS);
    assert_eq!(q.try_receive().unwrap().unwrap().body(), b"late");
}

pub(super) fn delayed_message_wakes_blocked_receiver(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    let q2 = q.clone();
    let h = thread::spawn(move || q2.receive().unwrap().body().to_vec());
    thread::sleep(Duration::from_millis(10));
    q.send(Message::new("d").delay(30 * MS)).unwrap();
    thread::sleep(Duration::from_millis(10));
    assert!(!h.is_finished());
    clock.advance(30 * MS);
    assert_eq!(h.join().unwrap(), b"d");
}

pub(super) fn delayed_message_wakes_blocked_receiver_on_system_clock(f: &Fixture) {
    let q = f.broker().queue("q").unwrap();
    let q2 = q.clone();
    let h = thread::spawn(move || q2.receive().unwrap().body().to_vec());
    thread::sleep(Duration::from_millis(10));
    q.send(Message::new("d").delay(Duration::from_millis(30)))
        .unwrap();
    assert_eq!(h.join().unwrap(), b"d");
}

pub(super) fn message_expiring_while_delayed_is_dropped(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    q.send(Message::new("x").delay(50 * MS).ttl(20 * MS))
        .unwrap();
    clock.advance(60 * MS);
    assert!(q.try_receive().unwrap().is_none());
    assert_eq!(q.stats().expired, 1);
}
