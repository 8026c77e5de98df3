//! Behaviour tests of the listening layer: the pollable descriptor
//! ([`Queue::fd`]), the consumer pool ([`Pool`]), topics ([`Topic`], [`Filter`]),
//! RPC ([`RpcClient`]) and the envelope helpers.
//!
//! Time-dependent tests drive a ManualClock; none sleeps for correctness. Waits
//! on background threads (pool workers, the RPC router, the broker's ticker) are
//! bounded: a blocking call with a generous timeout (poll(2), `recv_timeout`), or
//! at worst `wait_until`, which gives up after a few seconds.
//!
//! The tests at the end are regressions for engine bugs found while writing
//! this file (fixed since).

use libqueue::*;
use std::collections::{HashMap, HashSet};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);
/// Upper bound for waits on background threads (never reached when all is well).
const LONG: Duration = Duration::from_secs(10);
/// poll(2) timeout for "readable soon" checks (returns at once when readable).
const SOON_MS: i32 = 5_000;

fn manual() -> (Arc<ManualClock>, Broker) {
    let clock = ManualClock::new(1_000_000_000);
    let b = Broker::open(BrokerOptions::new().clock(clock.clone())).unwrap();
    (clock, b)
}

/// Whether `fd` is readable, waiting at most `timeout_ms` (0: just look).
fn readable(fd: RawFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid, writable pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    assert!(r >= 0, "poll: {}", std::io::Error::last_os_error());
    assert_eq!(p.revents & (libc::POLLERR | libc::POLLNVAL), 0, "bad fd");
    r == 1 && p.revents & libc::POLLIN != 0
}

/// Waits (bounded) until `cond` holds; for state a background thread changes and
/// nothing signals.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(MS);
    }
}

/// A counting semaphore whose acquire gives up after [`LONG`].
#[derive(Default)]
struct Permits {
    n: Mutex<usize>,
    cv: Condvar,
}

impl Permits {
    fn release(&self, k: usize) {
        *self.n.lock().unwrap() += k;
        self.cv.notify_all();
    }

    /// Takes one permit; false if none came within [`LONG`].
    fn acquire(&self) -> bool {
        let end = Instant::now() + LONG;
        let mut n = self.n.lock().unwrap();
        while *n == 0 {
            let Some(left) = end.checked_duration_since(Instant::now()) else {
                return false;
            };
            n = self.cv.wait_timeout(n, left).unwrap().0;
        }
        *n -= 1;
        true
    }
}

/// Waits until `n` threads have arrived (at most [`LONG`]); true if they did.
#[derive(Default)]
struct Rendezvous {
    arrived: Mutex<usize>,
    cv: Condvar,
}

impl Rendezvous {
    fn arrive(&self, n: usize) -> bool {
        let end = Instant::now() + LONG;
        let mut a = self.arrived.lock().unwrap();
        *a += 1;
        self.cv.notify_all();
        while *a < n {
            let Some(left) = end.checked_duration_since(Instant::now()) else {
                return false;
            };
            a = self.cv.wait_timeout(a, left).unwrap().0;
        }
        true
    }
}

