//! Messages: fields round trip, ids increase per queue, priorities are checked,
//! a queue handle outlives its broker.

use super::*;

pub(super) fn message_fields_round_trip(f: &Fixture) {
    let q = f.broker().queue("q").unwrap();
    let id = q
        .send(
            Message::new(vec![0u8, 1, 2, 255])
                .name("create_member")
                .header("execution_id", "e-1")
                .header("bin", vec![0xffu8, 0])
                .correlation_id("corr-9")
                .priority(8),
        )
        .unwrap();
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!(d.id(), id);
    assert_eq!(d.body(), &[0, 1, 2, 255]);
    assert_eq!(d.name(), Some("create_member"));
    assert_eq!(d.header_str("execution_id"), Some("e-1"));
    assert_eq!(d.header("bin"), Some(&[0xffu8, 0][..]));
    assert_eq!(d.header_str("bin"), None);
    assert_eq!(d.correlation_id(), Some("corr-9"));
    assert_eq!(d.priority(), 8);
    assert_eq!(d.delivery_count(), 1);
    assert_eq!(d.expires_at(), None);
    assert!(d.is_leased());
    assert_eq!(d.queue_name(), Some("q"));
    let copy = d.to_message();
    assert_eq!(copy.body(), d.body());
    d.ack().unwrap();
}

/// Broker, namespace and queue are handles: a queue keeps working once every
/// broker handle is gone (the broker is not closed until `close`).
pub(super) fn queue_outlives_its_broker(f: &Fixture) {
    let b = f.broker();
    let q = b.queue("q").unwrap();
    f.release();
    drop(b);
    assert!(!q.is_closed());
    let id = q.send(Message::new("after")).unwrap();
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!((d.id(), d.body()), (id, &b"after"[..]));
    d.ack().unwrap();
}

pub(super) fn ids_increase_per_queue(f: &Fixture) {
    let b = f.broker();
    let q1 = b.queue("q1").unwrap();
    let q2 = b.queue("q2").unwrap();
    let mut last1 = 0;
    let mut last2 = 0;
    for i in 0..500 {
        let a = q1.send(Message::new("x")).unwrap();
        assert!(a > last1, "q1 id {a} after {last1}");
        last1 = a;
        if i % 3 == 0 {
            let c = q2.send(Message::new("y")).unwrap();
            assert!(c > last2);
            last2 = c;
        }
    }
    let batch = q1.send_batch((0..10).map(|_| Message::new("b"))).unwrap();
    assert!(batch.windows(2).all(|w| w[0] < w[1]) && batch[0] > last1);
}

pub(super) fn invalid_priority_is_rejected(f: &Fixture) {
    let q = f.broker().queue("q").unwrap();
    assert!(matches!(
        q.send(Message::new("x").priority(10)),
        Err(Error::InvalidArgument(_))
    ));
    // A bad message in a batch refuses the batch.
    assert!(q
        .send_batch([Message::new("ok"), Message::new("bad").priority(200)])
        .is_err());
    assert_eq!(q.stats().sent, 0);
}
