//! The consumer pool when things go wrong: failures, backoff and panics (6),
//! and stopping, with and without a timeout (7).

use super::*;

#[test]
fn failing_handler_is_retried_with_backoff_then_dead_lettered() {
    let (clock, b) = manual();
    let ns = b.namespace("retry").unwrap();
    let q = ns
        .create_queue(
            "jobs",
            QueueOptions::default()
                .max_deliveries(4)
                .dead_letter_queue("jobs.dlq"),
        )
        .unwrap();
    let dlq = ns.get_queue("jobs.dlq").unwrap();
    let dlq_fd = dlq.fd().unwrap();
    let (tx, rx) = mpsc::channel::<u32>();
    let pool = Pool::builder(&ns, "jobs")
        .unwrap()
        .backoff(100 * MS, 300 * MS)
        .default_handler(move |d| {
            tx.send(d.delivery_count()).unwrap();
            Err("boom: the disk is on fire".into())
        })
        .start()
        .unwrap();
    q.send(Message::new("job").name("deploy")).unwrap();

    // Retry delay base × 2^(delivery − 1), capped: 100, 200, then 300 (not 400).
    for (delivery, backoff) in [(1, 100 * MS), (2, 200 * MS), (3, 300 * MS)] {
        assert_eq!(rx.recv_timeout(LONG).unwrap(), delivery);
        wait_until("the nack with backoff", || q.stats().delayed == 1);
        clock.advance(backoff - Duration::from_nanos(1));
        let s = q.stats();
        assert_eq!(
            (s.delayed, s.ready, s.leased),
            (1, 0, 0),
            "delivery {delivery}"
        );
        assert!(rx.try_recv().is_err(), "retried before its backoff");
        clock.advance(Duration::from_nanos(1));
    }
    // The fourth delivery is the last allowed: its failure dead-letters.
    assert_eq!(rx.recv_timeout(LONG).unwrap(), 4);
    assert!(readable(dlq_fd, SOON_MS), "no dead letter");
    let d = dlq.try_receive().unwrap().unwrap();
    assert_eq!((d.body(), d.name()), (&b"job"[..], Some("deploy")));
    let reason = d.header_str("x-dead-letter-reason").unwrap();
    assert!(
        reason.contains("handler failed: boom: the disk is on fire"),
        "{reason}"
    );
    assert_eq!(d.header_str("x-delivery-count"), Some("4"));
    assert_eq!(d.header_str("x-dead-letter-queue"), Some("jobs"));
    d.ack().unwrap();

    let st = pool.stats();
    assert_eq!((st.handled, st.failed, st.succeeded), (4, 4, 0));
    pool.stop();
    assert!(rx.try_recv().is_err(), "no fifth delivery");
    let s = q.stats();
    assert_eq!(
        (s.nacked, s.redelivered, s.dead_lettered, s.acked),
        (4, 3, 1, 0)
    );
    assert_eq!(s.depth(), 0);
}

#[test]
fn panicking_handler_is_a_failure_and_the_pool_keeps_working() {
    let b = broker();
    let ns = b.namespace("panics").unwrap();
    let q = ns
        .create_queue(
            "jobs",
            QueueOptions::default()
                .max_deliveries(1)
                .dead_letter_queue("jobs.dlq"),
        )
        .unwrap();
    let dlq = ns.get_queue("jobs.dlq").unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let ok = Arc::new(AtomicUsize::new(0));
    let ok2 = ok.clone();
    // One worker: were it killed by a panic, nothing after it would be handled.
    let pool = Pool::builder(&ns, "jobs")
        .unwrap()
        .size(1)
        .handler("explode", |_| panic!("kaboom"))
        .handler("explode-string", |d| panic!("kaboom #{}", body_str(d)))
        .handler("ok", move |_| {
            ok2.fetch_add(1, SeqCst);
            Ok(None)
        })
        .handler("fence", move |_| {
            tx.send(()).unwrap();
            Ok(None)
        })
        .start()
        .unwrap();
    q.send(Message::new("1").name("explode")).unwrap();
    q.send(Message::new("2").name("ok")).unwrap();
    q.send(Message::new("3").name("explode-string")).unwrap();
    for i in 4..9 {
        q.send(Message::new(i.to_string()).name("ok")).unwrap();
    }
    q.send(Message::new("9").name("fence")).unwrap();
    rx.recv_timeout(LONG).expect("the pool stopped working");
    // One worker handles in order: everything before the fence is settled.
    assert_eq!(ok.load(SeqCst), 6);
    let st = pool.stats();
    assert_eq!((st.handled, st.failed, st.panicked), (9, 2, 2));

    let mut reasons = HashMap::new();
    for _ in 0..2 {
        let d = dlq.receive_timeout(LONG).unwrap().expect("dead letter");
        reasons.insert(
            body_str(&d),
            d.header_str("x-dead-letter-reason").unwrap().to_string(),
        );
        d.ack().unwrap();
    }
    assert!(
        reasons["1"].contains("handler failed: handler panicked: kaboom"),
        "{}",
        reasons["1"]
    );
    assert!(
        reasons["3"].contains("handler panicked: kaboom #3"),
        "{}",
        reasons["3"]
    );
    let st = pool.stop();
    assert_eq!(
        (st.handled, st.failed, st.panicked, st.succeeded),
        (9, 2, 2, 7)
    );
    let s = q.stats();
    assert_eq!((s.acked, s.dead_lettered, s.depth()), (7, 2, 0));
}

