//! The cost of persistence: libqueue's journal in each sync mode against
//! libqueue in memory, SQLite (WAL) used as a queue, yaque, and a raw memcpy
//! into a fresh memory-mapped file (the ceiling for the journal's write path).
//!
//! Every peer does the same work per message, single-threaded: a freshly
//! allocated body of the group's size (a sequence number in the first 8 bytes,
//! the rest a constant byte) is sent, then, once all `n` are sent, each is
//! received (its sequence number read from the body) and acknowledged. After
//! each iteration the count and the sum of the sequence numbers are checked,
//! so nothing is counted that was not delivered. Only send + receive + ack is
//! timed: creating the data directory (a fresh temporary directory per
//! iteration: a broker holds an exclusive lock on its directory), opening the
//! broker (which preallocates a 64 MiB segment and writes a synced
//! checkpoint), closing it (a final flush) and deleting the directory are not.
//! So a 64-byte iteration (about 3 MB of journal) never fills half a segment
//! and never starts preparing the next one; a long-lived broker prepares one
//! per 64 MiB on a helper thread. (Before that preparation waited for half a
//! segment, every open started it, and on two cores it took CPU time from
//! the interval mode's sync thread inside the timed part: that mode then
//! measured faster than it is.)
//!
//! Groups `persist_64B` (64-byte bodies) and `persist_64KiB` (65,536 bytes):
//! - `libqueue_memory`: no data directory, messages not persistent (reference).
//! - `libqueue_sync_none`, `libqueue_sync_interval10ms`, `libqueue_sync_always`:
//!   persistent messages with `SyncMode::None`, `Interval(10 ms)`, `Always`.
//! - `sqlite_wal_normal`, `sqlite_wal_full`: a table `(id INTEGER PRIMARY KEY,
//!   body BLOB)` in WAL mode with `synchronous=NORMAL` / `FULL`; send is one
//!   `INSERT`, receive + ack is `SELECT` of the lowest id then `DELETE` of it,
//!   each statement its own (autocommit) transaction, prepared once.
//!   Per message, `sqlite_wal_full` waits for two syncs (the INSERT's and the
//!   DELETE's commits); `libqueue_sync_always` for three (the send's record,
//!   the leased receive's delivery count and the ack's removal).
//! - `yaque`: `yaque::channel` with default settings; its sync API
//!   (`Sender::try_send`, `Receiver::try_recv` + `RecvGuard::commit`). yaque
//!   never fsyncs: it is a peer of `SyncMode::None`.
//! - `memcpy_mmap_ceiling`: each body is copied into a fresh, preallocated
//!   (`posix_fallocate`, as the journal does) `memmap2` mapping of a file, then
//!   every sequence number is read back from the mapping. No framing, no
//!   checksum, no index, no flush: what the journal's append cannot beat.
//!
//! Message counts per iteration (throughput is per message, whatever the
//! count): `N_64KIB` = 500 for every 64 KiB peer; `N_64B` = 20,000 for the
//! 64-byte peers except the two that wait for the disk on every operation
//! (`libqueue_sync_always`, `sqlite_wal_full`), which send `N_SYNCED_64B` =
//! 2,000 so that ten samples fit in a few seconds.
//!
//! Group `persist_always_senders`: `SyncMode::Always`, 1, 2 and 4 threads each
//! sending `N_SENDERS / threads` persistent 64-byte messages at once; only the
//! sends are timed (from a start barrier to the last sender done), since this
//! group asks whether concurrent senders share flushes (group commit). After
//! each iteration the queue must hold all `N_SENDERS`, and the closed journal
//! must recover exactly that many.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use libqueue::{Broker, BrokerOptions, Message, MessageView, SyncMode};
use memmap2::MmapMut;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension};
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

/// Body sizes of the two groups.
const SMALL: usize = 64;
const LARGE: usize = 64 << 10;
/// Messages per iteration.
const N_64B: usize = 20_000;
const N_64KIB: usize = 500;
/// Messages per iteration of the 64-byte peers that sync on every operation.
const N_SYNCED_64B: usize = 2_000;
/// Messages per iteration of `persist_always_senders` (all senders together).
const N_SENDERS: usize = 4_000;
/// The flush period of `SyncMode::Interval`.
const INTERVAL: Duration = Duration::from_millis(10);

/// A fresh body of `size` bytes carrying `seq`.
fn payload(seq: u64, size: usize) -> Vec<u8> {
    let mut v = vec![0x5a; size];
    v[..8].copy_from_slice(&seq.to_le_bytes());
    v
}

