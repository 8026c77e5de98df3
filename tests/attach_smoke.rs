//! Smoke test of host and attach in one process (the full suite runs the
//! behaviour tests attached; see tests/behaviour).
use libqueue::*;
use std::time::Duration;

#[test]
fn second_open_attaches_and_shares_everything() {
    let dir = tempfile::tempdir().unwrap();
    let host = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    assert!(!host.is_attached());
    let att = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    assert!(att.is_attached());
    let q = att.queue("jobs").unwrap();
    let id = q
        .send(Message::new("hello").name("greet").header("k", "v"))
        .unwrap();
    let hq = host.queue("jobs").unwrap();
    assert_eq!(hq.stats().ready, 1);
    let d = q.receive_timeout(Duration::from_secs(1)).unwrap().unwrap();
    assert_eq!(
        (d.id(), d.body(), d.name(), d.header_str("k")),
        (id, &b"hello"[..], Some("greet"), Some("v"))
    );
    assert_eq!(hq.stats().leased, 1);
    d.ack().unwrap();
    assert_eq!(hq.stats().acked, 1);
    // A blocking receive in the attached process is woken by a send in the host.
    let q2 = q.clone();
    let t = std::thread::spawn(move || {
        q2.receive_timeout(Duration::from_secs(5))
            .unwrap()
            .map(|d| {
                let b = d.body().to_vec();
                d.ack().unwrap();
                b
            })
    });
    std::thread::sleep(Duration::from_millis(50));
    hq.send(Message::new("late")).unwrap();
    assert_eq!(t.join().unwrap(), Some(b"late".to_vec()));
    // Errors travel typed.
    assert!(matches!(att.get_namespace("nope"), Err(Error::NotFound(_))));
    assert!(matches!(
        att.namespace("bad name"),
        Err(Error::InvalidName(_))
    ));
    let info = att.host_info().unwrap();
    assert_eq!(info.pid, std::process::id());
    assert_eq!(info.clients.len(), 1);
    // Dropping the attached broker's delivery unsettled, then the connection: back at once.
    q.send(Message::new("held")).unwrap();
    let d = q.try_receive().unwrap().unwrap();
    std::mem::forget(d);
    att.close();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while hq.stats().ready != 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(hq.stats().ready, 1);
}

#[test]
fn exclusive_refuses_a_second_open() {
    let dir = tempfile::tempdir().unwrap();
    let _host = Broker::open(BrokerOptions::new().data_dir(dir.path()).exclusive(true)).unwrap();
    let t = std::time::Instant::now();
    assert!(matches!(
        Broker::open(BrokerOptions::new().data_dir(dir.path())),
        Err(Error::Locked(_))
    ));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}
