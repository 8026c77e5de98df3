//! Ready-path throughput and latency of libqueue against in-process channels.
//!
//! Every scenario moves the same work through every peer: `N` messages whose
//! payload is a freshly allocated 16-byte `Vec<u8>` (a sequence number in the
//! first 8 bytes), produced by `P` threads and consumed by `C` threads spawned
//! per iteration. Consumers read each payload; after each iteration the number
//! of messages received and the sum of their sequence numbers are checked, so
//! nothing is counted that was not actually delivered.
//!
//! Groups:
//! - `spsc`, `mpsc_4x1`, `mpmc_4x4`, `mpmc_8x8`, `mpsc_cores`: libqueue
//!   (auto-ack, leased receive + ack, bounded to 1024 messages) vs
//!   crossbeam-channel bounded(1024) and unbounded vs kanal bounded(1024) vs
//!   flume bounded(1024). Throughput is in messages per second. `mpsc_cores`
//!   has `available_parallelism() - 1` producers (at least 2, so it stays a
//!   multi-producer scenario on a 2-core machine) and one consumer: the
//!   machine's cores all busy, one of them draining.
//! - `ping_pong`: one round trip per element (request on one queue/channel,
//!   reply on another), so the time per element is the round-trip latency
//!   (mean; `benches/latency.rs` gives p50/p99 of the same loop).
//! - `batch_spsc`: libqueue `send_batch` of 64 + `receive_batch_auto_ack(64)`
//!   vs libqueue one by one vs crossbeam, kanal and flume bounded(1024) one by
//!   one vs crossbeam carrying `Vec`s of 64.
//!
//! - `stats_200k`: the cost of 10 `stats()` calls on a queue holding 200,000
//!   ready messages (time per 10 calls): `ready` (no TTL), `ttl` (each with a
//!   TTL that does not pass: the expiry heaps hold them all), `ttl_expiring`
//!   (a manual clock advanced between calls so 1,000 messages expire before
//!   each call: what a TTL sweep costs), `after_receive` (one message
//!   received and acked before each call: the oldest-age cache is refreshed
//!   by one pass, the case `stats()` is still O(messages) in). Issue 17's
//!   target: `ready` ≤ 1 ms.
//!
//! `LQ_BENCH_QUICK=1` shortens warm-up and measurement (smoke runs only).
//!
//! Stopping many consumers: after all producers are joined, one sentinel (an
//! empty payload) per consumer is sent. A libqueue queue is FIFO per producer
//! only (sharded lanes), so a sentinel may overtake messages still sitting in
//! another shard; hence each consumer, on its sentinel, adds its count to a
//! shared total, and the last consumer to stop receives whatever is still
//! missing (it knows exactly how many). Channels use the same code (for them
//! the tail is always empty).

#[path = "common/pipes.rs"]
mod pipes;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use libqueue::{Broker, Message, MessageView, QueueOptions, Wait};
use pipes::{decode, payload, run_mpmc, Crossbeam, Flume, Kanal, LqAuto, LqLeased, Pipe};
use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

/// Messages per iteration in the throughput scenarios.
const N: usize = 100_000;
/// Capacity of the bounded peers.
const CAP: usize = 1024;
/// Batch size of the batch scenario.
const BATCH: usize = 64;

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    let quick = std::env::var_os("LQ_BENCH_QUICK").is_some_and(|v| v != "0");
    let (measure, warm_up) = if quick { (1000, 200) } else { (3000, 500) };
    g.sample_size(10)
        .measurement_time(Duration::from_millis(measure))
        .warm_up_time(Duration::from_millis(warm_up));
}