/// Reads a body's sequence number (and checks its size).
#[inline]
fn decode(body: &[u8], size: usize) -> u64 {
    assert_eq!(body.len(), size, "body size");
    u64::from_le_bytes(body[..8].try_into().expect("8 bytes"))
}

/// Checks that `count` messages with sequence numbers `0..n` came back.
fn check(count: usize, sum: u64, n: usize) {
    assert_eq!(count, n, "messages received");
    assert_eq!(sum, (n as u64) * (n as u64 - 1) / 2, "sequence sum");
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// libqueue: in memory (`mode` None, messages not persistent) or with a data
/// directory in `mode` (messages persistent).
fn run_libqueue(mode: Option<SyncMode>, n: usize, size: usize) -> Duration {
    let dir = tempdir();
    let broker = match mode {
        None => Broker::new(),
        Some(m) => Broker::open(BrokerOptions::new().data_dir(dir.path()).sync_mode(m))
            .expect("open broker"),
    };
    let q = broker.queue("bench").expect("queue");
    let persistent = mode.is_some();
    let start = Instant::now();
    for i in 0..n {
        q.send(Message::new(payload(i as u64, size)).persistent(persistent))
            .expect("send");
    }
    let (mut count, mut sum) = (0usize, 0u64);
    while let Some(d) = q.try_receive().expect("receive") {
        sum = sum.wrapping_add(decode(d.body(), size));
        count += 1;
        d.ack().expect("ack");
    }
    let elapsed = start.elapsed();
    drop(q);
    drop(broker);
    check(count, sum, n);
    elapsed
}

/// SQLite in WAL mode with `synchronous` (NORMAL or FULL), used as a queue.
fn run_sqlite(synchronous: &str, n: usize, size: usize) -> Duration {
    let dir = tempdir();
    let conn = Connection::open(dir.path().join("queue.db")).expect("open sqlite");
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    conn.execute_batch(&format!(
        "PRAGMA synchronous={synchronous};
         CREATE TABLE queue (id INTEGER PRIMARY KEY, body BLOB NOT NULL);"
    ))
    .expect("schema");
    let (elapsed, count, sum) = {
        let mut insert = conn
            .prepare("INSERT INTO queue (body) VALUES (?1)")
            .expect("prepare insert");
        let mut head = conn
            .prepare("SELECT id, body FROM queue ORDER BY id LIMIT 1")
            .expect("prepare select");
        let mut delete = conn
            .prepare("DELETE FROM queue WHERE id = ?1")
            .expect("prepare delete");
        let start = Instant::now();
        for i in 0..n {
            insert.execute([payload(i as u64, size)]).expect("insert");
        }
        let (mut count, mut sum) = (0usize, 0u64);
        while let Some((id, seq)) = head
            .query_row([], |r| {
                let id: i64 = r.get(0)?;
                let ValueRef::Blob(body) = r.get_ref(1)? else {
                    panic!("body is not a blob");
                };
                Ok((id, decode(body, size)))
            })
            .optional()
            .expect("select")
        {
            sum = sum.wrapping_add(seq);
            count += 1;
            assert_eq!(delete.execute([id]).expect("delete"), 1, "deleted rows");
        }
        (start.elapsed(), count, sum)
    };
    drop(conn);
    check(count, sum, n);
    elapsed
}

/// yaque with default settings, through its sync API.
fn run_yaque(n: usize, size: usize) -> Duration {
    let dir = tempdir();
    let (mut tx, mut rx) = yaque::channel(dir.path().join("queue")).expect("yaque channel");
    let start = Instant::now();
    for i in 0..n {
        tx.try_send(payload(i as u64, size)).expect("send");
    }
    let (mut count, mut sum) = (0usize, 0u64);
    for _ in 0..n {
        let guard = rx.try_recv().expect("receive");
        sum = sum.wrapping_add(decode(&guard, size));
        count += 1;
        guard.commit().expect("commit");
    }
    let elapsed = start.elapsed();
    assert!(
        matches!(rx.try_recv(), Err(yaque::TryRecvError::QueueEmpty)),
        "yaque queue drained"
    );
    drop((tx, rx));
    check(count, sum, n);
    elapsed
}

/// The ceiling: each body copied into a fresh preallocated mapping, then read back.
fn run_memcpy(n: usize, size: usize) -> Duration {
    let dir = tempdir();
    let path = dir.path().join("ceiling");
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("create file");
    let len = n * size;
    // SAFETY: posix_fallocate takes a descriptor we own (open here) and integers.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    assert_eq!(r, 0, "posix_fallocate");
    // SAFETY: the file was created just now in a private directory; nothing else
    // maps or resizes it while the mapping lives.
    let mut map = unsafe { MmapMut::map_mut(&file) }.expect("map");
    let start = Instant::now();
    for i in 0..n {
        let body = payload(i as u64, size);
        map[i * size..(i + 1) * size].copy_from_slice(&body);
    }
    let (mut count, mut sum) = (0usize, 0u64);
    for body in map.chunks_exact(size) {
        sum = sum.wrapping_add(decode(body, size));
        count += 1;
    }
    let elapsed = start.elapsed();
    drop(map);
    drop(file);
    check(count, sum, n);
    elapsed
}

/// `threads` senders share `n` persistent 64-byte sends under `SyncMode::Always`;
/// returns the time from the start barrier to the last sender done.
fn run_always_senders(threads: usize, n: usize) -> Duration {
    assert_eq!(n % threads, 0);
    let per = n / threads;
    let dir = tempdir();
    let broker = Broker::open(
        BrokerOptions::new()
            .data_dir(dir.path())
            .sync_mode(SyncMode::Always),
    )
    .expect("open broker");
    let q = broker.queue("bench").expect("queue");
    let barrier = Barrier::new(threads + 1);
    let elapsed = thread::scope(|s| {
        let senders: Vec<_> = (0..threads)
            .map(|t| {
                let (q, barrier) = (&q, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..per {
                        let seq = (t * per + i) as u64;
                        q.send(Message::new(payload(seq, SMALL)).persistent(true))
                            .expect("send");
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in senders {
            h.join().expect("sender");
        }
        start.elapsed()
    });
    let s = q.stats();
    assert_eq!((s.sent, s.ready), (n as u64, n as u64), "messages queued");
    drop(q);
    drop(broker);
    let found = libqueue::store::journal::inspect(dir.path()).expect("inspect");
    assert_eq!(
        found.report.messages_recovered, n as u64,
        "messages journaled"
    );
    elapsed
}

/// `LQ_BENCH_QUICK=1`: shorter warm-up and measurement (smoke runs only).
fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    let quick = std::env::var_os("LQ_BENCH_QUICK").is_some_and(|v| v != "0");
    let (measure, warm_up) = if quick { (1000, 200) } else { (3000, 500) };
    g.sample_size(10)
        .measurement_time(Duration::from_millis(measure))
        .warm_up_time(Duration::from_millis(warm_up));
}

/// Benchmarks `run(n)` (which times one iteration of `n` messages itself).
fn bench_peer(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    n: usize,
    run: impl Fn(usize) -> Duration,
) {
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run(n)).sum())
    });
}

