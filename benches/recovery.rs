//! Recovery time: how long reopening a data directory takes with N unacked
//! persistent 64-byte messages in it (10,000,000 under `cargo bench`, the
//! issue's target; `LQ_BENCH_QUICK=1`: 1,000,000; `LQ_RECOVERY_N` overrides
//! both), beside the persistent peers holding the same N messages.
//!
//! Reports, as medians of `LQ_RECOVERY_RUNS` (default 3) runs, with the
//! files in the page cache (just written; dropping caches needs root):
//! - libqueue `replay`: `store::journal::inspect` — read, check and decode
//!   every record (what an open reads), no broker;
//! - libqueue `open`: `Broker::open` — replay plus putting every message back
//!   in its queue — then the first message received (`to_first_message`);
//! - yaque: `Receiver::open` then the first message received;
//! - SQLite (WAL, `synchronous=NORMAL`, the table `benches/persist.rs` uses,
//!   filled in one transaction, closed cleanly): `Connection::open` then the
//!   first row selected.
//!
//! yaque and SQLite read messages from the file on demand and keep no index in
//! memory, so reopening costs them next to nothing whatever N is; libqueue
//! rebuilds its in-memory queues from the journal, so its open grows with N.
//! Also reports the fill time and the bytes on disk of each.
//!
//! Writes `$LQ_BENCH_OUT/recovery.json`. Under `cargo test --all-targets`: 1,000.
//!
//! For profiling and A/B runs: `LQ_RECOVERY_PEERS=libqueue` (a comma list of
//! `libqueue`, `yaque`, `sqlite`; default all) and `LQ_RECOVERY_DIR=<dir>`
//! (libqueue's data directory: filled only if it has no journal yet, and
//! kept, so one fill serves several binaries; delete it afterwards).

#[path = "common/out.rs"]
mod out;

