//! Namespaces (with their quotas), topics and subscriptions (with their
//! filters) are definitions a persistent broker keeps: journaled before the
//! call returns, replayed on open, carried through checkpoints. Each test runs
//! on both storage backends (`conformance/mod.rs`); the part after
//! `f.reopen(..)` runs on the journal only. Declaring the same thing again
//! (the same quotas, the same filter) changes nothing; other quotas are
//! `AlreadyExists`; another filter replaces the old one.

mod conformance;

use conformance::{Backend, Fixture};
use libqueue::*;

/// The scenario: a tenant with a quota and a subscription, closed and
/// reopened: the publish is delivered, the quota enforced.
fn quotas_and_subscriptions_survive_a_reopen(f: &Fixture) {
    let b = f.broker();
    let ns = b
        .create_namespace("tenant", Quotas::default().max_messages(5))
        .unwrap();
    ns.create_queue("sub1", f.opts()).unwrap();
    ns.topic("events")
        .unwrap()
        .subscribe("sub1", Filter::All)
        .unwrap();
    assert_eq!(
        ns.topic("events")
            .unwrap()
            .publish(Message::new("one"))
            .unwrap(),
        1
    );
    drop(ns);
    let Some(b) = f.reopen(b) else { return };
    assert_eq!(b.namespaces(), vec!["default", "tenant"]);
    let ns = b.namespace("tenant").unwrap();
    assert_eq!(ns.quotas(), &Quotas::default().max_messages(5));
    assert_eq!(ns.list_topics(), vec!["events"]);
    let t = ns.topic("events").unwrap();
    assert_eq!(t.subscriptions(), vec!["sub1"]);
    assert_eq!(t.publish(Message::new("two")).unwrap(), 1);
    let sub1 = ns.get_queue("sub1").unwrap();
    assert_eq!(sub1.stats().ready, 2);
    assert_eq!(t.stats().dropped_no_subscriber, 0);
    // 2 held, 3 more fit, then the quota refuses.
    let other = ns.queue("other").unwrap();
    for _ in 0..3 {
        other.send(Message::new("x")).unwrap();
    }
    assert!(matches!(
        other.send(Message::new("x")),
        Err(Error::QuotaExceeded {
            quota: "max_messages",
            limit: 5,
            ..
        })
    ));
    assert_eq!(sub1.try_receive().unwrap().unwrap().body(), b"one");
}

fn filters_of_every_kind_survive(f: &Fixture) {
    let b = f.broker();
    let ns = b.namespace("n").unwrap();
    let t = ns.topic("t").unwrap();
    let filters = [
        ("all", Filter::All),
        ("named", Filter::name("create")),
        ("header", Filter::header("region", b"eu\x00\xff".to_vec())),
        ("exec", Filter::execution_id("run-42")),
    ];
    for (q, filter) in &filters {
        ns.create_queue(q, f.opts()).unwrap();
        t.subscribe(q, filter.clone()).unwrap();
    }
    let check = |b: &Broker| {
        let ns = b.namespace("n").unwrap();
        let t = ns.topic("t").unwrap();
        assert_eq!(t.subscriptions(), vec!["all", "named", "header", "exec"]);
        for (q, filter) in &filters {
            assert_eq!(t.filter(q).as_ref(), Some(filter), "{q}");
        }
        let sends = [
            Message::new("a").name("create"),
            Message::new("b").header("region", b"eu\x00\xff".to_vec()),
            Message::new("c").header(EXECUTION_ID, "run-42"),
            Message::new("d").name("other"),
        ];
        let counts: Vec<usize> = sends.into_iter().map(|m| t.publish(m).unwrap()).collect();
        assert_eq!(counts, vec![2, 2, 2, 1]);
        for (q, want) in [("all", 4), ("named", 1), ("header", 1), ("exec", 1)] {
            let q = ns.get_queue(q).unwrap();
            let mut got = 0;
            while let Some(d) = q.try_receive().unwrap() {
                d.ack().unwrap();
                got += 1;
            }
            assert_eq!(got, want);
        }
    };
    check(&b);
    drop((ns, t));
    let Some(b) = f.reopen(b) else { return };
    check(&b);
}

fn redeclaring_is_idempotent(f: &Fixture) {
    let b = f.broker();
    let quotas = Quotas::default().max_queues(3).max_bytes(1 << 20);
    let ns = b.create_namespace("tenant", quotas.clone()).unwrap();
    let t = ns.topic("t").unwrap();
    t.subscribe("s", Filter::name("x")).unwrap();
    let declare = |b: &Broker| {
        // The same quotas: the namespace as it is; other quotas: refused.
        let ns = b.create_namespace("tenant", quotas.clone()).unwrap();
        assert!(matches!(
            b.create_namespace("tenant", Quotas::default().max_queues(4)),
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            b.create_namespace("tenant", Quotas::default()),
            Err(Error::AlreadyExists(_))
        ));
        assert_eq!(ns.quotas(), &quotas);
        let t = ns.topic("t").unwrap();
        t.subscribe("s", Filter::name("x")).unwrap();
        t.subscribe("s", Filter::name("x")).unwrap();
        assert_eq!(t.subscriptions(), vec!["s"]);
        assert_eq!(ns.list_queues(), vec!["s"]);
        assert_eq!(ns.list_topics(), vec!["t"]);
        assert_eq!(b.namespaces(), vec!["default", "tenant"]);
    };
    declare(&b);
    drop((ns, t));
    let Some(b) = f.reopen(b) else { return };
    declare(&b);
    // Another filter replaces the old one, for good.
    let t = b.namespace("tenant").unwrap().topic("t").unwrap();
    t.subscribe("s", Filter::header("k", "v")).unwrap();
    drop(t);
    let b = f.reopen(b).unwrap();
    let t = b.namespace("tenant").unwrap().topic("t").unwrap();
    assert_eq!(t.subscriptions(), vec!["s"]);
    assert_eq!(t.filter("s"), Some(Filter::header("k", "v")));
}

