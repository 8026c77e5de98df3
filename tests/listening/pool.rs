//! The consumer pool ([`Pool`]): it throttles (3, 4: never more handlers
//! than its size, no message taken while every worker is busy) and dispatches
//! by name, then to the default handler (5).

use super::*;

fn pool_throttle(n: usize) {
    const M: usize = 3_000;
    let b = broker();
    let ns = b.namespace("pool").unwrap();
    let q = ns.queue("jobs").unwrap();
    let total = M + n;
    let counts: Arc<Vec<AtomicU32>> = Arc::new((0..total).map(|_| AtomicU32::new(0)).collect());
    let inside = Arc::new(AtomicUsize::new(0));
    let seen_max = Arc::new(AtomicUsize::new(0));
    let meet = Arc::new(Rendezvous::default());
    let (tx, rx) = mpsc::channel::<HandlerResult>();

    let track = {
        let (counts, inside, seen_max) = (counts.clone(), inside.clone(), seen_max.clone());
        move |d: &Delivery, work: &dyn Fn() -> HandlerResult| -> HandlerResult {
            let now = inside.fetch_add(1, SeqCst) + 1;
            seen_max.fetch_max(now, SeqCst);
            let i: usize = body_str(d).parse().unwrap();
            counts[i].fetch_add(1, SeqCst);
            let r = work();
            inside.fetch_sub(1, SeqCst);
            r
        }
    };
    let track = Arc::new(track);
    let (t1, tx1) = (track.clone(), tx.clone());
    let (t2, tx2) = (track, tx);
    let pool = Pool::builder(&ns, "jobs")
        .unwrap()
        .size(n)
        .handler("meet", move |d| {
            // Every worker must be inside a handler at once to get past this.
            let r = t1(d, &|| {
                if meet.arrive(n) {
                    Ok(None)
                } else {
                    Err("the rendezvous timed out".into())
                }
            });
            tx1.send(r.clone()).unwrap();
            r
        })
        .handler("work", move |d| {
            let r = t2(d, &|| {
                for _ in 0..3 {
                    thread::yield_now();
                }
                Ok(None)
            });
            tx2.send(r.clone()).unwrap();
            r
        })
        .start()
        .unwrap();

    q.send_batch((0..n).map(|i| Message::new(i.to_string()).name("meet")))
        .unwrap();
    for chunk in (n..total).collect::<Vec<_>>().chunks(500) {
        q.send_batch(
            chunk
                .iter()
                .map(|i| Message::new(i.to_string()).name("work")),
        )
        .unwrap();
    }
    for k in 0..total {
        let r = rx
            .recv_timeout(LONG)
            .unwrap_or_else(|_| panic!("pool of {n}: only {k} of {total} handled"));
        assert_eq!(r, Ok(None), "pool of {n}");
    }
    let st = pool.stats();
    assert_eq!(st.handled, total as u64);
    assert_eq!(st.max_active, n, "pool of {n}: max_active");
    assert_eq!(
        seen_max.load(SeqCst),
        n,
        "pool of {n}: observed concurrency"
    );
    let st = pool.stop();
    assert_eq!(
        (st.handled, st.succeeded, st.failed, st.active),
        (total as u64, total as u64, 0, 0)
    );
    assert!(st.max_active <= n);

    assert_eq!(inside.load(SeqCst), 0);
    for (i, c) in counts.iter().enumerate() {
        assert_eq!(c.load(SeqCst), 1, "pool of {n}: message {i}");
    }
    let s = q.stats();
    assert_eq!(
        (s.acked, s.nacked, s.ready, s.leased),
        (total as u64, 0, 0, 0)
    );
}

#[test]
fn pool_never_runs_more_handlers_than_its_size() {
    for n in [1, 3, 8] {
        pool_throttle(n);
    }
}