/// Sends on its channel when dropped (tells when a pool's handlers are gone,
/// i.e. its last worker has exited).
struct DropSignal(mpsc::Sender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

fn body_str(d: &impl MessageView) -> String {
    String::from_utf8(d.body().to_vec()).unwrap()
}

/// Receives (leased, then acks) everything ready now; returns the bodies.
fn drain(q: &Queue) -> Vec<String> {
    let mut v = Vec::new();
    while let Some(d) = q.try_receive().unwrap() {
        v.push(body_str(&d));
        d.ack().unwrap();
    }
    v
}

// ---- 1. the pollable descriptor ------------------------------------------------

#[test]
fn fd_is_readable_exactly_when_a_receive_would_succeed() {
    let (clock, b) = manual();
    let ns = b.namespace("fd").unwrap();
    let q = ns
        .create_queue("q", QueueOptions::default().lease_time(10 * MS))
        .unwrap();
    let fd = q.fd().unwrap();
    assert_eq!(q.fd().unwrap(), fd, "one descriptor per queue");
    assert_eq!(q.clone().fd().unwrap(), fd, "shared by every handle");

    // Empty queue.
    assert!(!readable(fd, 0));
    assert!(q.try_receive().unwrap().is_none());
    assert!(!readable(fd, 0));

    // One message: readable (level-triggered: looking does not consume it);
    // receiving it clears the descriptor.
    q.send(Message::new("a")).unwrap();
    assert!(readable(fd, 0));
    assert!(readable(fd, 0));
    let a = q.try_receive().unwrap().expect("ready");
    assert!(!readable(fd, 0));
    a.ack().unwrap();
    assert!(!readable(fd, 0));

    // Two messages: still readable after one receive, not after the second.
    q.send_batch([Message::new("b"), Message::new("c")])
        .unwrap();
    assert!(readable(fd, 0));
    let b1 = q.try_receive().unwrap().unwrap();
    assert_eq!(b1.body(), b"b");
    assert!(readable(fd, 0), "one message left");
    let c1 = q.try_receive().unwrap().unwrap();
    assert!(!readable(fd, 0));

    // Nack puts it back: readable again.
    c1.nack().unwrap();
    assert!(readable(fd, 0));
    let c2 = q.try_receive().unwrap().unwrap();
    assert_eq!((c2.body(), c2.delivery_count()), (&b"c"[..], 2));
    assert!(!readable(fd, 0));
    b1.ack().unwrap();
    c2.ack().unwrap();
    assert!(!readable(fd, 0));

    // Batch and auto-ack receives clear it too.
    q.send_batch((0..5).map(|i| Message::new(format!("x{i}"))))
        .unwrap();
    assert!(readable(fd, 0));
    assert_eq!(q.receive_batch_auto_ack(3, Wait::Try).unwrap().len(), 3);
    assert!(readable(fd, 0));
    assert!(q.receive_auto_ack(Wait::Try).unwrap().is_some());
    assert!(readable(fd, 0));
    let last = q.receive_batch(10, Wait::Try).unwrap();
    assert_eq!(last.len(), 1);
    assert!(!readable(fd, 0));
    last.into_iter().for_each(|d| d.ack().unwrap());

    // A delayed message: not readable until the clock passes its delay, then
    // readable without anyone calling into the queue. (The strict "as soon as
    // advance returns" form is `engine_bug_advance_may_return_before_watched_timers_ran`;
    // here we allow the broker's ticker a moment, which it only needs when it
    // races with advance.)
    q.send(Message::new("delayed").delay(100 * MS)).unwrap();
    assert!(!readable(fd, 0));
    assert!(q.try_receive().unwrap().is_none());
    assert!(!readable(fd, 0));
    clock.advance(99 * MS);
    assert!(!readable(fd, 0));
    clock.advance(MS);
    assert!(readable(fd, SOON_MS));
    let d = q.try_receive().unwrap().expect("due");
    assert_eq!(d.body(), b"delayed");
    assert!(!readable(fd, 0));

    // Nack with a delay: readable again once the delay has passed.
    d.nack_after(50 * MS).unwrap();
    assert!(!readable(fd, 0));
    clock.advance(49 * MS);
    assert!(!readable(fd, 0));
    clock.advance(MS);
    assert!(readable(fd, SOON_MS));
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!(d.delivery_count(), 2);
    assert!(!readable(fd, 0));

    // Lease expiry redelivers: readable again.
    clock.advance(9 * MS);
    assert!(!readable(fd, 0));
    clock.advance(MS);
    assert!(readable(fd, SOON_MS));
    let d2 = q.try_receive().unwrap().unwrap();
    assert_eq!((d2.body(), d2.delivery_count()), (&b"delayed"[..], 3));
    assert!(!readable(fd, 0));
    assert!(matches!(d.ack(), Err(Error::LeaseExpired { .. })));
    assert!(!readable(fd, 0));
    d2.ack().unwrap();

    // Purge: not readable any more (and the purged delayed message never shows).
    q.send(Message::new("p1")).unwrap();
    q.send(Message::new("p2")).unwrap();
    q.send(Message::new("p3").delay(5 * MS)).unwrap();
    assert!(readable(fd, 0));
    assert_eq!(q.purge().unwrap(), 3);
    assert!(!readable(fd, 0));
    clock.advance(10 * MS);
    assert!(!readable(fd, 0));

    // Cancel: readable while one of the two is left, not after both.
    let x = q.send(Message::new("x")).unwrap();
    let y = q.send(Message::new("y")).unwrap();
    let z = q.send(Message::new("z").delay(5 * MS)).unwrap();
    assert!(readable(fd, 0));
    q.cancel(x).unwrap();
    assert!(readable(fd, 0));
    q.cancel(y).unwrap();
    assert!(!readable(fd, 0));
    q.cancel(z).unwrap();
    clock.advance(10 * MS);
    assert!(!readable(fd, 0));
    assert!(q.try_receive().unwrap().is_none());

    let s = q.stats();
    assert_eq!((s.ready, s.leased, s.delayed), (0, 0, 0));
    assert_eq!((s.purged, s.cancelled), (3, 3));

    // A deleted queue has no descriptor to give.
    ns.delete_queue("q").unwrap();
    assert_eq!(q.fd(), Err(Error::Closed));
}

#[test]
fn fd_made_readable_by_the_ticker_on_the_system_clock() {
    let b = Broker::new();
    let ns = b.namespace("sys").unwrap();
    let q = ns.queue("q").unwrap();
    let fd = q.fd().unwrap();

    // A delayed message: readable once its 50 ms have passed, with nobody
    // calling into the queue (the broker's ticker runs its timer).
    let start = Instant::now();
    q.send(Message::new("later").delay(50 * MS)).unwrap();
    assert!(!readable(fd, 0) || start.elapsed() >= 50 * MS);
    assert!(readable(fd, 2_000), "ticker did not promote the message");
    assert!(start.elapsed() >= 50 * MS, "readable before its delay");
    let d = q.try_receive().unwrap().expect("receive succeeds");
    assert_eq!(d.body(), b"later");
    assert!(!readable(fd, 0));
    d.ack().unwrap();

    // A lease that runs out (50 ms) makes the descriptor readable again.
    let short = ns
        .create_queue("short", QueueOptions::default().lease_time(50 * MS))
        .unwrap();
    let fd = short.fd().unwrap();
    short.send(Message::new("forgotten")).unwrap();
    let leased_at = Instant::now();
    let d = short.try_receive().unwrap().unwrap();
    assert!(!readable(fd, 0) || leased_at.elapsed() >= 50 * MS);
    drop(d); // never settled
    assert!(readable(fd, 2_000), "ticker did not expire the lease");
    assert!(
        leased_at.elapsed() >= 50 * MS,
        "readable before the lease ended"
    );
    let d = short.try_receive().unwrap().expect("redelivered");
    assert_eq!((d.body(), d.delivery_count()), (&b"forgotten"[..], 2));
}

// ---- 2. an event loop on the descriptor ------------------------------------------

#[test]
fn epoll_driven_consumer_receives_everything() {
    const PRODUCERS: usize = 2;
    const PER: usize = 10_000;
    let b = Broker::new();
    let q = b.queue("loop").unwrap();
    let fd = q.fd().unwrap();

    // SAFETY: epoll_create1 takes no pointers.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32, // level-triggered
        u64: 7,
    };
    // SAFETY: `ev` is a valid epoll_event; `ep` and `fd` are open descriptors.
    assert_eq!(
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) },
        0
    );
    let wait = |timeout_ms: i32| -> i32 {
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: `out` is a valid, writable array of 4 events.
        let n = unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 4, timeout_ms) };
        assert!(n >= 0, "epoll_wait: {}", std::io::Error::last_os_error());
        if n == 1 {
            let tag = out[0].u64; // packed struct: copy the field out
            assert_eq!(tag, 7);
        }
        n
    };

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            thread::spawn(move || {
                for i in 0..PER {
                    q.send(Message::new(format!("{p}:{i}"))).unwrap();
                }
            })
        })
        .collect();

    let mut got = 0;
    let mut next = [0usize; PRODUCERS];
    let mut wakeups = 0;
    while got < PRODUCERS * PER {
        // One blocking wait per wake-up: no polling loop. A lost wake-up fails
        // the test after 5 s instead of hanging it.
        assert_eq!(wait(5_000), 1, "no wake-up after {got} messages");
        wakeups += 1;
        while let Some(d) = q.try_receive().unwrap() {
            let s = body_str(&d);
            let (p, i) = s.split_once(':').unwrap();
            let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[p], "FIFO per producer");
            next[p] += 1;
            d.ack().unwrap();
            got += 1;
        }
    }
    producers.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(got, PRODUCERS * PER);
    assert_eq!(next, [PER; PRODUCERS]);
    assert!(wakeups <= got);
    assert_eq!(wait(0), 0, "drained: not readable");
    let s = q.stats();
    assert_eq!(
        (s.acked, s.ready, s.leased),
        ((PRODUCERS * PER) as u64, 0, 0)
    );

    // Still alive afterwards.
    q.send(Message::new("one more")).unwrap();
    assert_eq!(wait(0), 1);
    assert_eq!(drain(&q), vec!["one more"]);
    assert_eq!(wait(0), 0);
    // SAFETY: `ep` is ours and closed once.
    unsafe { libc::close(ep) };
}

