//! Lock-free and waiting primitives, the bottom layer.
//!
//! - [`event`]: an event count — producers pay one fence and one load per notify
//!   unless somebody sleeps; consumers spin briefly, then park.
//! - [`lane`]: one priority level of a queue's ready path — a FIFO per shard
//!   (producers push to their thread's home shard, consumers steal from all), plus
//!   the id-ordered "stash" that admin operations (peek, cancel, sweeps) drain into.
//!
//! - [`eventfd`]: a Linux eventfd, the pollable "something to receive" signal.
//! - `fork`: tells a handle inherited by a forked child from one of its own.
//!
//! Under `RUSTFLAGS="--cfg loom"` both are built on loom's primitives and checked
//! by the loom tests at the bottom of each file.

pub mod event;
#[cfg(target_os = "linux")]
pub mod eventfd;
pub(crate) mod fork;
pub mod lane;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU64, AtomicUsize};

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar as StdCondvar, Mutex as StdMutex, MutexGuard as StdGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar as StdCondvar, Mutex as StdMutex, MutexGuard as StdGuard};

/// Orders a SeqCst read-modify-write before a later SeqCst load of another
/// location (the Dekker handshake). The C++20 / Rust memory model already
/// guarantees this for SeqCst accesses, so normal builds emit nothing; loom
/// models SeqCst only through fences, so under loom an explicit fence stands in
/// and loom checks the equivalent fence protocol.
#[inline(always)]
pub(crate) fn dekker_fence() {
    #[cfg(loom)]
    fence(std::sync::atomic::Ordering::SeqCst);
}

/// Locks a std (or loom) mutex; the data it guards stays consistent across a panic
/// in this crate's code (no invariant spans an unwinding point), so poisoning is ignored.
pub(crate) fn lock<T>(m: &StdMutex<T>) -> StdGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

mod hint {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static HOME: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    /// This thread's home shard hint: threads are numbered round-robin on first use,
    /// so up to `shards` threads each get a shard of their own.
    #[inline]
    pub fn home() -> usize {
        HOME.with(|h| {
            let v = h.get();
            if v != usize::MAX {
                return v;
            }
            let v = NEXT.fetch_add(1, Ordering::Relaxed);
            h.set(v);
            v
        })
    }

    /// A home shard hint of its own for something that is not a thread (the
    /// host's connection of an attached process), numbered with the threads.
    pub fn fresh() -> usize {
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `f` with `home` as this thread's home shard hint, then restores
    /// the thread's own: a thread acting for a producer that is not itself
    /// (the host's threads, for one attached process) keeps that producer's
    /// messages on one shard, so in order, whichever thread runs its calls.
    pub fn with_home<R>(home: usize, f: impl FnOnce() -> R) -> R {
        struct Restore(usize);
        impl Drop for Restore {
            fn drop(&mut self) {
                HOME.with(|h| h.set(self.0));
            }
        }
        let _restore = Restore(HOME.with(|h| h.replace(home)));
        f()
    }
}
pub(crate) use hint::home as home_shard;
pub(crate) use hint::{fresh as fresh_home, with_home};
