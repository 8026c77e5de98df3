//! The storage-backend conformance harness: every test of `behaviour/` runs
//! once per backend, through a [`Fixture`] that builds its brokers.
//!
//! - [`Backend::Memory`]: the in-memory broker (`MemoryStorage`), as
//!   `Broker::new()` builds it.
//! - [`Backend::Journal`]: a broker opened on a fresh data directory (the
//!   journal), where every queue is persistent by default, so the test's
//!   messages go through the journal; [`Fixture::reopen`] closes the broker and
//!   opens the same directory again.
//! - [`Backend::Attached`]: the other side of the seam between the public API
//!   and a host (`src/remote`). [`Fixture::open`] opens a *host* broker on the
//!   data directory exactly as [`Backend::Journal`] opens its broker (with the
//!   test's `ManualClock`: the host's clock drives every timer, and the test
//!   advances the clock object it holds), keeps it for the test's duration,
//!   and hands the test a second broker opened on the same directory, which
//!   attaches to the first (the remote flavor: every call a frame to the
//!   host). Host and client live in one process here; `tests/attach_smoke.rs`
//!   and the multi-process tests cover two. [`Fixture::reopen`] closes both
//!   and opens the pair again.
//!
//! `conformance! { test_a, test_b, … }` turns each `fn test_a(f: &Fixture)` into
//! `memory::test_a`, `journal::test_a` and `attached::test_a` (`cargo test
//! --test behaviour journal::` runs the journal part). `test_c["why"]` ignores
//! the journal and attached variants of `test_c`, with that reason;
//! `test_c[attached: "why"]` ignores only the attached one (a difference
//! inherent to an attached broker, said in "why").
//!
//! Where another broker flavor plugs in: one more [`Backend`] variant;
//! [`Fixture::open`] is the one place the suite makes a broker, so it makes
//! that flavor's broker there, and `conformance!` gains one more module:
//! every test then runs over it unchanged.

use libqueue::{Broker, BrokerOptions, ManualClock, QueueOptions};
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the clock of `Fixture::manual` starts (ns).
#[allow(dead_code)]
pub const START: u64 = 1_000_000_000;

/// Journal segments are small, so tests with many messages roll a few.
const SEGMENT_SIZE: u64 = 1 << 20;

/// A storage backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In memory (`MemoryStorage`).
    Memory,
    /// The journal in a temporary data directory; messages persistent.
    Journal,
    /// A broker attached to a host (in this process) of a journal data
    /// directory set up as for [`Backend::Journal`].
    Attached,
}

/// Builds a test's brokers for one backend and keeps their data directories
/// alive for the test's duration.
pub struct Fixture {
    backend: Backend,
    /// Every broker opened, kept open until the test ends: tests may hold only
    /// a queue handle (`f.broker().queue("q")`), and a journal closes with the
    /// last broker handle (see `queue_outlives_its_broker`).
    brokers: RefCell<Vec<Broker>>,
    dir: Option<tempfile::TempDir>,
    opened: Cell<u32>,
    /// The data directory and clock of the broker opened last (for `reopen`).
    last: RefCell<Option<(PathBuf, Option<Arc<ManualClock>>)>>,
    /// Attached: the hosts of the brokers handed out, by data directory,
    /// kept open until the test ends (or `reopen` closes one).
    hosts: RefCell<Vec<(PathBuf, Broker)>>,
}

impl Fixture {
    pub fn new(backend: Backend) -> Self {
        let dir = (backend != Backend::Memory)
            .then(|| tempfile::tempdir().expect("a temporary data directory"));
        Fixture {
            backend,
            brokers: RefCell::new(Vec::new()),
            dir,
            opened: Cell::new(0),
            last: RefCell::new(None),
            hosts: RefCell::new(Vec::new()),
        }
    }

    /// Whether messages go through a journal (the journal and attached
    /// variants: the host of an attached broker has the journal's setup).
    #[allow(dead_code)]
    pub fn is_journal(&self) -> bool {
        self.backend != Backend::Memory
    }

    /// Whether the test's brokers are attached to a host.
    #[allow(dead_code)]
    pub fn is_attached(&self) -> bool {
        self.backend == Backend::Attached
    }

