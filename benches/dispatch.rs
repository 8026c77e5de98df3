//! Consumer-pool (dispatcher) throughput and RPC round-trip latency, each beside
//! a plain crossbeam-channel equivalent in the same run.
//!
//! Groups:
//! - `dispatch`: a [`Pool`] of 1, 2 or 8 workers with an empty handler. Per
//!   iteration the benchmark thread (one producer) sends `N` messages named
//!   `noop` (16-byte freshly allocated body) *while the pool runs*, then waits
//!   until the pool has handled all `N`. The time covers the sends and the
//!   handling, i.e. the end-to-end rate of one producer feeding the pool.
//!   The handler bumps an `AtomicU64`; the handler that completes a multiple of
//!   `N` sends one `()` on a `std::sync::mpsc` channel, on which the benchmark
//!   thread blocks (no spinning). One pool per benchmark function, started
//!   before measuring and reused by every iteration, so start-up is not timed.
//!   Baseline `crossbeam_unbounded_workersK`: K threads taking `Vec<u8>`s from a
//!   crossbeam unbounded channel (libqueue queues are unbounded by default) and
//!   running the same counting handler. Throughput is in messages per second.
//! - `rpc`: one [`RpcClient`] calling a pool (size 1) whose handler echoes the
//!   16-byte body; one element is one `call` (request, handler, ack, reply via
//!   the client's reply queue and router thread). `libqueue_pool2_callers2`:
//!   pool size 2 and two threads calling through one shared client at once;
//!   each caller makes `iters` calls and the wall time is reported, so the time
//!   per element is the round trip *one caller* sees while another call is in
//!   flight (aggregate rate: two calls per that time).
//!   `libqueue_pool1_direct_reply`: the same pool, but the caller sends the
//!   request with [`REPLY_TO`] and a correlation id itself and receives the
//!   reply from its reply queue directly, i.e. without the client's router
//!   thread (one thread hop less per call).
//!   Baselines: `crossbeam_bounded1_ping` (request/reply between two threads
//!   over two bounded(1) channels, the server thread kept running) and its
//!   two-caller form (two server threads on one request channel, a reply
//!   channel per caller); `libqueue_queue_ping` (two plain libqueue queues and an
//!   echo thread, auto-ack receive), which shows what the pool and the RPC layer
//!   add on top of the queue itself.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use libqueue::{Broker, Message, MessageView, Namespace, Pool, RpcClient, Wait, REPLY_TO};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// Messages per iteration in the `dispatch` group.
const N: u64 = 20_000;
/// Payload size in bytes.
const PAYLOAD: usize = 16;
/// Pool sizes of the `dispatch` group.
const POOL_SIZES: [usize; 3] = [1, 2, 8];
/// Timeout of one RPC call (never reached in a healthy run).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn payload(seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(PAYLOAD);
    v.extend_from_slice(&seq.to_le_bytes());
    v.resize(PAYLOAD, 0);
    v
}

/// `LQ_BENCH_QUICK=1`: shorter warm-up and measurement (smoke runs only).
fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    let quick = std::env::var_os("LQ_BENCH_QUICK").is_some_and(|v| v != "0");
    let (measure, warm_up) = if quick { (1000, 200) } else { (3000, 500) };
    g.sample_size(10)
        .measurement_time(Duration::from_millis(measure))
        .warm_up_time(Duration::from_millis(warm_up));
}

/// Counts handled messages; the handler that completes a multiple of `N`
/// signals the waiting benchmark thread. Every iteration sends exactly `N` and
/// waits for all of them, so the `k`-th signal means iteration `k` is done.
#[derive(Clone)]
struct Counter {
    handled: Arc<AtomicU64>,
    done: mpsc::Sender<()>,
}

impl Counter {
    fn new() -> (Self, mpsc::Receiver<()>) {
        let (done, rx) = mpsc::channel();
        let c = Counter {
            handled: Arc::new(AtomicU64::new(0)),
            done,
        };
        (c, rx)
    }

    /// The empty handler's work: one atomic increment (and one send per `N`).
    #[inline]
    fn hit(&self) {
        if (self.handled.fetch_add(1, Relaxed) + 1) % N == 0 {
            let _ = self.done.send(());
        }
    }
}

/// `iters` times: `send_all` sends `N` messages, then wait for the last handled.
fn run_batches(iters: u64, done: &mpsc::Receiver<()>, send_all: impl Fn()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        send_all();
        done.recv().expect("all N handled");
        total += start.elapsed();
    }
    total
}

