//! The pollable descriptor ([`Queue::fd`]): readable exactly when a receive would
//! succeed, also when the ticker makes a message due on the system clock (1);
//! an event loop on the descriptor (2).
//!
//! In the attached build (`listening_attached`) the descriptor is the attached
//! process's own, kept up to date by the host's `NOTIFY` frames (see
//! `src/remote/notify.rs`): what the process's own calls change shows before
//! they return; timers and other processes' calls show soon after.

use super::*;

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
    let b = broker();
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

#[test]
fn epoll_driven_consumer_receives_everything() {
    const PRODUCERS: usize = 2;
    const PER: usize = 10_000;
    let b = broker();
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

/// The descriptor follows what another process does: the host sends, times
/// out a lease and takes the last message; the attached process's descriptor
/// rises and falls with it.
#[test]
fn attached_fd_follows_the_host() {
    let clock = ManualClock::new(1_000_000_000);
    let a = Attached::new(Some(clock.clone()));
    let opts = QueueOptions::default().lease_time(10 * MS);
    let q = a.b.namespace("n").unwrap().create_queue("q", opts).unwrap();
    let hq = a.host.namespace("n").unwrap().get_queue("q").unwrap();
    let fd = q.fd().unwrap();
    assert!(!readable(fd, 0));
    hq.send(Message::new("from the host")).unwrap();
    assert!(readable(fd, SOON_MS), "a send of the host's shows");
    let d = hq.try_receive().unwrap().unwrap();
    wait_until("the host's receive to clear it", || !readable(fd, 0));
    drop(d);
    clock.advance(10 * MS);
    assert!(
        readable(fd, SOON_MS),
        "the lease ran out on the host's clock"
    );
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!(d.delivery_count(), 2);
    assert!(!readable(fd, 0));
    d.ack().unwrap();
    // Deleted on the host: readable (a receive fails with Closed), and no
    // descriptor to give any more.
    a.host.namespace("n").unwrap().delete_queue("q").unwrap();
    assert!(readable(fd, SOON_MS));
    assert_eq!(q.try_receive().unwrap_err(), Error::Closed);
    assert_eq!(q.fd(), Err(Error::Closed));
}