fn unsubscribe_and_queue_deletion_survive(f: &Fixture) {
    let b = f.broker();
    let ns = b.namespace("n").unwrap();
    let t = ns.topic("t").unwrap();
    let u = ns.topic("u").unwrap();
    for q in ["a", "b", "c"] {
        t.subscribe(q, Filter::All).unwrap();
        u.subscribe(q, Filter::All).unwrap();
    }
    t.unsubscribe("a").unwrap();
    ns.delete_queue("b").unwrap();
    assert_eq!(t.subscriptions(), vec!["c"]);
    assert_eq!(u.subscriptions(), vec!["a", "c"]);
    drop((ns, t, u));
    let Some(b) = f.reopen(b) else { return };
    let ns = b.namespace("n").unwrap();
    assert_eq!(ns.list_queues(), vec!["a", "c"]);
    assert_eq!(ns.topic("t").unwrap().subscriptions(), vec!["c"]);
    assert_eq!(ns.topic("u").unwrap().subscriptions(), vec!["a", "c"]);
    // A queue of that name created again is not subscribed.
    ns.queue("b").unwrap();
    assert_eq!(
        ns.topic("t").unwrap().publish(Message::new("m")).unwrap(),
        1
    );
    assert_eq!(ns.get_queue("b").unwrap().stats().ready, 0);
}

/// Enough acked traffic to fill several segments makes the journal copy the
/// live records forward and delete the rest (a checkpoint while running):
/// the definitions go with them.
fn definitions_survive_a_compaction(f: &Fixture) {
    let b = f.broker();
    let ns = b
        .create_namespace("tenant", Quotas::default().max_messages(100))
        .unwrap();
    let t = ns.topic("t").unwrap();
    t.subscribe("s", Filter::name("keep")).unwrap();
    t.publish(Message::new("kept").name("keep")).unwrap();
    let churn = ns.create_queue("churn", f.opts()).unwrap();
    let body = vec![7u8; 64 << 10];
    for _ in 0..80 {
        churn.send(Message::new(body.clone())).unwrap();
        churn.try_receive().unwrap().unwrap().ack().unwrap();
    }
    if let Some(dir) = f.data_dir() {
        let first = dir.join(format!("seg-{:016x}.lqj", 1));
        assert!(
            !first.exists(),
            "no checkpoint ran: {first:?} is still there"
        );
    }
    drop((ns, t, churn));
    let Some(b) = f.reopen(b) else { return };
    let ns = b.namespace("tenant").unwrap();
    assert_eq!(ns.quotas(), &Quotas::default().max_messages(100));
    let t = ns.topic("t").unwrap();
    assert_eq!(t.filter("s"), Some(Filter::name("keep")));
    assert_eq!(t.publish(Message::new("new").name("keep")).unwrap(), 1);
    let s = ns.get_queue("s").unwrap();
    assert_eq!(s.try_receive().unwrap().unwrap().body(), b"kept");
    assert_eq!(s.try_receive().unwrap().unwrap().body(), b"new");
}

/// A publish nobody takes is not an error, but it is counted.
fn publish_without_subscription_is_counted(f: &Fixture) {
    let b = f.broker();
    let ns = b.namespace("n").unwrap();
    let t = ns.topic("t").unwrap();
    assert_eq!(t.publish(Message::new("lost")).unwrap(), 0);
    assert_eq!(t.publish(Message::new("lost")).unwrap(), 0);
    t.subscribe("s", Filter::name("x")).unwrap();
    assert_eq!(t.publish(Message::new("unmatched")).unwrap(), 0);
    assert_eq!(t.publish(Message::new("taken").name("x")).unwrap(), 1);
    let s = t.stats();
    assert_eq!(
        (
            s.published,
            s.dropped_no_subscriber,
            s.unmatched,
            s.subscriptions
        ),
        (4, 2, 1, 1)
    );
    // Another handle on the same topic sees the same counters.
    assert_eq!(ns.topic("t").unwrap().stats(), s);
    t.unsubscribe("s").unwrap();
    t.publish(Message::new("lost")).unwrap();
    assert_eq!(t.stats().dropped_no_subscriber, 3);
}

conformance! {
    quotas_and_subscriptions_survive_a_reopen,
    filters_of_every_kind_survive,
    redeclaring_is_idempotent,
    unsubscribe_and_queue_deletion_survive,
    definitions_survive_a_compaction,
    publish_without_subscription_is_counted,
}
