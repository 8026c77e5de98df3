//! A full queue: reject, time out on the clock, or block until there is room
//! (or the queue closes); expired messages hold no capacity.

use super::*;

pub(super) fn full_queue_reject(f: &Fixture) {
    let ns = f.broker().namespace("n").unwrap();
    let q = ns
        .create_queue("q", f.opts().max_messages(2).on_full(OnFull::Reject))
        .unwrap();
    q.send(Message::new("1")).unwrap();
    q.send(Message::new("2")).unwrap();
    assert_eq!(q.send(Message::new("3")).unwrap_err(), Error::Full);
    assert_eq!(
        q.send_batch([Message::new("x"), Message::new("y"), Message::new("z")])
            .unwrap_err(),
        Error::InvalidArgument("a batch of 3 messages can never fit a queue of capacity 2".into())
    );
    assert_eq!(q.stats().ready, 2);
    q.receive_auto_ack(Wait::Try).unwrap().unwrap();
    q.send(Message::new("3")).unwrap();
}

pub(super) fn full_queue_bytes_capacity(f: &Fixture) {
    let ns = f.broker().namespace("n").unwrap();
    let q = ns.create_queue("q", f.opts().max_bytes(10)).unwrap();
    assert_eq!(
        q.send(Message::new(vec![1u8; 11])).unwrap_err(),
        Error::MessageTooLarge {
            size: 11,
            limit: 10
        }
    );
    q.send(Message::new(vec![1u8; 8])).unwrap();
    assert_eq!(
        q.send_with(Message::new(vec![1u8; 3]), OnFull::Reject)
            .unwrap_err(),
        Error::Full
    );
}

pub(super) fn full_queue_timeout_on_the_clock(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().max_messages(1))
        .unwrap();
    q.send(Message::new("1")).unwrap();
    let q2 = q.clone();
    let h = thread::spawn(move || q2.send_with(Message::new("2"), OnFull::Timeout(50 * MS)));
    thread::sleep(Duration::from_millis(20)); // let it block (not needed for correctness)
    clock.advance(60 * MS);
    assert_eq!(h.join().unwrap().unwrap_err(), Error::Timeout);
    assert_eq!(q.stats().sent, 1);
}

pub(super) fn full_queue_blocks_until_room(f: &Fixture) {
    let b = f.broker();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().max_messages(1))
        .unwrap();
    q.send(Message::new("1")).unwrap();
    let q2 = q.clone();
    let h = thread::spawn(move || q2.send(Message::new("2")));
    thread::sleep(Duration::from_millis(30));
    assert!(!h.is_finished());
    assert_eq!(q.receive_auto_ack(Wait::Try).unwrap().unwrap().body(), b"1");
    h.join().unwrap().unwrap();
    assert_eq!(q.receive_auto_ack(Wait::Try).unwrap().unwrap().body(), b"2");
}

pub(super) fn blocked_sender_wakes_on_close(f: &Fixture) {
    let b = f.broker();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().max_messages(1))
        .unwrap();
    q.send(Message::new("1")).unwrap();
    let q2 = q.clone();
    let h = thread::spawn(move || q2.send(Message::new("2")));
    thread::sleep(Duration::from_millis(20));
    b.close();
    assert_eq!(h.join().unwrap().unwrap_err(), Error::Closed);
}

pub(super) fn expired_messages_do_not_hold_capacity(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().max_messages(2).on_full(OnFull::Reject))
        .unwrap();
    q.send(Message::new("a").ttl(10 * MS)).unwrap();
    q.send(Message::new("b").ttl(10 * MS).delay(50 * MS))
        .unwrap();
    assert_eq!(q.send(Message::new("c")).unwrap_err(), Error::Full);
    clock.advance(10 * MS);
    // Both expired (one ready, one still delayed): the send sweeps them first.
    q.send(Message::new("c")).unwrap();
    q.send(Message::new("d")).unwrap();
    let s = q.stats();
    assert_eq!((s.expired, s.ready, s.delayed), (2, 2, 0));
}

pub(super) fn blocked_sender_wakes_when_a_message_expires(f: &Fixture) {
    let q = f
        .broker()
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().max_messages(1))
        .unwrap();
    q.send(Message::new("a").ttl(Duration::from_millis(30)))
        .unwrap();
    // Nobody receives: only the expiry can make room.
    q.send_with(Message::new("b"), OnFull::Timeout(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(q.stats().expired, 1);
}