fn bench_size(c: &mut Criterion, name: &str, size: usize, n: usize, n_synced: usize) {
    let mut g = c.benchmark_group(name);
    configure(&mut g);
    bench_peer(&mut g, "libqueue_memory", n, |n| {
        run_libqueue(None, n, size)
    });
    bench_peer(&mut g, "libqueue_sync_none", n, |n| {
        run_libqueue(Some(SyncMode::None), n, size)
    });
    bench_peer(&mut g, "libqueue_sync_interval10ms", n, |n| {
        run_libqueue(Some(SyncMode::Interval(INTERVAL)), n, size)
    });
    bench_peer(&mut g, "libqueue_sync_always", n_synced, |n| {
        run_libqueue(Some(SyncMode::Always), n, size)
    });
    bench_peer(&mut g, "sqlite_wal_normal", n, |n| {
        run_sqlite("NORMAL", n, size)
    });
    bench_peer(&mut g, "sqlite_wal_full", n_synced, |n| {
        run_sqlite("FULL", n, size)
    });
    bench_peer(&mut g, "yaque", n, |n| run_yaque(n, size));
    bench_peer(&mut g, "memcpy_mmap_ceiling", n, |n| run_memcpy(n, size));
    g.finish();
}

fn persist_64b(c: &mut Criterion) {
    bench_size(c, "persist_64B", SMALL, N_64B, N_SYNCED_64B);
}

fn persist_64kib(c: &mut Criterion) {
    bench_size(c, "persist_64KiB", LARGE, N_64KIB, N_64KIB);
}

fn persist_always_senders(c: &mut Criterion) {
    let mut g = c.benchmark_group("persist_always_senders");
    configure(&mut g);
    for threads in [1, 2, 4] {
        bench_peer(
            &mut g,
            &format!("libqueue_{threads}_senders"),
            N_SENDERS,
            |n| run_always_senders(threads, n),
        );
    }
    g.finish();
}

criterion_group!(benches, persist_64b, persist_64kib, persist_always_senders);
criterion_main!(benches);
