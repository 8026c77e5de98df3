//! Behaviour tests: one per feature of the engine core, each error included.
//! Time-dependent tests drive a ManualClock; none sleeps for correctness.
//!
//! The conformance suite of the storage backends: every test taking a
//! `&Fixture` runs twice (see `conformance/mod.rs` and the `conformance!` list
//! at the end): `memory::<test>` on the in-memory broker, `journal::<test>` on a
//! data directory with persistent messages, where the `reopen_*` tests also
//! close the broker and check what the reopened directory brings back. The few
//! plain `#[test]`s say why they are not per backend.

mod conformance;

use conformance::{Backend, Fixture, START};
use libqueue::*;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

fn ids(q: &Queue) -> Vec<u64> {
    let mut v = Vec::new();
    while let Some(d) = q.receive_auto_ack(Wait::Try).unwrap() {
        v.push(d.id());
    }
    v
}

// ---- names, namespaces, queues ------------------------------------------------

fn queue_names_are_validated(f: &Fixture) {
    let b = f.broker();
    for bad in ["", "has space", "slash/x", "ü", &"x".repeat(65)] {
        assert_eq!(
            b.queue(bad).unwrap_err(),
            Error::InvalidName(bad.to_string()),
            "{bad:?}"
        );
        assert!(matches!(
            b.namespace(bad).unwrap_err(),
            Error::InvalidName(_)
        ));
    }
    for good in ["a", "A-b_c.d", &"x".repeat(64), "0"] {
        b.queue(good).unwrap();
    }
    assert!(Error::InvalidName("x y".into())
        .to_string()
        .contains("[A-Za-z0-9_.-]"));
}

fn queues_created_on_first_use_or_explicitly(f: &Fixture) {
    let b = f.broker();
    let ns = b.namespace("t1").unwrap();
    assert_eq!(ns.list_queues(), Vec::<String>::new());
    ns.queue("auto").unwrap();
    ns.create_queue("explicit", f.opts().max_messages(5))
        .unwrap();
    assert_eq!(
        ns.create_queue("explicit", f.opts()).unwrap_err(),
        Error::AlreadyExists("queue \"explicit\"".into())
    );
    assert_eq!(ns.list_queues(), vec!["auto", "explicit"]);
    assert_eq!(
        ns.get_queue("explicit").unwrap().options().max_messages,
        Some(5)
    );
    assert!(matches!(ns.get_queue("nope"), Err(Error::NotFound(_))));
    assert!(matches!(b.get_namespace("nope"), Err(Error::NotFound(_))));
    // Declared again with its own quotas: the same namespace; with others:
    // refused.
    b.create_namespace("t1", Quotas::default()).unwrap();
    assert!(matches!(
        b.create_namespace("t1", Quotas::default().max_queues(1)),
        Err(Error::AlreadyExists(_))
    ));
    assert_eq!(b.namespaces(), vec!["default", "t1"]);
}

fn invalid_queue_options_are_rejected(f: &Fixture) {
    let ns = f.broker().namespace("n").unwrap();
    for o in [
        f.opts().max_messages(0),
        f.opts().max_bytes(0),
        f.opts().lease_time(Duration::ZERO),
        f.opts().max_deliveries(0),
        f.opts().default_priority(10),
        f.opts().shards(0),
        f.opts().dead_letter_queue("q"),
    ] {
        assert!(
            matches!(
                ns.create_queue("q", o.clone()),
                Err(Error::InvalidArgument(_))
            ),
            "{o:?}"
        );
    }
    assert!(matches!(
        ns.create_queue("q", f.opts().dead_letter_queue("bad name")),
        Err(Error::InvalidName(_))
    ));
}

fn default_queue_needs_no_name(f: &Fixture) {
    let b = f.broker();
    let id = b.send(Message::new("simplest")).unwrap();
    let q = b.default_queue().unwrap();
    assert_eq!(q.name(), DEFAULT_QUEUE);
    assert_eq!(q.namespace(), DEFAULT_NAMESPACE);
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!((d.id(), d.body()), (id, &b"simplest"[..]));
    d.ack().unwrap();
}

fn namespaces_are_isolated(f: &Fixture) {
    let b = f.broker();
    let a = b.namespace("a").unwrap();
    let z = b.namespace("z").unwrap();
    a.send("jobs", Message::new("for a")).unwrap();
    let zq = z.queue("jobs").unwrap();
    assert!(zq.try_receive().unwrap().is_none());
    assert_eq!(z.stats().totals.sent, 0);
    assert_eq!(a.stats().totals.ready, 1);
    z.queue("jobs").unwrap().purge().unwrap();
    assert_eq!(a.queue("jobs").unwrap().stats().ready, 1);
}

// ---- quotas ---------------------------------------------------------------------