fn bench_topology(c: &mut Criterion, name: &str, producers: usize, consumers: usize) {
    let mut g = c.benchmark_group(name);
    configure(&mut g);
    g.throughput(Throughput::Elements(N as u64));
    let sum_runs =
        |iters: u64, f: &mut dyn FnMut() -> Duration| -> Duration { (0..iters).map(|_| f()).sum() };

    g.bench_function("libqueue", |b| {
        let broker = Broker::new();
        let q = LqAuto(broker.queue("bench").expect("queue"));
        b.iter_custom(|iters| sum_runs(iters, &mut || run_mpmc(&q, N, producers, consumers)));
    });
    g.bench_function("libqueue_leased", |b| {
        let broker = Broker::new();
        let q = LqLeased(broker.queue("bench").expect("queue"));
        b.iter_custom(|iters| sum_runs(iters, &mut || run_mpmc(&q, N, producers, consumers)));
    });
    g.bench_function("libqueue_bounded1024", |b| {
        let broker = Broker::new();
        let ns = broker.default_namespace().expect("namespace");
        let opts = QueueOptions::default().max_messages(CAP as u64);
        let q = LqAuto(ns.create_queue("bench", opts).expect("queue"));
        b.iter_custom(|iters| sum_runs(iters, &mut || run_mpmc(&q, N, producers, consumers)));
    });
    g.bench_function("crossbeam_bounded1024", |b| {
        let ch = Crossbeam::bounded(CAP);
        b.iter_custom(|iters| sum_runs(iters, &mut || run_mpmc(&ch, N, producers, consumers)));
    });
    g.bench_function("crossbeam_unbounded", |b| {
        let ch = Crossbeam::unbounded();
        b.iter_custom(|iters| sum_runs(iters, &mut || run_mpmc(&ch, N, producers, consumers)));
    });
    g.bench_function("kanal_bounded1024", |b| {
        let ch = Kanal::bounded(CAP);
        b.iter_custom(|iters| sum_runs(iters, &mut || run_mpmc(&ch, N, producers, consumers)));
    });
    g.bench_function("flume_bounded1024", |b| {
        let ch = Flume::bounded(CAP);
        b.iter_custom(|iters| sum_runs(iters, &mut || run_mpmc(&ch, N, producers, consumers)));
    });
    g.finish();
}

fn spsc(c: &mut Criterion) {
    bench_topology(c, "spsc", 1, 1);
}

fn mpsc_4x1(c: &mut Criterion) {
    bench_topology(c, "mpsc_4x1", 4, 1);
}

fn mpmc_4x4(c: &mut Criterion) {
    bench_topology(c, "mpmc_4x4", 4, 4);
}

fn mpmc_8x8(c: &mut Criterion) {
    bench_topology(c, "mpmc_8x8", 8, 8);
}

fn mpsc_cores(c: &mut Criterion) {
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    bench_topology(c, "mpsc_cores", (cores - 1).max(2), 1);
}

/// `iters` round trips: this thread sends on `ping` and waits for the reply on
/// `pong`; an echo thread answers each request with a new payload.
fn run_ping_pong<P: Pipe>(ping: &P, pong: &P, iters: u64) -> Duration {
    thread::scope(|s| {
        let echo = s.spawn(|| {
            let mut n = 0u64;
            while let Some(v) = ping.recv() {
                pong.send(payload(v));
                n += 1;
            }
            n
        });
        // One untimed round trip so the echo thread is up and running.
        ping.send(payload(u64::MAX - 1));
        assert_eq!(pong.recv(), Some(u64::MAX - 1));
        let start = Instant::now();
        for i in 0..iters {
            ping.send(payload(i));
            let r = pong.recv();
            debug_assert_eq!(r, Some(i));
            black_box(r);
        }
        let elapsed = start.elapsed();
        ping.send(Vec::new());
        assert_eq!(echo.join().expect("echo"), iters + 1, "round trips");
        elapsed
    })
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_pong");
    configure(&mut g);
    g.throughput(Throughput::Elements(1));

    g.bench_function("libqueue", |b| {
        let broker = Broker::new();
        let ping = LqAuto(broker.queue("ping").expect("queue"));
        let pong = LqAuto(broker.queue("pong").expect("queue"));
        b.iter_custom(|iters| run_ping_pong(&ping, &pong, iters));
    });
    g.bench_function("libqueue_leased", |b| {
        let broker = Broker::new();
        let ping = LqLeased(broker.queue("ping").expect("queue"));
        let pong = LqLeased(broker.queue("pong").expect("queue"));
        b.iter_custom(|iters| run_ping_pong(&ping, &pong, iters));
    });
    for cap in [1, 16] {
        g.bench_function(format!("crossbeam_bounded{cap}"), |b| {
            let (ping, pong) = (Crossbeam::bounded(cap), Crossbeam::bounded(cap));
            b.iter_custom(|iters| run_ping_pong(&ping, &pong, iters));
        });
    }
    for cap in [1, 16] {
        g.bench_function(format!("kanal_bounded{cap}"), |b| {
            let (ping, pong) = (Kanal::bounded(cap), Kanal::bounded(cap));
            b.iter_custom(|iters| run_ping_pong(&ping, &pong, iters));
        });
    }
    for cap in [1, 16] {
        g.bench_function(format!("flume_bounded{cap}"), |b| {
            let (ping, pong) = (Flume::bounded(cap), Flume::bounded(cap));
            b.iter_custom(|iters| run_ping_pong(&ping, &pong, iters));
        });
    }
    g.finish();
}

