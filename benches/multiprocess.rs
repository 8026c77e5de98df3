//! Across processes on one data directory (issue 14): an attached process
//! talks to the host of the directory over its Unix socket. 64-byte bodies,
//! non-persistent messages (the journal's cost is in `persist.rs`).
//!
//! - `send_one`: an attached process sends N messages one `send` at a time;
//!   the host process receives them (throughput, msg/s, measured in the
//!   producer from its first send to its last answer).
//! - `send_batch64`: the same with `send_batch` of 64.
//! - `receive_one`: the host filled the queue; an attached process receives
//!   one at a time, auto-ack (msg/s).
//! - `receive_batch64`: the same with `receive_batch_auto_ack(64)`.
//! - `rtt`: an attached process sends a ping, the host's echo thread answers
//!   on another queue; each round trip timed (p50, p99 in µs).
//! - `4to4_batch64`: 4 attached producer processes and 4 attached consumer
//!   processes, batches of 64, the host only serving (msg/s, all messages
//!   from the first send to the last receive).
//!
//! The children are this program run again (`LQ_MP_ROLE`). Writes
//! `$LQ_BENCH_OUT/multiprocess.json`. Under `cargo test --all-targets` it
//! runs a few hundred messages only.

#[path = "common/out.rs"]
mod out;

use libqueue::{Broker, BrokerOptions, Message, MessageView, Wait};
use out::Record;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BODY: [u8; 64] = [7; 64];

fn open(dir: &str) -> Broker {
    Broker::open(BrokerOptions::new().data_dir(dir)).expect("open")
}

/// Runs as a child: `role` on `dir`, `n` messages; prints what it measured.
fn child(role: &str, dir: &str, n: u64) {
    let b = open(dir);
    assert!(b.is_attached(), "the child must attach to the bench's host");
    let q = b.queue("bench").expect("queue");
    let t = Instant::now();
    match role {
        "send_one" => {
            for _ in 0..n {
                q.send_bytes(&BODY).expect("send");
            }
        }
        "send_batch64" => {
            let mut left = n;
            while left > 0 {
                let k = left.min(64);
                q.send_batch((0..k).map(|_| Message::new(BODY.to_vec())))
                    .expect("send_batch");
                left -= k;
            }
        }
        "receive_one" => {
            for _ in 0..n {
                q.receive_auto_ack(Wait::Forever)
                    .expect("receive")
                    .expect("a message");
            }
        }
        "receive_batch64" => {
            let mut got = 0;
            while got < n {
                got += q
                    .receive_batch_auto_ack(64, Wait::Forever)
                    .expect("receive")
                    .len() as u64;
            }
        }
        "drain" => {
            // Until nothing comes for 300 ms once messages came, or for 10 s
            // if none ever did (the others took them all). The parent times
            // the transfer.
            let mut got = 0u64;
            let start = Instant::now();
            loop {
                let k = q
                    .receive_batch_auto_ack(64, Wait::For(Duration::from_millis(300)))
                    .expect("receive")
                    .len();
                if k == 0
                    && (got > 0 || start.elapsed() > Duration::from_secs(out::size(10, 10, 2)))
                {
                    break;
                }
                got += k as u64;
            }
            println!("{got}");
            return;
        }
        "rtt" => {
            let back = b.queue("bench.back").expect("queue");
            let mut nanos = Vec::with_capacity(n as usize);
            for i in 0..n + 200 {
                let t = Instant::now();
                q.send_bytes(&i.to_le_bytes()).expect("send");
                let d = back
                    .receive_auto_ack(Wait::Forever)
                    .expect("receive")
                    .expect("echo");
                assert_eq!(d.body(), i.to_le_bytes());
                if i >= 200 {
                    nanos.push(t.elapsed().as_nanos() as u64);
                }
            }
            nanos.sort_unstable();
            let p = |x: f64| nanos[((nanos.len() - 1) as f64 * x) as usize];
            println!("{} {}", p(0.5), p(0.99));
            return;
        }
        _ => panic!("unknown role {role}"),
    }
    println!("{}", t.elapsed().as_nanos());
}

