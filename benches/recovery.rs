//! Recovery time: how long reopening a data directory takes with N unacked
//! persistent 64-byte messages in it (default 1,000,000; `LQ_RECOVERY_N` sets
//! it, e.g. 10000000 for the target of about a second).
//!
//! Prints, as medians of `LQ_RECOVERY_RUNS` (default 3) runs:
//! - `replay`: `store::journal::inspect` — read, check and decode every record
//!   (what an open reads), no broker;
//! - `open`: `Broker::open` — replay plus putting every message back in its
//!   queue, ready to receive.
//!
//! It also prints the journal's size. Run with `cargo bench --bench recovery`.

use libqueue::{Broker, BrokerOptions, Message};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n: u64 = std::env::var("LQ_RECOVERY_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("LQ_RECOVERY_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Instant::now();
    {
        let b = Broker::open(BrokerOptions::new().data_dir(dir.path())).expect("open");
        let q = b.queue("recovery").expect("queue");
        let body = [7u8; 64];
        for _ in 0..n {
            q.send(Message::new(&body[..]).persistent(true))
                .expect("send");
        }
    }
    let fill = t.elapsed();
    let bytes: u64 = std::fs::read_dir(dir.path())
        .expect("list")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "lqj"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    let mut replay = Vec::new();
    let mut open = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let i = libqueue::store::journal::inspect(dir.path()).expect("inspect");
        replay.push(t.elapsed());
        assert_eq!(i.report.messages_recovered, n);
        let t = Instant::now();
        let b = Broker::open(BrokerOptions::new().data_dir(dir.path())).expect("open");
        open.push(t.elapsed());
        assert_eq!(b.recovery_report().expect("report").messages_recovered, n);
        assert_eq!(b.queue("recovery").expect("queue").stats().ready, n);
        drop(b);
    }
    let (r, o) = (median(replay), median(open));
    let per_m = |d: Duration| d.as_secs_f64() / (n as f64 / 1e6);
    println!(
        "recovery n={n} journal={:.0} MiB fill={:.2}s replay={:.3}s ({:.3} s/M) open={:.3}s ({:.3} s/M)",
        bytes as f64 / (1 << 20) as f64,
        fill.as_secs_f64(),
        r.as_secs_f64(),
        per_m(r),
        o.as_secs_f64(),
        per_m(o)
    );
}