/// Runs one producer and one consumer (which stops after `N` messages) and
/// returns the elapsed time; the consumer returns (count, sequence sum).
fn run_spsc_counted(
    produce: impl FnOnce() + Send,
    consume: impl FnOnce() -> (usize, u64) + Send,
) -> Duration {
    let barrier = Barrier::new(3);
    let (elapsed, (count, sum)) = thread::scope(|s| {
        let cons = s.spawn(|| {
            barrier.wait();
            consume()
        });
        let prod = s.spawn(|| {
            barrier.wait();
            produce()
        });
        barrier.wait();
        let start = Instant::now();
        prod.join().expect("producer");
        let r = cons.join().expect("consumer");
        (start.elapsed(), r)
    });
    assert_eq!(count, N, "messages received");
    assert_eq!(sum, (N as u64) * (N as u64 - 1) / 2, "sequence sum");
    elapsed
}

fn batch_spsc(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch_spsc");
    configure(&mut g);
    g.throughput(Throughput::Elements(N as u64));

    g.bench_function("libqueue_batch64", |b| {
        let broker = Broker::new();
        let q = broker.queue("bench").expect("queue");
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    run_spsc_counted(
                        || {
                            for start in (0..N).step_by(BATCH) {
                                let end = (start + BATCH).min(N);
                                q.send_batch((start..end).map(|i| Message::new(payload(i as u64))))
                                    .expect("send_batch");
                            }
                        },
                        || {
                            let (mut count, mut sum) = (0usize, 0u64);
                            while count < N {
                                let ds = q
                                    .receive_batch_auto_ack(BATCH, Wait::Forever)
                                    .expect("receive_batch");
                                for d in &ds {
                                    sum = sum.wrapping_add(decode(d.body()).expect("payload"));
                                }
                                count += ds.len();
                            }
                            (count, sum)
                        },
                    )
                })
                .sum()
        });
    });
    g.bench_function("libqueue_one_by_one", |b| {
        let broker = Broker::new();
        let q = LqAuto(broker.queue("bench").expect("queue"));
        b.iter_custom(|iters| (0..iters).map(|_| run_spsc_counted_pipe(&q)).sum());
    });
    g.bench_function("crossbeam_bounded1024_one_by_one", |b| {
        let ch = Crossbeam::bounded(CAP);
        b.iter_custom(|iters| (0..iters).map(|_| run_spsc_counted_pipe(&ch)).sum());
    });
    g.bench_function("kanal_bounded1024_one_by_one", |b| {
        let ch = Kanal::bounded(CAP);
        b.iter_custom(|iters| (0..iters).map(|_| run_spsc_counted_pipe(&ch)).sum());
    });
    g.bench_function("flume_bounded1024_one_by_one", |b| {
        let ch = Flume::bounded(CAP);
        b.iter_custom(|iters| (0..iters).map(|_| run_spsc_counted_pipe(&ch)).sum());
    });
    g.bench_function("crossbeam_bounded16_vec64", |b| {
        // 16 batches of 64 in flight: the same 1024 messages as bounded(1024).
        let (tx, rx) = crossbeam_channel::bounded::<Vec<Vec<u8>>>(CAP / BATCH);
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    run_spsc_counted(
                        || {
                            for start in (0..N).step_by(BATCH) {
                                let end = (start + BATCH).min(N);
                                tx.send((start..end).map(|i| payload(i as u64)).collect())
                                    .expect("send");
                            }
                        },
                        || {
                            let (mut count, mut sum) = (0usize, 0u64);
                            while count < N {
                                let batch = rx.recv().expect("recv");
                                for m in &batch {
                                    sum = sum.wrapping_add(decode(m).expect("payload"));
                                }
                                count += batch.len();
                            }
                            (count, sum)
                        },
                    )
                })
                .sum()
        });
    });
    g.finish();
}

