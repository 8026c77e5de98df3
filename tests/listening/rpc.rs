//! RPC ([`RpcClient`]) (9) and the envelope helpers (10).

use super::*;

/// A server on `queue`: `double` doubles the number in the body, `echo` replies
/// `<body>|<correlation id it saw>`, `nothing` replies with an empty body.
fn math_server(ns: &Namespace, queue: &str, size: usize) -> Pool {
    Pool::builder(ns, queue)
        .unwrap()
        .size(size)
        .handler("double", |d| {
            let n: u64 = body_str(d).parse().map_err(|e| format!("{e}"))?;
            Ok(Some((n * 2).to_string().into_bytes()))
        })
        .handler("echo", |d| {
            let corr = d.correlation_id().unwrap_or("-");
            Ok(Some(format!("{}|{corr}", body_str(d)).into_bytes()))
        })
        .handler("nothing", |_| Ok(None))
        .start()
        .unwrap()
}

#[test]
fn rpc_call_returns_the_handlers_reply() {
    let b = broker();
    let ns = b.namespace("rpc").unwrap();
    let _server = math_server(&ns, "math", 1);
    let rpc = RpcClient::new(&ns).unwrap();
    let reply_queue = rpc.reply_queue().to_string();
    assert!(ns.list_queues().contains(&reply_queue));

    let r = rpc
        .call("math", Message::new("21").name("double"), LONG)
        .unwrap();
    assert_eq!(r.body(), b"42");
    assert!(r.correlation_id().unwrap().starts_with(&reply_queue));
    assert_eq!(r.header(RPC_ERROR), None);
    let r = rpc
        .call("math", Message::new("").name("nothing"), LONG)
        .unwrap();
    assert_eq!(r.body(), b"");
    // A malformed request fails the handler; on a queue without max_deliveries
    // it is retried, never dead-lettered, so the caller only times out.
    assert_eq!(
        rpc.call("math", Message::new("NaN").name("double"), 50 * MS)
            .unwrap_err(),
        Error::Timeout
    );
    assert_eq!(rpc.late_replies(), 0);

    // Dropping the client removes its reply queue.
    drop(rpc);
    assert!(!ns.list_queues().contains(&reply_queue));
}

#[test]
fn rpc_concurrent_calls_through_one_client_get_their_own_replies() {
    const THREADS: usize = 4;
    const CALLS: usize = 100;
    let b = broker();
    let ns = b.namespace("rpc").unwrap();
    let _server = math_server(&ns, "svc", 3);
    let rpc = Arc::new(RpcClient::new(&ns).unwrap());
    let corrs = Arc::new(Mutex::new(HashSet::new()));
    let callers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (rpc, corrs) = (rpc.clone(), corrs.clone());
            thread::spawn(move || {
                for i in 0..CALLS {
                    let body = format!("t{t}-{i}");
                    let r = rpc
                        .call("svc", Message::new(body.clone()).name("echo"), LONG)
                        .unwrap();
                    let reply = body_str(&r);
                    let (echoed, seen_corr) = reply.split_once('|').unwrap();
                    assert_eq!(echoed, body, "someone else's reply");
                    assert_eq!(r.correlation_id(), Some(seen_corr));
                    assert!(corrs.lock().unwrap().insert(seen_corr.to_string()));
                }
            })
        })
        .collect();
    callers.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(corrs.lock().unwrap().len(), THREADS * CALLS);
    assert_eq!(rpc.late_replies(), 0);
    assert_eq!(ns.get_queue(rpc.reply_queue()).unwrap().stats().depth(), 0);
}

#[test]
fn rpc_call_without_a_server_times_out() {
    let b = broker();
    let ns = b.namespace("rpc").unwrap();
    let rpc = RpcClient::new(&ns).unwrap();
    let t = Instant::now();
    let r = rpc.call("nobody", Message::new("hello?"), 100 * MS);
    let took = t.elapsed();
    assert_eq!(r.unwrap_err(), Error::Timeout);
    assert!(took >= 100 * MS, "{took:?}");
    assert!(took < 100 * MS + Duration::from_secs(5), "{took:?}");
    // The request waits in its queue for a server that may come later.
    let req = ns
        .get_queue("nobody")
        .unwrap()
        .try_receive()
        .unwrap()
        .unwrap();
    assert_eq!(req.header_str(REPLY_TO), Some(rpc.reply_queue()));
    assert!(req.correlation_id().is_some());
    req.ack().unwrap();
    assert_eq!(rpc.late_replies(), 0);
}