fn dispatch(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch");
    configure(&mut g);
    g.throughput(Throughput::Elements(N));

    for size in POOL_SIZES {
        g.bench_function(format!("libqueue_pool{size}"), |b| {
            let broker = Broker::new();
            let ns = broker.namespace("bench").expect("namespace");
            let q = ns.queue("work").expect("queue");
            let (counter, done) = Counter::new();
            let handled = counter.handled.clone();
            let pool = Pool::builder(&ns, "work")
                .expect("builder")
                .size(size)
                .handler("noop", move |_d| {
                    counter.hit();
                    Ok(None)
                })
                .start()
                .expect("pool");
            b.iter_custom(|iters| {
                run_batches(iters, &done, || {
                    for i in 0..N {
                        q.send(Message::new(payload(i)).name("noop")).expect("send");
                    }
                })
            });
            let n = handled.load(Relaxed);
            assert_eq!(n % N, 0, "whole iterations handled");
            // The handler signals before the pool counts and acks the message;
            // stop() joins the workers, so its counters include the last settle.
            let ps = pool.stop();
            let qs = q.stats();
            assert_eq!(
                (ps.handled, ps.succeeded, ps.failed),
                (n, n, 0),
                "pool stats"
            );
            assert!(ps.max_active <= size, "pool throttle");
            assert_eq!((qs.sent, qs.acked, qs.ready, qs.leased), (n, n, 0, 0));
        });
    }
    for size in POOL_SIZES {
        g.bench_function(format!("crossbeam_unbounded_workers{size}"), |b| {
            let (tx, rx) = unbounded::<Vec<u8>>();
            let (counter, done) = Counter::new();
            let workers: Vec<_> = (0..size)
                .map(|_| {
                    let (rx, counter) = (rx.clone(), counter.clone());
                    thread::spawn(move || {
                        while let Ok(m) = rx.recv() {
                            black_box(&m);
                            counter.hit();
                        }
                    })
                })
                .collect();
            b.iter_custom(|iters| {
                run_batches(iters, &done, || {
                    for i in 0..N {
                        tx.send(payload(i)).expect("send");
                    }
                })
            });
            drop(tx);
            for w in workers {
                w.join().expect("worker");
            }
            assert_eq!(counter.handled.load(Relaxed) % N, 0);
        });
    }
    g.finish();
}

/// A namespace with an echo pool of `size` workers on queue `echo`.
fn echo_server(broker: &Broker, size: usize) -> (Namespace, Pool) {
    let ns = broker.namespace("rpc").expect("namespace");
    let pool = Pool::builder(&ns, "echo")
        .expect("builder")
        .size(size)
        .handler("echo", |d| Ok(Some(d.body().to_vec())))
        .start()
        .expect("pool");
    (ns, pool)
}

#[inline]
fn call(rpc: &RpcClient, seq: u64) {
    let reply = rpc
        .call(
            "echo",
            Message::new(payload(seq)).name("echo"),
            CALL_TIMEOUT,
        )
        .expect("rpc call");
    assert_eq!(&reply.body()[..8], &seq.to_le_bytes(), "reply body");
    black_box(reply);
}