#[test]
fn pool_takes_no_message_while_every_worker_is_busy() {
    let b = broker();
    let ns = b.namespace("busy").unwrap();
    let q = ns.queue("jobs").unwrap();
    let permits = Arc::new(Permits::default());
    let (started_tx, started) = mpsc::channel::<String>();
    let p = permits.clone();
    let pool = Pool::builder(&ns, "jobs")
        .unwrap()
        .size(2)
        .default_handler(move |d| {
            started_tx.send(body_str(d)).unwrap();
            if p.acquire() {
                Ok(None)
            } else {
                Err("never released".into())
            }
        })
        .start()
        .unwrap();

    q.send_batch((0..5).map(|i| Message::new(format!("m{i}"))))
        .unwrap();
    let mut seen = HashSet::new();
    for _ in 0..2 {
        seen.insert(started.recv_timeout(LONG).unwrap());
    }
    // Both workers are blocked inside their handlers: nothing else is taken.
    let s = q.stats();
    assert_eq!((s.ready, s.leased, s.acked), (3, 2, 0));
    assert_eq!(pool.stats().active, 2);
    assert!(started.try_recv().is_err());

    // One released: its worker acks, then takes exactly one more.
    permits.release(1);
    seen.insert(started.recv_timeout(LONG).unwrap());
    let s = q.stats();
    assert_eq!((s.ready, s.leased, s.acked), (2, 2, 1));

    permits.release(4);
    for _ in 0..2 {
        seen.insert(started.recv_timeout(LONG).unwrap());
    }
    pool.stop();
    assert_eq!(seen.len(), 5);
    let s = q.stats();
    assert_eq!((s.ready, s.leased, s.acked, s.nacked), (0, 0, 5, 0));
}

#[test]
fn pool_dispatches_by_name_then_default() {
    let b = broker();
    let ns = b.namespace("dispatch").unwrap();
    let q = ns.queue("jobs").unwrap();
    let (tx, rx) = mpsc::channel::<(&'static str, String)>();
    let (ta, tb, td) = (tx.clone(), tx.clone(), tx);
    let pool = Pool::builder(&ns, "jobs")
        .unwrap()
        .handler("create", move |d| {
            ta.send(("create", body_str(d))).unwrap();
            Ok(None)
        })
        .handler("delete", move |d| {
            tb.send(("delete", body_str(d))).unwrap();
            Ok(None)
        })
        .default_handler(move |d| {
            td.send(("default", body_str(d))).unwrap();
            Ok(None)
        })
        .start()
        .unwrap();
    q.send(Message::new("1").name("create")).unwrap();
    q.send(Message::new("2").name("delete")).unwrap();
    q.send(Message::new("3").name("update")).unwrap();
    q.send(Message::new("4")).unwrap();
    q.send(Message::new("5").name("create")).unwrap();
    let mut got: Vec<_> = (0..5).map(|_| rx.recv_timeout(LONG).unwrap()).collect();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        got,
        vec![
            ("create", "1".to_string()),
            ("delete", "2".into()),
            ("default", "3".into()),
            ("default", "4".into()),
            ("create", "5".into()),
        ]
    );
    pool.stop();
    assert_eq!(q.stats().acked, 5);
}

#[test]
fn message_without_a_handler_fails_to_the_dead_letter_queue() {
    let b = broker();
    let ns = b.namespace("nohandler").unwrap();
    let q = ns
        .create_queue(
            "jobs",
            QueueOptions::default()
                .max_deliveries(1)
                .dead_letter_queue("jobs.dlq"),
        )
        .unwrap();
    let dlq = ns.get_queue("jobs.dlq").unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let pool = Pool::builder(&ns, "jobs")
        .unwrap()
        .handler("known", move |d| {
            tx.send(body_str(d)).unwrap();
            Ok(None)
        })
        .start()
        .unwrap();
    q.send(Message::new("a").name("unknown")).unwrap();
    q.send(Message::new("b")).unwrap(); // no name at all
    q.send(Message::new("c").name("known")).unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), "c");

    let mut reasons = HashMap::new();
    for _ in 0..2 {
        let d = dlq.receive_timeout(LONG).unwrap().expect("dead letter");
        let reason = d.header_str("x-dead-letter-reason").unwrap().to_string();
        reasons.insert(body_str(&d), reason);
        d.ack().unwrap();
    }
    assert!(reasons["a"].contains("no handler"), "{}", reasons["a"]);
    assert!(
        reasons["a"].contains(r#"handler failed: no handler for message name "unknown""#),
        "{}",
        reasons["a"]
    );
    assert!(reasons["b"].contains("no handler"), "{}", reasons["b"]);
    let st = pool.stats();
    assert_eq!((st.handled, st.failed, st.panicked), (3, 2, 0));
    pool.stop();
    let s = q.stats();
    assert_eq!((s.acked, s.dead_lettered, s.ready, s.leased), (1, 2, 0, 0));
}
