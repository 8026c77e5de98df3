//! Shared by the ready-path programs (`benches/scaling.rs`, `benches/ready_path.rs`):
//! one direction of message passing as each peer does it ([`Pipe`]), and
//! [`run_mpmc`], which moves `n` messages from `P` producer threads to `C`
//! consumer threads and checks that every one arrived (count and sum of the
//! sequence numbers), so nothing is counted that was not delivered.
//!
//! Payloads are freshly allocated 16-byte `Vec<u8>`s with the sequence number
//! in the first 8 bytes. Stopping many consumers: after all producers are
//! joined, one sentinel (an empty payload) per consumer is sent. A libqueue
//! queue is FIFO per producer only (sharded lanes), so a sentinel may overtake
//! messages still sitting in another shard; hence each consumer, on its
//! sentinel, adds its count to a shared total, and the last consumer to stop
//! receives whatever is still missing (it knows exactly how many). Channels
//! use the same code (for them the tail is always empty).

#![allow(dead_code)]

use libqueue::{Message, MessageView, Wait};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

/// Payload size in bytes.
pub const PAYLOAD: usize = 16;

pub fn payload(seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(PAYLOAD);
    v.extend_from_slice(&seq.to_le_bytes());
    v.resize(PAYLOAD, 0);
    v
}

/// Reads a payload: `None` for the (empty) sentinel, else its sequence number.
#[inline]
pub fn decode(body: &[u8]) -> Option<u64> {
    if body.is_empty() {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&body[..8]);
    Some(u64::from_le_bytes(b))
}

/// One direction of message passing, as each peer does it.
pub trait Pipe: Sync {
    fn send(&self, body: Vec<u8>);
    /// Blocks for the next message: `None` when it is a sentinel.
    fn recv(&self) -> Option<u64>;
}

/// libqueue, consumer uses `receive_auto_ack(Wait::Forever)`.
pub struct LqAuto(pub libqueue::Queue);

impl Pipe for LqAuto {
    #[inline]
    fn send(&self, body: Vec<u8>) {
        self.0.send(Message::new(body)).expect("send");
    }
    #[inline]
    fn recv(&self) -> Option<u64> {
        let d = self
            .0
            .receive_auto_ack(Wait::Forever)
            .expect("receive")
            .expect("Wait::Forever returns a message");
        decode(d.body())
    }
}

/// libqueue, consumer uses a leased `receive()` then `ack()`.
pub struct LqLeased(pub libqueue::Queue);

impl Pipe for LqLeased {
    #[inline]
    fn send(&self, body: Vec<u8>) {
        self.0.send(Message::new(body)).expect("send");
    }
    #[inline]
    fn recv(&self) -> Option<u64> {
        let d = self.0.receive().expect("receive");
        let v = decode(d.body());
        d.ack().expect("ack");
        v
    }
}

pub struct Crossbeam(
    pub crossbeam_channel::Sender<Vec<u8>>,
    pub crossbeam_channel::Receiver<Vec<u8>>,
);

impl Crossbeam {
    pub fn bounded(cap: usize) -> Self {
        let (s, r) = crossbeam_channel::bounded(cap);
        Crossbeam(s, r)
    }
    pub fn unbounded() -> Self {
        let (s, r) = crossbeam_channel::unbounded();
        Crossbeam(s, r)
    }
}

impl Pipe for Crossbeam {
    #[inline]
    fn send(&self, body: Vec<u8>) {
        self.0.send(body).expect("send");
    }
    #[inline]
    fn recv(&self) -> Option<u64> {
        decode(&self.1.recv().expect("recv"))
    }
}

pub struct Flume(pub flume::Sender<Vec<u8>>, pub flume::Receiver<Vec<u8>>);

impl Flume {
    pub fn bounded(cap: usize) -> Self {
        let (s, r) = flume::bounded(cap);
        Flume(s, r)
    }
}

impl Pipe for Flume {
    #[inline]
    fn send(&self, body: Vec<u8>) {
        self.0.send(body).expect("send");
    }
    #[inline]
    fn recv(&self) -> Option<u64> {
        decode(&self.1.recv().expect("recv"))
    }
}

pub struct Kanal(pub kanal::Sender<Vec<u8>>, pub kanal::Receiver<Vec<u8>>);

impl Kanal {
    pub fn bounded(cap: usize) -> Self {
        let (s, r) = kanal::bounded(cap);
        Kanal(s, r)
    }
}

impl Pipe for Kanal {
    #[inline]
    fn send(&self, body: Vec<u8>) {
        self.0.send(body).expect("send");
    }
    #[inline]
    fn recv(&self) -> Option<u64> {
        decode(&self.1.recv().expect("recv"))
    }
}

/// Moves `n` messages from `producers` threads to `consumers` threads through
/// `pipe`; returns the time from the start barrier to the last consumer done.
/// Panics if a message is missing or counted twice.
pub fn run_mpmc<P: Pipe>(pipe: &P, n: usize, producers: usize, consumers: usize) -> Duration {
    // Producer `p` sends sequence numbers `n * p / producers .. n * (p + 1) / producers`.
    let range = |p: usize| n * p / producers..n * (p + 1) / producers;
    let barrier = Barrier::new(producers + consumers + 1);
    let received = AtomicUsize::new(0);
    let stopped = AtomicUsize::new(0);
    let (elapsed, count, sum) = thread::scope(|s| {
        let cons: Vec<_> = (0..consumers)
            .map(|_| {
                let (barrier, received, stopped) = (&barrier, &received, &stopped);
                s.spawn(move || {
                    barrier.wait();
                    let (mut count, mut sum) = (0usize, 0u64);
                    while let Some(v) = pipe.recv() {
                        count += 1;
                        sum = sum.wrapping_add(v);
                    }
                    received.fetch_add(count, SeqCst);
                    if stopped.fetch_add(1, SeqCst) + 1 == consumers {
                        // Last one out: every other consumer has added its count and
                        // every sentinel is taken, so what is missing is still queued.
                        let missing = n - received.load(SeqCst);
                        for _ in 0..missing {
                            let v = pipe.recv().expect("a message, not a sentinel");
                            count += 1;
                            sum = sum.wrapping_add(v);
                        }
                    }
                    (count, sum)
                })
            })
            .collect();
        let prods: Vec<_> = (0..producers)
            .map(|p| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    for i in range(p) {
                        pipe.send(payload(i as u64));
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in prods {
            h.join().expect("producer");
        }
        for _ in 0..consumers {
            pipe.send(Vec::new());
        }
        let (mut count, mut sum) = (0usize, 0u64);
        for h in cons {
            let (c, s) = h.join().expect("consumer");
            count += c;
            sum = sum.wrapping_add(s);
        }
        (start.elapsed(), count, sum)
    });
    assert_eq!(count, n, "messages received");
    assert_eq!(sum, (n as u64) * (n as u64 - 1) / 2, "sequence sum");
    elapsed
}
