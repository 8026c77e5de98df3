//! Behaviour tests of the listening layer: the pollable descriptor
//! ([`Queue::fd`]), the consumer pool ([`Pool`]), topics ([`Topic`], [`Filter`]),
//! RPC ([`RpcClient`]) and the envelope helpers.
//!
//! Time-dependent tests drive a ManualClock; none sleeps for correctness. Waits
//! on background threads (pool workers, the RPC router, the broker's ticker) are
//! bounded: a blocking call with a generous timeout (poll(2), `recv_timeout`), or
//! at worst `wait_until`, which gives up after a few seconds.
//!
//! Every test runs twice: on brokers of this process (`--test listening`),
//! and on brokers attached to a host of a data directory (`--test
//! listening_attached`, the same files with [`ATTACHED`] set: pools, RPC,
//! topics and the pollable descriptor across the seam).
//!
//! The tests in `regressions.rs` are regressions for engine bugs found while
//! writing them (fixed since).
//!
//! Contents, one file per feature (each file's comment keeps the numbers of
//! the sections these tests had when they were one file):
//!
//! - `fd.rs`              the pollable descriptor, an epoll-driven consumer
//! - `pool.rs`            the pool throttles, dispatch by name
//! - `pool_failures.rs`   handler failures, backoff, panics; stopping
//! - `topics.rs`          fan-out, filters, (un)subscribe
//! - `rpc.rs`             RPC calls, casts, fan-out; the envelope
//! - `regressions.rs`     engine bugs found while writing these tests

mod fd;
mod pool;
mod pool_failures;
mod regressions;
mod rpc;
mod topics;

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

/// Whether this build runs every test on attached brokers: the
/// `listening_attached` target (`tests/listening_attached.rs`) compiles these
/// same files with this set.
const ATTACHED: bool = same(env!("CARGO_CRATE_NAME"), "listening_attached");

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A test's broker: one of this process, or (when [`ATTACHED`]) one attached
/// to a host of a fresh data directory, which lives as long as this.
struct TestBroker {
    b: Broker,
    _attached: Option<Attached>,
}

impl std::ops::Deref for TestBroker {
    type Target = Broker;
    fn deref(&self) -> &Broker {
        &self.b
    }
}

impl TestBroker {
    fn new(clock: Option<Arc<ManualClock>>) -> Self {
        if ATTACHED {
            let a = Attached::new(clock);
            return TestBroker {
                b: a.b.clone(),
                _attached: Some(a),
            };
        }
        let mut o = BrokerOptions::new();
        if let Some(c) = clock {
            o = o.clock(c);
        }
        TestBroker {
            b: Broker::open(o).unwrap(),
            _attached: None,
        }
    }
}

/// A broker on the system clock (see [`TestBroker`]).
fn broker() -> TestBroker {
    TestBroker::new(None)
}

/// A broker on a manual clock (the host's, when attached).
fn manual() -> (Arc<ManualClock>, TestBroker) {
    let clock = ManualClock::new(1_000_000_000);
    let b = TestBroker::new(Some(clock.clone()));
    (clock, b)
}

/// A broker attached to a host of a fresh data directory (the host on
/// `clock`, if given: it runs the timers); all three live as long as this.
struct Attached {
    b: Broker,
    host: Broker,
    _dir: tempfile::TempDir,
}

impl Attached {
    fn new(clock: Option<Arc<ManualClock>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut o = BrokerOptions::new().data_dir(dir.path());
        if let Some(c) = clock {
            o = o.clock(c);
        }
        let host = Broker::open(o.clone()).unwrap();
        let b = Broker::open(o).unwrap();
        assert!(!host.is_attached() && b.is_attached());
        Attached { b, host, _dir: dir }
    }
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
