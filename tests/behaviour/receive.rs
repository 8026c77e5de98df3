//! The receive forms: try, blocking and with a timeout, batches; a blocked
//! receiver wakes on close.

use super::*;

pub(super) fn receive_try_blocking_timeout(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    assert!(q.try_receive().unwrap().is_none());
    // Timeout on the manual clock: returns None only once the clock passes it.
    let q2 = q.clone();
    let h = thread::spawn(move || q2.receive_timeout(100 * MS).unwrap().is_none());
    thread::sleep(Duration::from_millis(20));
    assert!(!h.is_finished());
    clock.advance(101 * MS);
    assert!(h.join().unwrap());
    // Blocking receive wakes on send.
    let q3 = q.clone();
    let h = thread::spawn(move || q3.receive().unwrap().body().to_vec());
    thread::sleep(Duration::from_millis(20));
    q.send(Message::new("wake")).unwrap();
    assert_eq!(h.join().unwrap(), b"wake");
}

pub(super) fn blocked_receiver_wakes_on_close(f: &Fixture) {
    let b = f.broker();
    let q = b.queue("q").unwrap();
    let q2 = q.clone();
    let h = thread::spawn(move || q2.receive());
    thread::sleep(Duration::from_millis(20));
    b.close();
    assert_eq!(h.join().unwrap().unwrap_err(), Error::Closed);
    assert_eq!(q.send(Message::new("x")).unwrap_err(), Error::Closed);
    assert_eq!(q.try_receive().unwrap_err(), Error::Closed);
    assert!(q.is_closed());
    assert!(matches!(b.namespace("x"), Err(Error::Closed)));
    b.close(); // idempotent
}

pub(super) fn batches(f: &Fixture) {
    let q = f.broker().queue("q").unwrap();
    let sent = q
        .send_batch((0..10u8).map(|i| Message::new(vec![i])))
        .unwrap();
    assert_eq!(sent.len(), 10);
    assert!(q.send_batch(Vec::new()).unwrap().is_empty());
    let first = q.receive_batch(4, Wait::Try).unwrap();
    assert_eq!(first.iter().map(|d| d.id()).collect::<Vec<_>>(), sent[..4]);
    let rest = q.receive_batch_auto_ack(100, Wait::Forever).unwrap();
    assert_eq!(rest.len(), 6);
    assert!(q.receive_batch(3, Wait::Try).unwrap().is_empty());
    assert!(matches!(
        q.receive_batch(0, Wait::Try),
        Err(Error::InvalidArgument(_))
    ));
    for d in first {
        d.ack().unwrap();
    }
    let s = q.stats();
    assert_eq!((s.acked, s.ready, s.leased), (10, 0, 0));
}

pub(super) fn batch_receive_timeout_on_the_clock(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    let q2 = q.clone();
    let h = thread::spawn(move || q2.receive_batch(5, Wait::For(10 * MS)).unwrap().len());
    thread::sleep(Duration::from_millis(10));
    clock.advance(11 * MS);
    assert_eq!(h.join().unwrap(), 0);
}