/// One by one, the consumer stopping after exactly `N` messages (no sentinel).
fn run_spsc_counted_pipe<P: Pipe>(pipe: &P) -> Duration {
    run_spsc_counted(
        || {
            for i in 0..N {
                pipe.send(payload(i as u64));
            }
        },
        || {
            let (mut count, mut sum) = (0usize, 0u64);
            while count < N {
                sum = sum.wrapping_add(pipe.recv().expect("payload"));
                count += 1;
            }
            (count, sum)
        },
    )
}

/// Ready messages held in the `stats_200k` group.
const STATS_HELD: u64 = 200_000;

fn stats_200k(c: &mut Criterion) {
    let mut g = c.benchmark_group("stats_200k");
    configure(&mut g);
    let ten_stats = |q: &libqueue::Queue| {
        let t = Instant::now();
        for _ in 0..10 {
            black_box(q.stats());
        }
        t.elapsed()
    };
    g.bench_function("ready", |b| {
        let broker = Broker::new();
        let q = broker.queue("stats").expect("queue");
        for i in 0..STATS_HELD {
            q.send(Message::new(payload(i))).expect("send");
        }
        assert_eq!(q.stats().ready, STATS_HELD);
        b.iter_custom(|iters| (0..iters).map(|_| ten_stats(&q)).sum());
    });
    g.bench_function("ttl", |b| {
        let broker = Broker::new();
        let q = broker.queue("stats").expect("queue");
        for i in 0..STATS_HELD {
            q.send(Message::new(payload(i)).ttl(Duration::from_secs(3600)))
                .expect("send");
        }
        b.iter_custom(|iters| (0..iters).map(|_| ten_stats(&q)).sum());
    });
    g.bench_function("ttl_expiring", |b| {
        let clock = libqueue::ManualClock::new(1);
        let broker =
            Broker::open(libqueue::BrokerOptions::new().clock(clock.clone())).expect("broker");
        let q = broker.queue("stats").expect("queue");
        // Message i expires i + 1 µs after it was sent: 1,000 more expire per
        // millisecond the clock advances.
        let fill = |q: &libqueue::Queue| {
            for i in 0..STATS_HELD {
                q.send(Message::new(payload(i)).ttl(Duration::from_micros(i + 1)))
                    .expect("send");
            }
        };
        fill(&q);
        let mut step = 0u64;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for _ in 0..10 {
                    if step == STATS_HELD / 1000 {
                        q.purge().expect("purge");
                        fill(&q);
                        step = 0;
                    }
                    step += 1;
                    // The advance runs due timers (the sweep) itself: timed too.
                    let t = Instant::now();
                    clock.advance(Duration::from_millis(1));
                    black_box(q.stats());
                    total += t.elapsed();
                }
            }
            total
        });
    });
    g.bench_function("after_receive", |b| {
        let broker = Broker::new();
        let q = broker.queue("stats").expect("queue");
        for i in 0..STATS_HELD {
            q.send(Message::new(payload(i))).expect("send");
        }
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for _ in 0..10 {
                    let d = q.try_receive().expect("receive").expect("a message");
                    d.ack().expect("ack");
                    q.send(Message::new(payload(0))).expect("send");
                    let t = Instant::now();
                    black_box(q.stats());
                    total += t.elapsed();
                }
            }
            total
        });
    });
    g.finish();
}

criterion_group!(
    benches, spsc, mpsc_4x1, mpmc_4x4, mpmc_8x8, mpsc_cores, ping_pong, batch_spsc, stats_200k
);
criterion_main!(benches);
