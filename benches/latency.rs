//! Latency percentiles and the idle cost of waiting, for libqueue and the
//! in-memory channels (crossbeam-channel, kanal, flume), in one run.
//!
//! - `ping_pong_latency`: one thread sends a 16-byte freshly allocated body
//!   on one queue/channel, an echo thread receives it and answers on another;
//!   every round trip is timed on its own (`Instant` before the send, after
//!   the reply) and the nanoseconds recorded, giving p50, p90, p99, p99.9 and
//!   the mean. 1,000 untimed round trips first. Round trips: 200,000
//!   (`LQ_BENCH_QUICK=1`: 20,000). libqueue: unbounded queue, auto-ack
//!   receive (`libqueue`) and leased receive + ack (`libqueue_leased`);
//!   channels: bounded(1) (the tightest hand-off each offers).
//! - `idle_wait_cpu`: a consumer thread blocks in receive on an empty
//!   queue/channel for `W` seconds (5; quick: 1), then one message wakes it.
//!   The consumer's own CPU time over the wait (getrusage `RUSAGE_THREAD`) and
//!   the whole process's (`RUSAGE_SELF`, the main thread only sleeping; this
//!   catches background threads) are reported as CPU milliseconds per second
//!   of waiting. `libqueue_persistent` waits on a broker with a data
//!   directory in `SyncMode::Interval(10 ms)` (its flusher thread runs).
//!
//! Writes `$LQ_BENCH_OUT/latency.json` (see `benches/common/out.rs`). Under
//! `cargo test --all-targets` it runs a few round trips and a 50 ms wait only.

#[path = "common/out.rs"]
mod out;

use libqueue::{Broker, BrokerOptions, Message, MessageView, SyncMode, Wait};
use out::Record;
use std::thread;
use std::time::{Duration, Instant};

const PAYLOAD: usize = 16;

fn payload(seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(PAYLOAD);
    v.extend_from_slice(&seq.to_le_bytes());
    v.resize(PAYLOAD, 0);
    v
}

fn decode(body: &[u8]) -> Option<u64> {
    (!body.is_empty()).then(|| u64::from_le_bytes(body[..8].try_into().expect("8 bytes")))
}

/// One direction of message passing; `recv` is `None` for the empty sentinel.
trait Pipe: Sync {
    fn send(&self, body: Vec<u8>);
    fn recv(&self) -> Option<u64>;
}

struct LqAuto(libqueue::Queue);
impl Pipe for LqAuto {
    fn send(&self, body: Vec<u8>) {
        self.0.send(Message::new(body)).expect("send");
    }
    fn recv(&self) -> Option<u64> {
        let d = self.0.receive_auto_ack(Wait::Forever).expect("receive");
        decode(d.expect("a message").body())
    }
}

struct LqLeased(libqueue::Queue);
impl Pipe for LqLeased {
    fn send(&self, body: Vec<u8>) {
        self.0.send(Message::new(body)).expect("send");
    }
    fn recv(&self) -> Option<u64> {
        let d = self.0.receive().expect("receive");
        let v = decode(d.body());
        d.ack().expect("ack");
        v
    }
}

struct Crossbeam(
    crossbeam_channel::Sender<Vec<u8>>,
    crossbeam_channel::Receiver<Vec<u8>>,
);
impl Pipe for Crossbeam {
    fn send(&self, body: Vec<u8>) {
        self.0.send(body).expect("send");
    }
    fn recv(&self) -> Option<u64> {
        decode(&self.1.recv().expect("recv"))
    }
}

struct Kanal(kanal::Sender<Vec<u8>>, kanal::Receiver<Vec<u8>>);
impl Pipe for Kanal {
    fn send(&self, body: Vec<u8>) {
        self.0.send(body).expect("send");
    }
    fn recv(&self) -> Option<u64> {
        decode(&self.1.recv().expect("recv"))
    }
}

struct Flume(flume::Sender<Vec<u8>>, flume::Receiver<Vec<u8>>);
impl Pipe for Flume {
    fn send(&self, body: Vec<u8>) {
        self.0.send(body).expect("send");
    }
    fn recv(&self) -> Option<u64> {
        decode(&self.1.recv().expect("recv"))
    }
}

/// A fresh pair of pipes (request, reply) of one peer.
fn pipes(peer: &str) -> (Box<dyn Pipe>, Box<dyn Pipe>, Option<Broker>) {
    fn two<P: Pipe + 'static>(f: impl Fn() -> P) -> (Box<dyn Pipe>, Box<dyn Pipe>) {
        (Box::new(f()), Box::new(f()))
    }
    match peer {
        "libqueue" | "libqueue_leased" => {
            let b = Broker::new();
            let (a, c) = (
                b.queue("ping").expect("queue"),
                b.queue("pong").expect("queue"),
            );
            let (a, c): (Box<dyn Pipe>, Box<dyn Pipe>) = if peer == "libqueue" {
                (Box::new(LqAuto(a)), Box::new(LqAuto(c)))
            } else {
                (Box::new(LqLeased(a)), Box::new(LqLeased(c)))
            };
            (a, c, Some(b))
        }
        "crossbeam_bounded1" => {
            let (a, c) = two(|| {
                let (s, r) = crossbeam_channel::bounded(1);
                Crossbeam(s, r)
            });
            (a, c, None)
        }
        "kanal_bounded1" => {
            let (a, c) = two(|| {
                let (s, r) = kanal::bounded(1);
                Kanal(s, r)
            });
            (a, c, None)
        }
        "flume_bounded1" => {
            let (a, c) = two(|| {
                let (s, r) = flume::bounded(1);
                Flume(s, r)
            });
            (a, c, None)
        }
        _ => unreachable!("peer {peer}"),
    }
}