fn quota_max_queues(f: &Fixture) {
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

fn quota_max_messages_is_exact_and_per_namespace(f: &Fixture) {
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

fn quota_max_bytes_and_message_size(f: &Fixture) {
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

fn default_max_message_size_is_enforced(f: &Fixture) {
    let q = f.broker().queue("q").unwrap();
    let big = vec![0u8; DEFAULT_MAX_MESSAGE_SIZE as usize + 1];
    assert!(matches!(
        q.send(Message::new(big)),
        Err(Error::MessageTooLarge { .. })
    ));
    assert_eq!(q.stats().sent, 0);
}

// ---- capacity: block / timeout / reject ---------------------------------------------

fn full_queue_reject(f: &Fixture) {
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

fn full_queue_bytes_capacity(f: &Fixture) {
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

fn full_queue_timeout_on_the_clock(f: &Fixture) {
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

fn full_queue_blocks_until_room(f: &Fixture) {
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

fn blocked_sender_wakes_on_close(f: &Fixture) {
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

// ---- messages ---------------------------------------------------------------------------

fn message_fields_round_trip(f: &Fixture) {
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
fn queue_outlives_its_broker(f: &Fixture) {
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

fn ids_increase_per_queue(f: &Fixture) {
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

fn invalid_priority_is_rejected(f: &Fixture) {
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

// ---- ordering ---------------------------------------------------------------------------

fn fifo_within_priority_higher_first(f: &Fixture) {
    let q = f.broker().queue("q").unwrap();
    let mut expect = Vec::new();
    let mut sent = Vec::new();
    for i in 0..30u8 {
        let p = i % 3 * 4; // 0, 4, 8
        let id = q.send(Message::new(vec![i]).priority(p)).unwrap();
        sent.push((p, id));
    }
    for p in [8, 4, 0] {
        expect.extend(sent.iter().filter(|(pp, _)| *pp == p).map(|(_, id)| *id));
    }
    assert_eq!(ids(&q), expect);
}

fn fifo_per_producer_across_threads(f: &Fixture) {
    let q = f.broker().queue("q").unwrap();
    let producers: Vec<_> = (0..4u8)
        .map(|p| {
            let q = q.clone();
            thread::spawn(move || {
                for i in 0..2000u32 {
                    let mut body = vec![p];
                    body.extend_from_slice(&i.to_le_bytes());
                    q.send(Message::new(body)).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0u32; 4];
    let mut got = 0;
    while got < 8000 {
        if let Some(d) = q
            .receive_auto_ack(Wait::For(Duration::from_secs(5)))
            .unwrap()
        {
            let p = d.body()[0] as usize;
            let i = u32::from_le_bytes(d.body()[1..5].try_into().unwrap());
            assert_eq!(i, next[p], "producer {p} out of order");
            next[p] += 1;
            got += 1;
        }
    }
    for p in producers {
        p.join().unwrap();
    }
}

fn strict_fifo_queue_wide(f: &Fixture) {
    let ns = f.broker().namespace("n").unwrap();
    let q = ns.create_queue("q", f.opts().strict_fifo(true)).unwrap();
    let a = q.clone();
    let sent: Vec<u64> = thread::spawn(move || {
        (0..100)
            .map(|_| a.send(Message::new("a")).unwrap())
            .collect()
    })
    .join()
    .unwrap();
    let more: Vec<u64> = (0..100)
        .map(|_| q.send(Message::new("b")).unwrap())
        .collect();
    let all: Vec<u64> = sent.into_iter().chain(more).collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(ids(&q), all);
}

// ---- receive forms ----------------------------------------------------------------------------

fn receive_try_blocking_timeout(f: &Fixture) {
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

fn blocked_receiver_wakes_on_close(f: &Fixture) {
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

fn batches(f: &Fixture) {
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

fn batch_receive_timeout_on_the_clock(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    let q2 = q.clone();
    let h = thread::spawn(move || q2.receive_batch(5, Wait::For(10 * MS)).unwrap().len());
    thread::sleep(Duration::from_millis(10));
    clock.advance(11 * MS);
    assert_eq!(h.join().unwrap(), 0);
}

// ---- leases -----------------------------------------------------------------------------------

fn ack_removes_for_good(f: &Fixture) {
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

fn expired_lease_redelivers_and_stale_ack_fails(f: &Fixture) {
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

fn blocked_receiver_gets_redelivery_when_clock_moves(f: &Fixture) {
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

fn extend_renews_the_lease(f: &Fixture) {
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

fn nack_now_and_later(f: &Fixture) {
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

fn auto_ack_is_at_most_once(f: &Fixture) {
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

fn unsettled_delivery_dropped_is_redelivered_after_lease(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    q.send(Message::new("x")).unwrap();
    drop(q.try_receive().unwrap().unwrap());
    clock.advance(f.opts().lease_time);
    assert_eq!(q.try_receive().unwrap().unwrap().delivery_count(), 2);
}

// ---- dead letters -------------------------------------------------------------------------------

fn max_deliveries_moves_to_dead_letter_queue(f: &Fixture) {
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

fn lease_expiry_can_dead_letter(f: &Fixture) {
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

fn max_deliveries_without_dlq_drops_and_counts(f: &Fixture) {
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

fn dead_letters_bypass_dlq_capacity(f: &Fixture) {
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

// ---- TTL and delay --------------------------------------------------------------------------------

fn expired_messages_are_never_delivered(f: &Fixture) {
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

fn queue_default_ttl_and_delay(f: &Fixture) {
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

fn delayed_not_before_their_time(f: &Fixture) {
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

fn delayed_message_wakes_blocked_receiver(f: &Fixture) {
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

fn delayed_message_wakes_blocked_receiver_on_system_clock(f: &Fixture) {
    let q = f.broker().queue("q").unwrap();
    let q2 = q.clone();
    let h = thread::spawn(move || q2.receive().unwrap().body().to_vec());
    thread::sleep(Duration::from_millis(10));
    q.send(Message::new("d").delay(Duration::from_millis(30)))
        .unwrap();
    assert_eq!(h.join().unwrap(), b"d");
}

fn message_expiring_while_delayed_is_dropped(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    q.send(Message::new("x").delay(50 * MS).ttl(20 * MS))
        .unwrap();
    clock.advance(60 * MS);
    assert!(q.try_receive().unwrap().is_none());
    assert_eq!(q.stats().expired, 1);
}

// ---- peek, cancel, purge, stats -------------------------------------------------------------------

fn peek_does_not_lease(f: &Fixture) {
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

fn cancel_pending_by_id(f: &Fixture) {
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

fn purge_removes_ready_and_delayed(f: &Fixture) {
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

fn stats_are_exact(f: &Fixture) {
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

fn delete_queue_frees_quota_and_closes_handles(f: &Fixture) {
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

// ---- storage trait -----------------------------------------------------------------------------------
// Not per backend: these tests plug in storage backends of their own (a
// recording one, a failing one) to check what the engine tells a backend.

#[derive(Default)]
struct Recording(parking_lot::Mutex<Vec<String>>);

impl Storage for Recording {
    fn name(&self) -> &'static str {
        "recording"
    }
    fn append(&self, r: &store::Record<'_>) -> Result<()> {
        let line = Self::line(r);
        self.0.lock().push(line);
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        self.0.lock().push("flush".into());
        Ok(())
    }
}

impl Recording {
    fn line(r: &store::Record<'_>) -> String {
        use store::Record::*;
        match r {
            Group(rs) => format!(
                "group [{}]",
                rs.iter().map(Self::line).collect::<Vec<_>>().join(", ")
            ),
            QueueDefined { queue, .. } => format!("define {queue}"),
            Enqueued { queue, message, .. } => {
                format!(
                    "enqueue {queue} {}",
                    String::from_utf8_lossy(message.body())
                )
            }
            Removed {
                queue, id, reason, ..
            } => format!("remove {queue} {id} {reason:?}"),
            Delivered {
                queue,
                id,
                deliveries,
                ..
            } => format!("deliver {queue} {id} {deliveries}"),
            NextId { .. } => "next id".into(),
            NamespaceDefined { namespace, quotas } => {
                format!("namespace {namespace} {:?}", quotas.max_messages)
            }
            TopicDefined { topic, .. } => format!("topic {topic}"),
            Subscribed {
                topic,
                queue,
                filter,
                ..
            } => format!("subscribe {topic} {queue} {filter:?}"),
            Unsubscribed { topic, queue, .. } => format!("unsubscribe {topic} {queue}"),
            _ => "other".into(),
        }
    }
}

struct Failing;
impl Storage for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn append(&self, r: &store::Record<'_>) -> Result<()> {
        match r {
            store::Record::Enqueued { .. } => Err(Error::Storage("disk full".into())),
            store::Record::Group(rs)
                if rs
                    .iter()
                    .any(|r| matches!(r, store::Record::Enqueued { .. })) =>
            {
                Err(Error::Storage("disk full".into()))
            }
            _ => Ok(()),
        }
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[test]
fn storage_sees_persistent_messages_only() {
    let rec = Arc::new(Recording::default());
    let b = Broker::open(BrokerOptions::new().storage(rec.clone())).unwrap();
    assert_eq!(b.storage_name(), "recording");
    let q = b.queue("q").unwrap();
    q.send(Message::new("volatile")).unwrap();
    let id = q.send(Message::new("kept").persistent(true)).unwrap();
    q.receive_auto_ack(Wait::Try).unwrap();
    let d = q.try_receive().unwrap().unwrap();
    d.nack().unwrap();
    q.try_receive().unwrap().unwrap().ack().unwrap();
    b.flush().unwrap();
    assert_eq!(
        *rec.0.lock(),
        vec![
            "namespace default None".to_string(),
            "define q".into(),
            "enqueue q kept".into(),
            format!("deliver q {id} 1"),
            format!("deliver q {id} 1"),
            format!("deliver q {id} 2"),
            format!("remove q {id} Acked"),
            "flush".into(),
        ]
    );
}

/// Definitions reach the storage once, in order, before the call returns;
/// declaring them again appends nothing.
#[test]
fn storage_sees_each_definition_once() {
    let rec = Arc::new(Recording::default());
    let b = Broker::open(BrokerOptions::new().storage(rec.clone())).unwrap();
    for _ in 0..2 {
        let ns = b
            .create_namespace("t", Quotas::default().max_messages(5))
            .unwrap();
        let topic = ns.topic("ev").unwrap();
        topic.subscribe("s", Filter::name("n")).unwrap();
    }
    let topic = b.namespace("t").unwrap().topic("ev").unwrap();
    topic.subscribe("s", Filter::All).unwrap();
    topic.unsubscribe("s").unwrap();
    assert!(matches!(topic.unsubscribe("s"), Err(Error::NotFound(_))));
    assert_eq!(
        *rec.0.lock(),
        vec![
            "namespace default None".to_string(),
            "namespace t Some(5)".into(),
            "topic ev".into(),
            "define s".into(),
            "subscribe ev s Name(\"n\")".into(),
            "subscribe ev s All".into(),
            "unsubscribe ev s".into(),
        ]
    );
}

/// A definition the storage refuses is not made.
#[test]
fn storage_failure_refuses_a_definition() {
    struct NoDefs;
    impl Storage for NoDefs {
        fn name(&self) -> &'static str {
            "nodefs"
        }
        fn append(&self, r: &store::Record<'_>) -> Result<()> {
            match r {
                store::Record::NamespaceDefined { namespace, .. } if *namespace != "default" => {
                    Err(Error::Storage("disk full".into()))
                }
                store::Record::TopicDefined { topic, .. } if *topic == "bad" => {
                    Err(Error::Storage("disk full".into()))
                }
                store::Record::Subscribed { .. } | store::Record::Unsubscribed { .. } => {
                    Err(Error::Storage("disk full".into()))
                }
                _ => Ok(()),
            }
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
    }
    let b = Broker::open(BrokerOptions::new().storage(Arc::new(NoDefs))).unwrap();
    assert!(matches!(b.namespace("t"), Err(Error::Storage(_))));
    assert_eq!(b.namespaces(), vec!["default"]);
    let ns = b.default_namespace().unwrap();
    assert!(matches!(ns.topic("bad"), Err(Error::Storage(_))));
    assert!(ns.list_topics().is_empty());
    let t = ns.topic("good").unwrap();
    assert!(matches!(
        t.subscribe("s", Filter::All),
        Err(Error::Storage(_))
    ));
    assert!(t.subscriptions().is_empty());
    assert_eq!(t.publish(Message::new("x")).unwrap(), 0);
    assert_eq!(t.stats().dropped_no_subscriber, 1);
}

#[test]
fn storage_failure_refuses_the_send_and_loses_nothing() {
    let b = Broker::open(BrokerOptions::new().storage(Arc::new(Failing))).unwrap();
    let ns = b
        .create_namespace("t", Quotas::default().max_messages(1))
        .unwrap();
    let q = ns.queue("q").unwrap();
    assert_eq!(
        q.send(Message::new("p").persistent(true)).unwrap_err(),
        Error::Storage("disk full".into())
    );
    // The quota was given back: a volatile message still fits.
    q.send(Message::new("v")).unwrap();
    assert_eq!(q.stats().sent, 1);
}

/// A batch is one storage unit: a storage error refuses all of it (nothing of
/// it is queued, its room is given back), volatile messages in it included.
#[test]
fn storage_failure_refuses_the_whole_batch() {
    let b = Broker::open(BrokerOptions::new().storage(Arc::new(Failing))).unwrap();
    let ns = b
        .create_namespace("t", Quotas::default().max_messages(3))
        .unwrap();
    let q = ns.queue("q").unwrap();
    let batch = vec![
        Message::new("v1"),
        Message::new("p1").persistent(true),
        Message::new("p2").persistent(true),
    ];
    assert_eq!(
        q.send_batch(batch).unwrap_err(),
        Error::Storage("disk full".into())
    );
    assert_eq!(q.stats().sent, 0);
    assert!(q.try_receive().unwrap().is_none());
    // All the room was given back.
    q.send_batch((0..3).map(|i| Message::new(format!("v{i}"))))
        .unwrap();
}

/// A batch's persistent messages reach the storage as one group record, in
/// order; a batch of one persistent message as a plain record.
#[test]
fn batch_is_one_group_record() {
    let rec = Arc::new(Recording::default());
    let b = Broker::open(BrokerOptions::new().storage(rec.clone())).unwrap();
    let q = b.queue("q").unwrap();
    q.send_batch(vec![
        Message::new("a").persistent(true),
        Message::new("volatile"),
        Message::new("b").persistent(true),
    ])
    .unwrap();
    q.send_batch(vec![Message::new("c").persistent(true)])
        .unwrap();
    assert_eq!(
        *rec.0.lock(),
        vec![
            "namespace default None".to_string(),
            "define q".into(),
            "group [enqueue q a, enqueue q b]".into(),
            "enqueue q c".into(),
        ]
    );
}

fn blocked_receiver_sees_lease_expiry_on_system_clock(f: &Fixture) {
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

fn expired_messages_do_not_hold_capacity(f: &Fixture) {
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

fn blocked_sender_wakes_when_a_message_expires(f: &Fixture) {
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

fn late_ack_fails_even_if_nothing_else_ran(f: &Fixture) {
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

fn chained_dead_letters_keep_exact_sizes(f: &Fixture) {
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

/// Not per backend: it records what the engine tells its storage (see above).
#[test]
fn dead_letter_move_is_one_group_record() {
    let rec = Arc::new(Recording::default());
    let b = Broker::open(BrokerOptions::new().storage(rec.clone())).unwrap();
    let ns = b.namespace("n").unwrap();
    let q = ns
        .create_queue(
            "q",
            QueueOptions::default()
                .max_deliveries(1)
                .dead_letter_queue("dlq")
                .persistent(true),
        )
        .unwrap();
    let id = q.send(Message::new("p")).unwrap();
    q.try_receive().unwrap().unwrap().nack().unwrap();
    let log = rec.0.lock().clone();
    // The dead letter's enqueue and the original's removal: one unit, nothing
    // about the move outside it.
    let group = format!("group [enqueue dlq p, remove q {id} DeadLettered]");
    assert_eq!(log.iter().filter(|l| **l == group).count(), 1, "{log:?}");
    assert!(
        !log.iter()
            .any(|l| l == "enqueue dlq p" || l.starts_with("remove q")),
        "{log:?}"
    );
}

// ---- persistence across a reopen --------------------------------------------------------------------
// Each runs on both backends; the part after `f.reopen(..)` (closing the broker
// and opening its data directory again) runs on the journal only.

/// Receives everything ready (leased), returning (id, delivery count, body).
fn drain(q: &Queue) -> Vec<(u64, u32, Vec<u8>)> {
    let mut v = Vec::new();
    while let Some(d) = q.try_receive().unwrap() {
        v.push((d.id(), d.delivery_count(), d.body().to_vec()));
        d.ack().unwrap();
    }
    v
}

#[test]
fn conformance_fixture_persists_only_over_the_journal() {
    for backend in [Backend::Memory, Backend::Journal] {
        let f = Fixture::new(backend);
        let b = f.broker();
        let id = b.queue("q").unwrap().send(Message::new("x")).unwrap();
        let d = b.queue("q").unwrap().try_receive().unwrap().unwrap();
        assert_eq!(d.id(), id);
        assert_eq!(d.is_persistent(), f.is_journal(), "{backend:?}");
        assert_eq!(
            b.storage_name(),
            if f.is_journal() { "journal" } else { "memory" }
        );
        assert_eq!(f.reopen(b).is_some(), f.is_journal());
    }
}

fn reopen_after_ack_nack_and_extend(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().lease_time(100 * MS))
        .unwrap();
    let send = |body: &str| {
        q.send(
            Message::new(body)
                .name(body)
                .header("k", body)
                .header("bin", vec![0u8, 0xff])
                .correlation_id(format!("c-{body}")),
        )
        .unwrap()
    };
    let (acked, nacked, extended, untouched) = (send("a"), send("n"), send("e"), send("u"));
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!(d.id(), acked);
    d.ack().unwrap();
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!(d.id(), nacked);
    d.nack().unwrap();
    let e = q.try_receive().unwrap().unwrap();
    assert_eq!(e.id(), extended);
    clock.advance(80 * MS);
    e.extend().unwrap();
    let Some(b) = f.reopen(b) else { return };
    // Leases are not kept: the extended message is ready again, its delivery counted.
    let q = b.namespace("n").unwrap().get_queue("q").unwrap();
    assert_eq!(q.options().lease_time, 100 * MS);
    let s = q.stats();
    assert_eq!((s.ready, s.leased, s.delayed), (3, 0, 0));
    let mut got = Vec::new();
    while let Some(d) = q.try_receive().unwrap() {
        let body = String::from_utf8(d.body().to_vec()).unwrap();
        assert_eq!(d.name(), Some(body.as_str()));
        assert_eq!(d.header_str("k"), Some(body.as_str()));
        assert_eq!(d.header("bin"), Some(&[0u8, 0xff][..]));
        assert_eq!(d.correlation_id(), Some(format!("c-{body}").as_str()));
        assert!(d.is_persistent());
        got.push((d.id(), d.delivery_count()));
        d.ack().unwrap();
    }
    got.sort();
    assert_eq!(got, vec![(nacked, 2), (extended, 2), (untouched, 1)]);
    let b = f.reopen(b).unwrap();
    let q = b.namespace("n").unwrap().get_queue("q").unwrap();
    assert_eq!(q.stats().depth(), 0, "acked after the first reopen: gone");
}

fn reopen_after_dead_letter_move(f: &Fixture) {
    let (clock, b) = f.manual();
    let ns = b.namespace("n").unwrap();
    let q = ns
        .create_queue(
            "work",
            f.opts()
                .lease_time(10 * MS)
                .max_deliveries(2)
                .dead_letter_queue("work.dlq"),
        )
        .unwrap();
    let poison = q
        .send(Message::new("poison").name("p").header("k", "v"))
        .unwrap();
    let slow = q.send(Message::new("slow")).unwrap();
    q.try_receive().unwrap().unwrap().nack().unwrap(); // poison: 1
    drop(q.try_receive().unwrap().unwrap()); // slow: 1, its lease will expire
    q.try_receive().unwrap().unwrap().nack().unwrap(); // poison: 2 → dead letter
    assert_eq!(ns.get_queue("work.dlq").unwrap().stats().ready, 1);
    let Some(b) = f.reopen(b) else { return };
    let ns = b.namespace("n").unwrap();
    let q = ns.get_queue("work").unwrap();
    assert_eq!(q.options().max_deliveries, Some(2));
    assert_eq!(q.options().dead_letter_queue.as_deref(), Some("work.dlq"));
    let dlq = ns.get_queue("work.dlq").unwrap();
    assert_eq!(dlq.stats().ready, 1);
    let dl = dlq.try_receive().unwrap().unwrap();
    assert_eq!((dl.body(), dl.name()), (&b"poison"[..], Some("p")));
    assert_eq!(dl.header_str("k"), Some("v"));
    assert_eq!(
        dl.header_str("x-dead-letter-reason"),
        Some("nacked; delivered 2 times (max_deliveries 2)")
    );
    assert_eq!(dl.header_str("x-dead-letter-queue"), Some("work"));
    assert_eq!(
        dl.header_str("x-original-id"),
        Some(poison.to_string().as_str())
    );
    assert_eq!(dl.delivery_count(), 1);
    dl.ack().unwrap();
    // "slow" came back ready with its one delivery; the second one is its last.
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!((d.id(), d.delivery_count()), (slow, 2));
    drop(d);
    clock.advance(10 * MS);
    assert!(q.try_receive().unwrap().is_none());
    let dl = dlq.try_receive().unwrap().unwrap();
    assert!(dl
        .header_str("x-dead-letter-reason")
        .unwrap()
        .starts_with("lease expired"));
    dl.ack().unwrap();
    let b = f.reopen(b).unwrap();
    let ns = b.namespace("n").unwrap();
    assert_eq!(ns.stats().totals.depth(), 0);
}

fn reopen_ttl_expiry_on_the_clock(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    let short = q.send(Message::new("short").ttl(100 * MS)).unwrap();
    let long = q.send(Message::new("long").ttl(300 * MS)).unwrap();
    let forever = q.send(Message::new("forever")).unwrap();
    let gone = q.send(Message::new("gone").ttl(10 * MS)).unwrap();
    let held = q.send(Message::new("held").ttl(200 * MS)).unwrap();
    let expires = START + 300_000_000;
    clock.advance(50 * MS); // "gone" expired, not yet swept
    let peek: Vec<u64> = q.peek(10).unwrap().iter().map(|m| m.id()).collect();
    assert_eq!(peek, vec![short, long, forever, held]);
    let _d = q.try_receive().unwrap().unwrap(); // short, leased
    let _ = gone;
    let Some(b) = f.reopen(b) else { return };
    let q = b.queue("q").unwrap();
    assert_eq!(q.stats().ready, 4);
    clock.advance(60 * MS); // 110 ms: "short" expired meanwhile
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!((d.id(), d.expires_at()), (long, Some(expires)));
    d.nack().unwrap();
    // 210 ms: "held" expired too. The advance swept it at once (timers run
    // whether or not anyone calls in); a sweep hands the ready messages on in
    // id order, so the nacked "long" need not come last: compare the sets.
    clock.advance(100 * MS);
    let mut left = ids(&q);
    left.sort_unstable();
    assert_eq!(left, vec![long, forever]);
    assert_eq!(q.stats().expired, 2);
    let b = f.reopen(b).unwrap();
    assert_eq!(b.queue("q").unwrap().stats().depth(), 0);
}

fn reopen_delay_on_the_clock(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().default_delay(200 * MS))
        .unwrap();
    let late = q.send(Message::new("late").delay(100 * MS)).unwrap();
    let default = q.send(Message::new("default")).unwrap();
    let now = q.send(Message::new("now").delay(Duration::ZERO)).unwrap();
    let past = q.send(Message::new("past").delay(10 * MS)).unwrap();
    assert_eq!(q.stats().delayed, 3);
    clock.advance(50 * MS); // "past" is due (promoted by the next receive or stats)
    let Some(b) = f.reopen(b) else { return };
    let q = b.namespace("n").unwrap().get_queue("q").unwrap();
    assert_eq!(q.options().default_delay, Some(200 * MS));
    let s = q.stats();
    assert_eq!((s.ready, s.delayed), (2, 2), "{s:?}");
    assert_eq!(ids(&q), vec![now, past]);
    clock.advance(49 * MS);
    assert!(q.try_receive().unwrap().is_none());
    clock.advance(MS);
    assert_eq!(ids(&q), vec![late]);
    clock.advance(99 * MS);
    assert!(q.try_receive().unwrap().is_none());
    clock.advance(MS);
    assert_eq!(ids(&q), vec![default]);
}

fn reopen_after_purge_cancel_and_delete(f: &Fixture) {
    let b = f.broker();
    let ns = b.namespace("n").unwrap();
    let p = ns.create_queue("purged", f.opts()).unwrap();
    p.send_batch((0..5).map(|_| Message::new("x"))).unwrap();
    p.send(Message::new("later").delay(Duration::from_secs(60)))
        .unwrap();
    p.send(Message::new("ready")).unwrap();
    let held = p.try_receive().unwrap().unwrap(); // the first of the batch
    let held_id = held.id();
    // Purge takes ready and delayed messages; the leased one stays.
    assert_eq!(p.purge().unwrap(), 6);
    let c = ns.create_queue("cancelled", f.opts()).unwrap();
    let a = c.send(Message::new("a")).unwrap();
    let d = c
        .send(Message::new("d").delay(Duration::from_secs(60)))
        .unwrap();
    let z = c.send(Message::new("z")).unwrap();
    c.cancel(a).unwrap();
    c.cancel(d).unwrap();
    let gone = ns.create_queue("deleted", f.opts()).unwrap();
    gone.send(Message::new("1")).unwrap();
    let _leased = gone.try_receive().unwrap().unwrap();
    gone.send(Message::new("2")).unwrap();
    ns.delete_queue("deleted").unwrap();
    let Some(b) = f.reopen(b) else { return };
    let ns = b.namespace("n").unwrap();
    assert_eq!(ns.list_queues(), vec!["cancelled", "purged"]);
    let p = ns.get_queue("purged").unwrap();
    assert_eq!(
        drain(&p).iter().map(|m| (m.0, m.1)).collect::<Vec<_>>(),
        vec![(held_id, 2)]
    );
    let c = ns.get_queue("cancelled").unwrap();
    assert_eq!(ids(&c), vec![z]);
    assert_eq!(c.stats().delayed, 0);
    // A queue of the deleted one's name starts empty.
    assert_eq!(ns.queue("deleted").unwrap().stats().depth(), 0);
}

fn reopen_keeps_priority_order(f: &Fixture) {
    let b = f.broker();
    let q = b.queue("q").unwrap();
    let mut sent = Vec::new();
    for i in 0..40u8 {
        let p = i * 7 % 10;
        sent.push((p, q.send(Message::new(vec![i]).priority(p)).unwrap()));
    }
    let mut expect: Vec<(u8, u64)> = sent.clone();
    expect.sort_by_key(|(p, id)| (std::cmp::Reverse(*p), *id));
    let expect: Vec<u64> = expect.into_iter().map(|(_, id)| id).collect();
    let peek: Vec<u64> = q.peek(100).unwrap().iter().map(|m| m.id()).collect();
    assert_eq!(peek, expect);
    let Some(b) = f.reopen(b) else {
        assert_eq!(ids(&q), expect);
        return;
    };
    let q = b.queue("q").unwrap();
    for m in q.peek(100).unwrap() {
        let p = sent.iter().find(|(_, id)| *id == m.id()).unwrap().0;
        assert_eq!(m.priority(), p);
    }
    assert_eq!(ids(&q), expect);
}

fn reopen_ids_continue(f: &Fixture) {
    let b = f.broker();
    let q = b.queue("q").unwrap();
    let first = q.send_batch((0..10).map(|_| Message::new("x"))).unwrap();
    let dlq_src = b
        .default_namespace()
        .unwrap()
        .create_queue("src", f.opts().max_deliveries(1).dead_letter_queue("dl"))
        .unwrap();
    dlq_src.send(Message::new("d")).unwrap();
    dlq_src.try_receive().unwrap().unwrap().nack().unwrap();
    // Ack all but the highest id and one in the middle.
    for d in q.receive_batch(10, Wait::Try).unwrap() {
        if d.id() == first[9] || d.id() == first[4] {
            drop(d);
        } else {
            d.ack().unwrap();
        }
    }
    let Some(b) = f.reopen(b) else { return };
    let q = b.queue("q").unwrap();
    let next = q.send(Message::new("new")).unwrap();
    assert!(next > first[9], "id {next} reused (ids up to {})", first[9]);
    let all = ids(&q);
    assert_eq!(all, vec![first[4], first[9], next]);
    let dl = b.queue("dl").unwrap();
    let moved = dl.peek(1).unwrap()[0].id();
    assert!(dl.send(Message::new("y")).unwrap() > moved);
}

fn reopen_ids_not_reused_after_everything_was_acked(f: &Fixture) {
    let b = f.broker();
    let q = b.queue("q").unwrap();
    let sent = q.send_batch((0..3).map(|_| Message::new("x"))).unwrap();
    assert_eq!(ids(&q), sent);
    let Some(b) = f.reopen(b) else { return };
    let next = b.queue("q").unwrap().send(Message::new("new")).unwrap();
    assert!(next > sent[2], "id {next} reused (ids up to {})", sent[2]);
}

fn reopen_keeps_queue_options_and_volatile_messages_are_lost(f: &Fixture) {
    let b = f.broker();
    let ns = b.namespace("n").unwrap();
    let opts = f
        .opts()
        .max_messages(7)
        .max_bytes(1000)
        .on_full(OnFull::Reject)
        .default_ttl(Duration::from_secs(60))
        .default_priority(3)
        .lease_time(Duration::from_secs(9))
        .max_deliveries(4)
        .dead_letter_queue("dead")
        .strict_fifo(true);
    let q = ns.create_queue("q", opts.clone()).unwrap();
    ns.create_queue("plain", QueueOptions::default()).unwrap();
    let kept = q.send(Message::new("kept")).unwrap();
    q.send(Message::new("volatile").persistent(false)).unwrap();
    let Some(b) = f.reopen(b) else { return };
    let ns = b.namespace("n").unwrap();
    assert_eq!(ns.list_queues(), vec!["dead", "plain", "q"]);
    let q = ns.get_queue("q").unwrap();
    assert_eq!(q.options(), &opts);
    assert!(!ns.get_queue("plain").unwrap().options().persistent);
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!((d.id(), d.priority()), (kept, 3));
    assert!(q.try_receive().unwrap().is_none(), "non-persistent: gone");
}

fn reopen_stats_gauges_are_exact(f: &Fixture) {
    let (clock, b) = f.manual();
    let ns = b.namespace("n").unwrap();
    let q = ns.queue("q").unwrap();
    q.send(Message::new("12345").name("nm")).unwrap();
    clock.advance(5 * MS);
    q.send(Message::new("123").header("k", "v")).unwrap();
    q.send(Message::new("1").delay(10 * MS)).unwrap();
    let _leased = q.try_receive().unwrap().unwrap();
    let before = q.stats();
    let Some(b) = f.reopen(b) else { return };
    let q = b.namespace("n").unwrap().get_queue("q").unwrap();
    let s = q.stats();
    // The leased message is ready again; counters restart (not journaled).
    assert_eq!(
        (s.ready, s.leased, s.delayed, s.bytes, s.oldest_age),
        (2, 0, 1, before.bytes, before.oldest_age)
    );
    assert_eq!(s.depth(), before.depth());
}

fn reopen_repeatedly_keeps_delivery_counts(f: &Fixture) {
    let b = f.broker();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().max_deliveries(3).dead_letter_queue("q.dlq"))
        .unwrap();
    let id = q.send(Message::new("x")).unwrap();
    q.send(Message::new("ok")).unwrap();
    let mut b = b;
    for round in 1..=3u32 {
        let q = b.namespace("n").unwrap().get_queue("q").unwrap();
        let d = q.try_receive().unwrap().unwrap();
        assert_eq!((d.id(), d.delivery_count()), (id, round));
        if round < 3 {
            drop(d); // leased when the broker closes
        } else {
            d.nack().unwrap(); // the third delivery: dead-lettered
        }
        match f.reopen(b) {
            Some(next) => b = next,
            None => return,
        }
    }
    let ns = b.namespace("n").unwrap();
    let q = ns.get_queue("q").unwrap();
    assert_eq!(drain(&q).len(), 1);
    let dl = ns
        .get_queue("q.dlq")
        .unwrap()
        .try_receive()
        .unwrap()
        .unwrap();
    assert_eq!(dl.header_str("x-delivery-count"), Some("3"));
}

fn reopen_after_auto_ack_and_batches(f: &Fixture) {
    let b = f.broker();
    let q = b.queue("q").unwrap();
    let sent = q
        .send_batch((0..10u8).map(|i| Message::new(vec![i])))
        .unwrap();
    assert_eq!(q.receive_batch_auto_ack(3, Wait::Try).unwrap().len(), 3);
    q.receive_auto_ack(Wait::Try).unwrap().unwrap();
    let batch = q.receive_batch(3, Wait::Try).unwrap();
    for d in batch.into_iter().skip(1) {
        d.ack().unwrap();
    }
    let Some(b) = f.reopen(b) else { return };
    let q = b.queue("q").unwrap();
    let got = drain(&q);
    let want: Vec<(u64, u32, Vec<u8>)> = [4usize, 7, 8, 9]
        .iter()
        .map(|&i| (sent[i], if i == 4 { 2 } else { 1 }, vec![i as u8]))
        .collect();
    assert_eq!(got, want);
}

/// Consumed messages' nodes (and bodies up to 4 KiB) are recycled for later
/// sends on the same thread: nothing of an old message may show through a new
/// one — not its headers, name, correlation id, priority, expiry, delivery
/// count or body bytes — whether the new one is a `Message` or a `send_bytes`
/// copy of the same length (buffer reused in place) or another length.
fn recycled_messages_carry_nothing_over(f: &Fixture) {
    let b = f.broker();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().max_deliveries(5))
        .unwrap();
    let full = || {
        Message::new("old!")
            .name("old-name")
            .correlation_id("old-corr")
            .header("k", "v")
            .priority(9)
            .ttl(Duration::from_secs(3600))
    };
    for round in 0..3 {
        // Leased, nacked once (delivery count 2), then acked; and auto-acked.
        q.send(full()).unwrap();
        q.try_receive().unwrap().unwrap().nack().unwrap();
        let d = q.try_receive().unwrap().unwrap();
        assert_eq!(d.delivery_count(), 2);
        d.ack().unwrap();
        q.send(full()).unwrap();
        drop(q.receive_auto_ack(Wait::Try).unwrap().unwrap());

        let ids = [
            q.send_bytes(b"new1").unwrap(),
            q.send_bytes(b"xy").unwrap(),
            q.send(Message::new("newer")).unwrap(),
            q.send_bytes(&[7u8; 4096]).unwrap(),
            q.send_bytes(b"").unwrap(),
        ];
        let bodies: [&[u8]; 5] = [b"new1", b"xy", b"newer", &[7u8; 4096], b""];
        let s = q.stats();
        assert_eq!(
            s.bytes,
            bodies.iter().map(|b| b.len() as u64).sum::<u64>(),
            "round {round}"
        );
        let b2 = f.reopen(b.clone());
        let q2 = match &b2 {
            Some(b2) => b2.namespace("n").unwrap().queue("q").unwrap(),
            None => q.clone(),
        };
        for (id, body) in ids.iter().zip(bodies) {
            let d = q2.try_receive().unwrap().unwrap();
            assert_eq!(d.id(), *id, "round {round}");
            assert_eq!(d.body(), body);
            assert!(d.headers().is_empty(), "headers carried over");
            assert_eq!((d.name(), d.correlation_id()), (None, None));
            assert_eq!(d.priority(), DEFAULT_PRIORITY);
            assert_eq!(d.expires_at(), None);
            assert_eq!(d.delivery_count(), 1);
            d.ack().unwrap();
        }
        assert!(q2.try_receive().unwrap().is_none());
        if b2.is_some() {
            return; // the journal variant ends after one reopen
        }
    }
}

// ---- the suite: every test above taking a `&Fixture`, once per backend -------------------------------

conformance! {
    queue_names_are_validated,
    queues_created_on_first_use_or_explicitly,
    invalid_queue_options_are_rejected,
    default_queue_needs_no_name,
    namespaces_are_isolated,
    quota_max_queues,
    quota_max_messages_is_exact_and_per_namespace,
    quota_max_bytes_and_message_size,
    default_max_message_size_is_enforced,
    full_queue_reject,
    full_queue_bytes_capacity,
    full_queue_timeout_on_the_clock,
    full_queue_blocks_until_room,
    blocked_sender_wakes_on_close,
    message_fields_round_trip,
    ids_increase_per_queue,
    invalid_priority_is_rejected,
    fifo_within_priority_higher_first,
    fifo_per_producer_across_threads,
    strict_fifo_queue_wide,
    receive_try_blocking_timeout,
    blocked_receiver_wakes_on_close,
    batches,
    batch_receive_timeout_on_the_clock,
    ack_removes_for_good,
    expired_lease_redelivers_and_stale_ack_fails,
    blocked_receiver_gets_redelivery_when_clock_moves,
    extend_renews_the_lease,
    nack_now_and_later,
    auto_ack_is_at_most_once,
    unsettled_delivery_dropped_is_redelivered_after_lease,
    max_deliveries_moves_to_dead_letter_queue,
    lease_expiry_can_dead_letter,
    max_deliveries_without_dlq_drops_and_counts,
    dead_letters_bypass_dlq_capacity,
    expired_messages_are_never_delivered,
    queue_default_ttl_and_delay,
    delayed_not_before_their_time,
    delayed_message_wakes_blocked_receiver,
    delayed_message_wakes_blocked_receiver_on_system_clock,
    message_expiring_while_delayed_is_dropped,
    peek_does_not_lease,
    cancel_pending_by_id,
    purge_removes_ready_and_delayed,
    stats_are_exact,
    delete_queue_frees_quota_and_closes_handles,
    blocked_receiver_sees_lease_expiry_on_system_clock,
    expired_messages_do_not_hold_capacity,
    blocked_sender_wakes_when_a_message_expires,
    late_ack_fails_even_if_nothing_else_ran,
    chained_dead_letters_keep_exact_sizes,
    reopen_after_ack_nack_and_extend,
    reopen_after_dead_letter_move,
    reopen_ttl_expiry_on_the_clock,
    reopen_delay_on_the_clock,
    reopen_after_purge_cancel_and_delete,
    reopen_keeps_priority_order,
    reopen_ids_continue,
    reopen_ids_not_reused_after_everything_was_acked,
    queue_outlives_its_broker,
    reopen_keeps_queue_options_and_volatile_messages_are_lost,
    reopen_stats_gauges_are_exact,
    reopen_repeatedly_keeps_delivery_counts,
    reopen_after_auto_ack_and_batches,
    recycled_messages_carry_nothing_over,
}
