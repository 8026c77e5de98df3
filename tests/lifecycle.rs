//! A closed broker stays closed through every handle taken from it before.

use libqueue::*;

#[test]
fn a_namespace_taken_before_close_creates_nothing_after_it() {
    let b = Broker::new();
    let ns = b.namespace("t").unwrap();
    let q = ns.queue("existing").unwrap();
    q.send(Message::new("x")).unwrap();
    b.close();
    assert!(matches!(ns.queue("new"), Err(Error::Closed)));
    assert!(matches!(
        ns.create_queue("new2", QueueOptions::default()),
        Err(Error::Closed)
    ));
    assert!(matches!(ns.topic("events"), Err(Error::Closed)));
    assert!(matches!(ns.delete_queue("existing"), Err(Error::Closed)));
    assert!(matches!(q.send(Message::new("y")), Err(Error::Closed)));
    assert!(matches!(q.try_receive(), Err(Error::Closed)));
    // Nothing was created behind the broker's back.
    assert_eq!(ns.list_queues(), ["existing"]);
    assert!(ns.list_topics().is_empty());
}

#[test]
fn a_namespace_of_a_closed_journal_broker_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    let ns = b.namespace("t").unwrap();
    b.close();
    assert!(matches!(ns.queue("late"), Err(Error::Closed)));
    drop(ns);
    drop(b);
    let b = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    assert!(b.namespace("t").unwrap().get_queue("late").is_err());
}
