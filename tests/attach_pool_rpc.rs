//! The consumer pool and RPC across the seam: a host broker and an attached
//! one on the same data directory (in one process here; tests/multiprocess*
//! runs real processes). Pool and RpcClient use only public Queue/Delivery
//! calls, so the throttle, acks and replies must hold attached as they do
//! locally.
use libqueue::*;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pair() -> (tempfile::TempDir, Broker, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let host = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    let att = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    assert!(!host.is_attached() && att.is_attached());
    (dir, host, att)
}

#[test]
fn an_attached_pool_keeps_its_throttle() {
    let (_d, host, att) = pair();
    let ns = att.namespace("svc").unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (r, m, dn) = (running.clone(), most.clone(), done.clone());
    let pool = Pool::builder(&ns, "work")
        .unwrap()
        .size(2)
        .default_handler(move |_d| {
            let now = r.fetch_add(1, SeqCst) + 1;
            m.fetch_max(now, SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            r.fetch_sub(1, SeqCst);
            dn.fetch_add(1, SeqCst);
            Ok(None)
        })
        .start()
        .unwrap();
    let hq = host.namespace("svc").unwrap().queue("work").unwrap();
    for i in 0..20u32 {
        hq.send(Message::new(i.to_le_bytes().to_vec())).unwrap();
    }
    let give_up = Instant::now() + Duration::from_secs(20);
    while done.load(SeqCst) < 20 && Instant::now() < give_up {
        // No message leaves the queue while both workers are busy.
        assert!(hq.stats().leased <= 2, "{:?}", hq.stats());
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(done.load(SeqCst), 20);
    assert!(
        most.load(SeqCst) <= 2,
        "{} handlers ran at once",
        most.load(SeqCst)
    );
    let stats = pool.stop();
    assert_eq!(stats.handled, 20, "{stats:?}");
    let s = hq.stats();
    assert_eq!((s.ready, s.leased, s.acked), (0, 0, 20), "{s:?}");
}

#[test]
fn rpc_calls_cross_the_seam_both_ways() {
    let (_d, host, att) = pair();
    let double = |d: &Delivery| {
        let n: u64 = std::str::from_utf8(d.body()).unwrap().parse().unwrap();
        Ok(Some((n * 2).to_string().into_bytes()))
    };
    // A server in the host, a caller attached.
    let hns = host.namespace("svc").unwrap();
    let server = Pool::builder(&hns, "math")
        .unwrap()
        .handler("double", double)
        .start()
        .unwrap();
    let ans = att.namespace("svc").unwrap();
    let rpc = RpcClient::new(&ans).unwrap();
    for i in 0..20u64 {
        let reply = rpc
            .call(
                "math",
                Message::new(i.to_string()).name("double"),
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(reply.body(), (i * 2).to_string().as_bytes());
    }
    server.stop();
    // A server attached, a caller in the host; a handler failing its last
    // allowed delivery is Error::Remote for the caller.
    ans.create_queue("math2", QueueOptions::default().max_deliveries(1))
        .unwrap();
    let server = Pool::builder(&ans, "math2")
        .unwrap()
        .handler("double", double)
        .handler("fail", |_d| Err("no".to_string()))
        .start()
        .unwrap();
    let hrpc = RpcClient::new(&hns).unwrap();
    let reply = hrpc
        .call(
            "math2",
            Message::new("21").name("double"),
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(reply.body(), b"42");
    match hrpc.call(
        "math2",
        Message::new("1").name("fail"),
        Duration::from_secs(5),
    ) {
        Err(Error::Remote(why)) => assert!(why.contains("no"), "{why}"),
        other => panic!("want Error::Remote, got {other:?}"),
    }
    server.stop();
}

#[test]
fn fanout_reaches_subscriptions_made_on_either_side() {
    let (_d, host, att) = pair();
    let ht = host.namespace("svc").unwrap().topic("events").unwrap();
    let at = att.namespace("svc").unwrap().topic("events").unwrap();
    let a = at.subscribe("from-attached", Filter::All).unwrap();
    let h = ht
        .subscribe("from-host", Filter::name("only-this"))
        .unwrap();
    assert_eq!(at.subscriptions(), vec!["from-attached", "from-host"]);
    assert_eq!(at.filter("from-host"), Some(Filter::name("only-this")));
    let rpc = RpcClient::new(&att.namespace("svc").unwrap()).unwrap();
    assert_eq!(
        rpc.fanout("events", Message::new("x").name("only-this"))
            .unwrap(),
        2
    );
    assert_eq!(at.publish(Message::new("y")).unwrap(), 1);
    assert_eq!(a.stats().ready, 2);
    assert_eq!(h.try_receive().unwrap().unwrap().body(), b"x");
    assert_eq!(at.stats().published, 2);
    at.unsubscribe("from-host").unwrap();
    assert_eq!(ht.subscriptions(), vec!["from-attached"]);
}
