//! One priority level of a queue's ready path.
//!
//! A lane is `shards` FIFOs (crossbeam's lock-free `SegQueue`). A producer always
//! pushes to its thread's home shard, so messages of one producer stay in order;
//! a consumer pops from its own home shard first and then steals from the others,
//! so producers and consumers on different cores rarely touch the same cache line.
//!
//! Admin operations that must see or remove ready items (peek, cancel by id,
//! purge, TTL sweeps) call [`Lane::stash`], which drains every shard into an
//! id-ordered map (the *stash*) under a mutex. While the stash holds anything,
//! consumers take from it first (under the mutex); the consumer that finds it
//! empty goes back to the lock-free shards.
//!
//! Order is kept by a grace period, as in RCU: a consumer announces a shard pop
//! on its home shard's `busy` counter and backs off if a stash period is open
//! (`period` odd); [`Lane::stash`] opens the period, then waits until no pop is in
//! flight before it drains. So no item is ever outside both the shards and the
//! stash while a drain runs, and everything the stash holds is older than what
//! is left in the shards: per-producer FIFO holds across admin operations
//! (Dekker: the consumer writes `busy` then reads `period`, the admin writes
//! `period` then reads `busy`, all SeqCst). The announcement costs a consumer two
//! uncontended read-modify-writes on its own cache line; producers pay nothing.

use super::{dekker_fence, lock, AtomicU64, AtomicUsize, StdGuard, StdMutex};
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
    fn is_empty(&self) -> bool {
        lock(&self.0).is_empty()
    }
}

/// See the module documentation.
pub struct Lane<T> {
    shards: Box<[Fifo<T>]>,
    mask: usize,
    /// Shard pops in flight, counted on the popping thread's home shard.
    busy: Box<[crossbeam_utils::CachePadded<AtomicUsize>]>,
    /// Odd while a stash period is open (see the module documentation); changes
    /// only under the stash mutex.
    period: AtomicU64,
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
            busy: (0..n).map(|_| Default::default()).collect(),
            period: AtomicU64::new(0),
            stash: StdMutex::new(BTreeMap::new()),
        }
    }

    /// Appends to the home shard `home` (taken modulo the shard count).
    #[inline]
    pub fn push(&self, home: usize, item: T) {
        self.shards[home & self.mask].push(item);
    }

    /// Takes the next item: the stash first while a stash period is open, else the
    /// home shard, then the other shards in turn. `None` if every place looked empty.
    #[inline]
    pub fn pop(&self, home: usize) -> Option<T> {
        loop {
            if self.period.load(SeqCst) & 1 == 1 {
                let mut st = lock(&self.stash);
                if let Some((_, item)) = st.pop_first() {
                    return Some(item);
                }
                // Empty, and we hold the lock, so no drain runs: close the period.
                if self.period.load(SeqCst) & 1 == 1 {
                    self.period.fetch_add(1, SeqCst);
                }
            }
            let busy = &self.busy[home & self.mask];
            busy.fetch_add(1, SeqCst);
            dekker_fence();
            if self.period.load(SeqCst) & 1 == 1 {
                // A drain is starting: let it run, then take from the stash.
                busy.fetch_sub(1, SeqCst);
                continue;
            }
            let mut found = None;
            for i in 0..=self.mask {
                if let Some(item) = self.shards[(home + i) & self.mask].pop() {
                    found = Some(item);
                    break;
                }
            }
            busy.fetch_sub(1, SeqCst);
            return found;
        }
    }

    /// Whether the lane looked empty (exact when nothing runs concurrently).
    pub fn is_empty(&self) -> bool {
        if self.period.load(SeqCst) & 1 == 1 && !lock(&self.stash).is_empty() {
            return false;
        }
        self.shards.iter().all(|s| s.is_empty())
    }

    /// Drains every shard into the stash and returns it locked (see module docs).
    /// The caller may inspect, remove or add items; the rest are delivered from
    /// the stash in key order once the guard is dropped.
    pub fn stash(&self) -> Stash<'_, T> {
        let mut st = lock(&self.stash);
        if self.period.load(SeqCst) & 1 == 0 {
            self.period.fetch_add(1, SeqCst);
        }
        dekker_fence();
        // Grace period: pops that started before the period opened finish first.
        for b in self.busy.iter() {
            while b.load(SeqCst) != 0 {
                std::hint::spin_loop();
                #[cfg(not(loom))]
                std::thread::yield_now();
                #[cfg(loom)]
                loom::thread::yield_now();
            }
        }
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

    /// Producers push (key = producer << 32 | seq, increasing per producer), an
    /// admin stashes in a loop, consumers pop: every consumer sees each producer's
    /// items in order, and every item arrives once.
    #[test]
    fn concurrent_stash_keeps_per_producer_order() {
        use std::sync::atomic::{AtomicBool, AtomicU64 as A64};
        use std::sync::Arc;
        const P: u64 = 4;
        const N: u64 = 100_000;
        let lane = Arc::new(Lane::<u64>::new(2));
        let done = Arc::new(AtomicBool::new(false));
        let got = Arc::new(A64::new(0));
        let prods: Vec<_> = (0..P)
            .map(|p| {
                let lane = lane.clone();
                std::thread::spawn(move || {
                    for i in 0..N {
                        lane.push(p as usize, (i << 8) | p);
                    }
                })
            })
            .collect();
        let admin = {
            let (lane, done) = (lane.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(SeqCst) {
                    drop(lane.stash());
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            })
        };
        let cons: Vec<_> = (0..4)
            .map(|c| {
                let (lane, got) = (lane.clone(), got.clone());
                std::thread::spawn(move || {
                    let mut last = [None::<u64>; P as usize];
                    while got.load(SeqCst) < P * N {
                        if let Some(k) = lane.pop(c) {
                            let (p, i) = ((k & 0xff) as usize, k >> 8);
                            if let Some(l) = last[p] {
                                assert!(i > l, "producer {p}: {i} after {l}");
                            }
                            last[p] = Some(i);
                            got.fetch_add(1, SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in prods {
            t.join().unwrap();
        }
        for t in cons {
            t.join().unwrap();
        }
        done.store(true, SeqCst);
        admin.join().unwrap();
        assert_eq!(got.load(SeqCst), P * N);
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
        assert_eq!(lane.period.load(SeqCst) & 1, 0, "period closed");
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

    /// The race the grace period closes: a consumer holding an item popped just
    /// as a drain starts must not let another consumer take the same producer's
    /// newer items first. Two consumers and a drain; each consumer must see
    /// increasing keys, and every item arrives exactly once.
    #[test]
    fn drain_never_overtakes_an_item_in_flight() {
        loom::model(|| {
            let lane = Arc::new(Lane::new(1));
            for k in 1..=3u64 {
                lane.push(0, k);
            }
            let l2 = lane.clone();
            let admin = thread::spawn(move || drop(l2.stash()));
            let l3 = lane.clone();
            let other = thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..2 {
                    got.extend(l3.pop(1));
                }
                got
            });
            let mut mine = Vec::new();
            for _ in 0..2 {
                mine.extend(lane.pop(0));
            }
            admin.join().unwrap();
            let theirs = other.join().unwrap();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
            assert!(theirs.windows(2).all(|w| w[0] < w[1]), "{theirs:?}");
            let mut all: Vec<u64> = mine.into_iter().chain(theirs).collect();
            while let Some(v) = lane.pop(0) {
                all.push(v);
            }
            all.sort();
            assert_eq!(all, vec![1, 2, 3]);
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
