//! Time: every timer in the engine (TTL, delay, lease, timeouts) reads a [`Clock`],
//! so tests can drive time with a [`ManualClock`] instead of sleeping.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
#[cfg(not(target_os = "linux"))]
use std::time::Instant;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the UNIX epoch, as read from a [`Clock`].
pub type Nanos = u64;

/// Something woken when a manual clock moves (the broker registers itself).
pub trait ClockListener: Send + Sync {
    /// Called after the clock advanced.
    fn clock_advanced(&self);
}

/// A source of time for the engine.
pub trait Clock: Send + Sync + 'static {
    /// Current time in nanoseconds since the UNIX epoch. Must never go backwards.
    fn now(&self) -> Nanos;

    /// A cheaper reading that may lag [`now`](Self::now) by a few milliseconds; the
    /// engine uses it only for send times (statistics), never for deadlines.
    fn now_coarse(&self) -> Nanos {
        self.now()
    }

    /// How long (real time) a waiter may sleep when `remaining` nanoseconds of this
    /// clock's time are left before its next deadline. The system clock answers the
    /// same span; a manual clock answers "until woken" (it wakes listeners on advance).
    fn park_limit(&self, remaining: Nanos) -> Option<Duration> {
        Some(Duration::from_nanos(remaining))
    }

    /// Registers a listener woken whenever time jumps (only manual clocks need it).
    fn add_listener(&self, _listener: Weak<dyn ClockListener>) {}

    /// Whether time moves only when told, and every move calls the listeners
    /// (as [`ManualClock::advance`] does). The broker then runs every queue's
    /// due timers inside that call, so they happen exactly when the test says,
    /// and starts no ticker thread; for any other clock a broker thread runs
    /// them when they fall due.
    fn moves_by_hand(&self) -> bool {
        false
    }
}

/// The real clock: monotonic (`CLOCK_MONOTONIC`, offset by the wall time read
/// once at start), so a wall-clock step never expires leases early.
#[derive(Debug)]
pub struct SystemClock {
    base_unix: Nanos,
    base_mono: Nanos,
}

#[cfg(target_os = "linux")]
fn monotonic(coarse: bool) -> Nanos {
    let id = if coarse {
        libc::CLOCK_MONOTONIC_COARSE
    } else {
        libc::CLOCK_MONOTONIC
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // both clock ids exist on every Linux since 2.6.32; the call cannot fail then.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(not(target_os = "linux"))]
fn monotonic(_coarse: bool) -> Nanos {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

impl SystemClock {
    /// A new system clock anchored at the current wall time.
    pub fn new() -> Self {
        let base_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        SystemClock {
            base_unix,
            base_mono: monotonic(false),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        self.base_unix + monotonic(false).saturating_sub(self.base_mono)
    }

    /// `CLOCK_MONOTONIC_COARSE` (the same clock at tick resolution, a few ns to read).
    fn now_coarse(&self) -> Nanos {
        self.base_unix + monotonic(true).saturating_sub(self.base_mono)
    }
}

/// A clock that only moves when told to. Every queue's due timers (delays,
/// lease expiry and dead-lettering, TTL) run inside [`ManualClock::advance`],
/// and blocked receivers are woken, so timeouts, delays and lease expiries fire
/// exactly when the test says.
///
/// ```
/// use libqueue::{ManualClock, Clock};
/// use std::time::Duration;
/// let clock = ManualClock::new(1_000);
/// clock.advance(Duration::from_millis(5));
/// assert_eq!(clock.now(), 1_000 + 5_000_000);
/// ```
pub struct ManualClock {
    now: AtomicU64,
    listeners: Mutex<Vec<Weak<dyn ClockListener>>>,
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now.load(Ordering::SeqCst))
            .finish()
    }
}

impl ManualClock {
    /// A manual clock starting at `start` nanoseconds.
    pub fn new(start: Nanos) -> Arc<Self> {
        Arc::new(ManualClock {
            now: AtomicU64::new(start),
            listeners: Mutex::new(Vec::new()),
        })
    }

    /// Moves time forward by `by` and wakes every waiter so it re-reads the clock.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
        let listeners: Vec<_> = {
            let mut l = self.listeners.lock();
            l.retain(|w| w.strong_count() > 0);
            l.iter().filter_map(|w| w.upgrade()).collect()
        };
        for l in listeners {
            l.clock_advanced();
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        self.now.load(Ordering::SeqCst)
    }

    fn park_limit(&self, _remaining: Nanos) -> Option<Duration> {
        None
    }

    fn add_listener(&self, listener: Weak<dyn ClockListener>) {
        self.listeners.lock().push(listener);
    }

    fn moves_by_hand(&self) -> bool {
        true
    }
}

/// Converts a duration to nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
