//! How the ready path scales with cores: libqueue (auto-ack, leased, bounded)
//! beside crossbeam-channel and kanal bounded(1024), at 1, 2, 4, 8 and 16
//! producer/consumer pairs (k producers → k consumers on one queue or
//! channel), printed as a curve: throughput per peer, libqueue's ratio to
//! crossbeam, and each peer's speed-up over its own 1-pair figure.
//!
//! Built here and carried to a bigger machine unchanged (`cargo bench --bench
//! scaling --no-run`, then run the printed executable with `--bench`); the
//! pair counts do not depend on the cores found, so curves from different
//! machines line up. The design target (issue 17): on 16 cores, 8→8 at ≥ 5×
//! crossbeam's bounded channel; on a machine with fewer cores the program says
//! the target is unmeasured rather than judging it.
//!
//! Options: `--pairs 1,2,4` (default 1,2,4,8,16), `--runs R` (median of R,
//! default 3; 1 with `LQ_BENCH_QUICK=1`), `--n N` messages per run. Writes
//! `$LQ_BENCH_OUT/scaling.json` for `make bench`'s report. Without `--bench`
//! (`cargo test --all-targets`) it is a smoke test: tiny sizes, 1 and 2 pairs.

#[path = "common/out.rs"]
mod out;
#[path = "common/pipes.rs"]
mod pipes;

use libqueue::{Broker, QueueOptions};
use out::Record;
use pipes::{run_mpmc, Crossbeam, Kanal, LqAuto, LqLeased};
use std::time::Duration;

/// Capacity of the bounded peers.
const CAP: usize = 1024;

const PEERS: [&str; 5] = [
    "libqueue",
    "libqueue_leased",
    "libqueue_bounded1024",
    "crossbeam_bounded1024",
    "kanal_bounded1024",
];

fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    Some(
        args.get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} needs a value")),
    )
}

/// Median throughput (messages/s) of `runs` runs of `k` → `k` through a fresh
/// pipe of `peer` each run (a warm-up run first, not counted).
fn measure(peer: &str, k: usize, n: usize, runs: usize) -> f64 {
    let once = |n: usize| -> Duration {
        match peer {
            "libqueue" => {
                let broker = Broker::new();
                let q = LqAuto(broker.queue("scaling").expect("queue"));
                run_mpmc(&q, n, k, k)
            }
            "libqueue_leased" => {
                let broker = Broker::new();
                let q = LqLeased(broker.queue("scaling").expect("queue"));
                run_mpmc(&q, n, k, k)
            }
            "libqueue_bounded1024" => {
                let broker = Broker::new();
                let ns = broker.default_namespace().expect("namespace");
                let opts = QueueOptions::default().max_messages(CAP as u64);
                let q = LqAuto(ns.create_queue("scaling", opts).expect("queue"));
                run_mpmc(&q, n, k, k)
            }
            "crossbeam_bounded1024" => run_mpmc(&Crossbeam::bounded(CAP), n, k, k),
            "kanal_bounded1024" => run_mpmc(&Kanal::bounded(CAP), n, k, k),
            other => unreachable!("unknown peer {other}"),
        }
    };
    once((n / 10).max(k));
    let mut rates: Vec<f64> = (0..runs)
        .map(|_| n as f64 / once(n).as_secs_f64())
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let pairs: Vec<usize> = match arg::<String>("--pairs") {
        Some(list) => list
            .split(',')
            .map(|p| p.trim().parse().expect("--pairs: numbers"))
            .collect(),
        None if out::bench_mode() => vec![1, 2, 4, 8, 16],
        None => vec![1, 2],
    };
    let n: usize = arg("--n").unwrap_or_else(|| out::size(1_000_000, 200_000, 4_000));
    let runs: usize = arg("--runs").unwrap_or_else(|| out::size(3, 1, 1));
    assert!(pairs.iter().all(|&k| k >= 1 && k <= n), "pairs in 1..=n");
    println!(
        "ready path scaling: k producers -> k consumers, {n} messages of {} B per run, median of {runs}, {cores} cores",
        pipes::PAYLOAD
    );
    let mut rows: Vec<(usize, Vec<f64>)> = Vec::new();
    for &k in &pairs {
        let rates: Vec<f64> = PEERS.iter().map(|p| measure(p, k, n, runs)).collect();
        rows.push((k, rates));
    }

    print!("{:>5}", "pairs");
    for p in PEERS {
        print!(" {p:>22}");
    }
    println!(" {:>10}", "lq/xbeam");
    for (k, rates) in &rows {
        print!("{k:>5}");
        for r in rates {
            print!(" {:>15.2} Mmsg/s", r / 1e6);
        }
        println!(" {:>9.2}x", rates[0] / rates[3]);
    }
    println!(
        "speed-up over each peer's own first row ({} pair(s)):",
        rows[0].0
    );
    for (k, rates) in &rows {
        print!("{k:>5}");
        for (r, r1) in rates.iter().zip(&rows[0].1) {
            print!(" {:>21.2}x", r / r1);
        }
        println!();
    }
    match rows.iter().find(|(k, _)| *k == 8) {
        Some((_, r)) if cores >= 16 => println!(
            "target 8->8 on 16 cores >= 5x crossbeam bounded: {:.2}x, {}",
            r[0] / r[3],
            if r[0] / r[3] >= 5.0 { "met" } else { "not met" }
        ),
        _ => println!(
            "target 8->8 on 16 cores >= 5x crossbeam bounded: unmeasured ({cores} cores here)"
        ),
    }

    let mut records = Vec::new();
    for (k, rates) in &rows {
        let scenario = format!("scaling_{k}x{k}");
        for (p, r) in PEERS.iter().zip(rates) {
            records.push(
                Record::new(&scenario, p, "throughput", *r)
                    .unit("msg/s")
                    .higher_is_better(),
            );
        }
    }
    out::write(
        "scaling",
        &[("cores", cores.to_string()), ("messages", n.to_string())],
        &records,
    );
}