fn spawn(role: &str, dir: &str, n: u64) -> std::process::Child {
    Command::new(std::env::current_exe().expect("exe"))
        .env("LQ_MP_ROLE", role)
        .env("LQ_MP_DIR", dir)
        .env("LQ_MP_N", n.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn a child")
}

fn output(c: std::process::Child) -> String {
    let o = c.wait_with_output().expect("child");
    assert!(o.status.success(), "child failed: {:?}", o.status);
    String::from_utf8(o.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

fn rate(n: u64, nanos: f64) -> f64 {
    n as f64 / (nanos / 1e9)
}

fn main() {
    if let Ok(role) = std::env::var("LQ_MP_ROLE") {
        let dir = std::env::var("LQ_MP_DIR").expect("LQ_MP_DIR");
        let n = std::env::var("LQ_MP_N")
            .expect("LQ_MP_N")
            .parse()
            .expect("n");
        child(&role, &dir, n);
        return;
    }
    let n = out::size(400_000u64, 60_000, 300);
    let n_one = out::size(100_000u64, 20_000, 300);
    let rounds = out::size(20_000u64, 3_000, 100);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8 path").to_string();
    let host = open(&dir);
    assert!(!host.is_attached());
    let q = host.queue("bench").expect("queue");
    let mut records = Vec::new();
    let mut report = |scenario: &str, v: f64| {
        println!("  {scenario:<18} {v:>12.0} msg/s");
        records.push(
            Record::new(scenario, "libqueue_attached", "throughput", v)
                .unit("msg/s")
                .higher_is_better(),
        );
    };
    println!("across processes, 64-byte bodies (the host is this process)");

    for (scenario, count) in [("send_one", n_one), ("send_batch64", n)] {
        let c = spawn(scenario, &dir, count);
        let mut got = 0;
        while got < count {
            got += q
                .receive_batch_auto_ack(1024, Wait::Forever)
                .expect("receive")
                .len() as u64;
        }
        let nanos: f64 = output(c).parse().expect("nanos");
        report(scenario, rate(count, nanos));
    }

    for (scenario, count) in [("receive_one", n_one), ("receive_batch64", n)] {
        let mut left = count;
        while left > 0 {
            let k = left.min(1024);
            q.send_batch((0..k).map(|_| Message::new(BODY.to_vec())))
                .expect("fill");
            left -= k;
        }
        let nanos: f64 = output(spawn(scenario, &dir, count)).parse().expect("nanos");
        report(scenario, rate(count, nanos));
    }

    {
        let back = host.queue("bench.back").expect("queue");
        let (q2, stop) = (
            q.clone(),
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
        let s2 = stop.clone();
        let echo = std::thread::spawn(move || {
            while !s2.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(d) = q2
                    .receive_auto_ack(Wait::For(Duration::from_millis(50)))
                    .expect("receive")
                {
                    back.send(Message::new(d.body().to_vec())).expect("echo");
                }
            }
        });
        let line = output(spawn("rtt", &dir, rounds));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        echo.join().expect("echo thread");
        let mut it = line
            .split_whitespace()
            .map(|v| v.parse::<f64>().expect("ns"));
        let (p50, p99) = (it.next().expect("p50"), it.next().expect("p99"));
        println!(
            "  {:<18} p50 {:>8.1} µs  p99 {:>8.1} µs",
            "rtt",
            p50 / 1e3,
            p99 / 1e3
        );
        records.push(Record::new("rtt", "libqueue_attached", "p50", p50 / 1e3).unit("µs"));
        records.push(Record::new("rtt", "libqueue_attached", "p99", p99 / 1e3).unit("µs"));
    }

    {
        let per = n / 4;
        let before = q.stats().received;
        let t = Instant::now();
        let consumers: Vec<_> = (0..4).map(|_| spawn("drain", &dir, per)).collect();
        let producers: Vec<_> = (0..4).map(|_| spawn("send_batch64", &dir, per)).collect();
        for c in producers {
            output(c);
        }
        while q.stats().received - before < per * 4 {
            std::thread::sleep(Duration::from_micros(200));
        }
        let v = rate(per * 4, t.elapsed().as_nanos() as f64);
        let drained: u64 = consumers
            .into_iter()
            .map(|c| output(c).parse::<u64>().expect("count"))
            .sum();
        assert_eq!(drained, per * 4, "every message received once");
        println!(
            "  {:<18} {v:>12.0} msg/s (processes started inside the timing)",
            "4to4_batch64"
        );
        records.push(
            Record::new("4to4_batch64", "libqueue_attached", "throughput", v)
                .unit("msg/s")
                .higher_is_better(),
        );
    }

    out::write("multiprocess", &[("body_bytes", "64".into())], &records);
}
