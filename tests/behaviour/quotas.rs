//! Namespace quotas: queues, messages, bytes and the message size.

use super::*;

pub(super) fn quota_max_queues(f: &Fixture) {
    let b = f.broker();
    let ns = b
        .create_namespace("t", Quotas::default().max_queues(2))
        .unwrap();
    ns.queue("a").unwrap();
    ns.queue("b").unwrap();
    assert_eq!(
        ns.queue("c").unwrap_err(),
        Error::QuotaExceeded {
            namespace: "t".into(),
            quota: "max_queues",
            limit: 2
        }
    );
    ns.queue("a").unwrap(); // existing ones still open
    ns.delete_queue("a").unwrap();
    ns.queue("c").unwrap();
}

pub(super) fn quota_max_messages_is_exact_and_per_namespace(f: &Fixture) {
    let b = f.broker();
    let ns = b
        .create_namespace("t", Quotas::default().max_messages(3))
        .unwrap();
    let other = b.namespace("other").unwrap();
    let q1 = ns.queue("q1").unwrap();
    let q2 = ns.queue("q2").unwrap();
    q1.send(Message::new("1")).unwrap();
    q2.send(Message::new("2")).unwrap();
    q1.send(Message::new("3")).unwrap();
    let err = q2.send(Message::new("4")).unwrap_err();
    assert_eq!(
        err,
        Error::QuotaExceeded {
            namespace: "t".into(),
            quota: "max_messages",
            limit: 3
        }
    );
    // A batch that does not fit whole is refused whole.
    q1.receive_auto_ack(Wait::Try).unwrap().unwrap();
    assert!(matches!(
        q1.send_batch([Message::new("a"), Message::new("b")]),
        Err(Error::QuotaExceeded { .. })
    ));
    assert_eq!(ns.stats().totals.ready, 2);
    q1.send(Message::new("fits")).unwrap();
    // Other namespaces are unaffected.
    for _ in 0..10 {
        other.send("x", Message::new("free")).unwrap();
    }
    // Leased messages still count; acking frees the room.
    let d = q2.try_receive().unwrap().unwrap();
    assert!(q2.send(Message::new("no")).is_err());
    d.ack().unwrap();
    q2.send(Message::new("yes")).unwrap();
}

pub(super) fn quota_max_bytes_and_message_size(f: &Fixture) {
    let b = f.broker();
    let ns = b
        .create_namespace("t", Quotas::default().max_bytes(100).max_message_size(60))
        .unwrap();
    let q = ns.queue("q").unwrap();
    assert_eq!(
        q.send(Message::new(vec![0u8; 61])).unwrap_err(),
        Error::MessageTooLarge {
            size: 61,
            limit: 60
        }
    );
    // Headers and name count toward size.
    assert!(matches!(
        q.send(Message::new(vec![0u8; 50]).name("0123456789a")),
        Err(Error::MessageTooLarge { size: 61, .. })
    ));
    q.send(Message::new(vec![0u8; 60])).unwrap();
    q.send(Message::new(vec![0u8; 40])).unwrap();
    assert_eq!(
        q.send(Message::new(vec![0u8; 1])).unwrap_err(),
        Error::QuotaExceeded {
            namespace: "t".into(),
            quota: "max_bytes",
            limit: 100
        }
    );
    assert_eq!(q.stats().bytes, 100);
    q.receive_auto_ack(Wait::Try).unwrap().unwrap();
    q.send(Message::new(vec![0u8; 60])).unwrap();
}

pub(super) fn default_max_message_size_is_enforced(f: &Fixture) {
    let q = f.broker().queue("q").unwrap();
    let big = vec![0u8; DEFAULT_MAX_MESSAGE_SIZE as usize + 1];
    assert!(matches!(
        q.send(Message::new(big)),
        Err(Error::MessageTooLarge { .. })
    ));
    assert_eq!(q.stats().sent, 0);
}
