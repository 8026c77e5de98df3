//! Topics ([`Topic`], [`Filter`]) (8): fan-out to every subscription exactly
//! once, filters by name and header, unsubscribe and resubscribe, a
//! subscription keeping messages for a listener that comes back.

use super::*;

#[test]
fn topic_fans_out_to_every_subscription_exactly_once() {
    const K: usize = 200;
    let b = broker();
    let ns = b.namespace("topics").unwrap();
    let topic = ns.topic("events").unwrap();
    assert_eq!(topic.name(), "events");
    assert_eq!(ns.list_topics(), vec!["events"]);
    let subs: Vec<Queue> = ["s1", "s2", "s3"]
        .iter()
        .map(|s| topic.subscribe(s, Filter::All).unwrap())
        .collect();
    assert_eq!(topic.subscriptions(), vec!["s1", "s2", "s3"]);
    assert_eq!(
        ns.topic("events").unwrap().subscriptions().len(),
        3,
        "same topic by name"
    );
    for i in 0..K {
        assert_eq!(topic.publish(Message::new(i.to_string())).unwrap(), 3);
    }
    let want: Vec<String> = (0..K).map(|i| i.to_string()).collect();
    for q in &subs {
        assert_eq!(q.stats().ready, K as u64, "{}", q.name());
        assert_eq!(drain(q), want, "{}", q.name());
    }
    // A topic and a queue may share a name; the topic's messages do not go there.
    let same_name = ns.queue("events").unwrap();
    topic.publish(Message::new("x")).unwrap();
    assert_eq!(same_name.stats().sent, 0);
    assert!(matches!(ns.topic("bad name"), Err(Error::InvalidName(_))));
    assert!(matches!(
        topic.subscribe("bad/name", Filter::All),
        Err(Error::InvalidName(_))
    ));
}

#[test]
fn topic_filters_by_name_and_header() {
    let b = broker();
    let ns = b.namespace("filters").unwrap();
    let topic = ns.topic("octavia").unwrap();
    let lbs = topic
        .subscribe("lbs", Filter::name("create_load_balancer"))
        .unwrap();
    let e1 = topic.subscribe("e1", Filter::execution_id("e-1")).unwrap();
    let eu = topic
        .subscribe("eu", Filter::header("region", "eu"))
        .unwrap();

    let sent = [
        Message::envelope("create_load_balancer", "e-1", "a"),
        Message::envelope("create_load_balancer", "e-2", "b").header("region", "eu"),
        Message::envelope("delete_member", "e-1", "c").header("region", "us"),
        Message::new("d")
            .name("delete_member")
            .header("region", "eu"),
        Message::new("e"),
        Message::envelope("create_load_balancer_v2", "e-10", "f"),
    ];
    let reached: Vec<usize> = sent
        .into_iter()
        .map(|m| topic.publish(m).unwrap())
        .collect();
    assert_eq!(reached, vec![2, 2, 1, 1, 0, 0]);
    assert_eq!(drain(&lbs), vec!["a", "b"]);
    assert_eq!(drain(&e1), vec!["a", "c"]);
    assert_eq!(drain(&eu), vec!["b", "d"]);

    // Filter::matches directly.
    let m = Message::envelope("n", "e-1", "x").header("k", vec![0xff, 0]);
    assert!(Filter::All.matches(&m));
    assert!(Filter::name("n").matches(&m));
    assert!(!Filter::name("N").matches(&m));
    assert!(Filter::execution_id("e-1").matches(&m));
    assert!(!Filter::execution_id("e-").matches(&m));
    assert!(Filter::header("k", vec![0xff, 0]).matches(&m));
    assert!(!Filter::header("k", vec![0xff]).matches(&m));
    assert!(!Filter::header("missing", "").matches(&m));
    assert_eq!(Filter::default(), Filter::All);
}