use libqueue::{Broker, BrokerOptions, Message, MessageView};
use out::Record;
use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).expect("list").flatten() {
        let m = e.metadata().expect("metadata");
        total += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

fn body(i: u64) -> [u8; 64] {
    let mut b = [7u8; 64];
    b[..8].copy_from_slice(&i.to_le_bytes());
    b
}

fn main() {
    let n: u64 = std::env::var("LQ_RECOVERY_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| out::size(10_000_000, 1_000_000, 1_000));
    let runs: usize = std::env::var("LQ_RECOVERY_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut records = Vec::new();
    let mut rec = |peer: &str, metric: &'static str, v: f64, unit: &'static str| {
        records.push(Record::new("recovery", peer, metric, v).unit(unit));
    };
    let secs = |d: Duration| d.as_secs_f64();
    println!("recovery of {n} unacked persistent 64-byte messages, medians of {runs} runs");

    let peers = std::env::var("LQ_RECOVERY_PEERS").unwrap_or_default();
    let run = |peer: &str| peers.is_empty() || peers.split(',').any(|p| p == peer);

    // libqueue
    if run("libqueue") {
        let kept = std::env::var_os("LQ_RECOVERY_DIR").map(std::path::PathBuf::from);
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = kept.as_deref().unwrap_or(temp.path());
        let filled = dir.exists()
            && std::fs::read_dir(dir)
                .expect("list")
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".lqj"));
        let t = Instant::now();
        if !filled {
            let b = Broker::open(BrokerOptions::new().data_dir(dir)).expect("open");
            let q = b.queue("recovery").expect("queue");
            for i in 0..n {
                q.send(Message::new(&body(i)[..]).persistent(true))
                    .expect("send");
            }
        }
        let fill = t.elapsed();
        let bytes = dir_bytes(dir);
        let (mut replay, mut open) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let t = Instant::now();
            let i = libqueue::store::journal::inspect(dir).expect("inspect");
            replay.push(t.elapsed());
            assert_eq!(i.report.messages_recovered, n);
            let t = Instant::now();
            let b = Broker::open(BrokerOptions::new().data_dir(dir)).expect("open");
            let q = b.queue("recovery").expect("queue");
            let d = q.try_receive().expect("receive").expect("a message");
            open.push(t.elapsed());
            assert_eq!(&d.body()[..8], &0u64.to_le_bytes());
            drop(d); // not acked: back in the queue
            assert_eq!(b.recovery_report().expect("report").messages_recovered, n);
            drop(q);
            drop(b);
        }
        let (r, o) = (median(replay), median(open));
        println!(
            "  libqueue  fill {:7.2}s  disk {:6.0} MiB  replay {:.3}s  open + first message {:.3}s",
            secs(fill),
            bytes as f64 / 1048576.0,
            secs(r),
            secs(o)
        );
        rec("libqueue", "to_first_message", secs(o), "s");
        rec("libqueue", "replay_only", secs(r), "s");
        rec("libqueue", "fill", secs(fill), "s");
        rec("libqueue", "disk", bytes as f64 / n as f64, "B/msg");
    }

    // yaque
    if run("yaque") {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("queue");
        let t = Instant::now();
        {
            let (mut tx, _rx) = yaque::channel(&path).expect("yaque channel");
            for i in 0..n {
                tx.try_send(body(i)).expect("send");
            }
        }
        let fill = t.elapsed();
        let bytes = dir_bytes(&path);
        let mut open = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let mut rx = yaque::Receiver::open(&path).expect("open receiver");
            let g = rx.try_recv().expect("a message");
            open.push(t.elapsed());
            assert_eq!(&g[..8], &0u64.to_le_bytes());
            g.rollback().expect("rollback");
        }
        let o = median(open);
        println!(
            "  yaque     fill {:7.2}s  disk {:6.0} MiB  open + first message {:.3}s",
            secs(fill),
            bytes as f64 / 1048576.0,
            secs(o)
        );
        rec("yaque", "to_first_message", secs(o), "s");
        rec("yaque", "fill", secs(fill), "s");
        rec("yaque", "disk", bytes as f64 / n as f64, "B/msg");
    }

    // SQLite
    if run("sqlite") {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("queue.db");
        let t = Instant::now();
        {
            let mut c = Connection::open(&path).expect("open sqlite");
            c.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
                 CREATE TABLE queue (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
            )
            .expect("schema");
            let tx = c.transaction().expect("transaction");
            {
                let mut ins = tx
                    .prepare("INSERT INTO queue (body) VALUES (?1)")
                    .expect("prepare");
                for i in 0..n {
                    ins.execute([&body(i)[..]]).expect("insert");
                }
            }
            tx.commit().expect("commit");
        }
        let fill = t.elapsed();
        let bytes = dir_bytes(dir.path());
        let mut open = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let c = Connection::open(&path).expect("open sqlite");
            let b: Vec<u8> = c
                .query_row("SELECT body FROM queue ORDER BY id LIMIT 1", [], |r| {
                    r.get(0)
                })
                .expect("first row");
            open.push(t.elapsed());
            assert_eq!(&b[..8], &0u64.to_le_bytes());
        }
        let o = median(open);
        println!(
            "  sqlite    fill {:7.2}s  disk {:6.0} MiB  open + first message {:.3}s",
            secs(fill),
            bytes as f64 / 1048576.0,
            secs(o)
        );
        rec("sqlite_wal_normal", "to_first_message", secs(o), "s");
        rec("sqlite_wal_normal", "fill", secs(fill), "s");
        rec(
            "sqlite_wal_normal",
            "disk",
            bytes as f64 / n as f64,
            "B/msg",
        );
    }
    out::write(
        "recovery",
        &[
            ("messages", n.to_string()),
            ("payload_bytes", "64".into()),
            ("runs", runs.to_string()),
            ("sqlite", rusqlite::version().to_string()),
        ],
        &records,
    );
}
