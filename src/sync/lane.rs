//! One priority level of a queue's ready path.
//!
//! A lane is `shards` FIFOs (crossbeam's lock-free `SegQueue`). A producer always
//! pushes to its thread's home shard, so messages of one producer stay in order;
//! a consumer pops from its own home shard first and then steals from the others,
//! so producers and consumers on different cores rarely touch the same cache line.
//!
//! Admin operations that must see or remove ready items (peek, cancel by id,
//! purge, TTL sweeps) call [`Lane::stash`]: it raises `stash_active`, then drains
//! every shard into an id-ordered map under a mutex. While that map is non-empty,
//! consumers take from it first (under the mutex); when it empties they go back
//! to the lock-free shards. A consumer that popped a shard concurrently with a
//! drain sees `stash_active` after its pop (the flag is raised before the drain's
//! first pop) and puts its item through the stash, so the item with the lowest
//! key still comes out first: per-producer FIFO holds across admin operations.

use super::{lock, AtomicBool, StdGuard, StdMutex};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::SeqCst;

/// Items that carry an ordering key (message ids increase per producer).
pub trait Keyed {
    /// The key that orders items of one producer.
    fn key(&self) -> u64;
}

#[cfg(not(loom))]
type Fifo<T> = crossbeam_queue::SegQueue<T>;

/// Under loom, a linearizable stand-in for `SegQueue` built on loom's mutex, so the
/// stash protocol (the part written here) is what loom explores.
#[cfg(loom)]
struct Fifo<T>(StdMutex<std::collections::VecDeque<T>>);
#[cfg(loom)]
impl<T> Fifo<T> {
    fn new() -> Self {
        Fifo(StdMutex::new(Default::default()))
    }
    fn push(&self, t: T) {
        lock(&self.0).push_back(t)
    }
    fn pop(&self) -> Option<T> {
        lock(&self.0).pop_front()
    }
}

/// See the module documentation.
pub struct Lane<T> {
    shards: Box<[Fifo<T>]>,
    mask: usize,
    stash_active: AtomicBool,
    stash: StdMutex<BTreeMap<u64, T>>,
}

impl<T> std::fmt::Debug for Lane<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// Exclusive access to a lane's stash, holding every item that was ready when
/// it was taken, ordered by key. Consumers wait on its mutex while it is held.
pub type Stash<'a, T> = StdGuard<'a, BTreeMap<u64, T>>;

impl<T: Keyed> Lane<T> {
    /// A lane with `shards` shards (rounded up to a power of two).
    pub fn new(shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        Lane {
            shards: (0..n).map(|_| Fifo::new()).collect(),
            mask: n - 1,
            stash_active: AtomicBool::new(false),
            stash: StdMutex::new(BTreeMap::new()),
        }
    }

    /// Appends to the home shard `home` (taken modulo the shard count).
    #[inline]
    pub fn push(&self, home: usize, item: T) {
        self.shards[home & self.mask].push(item);
    }

    /// Takes the next item: the stash first while it holds anything, else the home
    /// shard, then the other shards in turn. `None` if every place looked empty.
    #[inline]
    pub fn pop(&self, home: usize) -> Option<T> {
        if self.stash_active.load(SeqCst) {
            let mut st = lock(&self.stash);
            if let Some((_, item)) = st.pop_first() {
                return Some(item);
            }
            // Empty and we hold the lock, so no drain is running: back to lock-free.
            self.stash_active.store(false, SeqCst);
        }
        for i in 0..=self.mask {
            if let Some(item) = self.shards[(home + i) & self.mask].pop() {
                if self.stash_active.load(SeqCst) {
                    // A drain started while we popped: an older item of the same
                    // producer may sit in the stash now. Go through it.
                    let mut st = lock(&self.stash);
                    st.insert(item.key(), item);
                    return st.pop_first().map(|(_, v)| v);
                }
                return Some(item);
            }
        }
        None
    }

    /// Drains every shard into the stash and returns it locked (see module docs).
    /// The caller may inspect, remove or add items; the rest are delivered from
    /// the stash in key order once the guard is dropped.
    pub fn stash(&self) -> Stash<'_, T> {
        let mut st = lock(&self.stash);
        self.stash_active.store(true, SeqCst);
        for s in self.shards.iter() {
            while let Some(item) = s.pop() {
                st.insert(item.key(), item);
            }
        }
        st
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    impl Keyed for u64 {
        fn key(&self) -> u64 {
            *self
        }
    }

    #[test]
    fn fifo_per_home_and_stealing() {
        let lane = Lane::new(4);
        for i in 0..5u64 {
            lane.push(1, i);
        }
        lane.push(2, 100);
        // Home 0 is empty: steals shard 1 first (in order), then shard 2.
        let got: Vec<u64> = std::iter::from_fn(|| lane.pop(0)).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 100]);
    }

    #[test]
    fn stash_orders_and_returns_to_lock_free() {
        let lane = Lane::new(2);
        lane.push(0, 5);
        lane.push(1, 3);
        lane.push(0, 7);
        {
            let mut st = lane.stash();
            assert_eq!(st.keys().copied().collect::<Vec<_>>(), vec![3, 5, 7]);
            st.remove(&5);
        }
        lane.push(1, 9);
        assert_eq!(lane.pop(0), Some(3));
        assert_eq!(lane.pop(0), Some(7));
        assert_eq!(lane.pop(0), Some(9));
        assert_eq!(lane.pop(0), None);
        assert!(!lane.stash_active.load(SeqCst));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    impl Keyed for u64 {
        fn key(&self) -> u64 {
            *self
        }
    }

    /// One producer pushes 1 then 2; a consumer pops while an admin stashes and
    /// puts everything back. Whatever the interleaving, nothing is lost or
    /// duplicated and the consumer never sees 2 before 1.
    #[test]
    fn stash_keeps_producer_order() {
        loom::model(|| {
            let lane = Arc::new(Lane::new(2));
            lane.push(0, 1u64);
            lane.push(0, 2u64);
            let l2 = lane.clone();
            let admin = thread::spawn(move || {
                let st = l2.stash();
                st.len()
            });
            let mut got = Vec::new();
            if let Some(v) = lane.pop(1) {
                got.push(v);
            }
            admin.join().unwrap();
            while let Some(v) = lane.pop(1) {
                got.push(v);
            }
            assert_eq!(got, vec![1, 2]);
        });
    }

    /// A producer pushing concurrently with a stash and a consumer: all items
    /// arrive exactly once.
    #[test]
    fn concurrent_push_stash_pop() {
        loom::model(|| {
            let lane = Arc::new(Lane::new(2));
            let l1 = lane.clone();
            let prod = thread::spawn(move || {
                l1.push(0, 1u64);
                l1.push(0, 2u64);
            });
            let l2 = lane.clone();
            let admin = thread::spawn(move || {
                drop(l2.stash());
            });
            let mut got = Vec::new();
            if let Some(v) = lane.pop(1) {
                got.push(v);
            }
            prod.join().unwrap();
            admin.join().unwrap();
            while let Some(v) = lane.pop(1) {
                got.push(v);
            }
            assert_eq!(got, vec![1, 2]);
        });
    }
}