    /// Makes every broker of the suite (the place a new [`Backend`] plugs in).
    fn open(&self, dir: Option<PathBuf>, clock: Option<Arc<ManualClock>>) -> Broker {
        let mut o = BrokerOptions::new();
        if let Some(c) = &clock {
            o = o.clock(c.clone());
        }
        if let Some(d) = &dir {
            o = o
                .data_dir(d)
                .segment_size(SEGMENT_SIZE)
                .default_queue_options(QueueOptions::default().persistent(true));
        }
        let b = if self.backend == Backend::Attached {
            let d = dir
                .clone()
                .expect("an attached broker has a data directory");
            let host = Broker::open(o.clone()).expect("open the host broker");
            assert!(
                !host.is_attached(),
                "the first broker on a directory hosts it"
            );
            let b = Broker::open(o).expect("attach to the host");
            assert!(b.is_attached(), "the second broker on a directory attaches");
            self.hosts.borrow_mut().push((d, host));
            b
        } else {
            Broker::open(o).expect("open the broker")
        };
        *self.last.borrow_mut() = dir.map(|d| (d, clock));
        self.brokers.borrow_mut().push(b.clone());
        b
    }

    fn fresh_dir(&self) -> Option<PathBuf> {
        let n = self.opened.get();
        self.opened.set(n + 1);
        self.dir
            .as_ref()
            .map(|d| d.path().join(format!("broker-{n}")))
    }

    /// A broker on the system clock (each call: a new broker, a new directory).
    pub fn broker(&self) -> Broker {
        self.open(self.fresh_dir(), None)
    }

    /// A broker on a manual clock starting at [`START`].
    #[allow(dead_code)]
    pub fn manual(&self) -> (Arc<ManualClock>, Broker) {
        let clock = ManualClock::new(START);
        let b = self.open(self.fresh_dir(), Some(clock.clone()));
        (clock, b)
    }

    /// Lets go of the fixture's handles of the brokers opened so far (they
    /// close when the test drops its own).
    #[allow(dead_code)]
    pub fn release(&self) {
        self.brokers.borrow_mut().clear();
    }

    /// The data directory of the broker opened last (journal only).
    #[allow(dead_code)]
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.last.borrow().as_ref().map(|(d, _)| d.clone())
    }

    /// Queue options to start from: the defaults, persistent over the journal.
    pub fn opts(&self) -> QueueOptions {
        QueueOptions::default().persistent(self.is_journal())
    }

    /// The host of the attached broker opened last (attached only).
    #[allow(dead_code)]
    pub fn host(&self) -> Option<Broker> {
        let dir = self.data_dir()?;
        let hosts = self.hosts.borrow();
        hosts
            .iter()
            .rev()
            .find(|(d, _)| *d == dir)
            .map(|(_, h)| h.clone())
    }

    /// Journal: closes `b` (the broker opened last), opens its data directory
    /// again on the same clock, checks that recovery found no damage, and returns
    /// the new broker. Attached: closes `b` and its host, then opens the pair
    /// again (the host recovers the directory). Memory: `None` (nothing
    /// survives a close), and `b` stays open.
    #[allow(dead_code)]
    pub fn reopen(&self, b: Broker) -> Option<Broker> {
        let (dir, clock) = self.last.borrow().clone()?;
        b.close();
        drop(b);
        if self.backend == Backend::Attached {
            let mut hosts = self.hosts.borrow_mut();
            for (_, h) in hosts.iter().filter(|(d, _)| *d == dir) {
                h.close();
            }
            hosts.retain(|(d, _)| *d != dir);
        }
        self.brokers.borrow_mut().retain(|b| !b.is_closed());
        let b = self.open(Some(dir), clock);
        let report = match self.host() {
            Some(h) => h.recovery_report().cloned(),
            None => b.recovery_report().cloned(),
        };
        let r = report.expect("a journal broker reports");
        assert!(
            r.damage.is_empty(),
            "a clean close reopens without damage: {r:?}"
        );
        Some(b)
    }
}

/// Expands each listed test function `fn name(f: &Fixture)` into the tests
/// `memory::name`, `journal::name` and `attached::name`; `name["reason"]`
/// ignores the journal and attached ones, `name[attached: "reason"]` the
/// attached one only.
#[macro_export]
macro_rules! conformance {
    ($($name:ident $([$why:literal])? $([attached: $awhy:literal])?),* $(,)?) => {
        /// The conformance suite on the in-memory broker.
        mod memory {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Fixture::new(super::Backend::Memory));
                }
            )*
        }
        /// The conformance suite on the journal (persistent messages, a data directory).
        mod journal {
            $(
                #[test]
                $(#[ignore = $why])?
                fn $name() {
                    super::$name(&super::Fixture::new(super::Backend::Journal));
                }
            )*
        }
        /// The conformance suite on a broker attached to a host of a journal
        /// data directory (the remote flavor).
        mod attached {
            $(
                #[test]
                $(#[ignore = $why])?
                $(#[ignore = $awhy])?
                fn $name() {
                    super::$name(&super::Fixture::new(super::Backend::Attached));
                }
            )*
        }
    };
}
