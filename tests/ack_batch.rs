//! `Delivery::ack_all`: many deliveries of one queue acked at once, in-process
//! and attached (one `ACK_BATCH` request), with the same results.
use libqueue::*;
use std::sync::Arc;
use std::time::Duration;

/// `q` and `other` are handles (of the broker under test) of two queues the
/// host `hq` also has; `clock` drives the host's timers.
fn conformance(hq: &Queue, q: &Queue, other: &Queue, clock: &ManualClock) {
    for i in 0..6u8 {
        q.send(Message::new(vec![i])).unwrap();
    }
    // Every one acked: one Ok per delivery, in order.
    let ds = q.receive_batch(4, Wait::Try).unwrap();
    assert_eq!(ds.len(), 4);
    let results = Delivery::ack_all(ds).unwrap();
    assert_eq!(results, vec![Ok(()); 4]);
    assert_eq!(hq.stats().acked, 4);
    assert_eq!(hq.stats().leased, 0);

    // An expired lease fails alone; the others are still acked.
    let stale = q.try_receive().unwrap().unwrap();
    let stale_id = stale.id();
    clock.advance(Duration::from_secs(3600));
    let mut ds = q.receive_batch(4, Wait::Try).unwrap();
    assert_eq!(ds.len(), 2, "the expired one is ready again");
    ds.insert(1, stale);
    let results = Delivery::ack_all(ds).unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert_eq!(results[1], Err(Error::LeaseExpired { id: stale_id }));
    let st = hq.stats();
    assert_eq!((st.acked, st.ready, st.leased), (6, 0, 0));

    // Checked before anything is acked: another queue's delivery...
    q.send(Message::new("mine")).unwrap();
    other.send(Message::new("theirs")).unwrap();
    let mine = q.try_receive().unwrap().unwrap();
    let theirs = other.try_receive().unwrap().unwrap();
    assert!(matches!(
        Delivery::ack_all(vec![mine, theirs]),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(hq.stats().acked, 6, "nothing acked");
    // ... (both go back once their leases run out) and an auto-acked one.
    clock.advance(Duration::from_secs(3600));
    let leased = q.try_receive().unwrap().unwrap();
    q.send(Message::new("auto")).unwrap();
    let auto = q.receive_auto_ack(Wait::Try).unwrap().unwrap();
    let acked_before = hq.stats().acked;
    assert!(matches!(
        Delivery::ack_all(vec![leased, auto]),
        Err(Error::InvalidState(_))
    ));
    assert_eq!(hq.stats().acked, acked_before, "nothing acked");
    // Nothing to ack: nothing to do.
    assert_eq!(Delivery::ack_all(Vec::new()).unwrap(), vec![]);
    clock.advance(Duration::from_secs(3600));
    let theirs = other.try_receive().unwrap().unwrap();
    assert_eq!(Delivery::ack_all(vec![theirs]).unwrap(), vec![Ok(())]);
}

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Broker {
    Broker::open(
        BrokerOptions::new()
            .data_dir(dir)
            .clock(clock.clone() as Arc<dyn Clock>),
    )
    .unwrap()
}

#[test]
fn ack_all_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000_000);
    let b = open(dir.path(), &clock);
    let (q, other) = (b.queue("a").unwrap(), b.queue("b").unwrap());
    conformance(&q, &q, &other, &clock);
}

#[test]
fn ack_all_attached() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000_000);
    let host = open(dir.path(), &clock);
    let att = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    assert!(att.is_attached());
    let hq = host.queue("a").unwrap();
    let (q, other) = (att.queue("a").unwrap(), att.queue("b").unwrap());
    conformance(&hq, &q, &other, &clock);
    // Deliveries of two handles of one queue are of the same queue.
    let q2 = att.queue("a").unwrap();
    q.send(Message::new("x")).unwrap();
    q.send(Message::new("y")).unwrap();
    let a = q.try_receive().unwrap().unwrap();
    let b = q2.try_receive().unwrap().unwrap();
    assert_eq!(Delivery::ack_all(vec![a, b]).unwrap(), vec![Ok(()), Ok(())]);
    // A host's and an attached broker's deliveries are not.
    q.send(Message::new("z")).unwrap();
    q.send(Message::new("w")).unwrap();
    let a = q.try_receive().unwrap().unwrap();
    let b = hq.try_receive().unwrap().unwrap();
    assert!(matches!(
        Delivery::ack_all(vec![a, b]),
        Err(Error::InvalidArgument(_))
    ));
    // Once the attached broker is closed: Closed, typed.
    clock.advance(Duration::from_secs(3600));
    let a = q.try_receive().unwrap().unwrap();
    att.close();
    assert!(matches!(Delivery::ack_all(vec![a]), Err(Error::Closed)));
}