/// Runs `callers` threads, each doing `iters` round trips with `f(caller, seq)`;
/// returns the wall time from the start barrier until all are done.
fn run_callers(callers: usize, iters: u64, f: impl Fn(usize, u64) + Sync) -> Duration {
    let barrier = Barrier::new(callers + 1);
    thread::scope(|s| {
        let hs: Vec<_> = (0..callers)
            .map(|c| {
                let (barrier, f) = (&barrier, &f);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..iters {
                        f(c, i);
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in hs {
            h.join().expect("caller");
        }
        start.elapsed()
    })
}

/// A channel "server": `servers` threads answering requests (payload, caller)
/// on the caller's own bounded(1) reply channel.
struct ChannelServer {
    req: Option<Sender<(Vec<u8>, usize)>>,
    replies: Vec<Receiver<Vec<u8>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl ChannelServer {
    fn start(servers: usize, callers: usize) -> Self {
        let (req, req_rx) = bounded::<(Vec<u8>, usize)>(1);
        let (reply_tx, replies): (Vec<_>, Vec<_>) = (0..callers).map(|_| bounded(1)).unzip();
        let threads = (0..servers)
            .map(|_| {
                let (req_rx, reply_tx) = (req_rx.clone(), reply_tx.clone());
                thread::spawn(move || {
                    while let Ok((body, caller)) = req_rx.recv() {
                        reply_tx[caller].send(body.clone()).expect("reply");
                    }
                })
            })
            .collect();
        ChannelServer {
            req: Some(req),
            replies,
            threads,
        }
    }

    #[inline]
    fn call(&self, caller: usize, seq: u64) {
        let req = self.req.as_ref().expect("running");
        req.send((payload(seq), caller)).expect("request");
        let r = self.replies[caller].recv().expect("reply");
        assert_eq!(&r[..8], &seq.to_le_bytes(), "reply body");
        black_box(r);
    }
}

impl Drop for ChannelServer {
    fn drop(&mut self) {
        self.req = None;
        for t in self.threads.drain(..) {
            t.join().expect("server");
        }
    }
}

fn rpc(c: &mut Criterion) {
    let mut g = c.benchmark_group("rpc");
    configure(&mut g);
    g.throughput(Throughput::Elements(1));

    g.bench_function("libqueue_pool1", |b| {
        let broker = Broker::new();
        let (ns, pool) = echo_server(&broker, 1);
        let rpc = RpcClient::new(&ns).expect("client");
        let mut seq = 0u64;
        b.iter(|| {
            seq += 1;
            call(&rpc, seq);
        });
        assert_eq!(rpc.late_replies(), 0);
        drop(rpc);
        assert_eq!(pool.stats().failed, 0);
        pool.stop();
    });
    g.bench_function("libqueue_pool2_callers2", |b| {
        let broker = Broker::new();
        let (ns, pool) = echo_server(&broker, 2);
        let rpc = RpcClient::new(&ns).expect("client");
        b.iter_custom(|iters| run_callers(2, iters, |_, i| call(&rpc, i)));
        assert_eq!(rpc.late_replies(), 0);
        drop(rpc);
        assert_eq!(pool.stats().failed, 0);
        pool.stop();
    });
    g.bench_function("libqueue_pool1_direct_reply", |b| {
        // The pool's reply protocol used by hand: the caller receives from its
        // own reply queue, without RpcClient's router thread and waiter map.
        let broker = Broker::new();
        let (ns, pool) = echo_server(&broker, 1);
        let replies = ns.queue("direct.reply").expect("queue");
        let echo = ns.queue("echo").expect("queue");
        let mut seq = 0u64;
        b.iter(|| {
            seq += 1;
            let m = Message::new(payload(seq))
                .name("echo")
                .correlation_id(seq.to_string())
                .header(REPLY_TO, "direct.reply");
            echo.send(m).expect("send");
            let r = replies
                .receive_auto_ack(Wait::Forever)
                .expect("receive")
                .expect("a message");
            assert_eq!(&r.body()[..8], &seq.to_le_bytes(), "reply body");
            black_box(r);
        });
        assert_eq!(pool.stats().failed, 0);
        pool.stop();
    });
    g.bench_function("libqueue_queue_ping", |b| {
        let broker = Broker::new();
        let ping = broker.queue("ping").expect("queue");
        let pong = broker.queue("pong").expect("queue");
        let echo = {
            let (ping, pong) = (ping.clone(), pong.clone());
            thread::spawn(move || loop {
                let d = ping
                    .receive_auto_ack(Wait::Forever)
                    .expect("receive")
                    .expect("a message");
                if d.body().is_empty() {
                    break;
                }
                pong.send(Message::new(d.body().to_vec())).expect("send");
            })
        };
        let mut seq = 0u64;
        b.iter(|| {
            seq += 1;
            ping.send(Message::new(payload(seq))).expect("send");
            let r = pong
                .receive_auto_ack(Wait::Forever)
                .expect("receive")
                .expect("a message");
            assert_eq!(&r.body()[..8], &seq.to_le_bytes(), "reply body");
            black_box(r);
        });
        ping.send(Message::new(Vec::new())).expect("stop");
        echo.join().expect("echo");
    });
    g.bench_function("crossbeam_bounded1_ping", |b| {
        let server = ChannelServer::start(1, 1);
        let mut seq = 0u64;
        b.iter(|| {
            seq += 1;
            server.call(0, seq);
        });
    });
    g.bench_function("crossbeam_bounded1_ping_callers2", |b| {
        let server = ChannelServer::start(2, 2);
        b.iter_custom(|iters| run_callers(2, iters, |c, i| server.call(c, i)));
    });
    g.finish();
}

criterion_group!(benches, dispatch, rpc);
criterion_main!(benches);