#[test]
fn rpc_late_reply_is_dropped_and_counted() {
    let b = broker();
    let ns = b.namespace("rpc").unwrap();
    let release = Arc::new(Permits::default());
    let r = release.clone();
    let _server = Pool::builder(&ns, "slow")
        .unwrap()
        .handler("slow", move |_| {
            assert!(r.acquire());
            Ok(Some(b"too late".to_vec()))
        })
        .handler("fast", |_| Ok(Some(b"on time".to_vec())))
        .start()
        .unwrap();
    let rpc = RpcClient::new(&ns).unwrap();
    let err = rpc
        .call("slow", Message::new("").name("slow"), 50 * MS)
        .unwrap_err();
    assert_eq!(err, Error::Timeout);
    release.release(1);
    wait_until("the late reply", || rpc.late_replies() == 1);
    // The late reply went nowhere: the next call gets its own.
    let r = rpc
        .call("slow", Message::new("").name("fast"), LONG)
        .unwrap();
    assert_eq!(r.body(), b"on time");
    assert_eq!(rpc.late_replies(), 1);
}

/// A call made while another waits on the client's reply queue gets a reply
/// queue of its own (`<reply queue>.1`), reused by later concurrent calls; a late
/// reply landing there is counted; dropping the client deletes them all.
#[test]
fn rpc_concurrent_call_waits_on_a_reply_queue_of_its_own() {
    let b = broker();
    let ns = b.namespace("rpc").unwrap();
    let release = Arc::new(Permits::default());
    let started = Arc::new(AtomicUsize::new(0));
    let (r, s) = (release.clone(), started.clone());
    let _server = Pool::builder(&ns, "svc")
        .unwrap()
        .size(2)
        .handler("slow", move |_| {
            s.fetch_add(1, SeqCst);
            assert!(r.acquire());
            Ok(Some(b"slow".to_vec()))
        })
        .handler("fast", |d| {
            Ok(Some(d.correlation_id().unwrap().as_bytes().to_vec()))
        })
        .start()
        .unwrap();
    let rpc = Arc::new(RpcClient::new(&ns).unwrap());
    let primary = rpc.reply_queue().to_string();
    let own = format!("{primary}.1");
    let waiting = {
        let rpc = rpc.clone();
        thread::spawn(move || rpc.call("svc", Message::new("").name("slow"), LONG))
    };
    wait_until("the slow call to be handled", || started.load(SeqCst) == 1);
    // The reply queue is taken by the slow call: this one waits on its own.
    let r = rpc
        .call("svc", Message::new("").name("fast"), LONG)
        .unwrap();
    assert!(
        body_str(&r).starts_with(&format!("{own}#")),
        "{}",
        body_str(&r)
    );
    assert!(ns.list_queues().contains(&own));
    // Again on the same extra queue, timing out; its reply comes late.
    let err = rpc
        .call("svc", Message::new("").name("slow"), 50 * MS)
        .unwrap_err();
    assert_eq!(err, Error::Timeout);
    wait_until("the second slow call to be handled", || {
        started.load(SeqCst) == 2
    });
    release.release(2);
    let first = waiting.join().unwrap().unwrap();
    assert_eq!(first.body(), b"slow");
    assert!(first
        .correlation_id()
        .unwrap()
        .starts_with(&format!("{primary}#")));
    wait_until("the late reply", || rpc.late_replies() == 1);
    let queues = ns.list_queues();
    assert_eq!(
        queues.iter().filter(|q| q.starts_with(&primary)).count(),
        2,
        "{queues:?}"
    );
    drop(rpc);
    assert!(!ns.list_queues().iter().any(|q| q.starts_with(&primary)));
}

#[test]
fn rpc_handler_failing_on_its_last_delivery_is_a_remote_error() {
    let b = broker();
    let ns = b.namespace("rpc").unwrap();
    ns.create_queue(
        "fragile",
        QueueOptions::default()
            .max_deliveries(2)
            .dead_letter_queue("fragile.dlq"),
    )
    .unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let _server = Pool::builder(&ns, "fragile")
        .unwrap()
        .backoff(MS, MS)
        .default_handler(move |_| {
            a.fetch_add(1, SeqCst);
            Err("disk on fire".into())
        })
        .start()
        .unwrap();
    let rpc = RpcClient::new(&ns).unwrap();
    let err = rpc.call("fragile", Message::new("x"), LONG).unwrap_err();
    assert_eq!(err, Error::Remote("disk on fire".into()));
    assert_eq!(attempts.load(SeqCst), 2, "retried once, then gave up");
    assert_eq!(ns.get_queue("fragile.dlq").unwrap().stats().ready, 1);
}