// ---- 3, 4. the pool throttles --------------------------------------------------

fn pool_throttle(n: usize) {
    const M: usize = 3_000;
    let b = Broker::new();
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
    let b = Broker::new();
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

// ---- 5. dispatch by name --------------------------------------------------------

#[test]
fn pool_dispatches_by_name_then_default() {
    let b = Broker::new();
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
    let b = Broker::new();
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

// ---- 6. failures, backoff, panics -----------------------------------------------

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
    let b = Broker::new();
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

// ---- 7. stopping ----------------------------------------------------------------

#[test]
fn stop_waits_for_running_handlers_and_loses_nothing() {
    const M: usize = 3_000;
    let b = Broker::new();
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
    let b = Broker::new();
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
    let b = Broker::new();
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

// ---- 8. topics ------------------------------------------------------------------

#[test]
fn topic_fans_out_to_every_subscription_exactly_once() {
    const K: usize = 200;
    let b = Broker::new();
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
    let b = Broker::new();
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
    let b = Broker::new();
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
    let b = Broker::new();
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

// ---- 9. RPC ---------------------------------------------------------------------

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
    let b = Broker::new();
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
    let b = Broker::new();
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
    let b = Broker::new();
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
    let b = Broker::new();
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
    let b = Broker::new();
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
    let b = Broker::new();
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
    let b = Broker::new();
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
    let b = Broker::new();
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

    let q = Broker::new().queue("env").unwrap();
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

// ---- regressions: engine bugs found while writing these tests (fixed) ---------

/// `ManualClock::advance` is documented (broker.rs, `clock_advanced`) to run a
/// watched queue's due timers before it returns, "so their descriptor is
/// readable as soon as `advance` returns". It calls `QueueCore::maintain`, whose
/// slow path only `try_lock`s the queue's maintenance mutex and silently returns
/// if it is held. The broker's ticker thread (kicked by the send's `note_due`
/// and by every advance) takes the same mutex when it finds a timer due, so when
/// the ticker wins the race advance returns with the timer not yet run: the fd
/// is not readable and `try_receive` returns `None` although the message is due.
/// It becomes readable about a microsecond later (the ticker finishes the job).
/// Seen about 5–30 times in 20 000 iterations on a 2-core VM.
#[test]
fn advance_returns_after_watched_timers_ran() {
    let (clock, b) = manual();
    let q = b.queue("q").unwrap();
    let fd = q.fd().unwrap();
    let mut not_readable = 0;
    let mut not_received = 0;
    for _ in 0..50_000 {
        q.send(Message::new("x").delay(MS)).unwrap();
        clock.advance(MS);
        if !readable(fd, 0) {
            not_readable += 1;
        }
        let d = match q.try_receive().unwrap() {
            Some(d) => d,
            None => {
                not_received += 1;
                // It does arrive, a moment later (the ticker finishes the job).
                assert!(readable(fd, SOON_MS));
                q.try_receive().unwrap().expect("due message")
            }
        };
        d.ack().unwrap();
    }
    assert_eq!(
        (not_readable, not_received),
        (0, 0),
        "advance returned before the due message was ready"
    );
}

/// `Queue::fd` is documented as "readable exactly when a receive would find a
/// message". A ready message whose TTL runs out keeps the descriptor readable
/// (nothing clears it when the TTL passes, neither `advance`, the ticker nor even
/// `stats()`, which sweeps the message and reports `ready: 0`), so an event loop
/// wakes for nothing; only a receive (which returns `None`) clears it.
#[test]
fn fd_clears_when_its_only_message_expires() {
    let (clock, b) = manual();
    let q = b.queue("q").unwrap();
    let fd = q.fd().unwrap();
    q.send(Message::new("short-lived").ttl(5 * MS)).unwrap();
    assert!(readable(fd, 0));
    clock.advance(10 * MS);
    let s = q.stats();
    assert_eq!((s.ready, s.expired), (0, 1));
    assert!(
        !readable(fd, 0),
        "readable, but a receive finds nothing: {:?}",
        q.try_receive().unwrap().map(|d| d.id())
    );
}

/// `Pool::stop_timeout` (and `StopReport::returned`) say the messages of
/// handlers still running "go back to the queue". It returns them with a nack
/// ("pool stopped"), which counts as a failed delivery: on a queue with
/// `max_deliveries(1)` (no retries) the message is dead-lettered instead, with
/// reason "pool stopped; delivered 1 times (max_deliveries 1)", though no
/// handler ever failed — and it is still counted in `returned`.
#[test]
fn stop_timeout_returns_messages_without_dead_lettering_them() {
    let b = Broker::new();
    let ns = b.namespace("stuck").unwrap();
    let q = ns
        .create_queue(
            "jobs",
            QueueOptions::default()
                .max_deliveries(1)
                .dead_letter_queue("jobs.dlq"),
        )
        .unwrap();
    let release = Arc::new(Permits::default());
    let (started_tx, started) = mpsc::channel::<()>();
    let r = release.clone();
    let pool = Pool::builder(&ns, "jobs")
        .unwrap()
        .default_handler(move |_| {
            started_tx.send(()).unwrap();
            let _ = r.acquire();
            Ok(None)
        })
        .start()
        .unwrap();
    q.send(Message::new("in flight")).unwrap();
    started.recv_timeout(LONG).unwrap();
    let report = pool.stop_timeout(10 * MS);
    release.release(1);
    assert_eq!(report.returned, 1);
    let s = q.stats();
    let dlq = ns.get_queue("jobs.dlq").unwrap().stats();
    assert_eq!(
        (s.ready, s.dead_lettered, dlq.ready),
        (1, 0, 0),
        "the returned message was dead-lettered"
    );
}

/// Deleting a subscription's queue removes the subscription: publish no longer
/// counts it, and a queue re-created under that name gets the topic's messages
/// only once it subscribes again.
#[test]
fn deleting_a_subscription_queue_removes_the_subscription() {
    let b = Broker::new();
    let ns = b.namespace("t").unwrap();
    let topic = ns.topic("events").unwrap();
    topic.subscribe("sub", Filter::All).unwrap();
    topic.subscribe("other", Filter::All).unwrap();
    ns.delete_queue("sub").unwrap();
    assert_eq!(topic.subscriptions(), vec!["other"]);
    let again = ns.queue("sub").unwrap();
    assert_eq!(topic.publish(Message::new("one")), Ok(1));
    assert_eq!(again.stats().ready, 0);
    topic.subscribe("sub", Filter::All).unwrap();
    assert_eq!(topic.publish(Message::new("two")), Ok(2));
    assert_eq!(again.stats().ready, 1);
}

#[test]
fn fd_becomes_readable_when_the_queue_closes() {
    // Broker closed: a poller wakes, and its receive says why.
    let b = Broker::new();
    let q = b.queue("q").unwrap();
    let fd = q.fd().unwrap();
    assert!(!readable(fd, 0));
    b.close();
    assert!(readable(fd, SOON_MS));
    assert!(matches!(q.try_receive(), Err(Error::Closed)));
    assert!(readable(fd, 0), "stays readable after a failed receive");

    // Queue deleted: the same.
    let b = Broker::new();
    let ns = b.namespace("t").unwrap();
    let q = ns.queue("gone").unwrap();
    let fd = q.fd().unwrap();
    assert!(!readable(fd, 0));
    ns.delete_queue("gone").unwrap();
    assert!(readable(fd, SOON_MS));
    assert!(matches!(q.try_receive(), Err(Error::Closed)));
}