#[test]
fn unsubscribe_and_resubscribe() {
    let b = broker();
    let ns = b.namespace("subs").unwrap();
    let topic = ns.topic("t").unwrap();
    let a = topic.subscribe("a", Filter::All).unwrap();
    let bq = topic.subscribe("b", Filter::name("x")).unwrap();
    assert_eq!(topic.publish(Message::new("1").name("x")).unwrap(), 2);

    // Unsubscribed: gets nothing more, keeps what it had.
    topic.unsubscribe("a").unwrap();
    assert_eq!(topic.subscriptions(), vec!["b"]);
    assert!(matches!(topic.unsubscribe("a"), Err(Error::NotFound(_))));
    assert!(matches!(topic.unsubscribe("zzz"), Err(Error::NotFound(_))));
    assert_eq!(topic.publish(Message::new("2").name("x")).unwrap(), 1);
    assert_eq!(drain(&a), vec!["1"]);
    assert!(ns.list_queues().contains(&"a".to_string()));

    // Re-subscribing replaces the filter (one subscription, the new filter).
    let b2 = topic.subscribe("b", Filter::name("y")).unwrap();
    assert_eq!(topic.subscriptions(), vec!["b"]);
    assert_eq!(b2.name(), bq.name());
    assert_eq!(topic.publish(Message::new("3").name("x")).unwrap(), 0);
    assert_eq!(topic.publish(Message::new("4").name("y")).unwrap(), 1);
    assert_eq!(drain(&bq), vec!["1", "2", "4"]);

    // Subscribing again after unsubscribing works.
    topic.subscribe("a", Filter::All).unwrap();
    assert_eq!(topic.publish(Message::new("5").name("y")).unwrap(), 2);
    assert_eq!(drain(&a), vec!["5"]);
    assert_eq!(topic.subscriptions(), vec!["b", "a"]);
}

/// The TripleO case: a listener subscribes for its execution, goes away (its
/// websocket drops) while the workflow keeps publishing, and comes back later:
/// it finds exactly its own execution's messages, in order, and nothing else.
#[test]
fn subscription_keeps_messages_for_a_listener_that_comes_back() {
    let b = broker();
    let ns = b.namespace("tripleo").unwrap();
    let topic = ns.topic("tripleo.deployment").unwrap();
    {
        let q = topic
            .subscribe("listener.e-1", Filter::execution_id("e-1"))
            .unwrap();
        let _ = q.fd().unwrap();
        // ...and the listener disconnects: its handle is dropped.
    }
    let other = topic
        .subscribe("listener.e-2", Filter::execution_id("e-2"))
        .unwrap();
    let stages = ["plan_created", "deploy_started", "deploy_done"];
    for s in stages {
        topic
            .publish(Message::envelope(s, "e-1", format!("e-1 {s}")))
            .unwrap();
        topic
            .publish(Message::envelope(s, "e-2", format!("e-2 {s}")))
            .unwrap();
        topic
            .publish(Message::envelope(s, "e-3", format!("e-3 {s}")))
            .unwrap();
    }
    // A listener for e-3 that subscribes only now missed what came before.
    let late = topic
        .subscribe("listener.e-3", Filter::execution_id("e-3"))
        .unwrap();
    assert_eq!(late.stats().ready, 0);

    // The e-1 listener reconnects, opening its subscription queue by name.
    let back = ns.get_queue("listener.e-1").unwrap();
    let fd = back.fd().unwrap();
    assert!(readable(fd, 0));
    let mut got = Vec::new();
    while let Some(d) = back.try_receive().unwrap() {
        assert_eq!(d.execution_id(), Some("e-1"));
        got.push((d.name().unwrap().to_string(), body_str(&d)));
        d.ack().unwrap();
    }
    assert!(!readable(fd, 0));
    let want: Vec<_> = stages
        .iter()
        .map(|s| (s.to_string(), format!("e-1 {s}")))
        .collect();
    assert_eq!(got, want);

    // Live from now on: the fd wakes the listener for its next message only.
    topic
        .publish(Message::envelope("x", "e-2", "not mine"))
        .unwrap();
    assert!(!readable(fd, 0));
    topic
        .publish(Message::envelope("y", "e-1", "mine"))
        .unwrap();
    assert!(readable(fd, 0));
    assert_eq!(drain(&back), vec!["mine"]);
    assert_eq!(other.stats().ready, 4);
}
