//! Names, namespaces and queues: names validated, queues created on first use
//! or explicitly, their options checked, namespaces isolated.

use super::*;

pub(super) fn queue_names_are_validated(f: &Fixture) {
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

pub(super) fn queues_created_on_first_use_or_explicitly(f: &Fixture) {
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

pub(super) fn invalid_queue_options_are_rejected(f: &Fixture) {
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

pub(super) fn default_queue_needs_no_name(f: &Fixture) {
    let b = f.broker();
    let id = b.send(Message::new("simplest")).unwrap();
    let q = b.default_queue().unwrap();
    assert_eq!(q.name(), DEFAULT_QUEUE);
    assert_eq!(q.namespace(), DEFAULT_NAMESPACE);
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!((d.id(), d.body()), (id, &b"simplest"[..]));
    d.ack().unwrap();
}

pub(super) fn namespaces_are_isolated(f: &Fixture) {
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
