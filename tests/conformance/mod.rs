//! The storage-backend conformance harness: every test of `behaviour/` runs
//! once per backend, through a [`Fixture`] that builds its brokers.
//!
//! - [`Backend::Memory`]: the in-memory broker (`MemoryStorage`), as
//!   `Broker::new()` builds it.
//! - [`Backend::Journal`]: a broker opened on a fresh data directory (the
//!   journal), where every queue is persistent by default, so the test's
//!   messages go through the journal; [`Fixture::reopen`] closes the broker and
//!   opens the same directory again.
//!
//! `conformance! { test_a, test_b, … }` turns each `fn test_a(f: &Fixture)` into
//! `memory::test_a` and `journal::test_a` (`cargo test --test behaviour
//! journal::` runs the journal half). `test_c["why"]` ignores the journal
//! variant of `test_c`, with that reason.
//!
//! Where a second broker flavor plugs in: the coming host-process client
//! (a `Broker` whose handles talk to a host process instead of the engine in
//! this one; see "Layers" in docs/design.md) becomes one more [`Backend`]
//! variant. [`Fixture::open`] is the one place the suite makes a broker, so it
//! makes that flavor's broker there (a host on the same data directory), and
//! `conformance!` gains one more module beside `memory` and `journal`: every
//! test then runs over it unchanged.

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
}

impl Fixture {
    pub fn new(backend: Backend) -> Self {
        let dir = (backend == Backend::Journal)
            .then(|| tempfile::tempdir().expect("a temporary data directory"));
        Fixture {
            backend,
            brokers: RefCell::new(Vec::new()),
            dir,
            opened: Cell::new(0),
            last: RefCell::new(None),
        }
    }

    /// Whether this is the journal variant.
    #[allow(dead_code)]
    pub fn is_journal(&self) -> bool {
        self.backend == Backend::Journal
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
        let b = Broker::open(o).expect("open the broker");
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
        QueueOptions::default().persistent(self.backend == Backend::Journal)
    }

    /// Journal: closes `b` (the broker opened last), opens its data directory
    /// again on the same clock, checks that recovery found no damage, and returns
    /// the new broker. Memory: `None` (nothing survives a close), and `b` stays open.
    #[allow(dead_code)]
    pub fn reopen(&self, b: Broker) -> Option<Broker> {
        let (dir, clock) = self.last.borrow().clone()?;
        b.close();
        drop(b);
        self.brokers.borrow_mut().retain(|b| !b.is_closed());
        let b = self.open(Some(dir), clock);
        let r = b.recovery_report().expect("a journal broker reports");
        assert!(
            r.damage.is_empty(),
            "a clean close reopens without damage: {r:?}"
        );
        Some(b)
    }
}

/// Expands each listed test function `fn name(f: &Fixture)` into the tests
/// `memory::name` and `journal::name`; `name["reason"]` ignores the journal one.
#[macro_export]
macro_rules! conformance {
    ($($name:ident $([$why:literal])?),* $(,)?) => {
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
    };
}
