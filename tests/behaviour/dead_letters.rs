//! Dead letters: max deliveries and lease expiry move a message to the
//! dead-letter queue (or drop and count it without one), past its capacity,
//! with exact sizes along a chain.

use super::*;

pub(super) fn max_deliveries_moves_to_dead_letter_queue(f: &Fixture) {
    let (clock, b) = f.manual();
    let ns = b.namespace("n").unwrap();
    let q = ns
        .create_queue(
            "work",
            f.opts()
                .lease_time(10 * MS)
                .max_deliveries(3)
                .dead_letter_queue("work.dlq"),
        )
        .unwrap();
    assert!(ns.list_queues().contains(&"work.dlq".to_string()));
    let id = q
        .send(Message::new("poison").name("p").header("k", "v"))
        .unwrap();
    q.try_receive().unwrap().unwrap().nack().unwrap(); // 1
    drop(q.try_receive().unwrap().unwrap()); // 2, lease will expire
    clock.advance(10 * MS);
    q.try_receive().unwrap().unwrap().nack().unwrap(); // 3 → dead letter
    assert!(q.try_receive().unwrap().is_none());
    let s = q.stats();
    assert_eq!((s.dead_lettered, s.ready, s.leased, s.bytes), (1, 0, 0, 0));
    let dlq = ns.get_queue("work.dlq").unwrap();
    let dl = dlq.try_receive().unwrap().unwrap();
    assert_eq!(dl.body(), b"poison");
    assert_eq!(dl.name(), Some("p"));
    assert_eq!(dl.header_str("k"), Some("v"));
    assert_eq!(
        dl.header_str("x-dead-letter-reason"),
        Some("nacked; delivered 3 times (max_deliveries 3)")
    );
    assert_eq!(dl.header_str("x-dead-letter-queue"), Some("work"));
    assert_eq!(
        dl.header_str("x-original-id"),
        Some(id.to_string().as_str())
    );
    assert_eq!(dl.header_str("x-delivery-count"), Some("3"));
    assert_eq!(dl.delivery_count(), 1);
}

pub(super) fn lease_expiry_can_dead_letter(f: &Fixture) {
    let (clock, b) = f.manual();
    let ns = b.namespace("n").unwrap();
    let q = ns
        .create_queue(
            "w",
            f.opts()
                .lease_time(10 * MS)
                .max_deliveries(1)
                .dead_letter_queue("dead"),
        )
        .unwrap();
    q.send(Message::new("x")).unwrap();
    drop(q.try_receive().unwrap().unwrap());
    clock.advance(10 * MS);
    assert!(q.try_receive().unwrap().is_none());
    let dl = ns
        .get_queue("dead")
        .unwrap()
        .try_receive()
        .unwrap()
        .unwrap();
    assert!(dl
        .header_str("x-dead-letter-reason")
        .unwrap()
        .starts_with("lease expired"));
}

pub(super) fn max_deliveries_without_dlq_drops_and_counts(f: &Fixture) {
    let q = f
        .broker()
        .namespace("n")
        .unwrap()
        .create_queue("w", f.opts().max_deliveries(1))
        .unwrap();
    q.send(Message::new("x")).unwrap();
    q.try_receive().unwrap().unwrap().nack().unwrap();
    assert!(q.try_receive().unwrap().is_none());
    assert_eq!(q.stats().dead_lettered, 1);
}

pub(super) fn dead_letters_bypass_dlq_capacity(f: &Fixture) {
    let b = f.broker();
    let ns = b.namespace("n").unwrap();
    ns.create_queue("dlq", f.opts().max_messages(1)).unwrap();
    let q = ns
        .create_queue("w", f.opts().max_deliveries(1).dead_letter_queue("dlq"))
        .unwrap();
    for _ in 0..3 {
        q.send(Message::new("x")).unwrap();
        q.try_receive().unwrap().unwrap().nack().unwrap();
    }
    assert_eq!(ns.get_queue("dlq").unwrap().stats().ready, 3);
}

pub(super) fn chained_dead_letters_keep_exact_sizes(f: &Fixture) {
    let ns = f.broker().namespace("n").unwrap();
    let c = ns.queue("c").unwrap();
    ns.create_queue("b", f.opts().max_deliveries(1).dead_letter_queue("c"))
        .unwrap();
    let a = ns
        .create_queue("a", f.opts().max_deliveries(1).dead_letter_queue("b"))
        .unwrap();
    a.send(Message::new("body").header("x-original-id", "777"))
        .unwrap();
    a.try_receive().unwrap().unwrap().nack().unwrap();
    ns.get_queue("b")
        .unwrap()
        .try_receive()
        .unwrap()
        .unwrap()
        .nack()
        .unwrap();
    let d = c.try_receive().unwrap().unwrap();
    assert_eq!(d.size(), d.to_message().size());
    assert_eq!(c.stats().bytes, d.size());
    assert_eq!(d.header_str("x-dead-letter-queue"), Some("b"));
}