#[test]
fn stop_waits_for_running_handlers_and_loses_nothing() {
    const M: usize = 3_000;
    let b = broker();
    let ns = b.namespace("stop").unwrap();
    let q = ns.queue("jobs").unwrap();
    let handled = Arc::new(Mutex::new(Vec::<String>::new()));
    let starts = Arc::new(AtomicUsize::new(0));
    let stopping = Arc::new(Permits::default());
    let slow_done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<()>();
    let (h, st, sp, sd) = (
        handled.clone(),
        starts.clone(),
        stopping.clone(),
        slow_done.clone(),
    );
    let pool = Pool::builder(&ns, "jobs")
        .unwrap()
        .size(2)
        .default_handler(move |d| {
            if st.fetch_add(1, SeqCst) + 1 == 20 {
                // The 20th: still running when stop() is called.
                tx.send(()).unwrap();
                assert!(sp.acquire(), "stop never came");
                let t = Instant::now();
                while t.elapsed() < 20 * MS {
                    thread::yield_now();
                }
                sd.store(true, SeqCst);
            } else {
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(100) {
                    std::hint::spin_loop();
                }
            }
            h.lock().unwrap().push(body_str(d));
            Ok(None)
        })
        .start()
        .unwrap();
    for chunk in (0..M).collect::<Vec<_>>().chunks(500) {
        q.send_batch(chunk.iter().map(|i| Message::new(i.to_string())))
            .unwrap();
    }
    rx.recv_timeout(LONG).unwrap();
    stopping.release(1);
    pool.stop();
    assert!(
        slow_done.load(SeqCst),
        "stop returned before a handler ended"
    );

    let handled = handled.lock().unwrap().clone();
    let s = q.stats();
    assert_eq!(s.leased, 0, "nothing left leased");
    assert_eq!(s.acked, handled.len() as u64);
    assert_eq!(handled.len() as u64 + s.ready, M as u64, "{s:?}");
    // Stopped early: the other worker would need ~300 ms for the rest.
    assert!(
        handled.len() >= 20 && handled.len() < M,
        "{}",
        handled.len()
    );
    let rest = drain(&q);
    let mut all: Vec<usize> = handled
        .iter()
        .chain(rest.iter())
        .map(|s| s.parse().unwrap())
        .collect();
    all.sort();
    assert_eq!(all, (0..M).collect::<Vec<_>>(), "each exactly once");
}

#[test]
fn stop_timeout_returns_stuck_messages_and_ignores_their_late_ack() {
    let b = broker();
    let ns = b.namespace("stuck").unwrap();
    let q = ns.queue("jobs").unwrap();
    let release = Arc::new(Permits::default());
    let (started_tx, started) = mpsc::channel::<()>();
    let (gone_tx, gone) = mpsc::channel::<()>();
    let r = release.clone();
    let guard = DropSignal(gone_tx);
    let pool = Pool::builder(&ns, "jobs")
        .unwrap()
        .default_handler(move |_| {
            let _keep = &guard; // dropped with the handler, once the worker exits
            started_tx.send(()).unwrap();
            if r.acquire() {
                Ok(Some(b"late".to_vec()))
            } else {
                Err("never released".into())
            }
        })
        .start()
        .unwrap();
    q.send(Message::new("stuck")).unwrap();
    started.recv_timeout(LONG).unwrap();
    assert_eq!(q.stats().leased, 1);

    let t = Instant::now();
    let report = pool.stop_timeout(50 * MS);
    assert!(t.elapsed() >= 50 * MS);
    assert_eq!(report.returned, 1);
    assert_eq!(
        (
            report.stats.handled,
            report.stats.active,
            report.stats.succeeded
        ),
        (1, 1, 0),
        "the stuck handler still runs"
    );
    let s = q.stats();
    assert_eq!((s.ready, s.leased, s.acked, s.nacked), (1, 0, 0, 1));

    // The stuck handler finishes: its worker's ack fails, nothing is counted.
    release.release(1);
    gone.recv_timeout(LONG)
        .expect("the worker did not exit after its handler returned");
    let s = q.stats();
    assert_eq!((s.ready, s.leased, s.acked), (1, 0, 0), "late ack counted");

    // The message is still there for the next consumer.
    // The interrupted delivery does not count: it was given back unprocessed.
    let d = q.try_receive().unwrap().expect("returned to the queue");
    assert_eq!((d.body(), d.delivery_count()), (&b"stuck"[..], 1));
    d.ack().unwrap();
    assert_eq!(q.stats().acked, 1);
}

#[test]
fn stop_timeout_with_idle_workers_returns_nothing() {
    let b = broker();
    let ns = b.namespace("idle").unwrap();
    let pool = Pool::builder(&ns, "jobs")
        .unwrap()
        .size(3)
        .default_handler(|_| Ok(None))
        .start()
        .unwrap();
    let report: StopReport = pool.stop_timeout(LONG);
    assert_eq!(report.returned, 0);
    assert_eq!(report.stats, PoolStats::default());
    assert!(matches!(
        Pool::builder(&ns, "jobs").unwrap().size(0).start(),
        Err(Error::InvalidArgument(_))
    ));
}