#[test]
fn rpc_cast_reaches_exactly_one_consumer() {
    const K: usize = 300;
    let b = broker();
    let ns = b.namespace("rpc").unwrap();
    let counts: Arc<Vec<AtomicU32>> = Arc::new((0..K).map(|_| AtomicU32::new(0)).collect());
    let (tx, rx) = mpsc::channel::<usize>();
    // Two pools compete on one queue.
    let pools: Vec<Pool> = (0..2)
        .map(|p| {
            let (counts, tx) = (counts.clone(), tx.clone());
            Pool::builder(&ns, "work")
                .unwrap()
                .size(2)
                .default_handler(move |d| {
                    assert_eq!(d.header(REPLY_TO), None, "a cast wants no reply");
                    counts[body_str(d).parse::<usize>().unwrap()].fetch_add(1, SeqCst);
                    tx.send(p).unwrap();
                    Ok(Some(b"ignored".to_vec()))
                })
                .start()
                .unwrap()
        })
        .collect();
    let rpc = RpcClient::new(&ns).unwrap();
    for i in 0..K {
        rpc.cast("work", Message::new(i.to_string())).unwrap();
    }
    for k in 0..K {
        rx.recv_timeout(LONG)
            .unwrap_or_else(|_| panic!("only {k} of {K} handled"));
    }
    let handled: u64 = pools.into_iter().map(|p| p.stop().succeeded).sum();
    assert_eq!(handled, K as u64);
    for (i, c) in counts.iter().enumerate() {
        assert_eq!(c.load(SeqCst), 1, "message {i}");
    }
    assert_eq!(ns.get_queue("work").unwrap().stats().acked, K as u64);
    let replies = ns.get_queue(rpc.reply_queue()).unwrap().stats();
    assert_eq!((replies.sent, rpc.late_replies()), (0, 0));
}

#[test]
fn rpc_fanout_reaches_every_subscriber() {
    let b = broker();
    let ns = b.namespace("rpc").unwrap();
    let rpc = RpcClient::new(&ns).unwrap();
    assert_eq!(rpc.fanout("nobody.listens", Message::new("x")).unwrap(), 0);
    let topic = ns.topic("cluster").unwrap();
    let subs: Vec<Queue> = (0..3)
        .map(|i| topic.subscribe(&format!("node{i}"), Filter::All).unwrap())
        .collect();
    let fds: Vec<RawFd> = subs.iter().map(|q| q.fd().unwrap()).collect();
    assert_eq!(
        rpc.fanout("cluster", Message::new("reload").name("config"))
            .unwrap(),
        3
    );
    for (q, fd) in subs.iter().zip(fds) {
        assert!(readable(fd, 0), "{}", q.name());
        let d = q.try_receive().unwrap().unwrap();
        assert_eq!((d.body(), d.name()), (&b"reload"[..], Some("config")));
        d.ack().unwrap();
        assert!(!readable(fd, 0));
        assert!(q.try_receive().unwrap().is_none());
    }
}

// ---- 10. the envelope -----------------------------------------------------------

#[test]
fn envelope_helpers() {
    let m = Message::envelope("deploy_plan", "e-7", r#"{"status": "RUNNING"}"#);
    assert_eq!(m.get_name(), Some("deploy_plan"));
    assert_eq!(m.body(), br#"{"status": "RUNNING"}"#);
    assert_eq!(
        m.headers().get(EXECUTION_ID).map(Vec::as_slice),
        Some(&b"e-7"[..])
    );
    assert_eq!(EXECUTION_ID, "execution_id");

    let b = broker(); // kept: an attached broker's host lives as long as it
    let q = b.queue("env").unwrap();
    q.send(m.clone().priority(7)).unwrap();
    q.send(Message::new("plain")).unwrap();
    q.send(Message::new("bin").header(EXECUTION_ID, vec![0xff, 0xfe]))
        .unwrap();
    q.send(Message::new("hand-made").header("execution_id", "e-8"))
        .unwrap();

    let peeked = q.peek(1).unwrap();
    assert_eq!(peeked[0].execution_id(), Some("e-7"));
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!(
        (d.name(), d.execution_id(), d.body()),
        (Some("deploy_plan"), Some("e-7"), m.body())
    );
    assert_eq!(d.to_message().get_name(), Some("deploy_plan"));
    d.ack().unwrap();
    let plain = q.try_receive().unwrap().unwrap();
    assert_eq!((plain.name(), plain.execution_id()), (None, None));
    let bin = q.try_receive().unwrap().unwrap();
    assert_eq!(bin.execution_id(), None, "not UTF-8");
    assert_eq!(bin.header(EXECUTION_ID), Some(&[0xff, 0xfe][..]));
    let hand = q.try_receive().unwrap().unwrap();
    assert_eq!(hand.execution_id(), Some("e-8"));
    assert!(Filter::execution_id("e-8").matches(&hand.to_message()));
}
