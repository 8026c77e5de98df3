//! Randomized model test: long seeded sequences of operations on one queue (and
//! its dead-letter queue), checked after every step against a single-threaded
//! reference model written here.
//!
//! The model predicts exactly which message every receive returns, the result
//! of every ack / nack / extend / cancel / purge / peek / send, and the full
//! [`QueueStats`] of both queues. It mirrors the engine's documented ordering:
//!
//! * highest priority first;
//! * within a priority, a lane is a FIFO of ids in the order they became ready
//!   (a single producer thread sends in increasing id order; messages promoted
//!   from a delay or returned by nack / lease expiry go to the back);
//! * timers (delay promotion, lease expiry) fire only in `maintain`, which runs
//!   at the start of receive, ack / nack, extend, peek and stats, and when a send
//!   finds the queue full: first the due delayed messages in (due, id) order, then
//!   the expired leases in (deadline, id) order;
//! * admin operations (peek, cancel, purge) drain a lane into an id-ordered
//!   "stash" that consumers empty first, so after one of them the lane
//!   delivers in id order (see `src/sync/lane.rs`); stats does so (every lane)
//!   only when a message has left the queue since it last looked for the
//!   oldest message; a TTL sweep, only for the lanes of the due entries of the
//!   expiry heap (an entry per ready message with a TTL, stale ones included),
//!   and a compaction of that heap (past 1024 entries, then twice what it kept)
//!   for every lane;
//! * TTL expiry is lazy: an expired ready message is counted when a pop meets it
//!   or when a sweep (peek, stats, a send that finds the queue full; only if the
//!   lower bound `min_expiry` says one may have expired) removes it, ready or
//!   delayed. Until then it can be cancelled or purged.
//!
//! Reproduce a failure with `MODEL_SEED=<seed> [MODEL_STEPS=<n>] cargo test
//! --release --test model -- <test>` (every assertion message names the seed,
//! the step, the test and the last operations).
//!
//! Contents:
//!
//! - `reference.rs`   the reference model (single-threaded, predicts every result)
//! - `runner.rs`      drives the engine and the model side by side, step by step

mod reference;
mod runner;

use libqueue::{
    Broker, BrokerOptions, Delivery, Error, ManualClock, Message, MessageView, OnFull, Queue,
    QueueOptions, QueueStats, Wait,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reference::*;
use runner::*;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

const MS: u64 = 1_000_000;
const START: u64 = 1_000_000_000;
const PRIOS: usize = 10;
const QUEUE: &str = "work";
const DLQ: &str = "dlq";

fn steps_from_env(default: usize) -> usize {
    std::env::var("MODEL_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn seeds(base: u64, n: u64) -> Vec<u64> {
    match std::env::var("MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (0..n).map(|i| base + i).collect(),
    }
}

/// The main model run: many seeds, each with its own random configuration.
#[test]
fn model_random_sequences() {
    let steps = steps_from_env(3000);
    let mut totals = QueueStats::default();
    for seed in seeds(0x5eed_0000, 64) {
        let r = Runner::new("model_random_sequences", seed, None).run(steps);
        let st = r.q.stats();
        totals.sent += st.sent;
        totals.received += st.received;
        totals.redelivered += st.redelivered;
        totals.expired += st.expired;
        totals.dead_lettered += st.dead_lettered;
        totals.cancelled += st.cancelled;
        totals.nacked += st.nacked;
        totals.purged += st.purged;
    }
    // The runs must actually exercise the interesting paths.
    if std::env::var("MODEL_SEED").is_err() {
        assert!(totals.redelivered > 0, "{totals:?}");
        assert!(totals.expired > 0, "{totals:?}");
        assert!(totals.dead_lettered > 0, "{totals:?}");
        assert!(totals.cancelled > 0, "{totals:?}");
        assert!(totals.nacked > 0, "{totals:?}");
    }
    println!("model totals over all seeds: {totals:?}");
}

/// The same model over the journal backend (persistent queue, data directory):
/// every step must agree with the model as in memory, and the journal's live set
/// must equal the model's at checkpoints.
#[test]
fn model_over_the_journal() {
    let steps = steps_from_env(1500);
    for seed in seeds(0x10a1_0000, 12) {
        Runner::with_backend("model_over_the_journal", seed, None, true).run(steps);
    }
}

/// Small capacities: Full / InvalidArgument exactly when the model says so.
#[test]
fn model_with_small_capacity() {
    let steps = steps_from_env(2000);
    let mut full_rejections = 0u64;
    for seed in seeds(0xca9_0000, 24) {
        let r = Runner::new("model_with_small_capacity", seed, Some(1 + seed % 6)).run(steps);
        full_rejections += r.full;
    }
    if std::env::var("MODEL_SEED").is_err() {
        assert!(full_rejections > 0, "no send was ever refused as full");
    }
}
