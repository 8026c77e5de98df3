//! A forked child cannot use its parent's broker (issue 13, item 10): every call
//! on an inherited handle fails with `Error::Forked`, closing and dropping them
//! touch nothing of the parent's (its journal files, its threads), an inherited
//! pool stops without panicking, and the child may open a broker of its own.
//! Afterwards the parent's journal holds every parent message and verifies clean.
//!
//! A test binary of its own: the child is made with a real `fork()`, checks
//! what it gets, and reports through its exit status (a number per failed
//! check), which the parent asserts.
#![cfg(unix)]

use libqueue::store::journal;
use libqueue::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// Runs `child` in a forked child and returns its exit status (99: it panicked).
fn in_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs only `child` (library calls under test, allocation,
    // which glibc makes fork-safe) and then `_exit`s without running the test
    // harness's destructors; the parent only waits for it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = catch_unwind(AssertUnwindSafe(child)).unwrap_or(99);
        // SAFETY: ends the child at once, as a forked child of a threaded process must.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child made above; `status` is a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(libc::WIFEXITED(status), "the child was killed: {status:#x}");
    libc::WEXITSTATUS(status)
}

fn persistent(body: String) -> Message {
    Message::new(body).persistent(true)
}

fn forked<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(Error::Forked))
}

#[test]
fn a_forked_child_cannot_use_its_parents_broker() {
    let dir = tempfile::tempdir().unwrap();
    let own = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    let ns = b.default_namespace().unwrap();
    let q = ns.queue("jobs").unwrap();
    for i in 0..50 {
        q.send(persistent(format!("parent-{i:03}"))).unwrap();
    }
    b.flush().unwrap();
    // A leased delivery and a running pool, inherited by the child.
    let held = q.try_receive().unwrap().expect("a message");
    ns.queue("work").unwrap();
    let pool = Pool::builder(&ns, "work")
        .unwrap()
        .size(2)
        .default_handler(|_| Ok(None))
        .start()
        .unwrap();

    // The child takes these out of its copy; the parent's stay where they are.
    let mut held = Some(held);
    let mut pool = Some(pool);
    let (cq, cns, cb) = (q.clone(), ns.clone(), b.clone());
    let code = in_child(|| {
        let (q, ns, b) = (cq, cns, cb);
        let held = held.take().unwrap();
        // Every call on an inherited handle: Error::Forked, nothing written.
        if !forked(q.send(persistent("child".into()))) {
            return 1;
        }
        if !forked(q.send_batch((0..50).map(|i| persistent(format!("child-{i}"))))) {
            return 2;
        }
        if !forked(q.try_receive()) {
            return 3;
        }
        if !forked(q.receive_timeout(Duration::from_secs(1))) {
            return 4;
        }
        if !forked(b.queue("jobs")) || !forked(b.namespace("other")) {
            return 5;
        }
        if !forked(ns.get_queue("jobs")) || !forked(ns.queue("new")) {
            return 6;
        }
        if !forked(b.flush()) || !forked(q.flush()) || !forked(q.purge()) {
            return 7;
        }
        if !forked(q.peek(1)) || !forked(q.cancel(1)) {
            return 8;
        }
        if !forked(held.extend()) {
            return 9;
        }
        if !forked(held.ack()) {
            return 10;
        }
        // Counters only, no lock, no timer.
        if q.stats().sent != 50 {
            return 11;
        }
        // An inherited pool stops without joining the parent's threads.
        let _ = pool.take().unwrap().stop();
        // Closing and dropping the inherited handles touches nothing.
        b.close();
        drop((q, ns, b));
        // The child's own broker works (another directory).
        let mine = match Broker::open(BrokerOptions::new().data_dir(own.path())) {
            Ok(m) => m,
            Err(_) => return 20,
        };
        let mq = mine.queue("jobs").unwrap();
        for i in 0..50 {
            if mq.send(persistent(format!("child-{i}"))).is_err() {
                return 21;
            }
        }
        if mine.flush().is_err() {
            return 22;
        }
        match mq.try_receive() {
            Ok(Some(d)) if d.body() == b"child-0" => d.ack().map_or(23, |_| 0),
            _ => 24,
        }
    });
    assert_eq!(code, 0, "the child's check number {code} failed");

    // The parent goes on as if nothing happened.
    held.take().unwrap().ack().unwrap();
    for i in 50..100 {
        q.send(persistent(format!("parent-{i:03}"))).unwrap();
    }
    let stats = pool.take().unwrap().stop();
    assert_eq!(stats.handled, 0);
    b.close();
    drop((q, ns, b));

    let report = journal::inspect(dir.path()).unwrap().report;
    assert!(report.damage.is_empty(), "{report:?}");
    assert_eq!(report.segments_damaged, 0);
    let b = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    let q = b.queue("jobs").unwrap();
    let mut got = Vec::new();
    while let Some(d) = q.try_receive().unwrap() {
        got.push(String::from_utf8(d.body().to_vec()).unwrap());
        d.ack().unwrap();
    }
    let want: Vec<String> = (1..100).map(|i| format!("parent-{i:03}")).collect();
    assert_eq!(got, want, "every parent message, nothing of the child's");
    b.close();

    // The child's own directory has its 49 unacked messages.
    let mine = Broker::open(BrokerOptions::new().data_dir(own.path())).unwrap();
    assert_eq!(mine.queue("jobs").unwrap().stats().ready, 49);
}

/// A forked child that opens the directory its parent hosts attaches to it
/// (issue 14): its inherited handles still fail with `Error::Forked`, its
/// own broker is served by the parent (the parent's pid is the host's).
#[test]
fn a_forked_child_that_opens_the_directory_attaches_to_its_parent() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    assert!(!b.is_attached());
    let q = b.queue("jobs").unwrap();
    q.send(persistent("from-parent".into())).unwrap();
    let parent = std::process::id();
    let path = dir.path().to_path_buf();
    let code = in_child(|| {
        if !forked(b.queue("jobs")) || !forked(q.try_receive()) {
            return 1;
        }
        let mine = match Broker::open(BrokerOptions::new().data_dir(&path)) {
            Ok(m) => m,
            Err(_) => return 2,
        };
        if !mine.is_attached() {
            return 3;
        }
        match mine.host_info() {
            Ok(i) if i.pid == parent => {}
            _ => return 4,
        }
        let cq = mine.queue("jobs").unwrap();
        match cq.try_receive() {
            Ok(Some(d)) if d.body() == b"from-parent" => {
                if d.ack().is_err() {
                    return 5;
                }
            }
            _ => return 6,
        }
        if cq.send(persistent("from-child".into())).is_err() {
            return 7;
        }
        mine.close();
        0
    });
    assert_eq!(code, 0, "the child's check number {code} failed");
    let d = q.try_receive().unwrap().expect("the child's message");
    assert_eq!(d.body(), b"from-child");
    d.ack().unwrap();
    let s = q.stats();
    assert_eq!((s.ready, s.leased, s.acked), (0, 0, 2), "{s:?}");
    assert!(
        b.host_info().unwrap().clients.is_empty() || {
            std::thread::sleep(Duration::from_millis(200));
            b.host_info().unwrap().clients.is_empty()
        }
    );
    b.close();
}
