//! What the engine tells a storage backend (the `Storage` trait).
//!
//! Not per backend: these tests plug in storage backends of their own (a
//! recording one, a failing one) to check what the engine tells a backend.

use super::*;

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