const PING_PEERS: [&str; 5] = [
    "libqueue",
    "libqueue_leased",
    "crossbeam_bounded1",
    "kanal_bounded1",
    "flume_bounded1",
];

/// Per-round-trip nanoseconds of `n` round trips through `ping`/`pong`.
fn ping_pong(ping: &dyn Pipe, pong: &dyn Pipe, n: usize) -> Vec<u64> {
    thread::scope(|s| {
        s.spawn(|| {
            while let Some(v) = ping.recv() {
                pong.send(payload(v));
            }
        });
        for i in 0..1000 {
            ping.send(payload(i));
            assert_eq!(pong.recv(), Some(i));
        }
        let mut nanos = Vec::with_capacity(n);
        for i in 0..n as u64 {
            let t = Instant::now();
            ping.send(payload(i));
            let r = pong.recv();
            nanos.push(t.elapsed().as_nanos() as u64);
            assert_eq!(r, Some(i));
        }
        ping.send(Vec::new());
        nanos
    })
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i] as f64
}

fn cpu_secs(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes into the struct we pass; `who` is RUSAGE_SELF/THREAD.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::getrusage(who, &mut ru) };
    assert_eq!(r, 0, "getrusage");
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A consumer blocked on an empty `pipe` for `wait`: (thread, process) CPU
/// milliseconds per second of waiting.
fn idle_cpu(pipe: &dyn Pipe, wait: Duration) -> (f64, f64) {
    thread::scope(|s| {
        let consumer = s.spawn(|| {
            let t0 = cpu_secs(libc::RUSAGE_THREAD);
            let w0 = Instant::now();
            let v = pipe.recv();
            let cpu = cpu_secs(libc::RUSAGE_THREAD) - t0;
            assert_eq!(v, Some(7));
            (cpu, w0.elapsed())
        });
        // Let the consumer reach its blocking receive before measuring the process.
        thread::sleep(Duration::from_millis(20));
        let p0 = cpu_secs(libc::RUSAGE_SELF);
        let w0 = Instant::now();
        thread::sleep(wait);
        let pcpu = cpu_secs(libc::RUSAGE_SELF) - p0;
        let pwall = w0.elapsed();
        pipe.send(payload(7));
        let (tcpu, twall) = consumer.join().expect("consumer");
        (
            tcpu * 1e3 / twall.as_secs_f64(),
            pcpu * 1e3 / pwall.as_secs_f64(),
        )
    })
}

fn main() {
    let rounds = out::size(200_000, 20_000, 200);
    let wait = Duration::from_millis(out::size(5000, 1000, 50));
    let mut records = Vec::new();

    println!("ping-pong round trip, {rounds} round trips, 16-byte bodies (ns)");
    for peer in PING_PEERS {
        let (ping, pong, _broker) = pipes(peer);
        let mut nanos = ping_pong(&*ping, &*pong, rounds);
        nanos.sort_unstable();
        let mean = nanos.iter().sum::<u64>() as f64 / nanos.len() as f64;
        let ps = [
            ("p50", percentile(&nanos, 50.0)),
            ("p90", percentile(&nanos, 90.0)),
            ("p99", percentile(&nanos, 99.0)),
            ("p99.9", percentile(&nanos, 99.9)),
            ("mean", mean),
        ];
        println!(
            "  {peer:<20} {}",
            ps.iter()
                .map(|(k, v)| format!("{k} {v:>9.0}"))
                .collect::<Vec<_>>()
                .join("  ")
        );
        for (k, v) in ps {
            records.push(Record::new("ping_pong_latency", peer, k, v).unit("ns"));
        }
    }

    println!("idle consumer blocked in receive for {wait:?} (CPU ms per s of waiting)");
    let dir = tempfile::tempdir().expect("tempdir");
    let idle_peers = [
        "libqueue",
        "libqueue_leased",
        "libqueue_persistent",
        "crossbeam_bounded1",
        "kanal_bounded1",
        "flume_bounded1",
    ];
    for peer in idle_peers {
        let (thread_ms, process_ms) = if peer == "libqueue_persistent" {
            let opts = BrokerOptions::new()
                .data_dir(dir.path())
                .sync_mode(SyncMode::Interval(Duration::from_millis(10)));
            let b = Broker::open(opts).expect("open");
            let q = LqAuto(b.queue("idle").expect("queue"));
            idle_cpu(&q, wait)
        } else {
            let (p, _pong, _broker) = pipes(peer);
            idle_cpu(&*p, wait)
        };
        println!("  {peer:<20} consumer thread {thread_ms:8.3}   process {process_ms:8.3}");
        records.push(
            Record::new("idle_wait_cpu", peer, "consumer_thread", thread_ms).unit("CPU ms/s"),
        );
        records.push(Record::new("idle_wait_cpu", peer, "process", process_ms).unit("CPU ms/s"));
    }
    out::write(
        "latency",
        &[
            ("round_trips", rounds.to_string()),
            ("payload_bytes", PAYLOAD.to_string()),
            ("idle_wait_s", wait.as_secs_f64().to_string()),
            (
                "capacities",
                "libqueue unbounded; channels bounded(1)".into(),
            ),
        ],
        &records,
    );
}
