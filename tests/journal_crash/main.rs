//! Crash and corruption tests of the journal.
//!
//! - **Crash (SIGKILL)**: the test runs its own binary again as a child process
//!   (`crash::child_workload`, selected with `--exact --ignored` and told what to
//!   do by `LQ_CHILD_*` environment variables) that opens a broker on a data
//!   directory and, on persistent messages, runs a producer sending one by one
//!   and one sending batches (1 to 7 messages) to `jobs`, a consumer there that
//!   acks (and nacks some a few times first), a producer to `dl` (max_deliveries
//!   3), a consumer there that always nacks (so every message is dead-lettered)
//!   and one on `dl.dead` that acks; every third child uses `SyncMode::Always`.
//!   The child reports on stdout what completed (a line per event, ended by ` $`,
//!   a batch on one line; see `child_workload`). The parent kills it with SIGKILL
//!   after a random 20–200 ms (counting kills that land inside a checkpoint
//!   written while running), reopens the directory and checks that nothing
//!   reported sent and not taken is missing, nothing reported acked came back,
//!   nothing is duplicated or corrupt, nothing appears that was never sent; that
//!   the batch in flight is there whole or not at all; that no message is both in
//!   `dl` and `dl.dead`, none is delivered more than 3 times from `dl`, no acked
//!   dead letter (or its original) comes back and nothing sent to `dl` is lost;
//!   that no delivery count is ever at or below one seen before (child and parent
//!   deliveries, across rounds); and that no id is handed out twice in a queue
//!   (after each check the parent sends a non-persistent message to both queues,
//!   so the highest ids are ones no record names). Then the next round runs a
//!   child on the SAME directory. Every other round the check leaves the `jobs`
//!   messages in place (received leased, not acked) for the next child; the
//!   rounds between drain them (auto-ack), and the next round checks that drained
//!   messages stay gone; `dl` and `dl.dead` are drained every round.
//!   `LQ_CRASH_ROUNDS` sets the number of rounds (default 8; `make crash-long`:
//!   300), `LQ_CRASH_SEED` the seed of the kill delays. One more thread of the
//!   child defines: a namespace with its own quotas (`D n`), a topic subscription
//!   with a filter of one of the four kinds (`U n`), for some an unsubscribe
//!   (`V n`); after the reopen every reported definition is there, exactly (quotas,
//!   filter), one in flight at the kill is there whole or not at all, every
//!   subscription delivers, and the definitions of every earlier round are still
//!   there.
//! - **Corruption**: a fresh directory with small segments (several of them) is
//!   damaged on disk — bytes flipped, the last segment truncated, a page zeroed,
//!   a middle segment deleted, garbage appended or added as a segment — and
//!   reopened: recovery never panics or hangs, reports the damage, and brings
//!   back exactly the messages whose records lie before the first damaged one
//!   (a single producer and no acks: the recovered bodies are `0..k`).
//! - **Lock**: a second open of a directory in use is `Error::Locked`.
//! - **Engine bugs** these tests found are kept as regressions in
//!   `engine_bugs.rs` (fixed since).
//!
//! The corruption tests read the segment layout themselves (64-byte segment
//! header; records of `len u32, type u8, commit u8, reserved u16, crc u32`, the
//! payload, padding to 8 bytes; the CRC covers length, type and payload) to know
//! which record a damaged byte belongs to.
//!
//! Contents (the shared helpers, for the segment layout among them, are in
//! this file):
//!
//! - `crash.rs`         the SIGKILL test: its child workload, the kill, the rounds
//! - `crash_check.rs`   what a reopen after a kill must find
//! - `crash_defs.rs`    definitions made by the child, checked after the kill
//! - `corruption.rs`    flipped, truncated, zeroed, deleted, garbage; the lock
//! - `engine_bugs.rs`   engine bugs these tests found (fixed, kept as regressions)

mod corruption;
mod crash;
mod crash_check;
mod crash_defs;
mod engine_bugs;

use corruption::*;
use crash::*;
use crash_check::*;
use crash_defs::*;
use libqueue::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// Small segments, so a few thousand messages fill several.
const SEG: u64 = 64 * 1024;
const SEGMENT_HEADER: usize = 64;
const RECORD_HEADER: usize = 12;
const KIND_ENQUEUED: u8 = 2;
const NS: &str = "t";
const QUEUE: &str = "q";

fn opts(dir: &Path) -> BrokerOptions {
    BrokerOptions::new()
        .data_dir(dir)
        .segment_size(SEG)
        .sync_mode(SyncMode::None)
}

/// Runs `f` on another thread; fails the test if it panics or takes longer than
/// `limit` (a reopen must never panic or hang).
fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            let _ = h.join();
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{what} panicked: {msg}")
            }
            Ok(()) => panic!("{what} ended without a result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} hung (over {limit:?})"),
    }
}

fn body_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(
        b.try_into()
            .unwrap_or_else(|_| panic!("corrupt body: {} bytes {b:?}", b.len())),
    )
}

/// Segment files of `dir` (`seg-*.lqj`), in sequence order (the names are
/// fixed-width hex, so name order is sequence order).
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            p.is_file() && n.starts_with("seg-") && n.ends_with(".lqj")
        })
        .collect();
    v.sort();
    v
}

/// One record as found on disk.
#[derive(Debug, Clone)]
struct Rec {
    /// Offset of its header in the segment.
    start: usize,
    /// Payload length.
    len: usize,
    /// The message body, for an `Enqueued` record (its last 8 payload bytes).
    body: Option<u64>,
}

impl Rec {
    /// End of the bytes the checksum covers (header and payload, not padding).
    fn payload_end(&self) -> usize {
        self.start + RECORD_HEADER + self.len
    }
    /// Whether byte `p` is one a change to which must be detected: length, type,
    /// commit mark, CRC or payload (not the reserved bytes, not the padding).
    fn covers(&self, p: usize) -> bool {
        (self.start..self.start + 6).contains(&p)
            || (self.start + 8..self.payload_end()).contains(&p)
    }
}

/// A segment's records, and the offset where its written part ends.
#[derive(Debug, Clone)]
struct SegLayout {
    path: PathBuf,
    recs: Vec<Rec>,
    end: usize,
    file_len: usize,
}

fn layout_of(path: &Path) -> SegLayout {
    let buf = fs::read(path).unwrap();
    let mut recs = Vec::new();
    let mut off = SEGMENT_HEADER;
    while off + RECORD_HEADER <= buf.len() {
        let h = &buf[off..off + RECORD_HEADER];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let len = u32::from_le_bytes(h[0..4].try_into().unwrap()) as usize;
        let kind = h[4];
        let pe = off + RECORD_HEADER + len;
        assert!(
            pe <= buf.len(),
            "pristine segment {path:?} has a torn record"
        );
        let body = (kind == KIND_ENQUEUED).then(|| body_u64(&buf[pe - 8..pe]));
        recs.push(Rec {
            start: off,
            len,
            body,
        });
        off += (RECORD_HEADER + len + 7) & !7;
    }
    SegLayout {
        path: path.to_path_buf(),
        recs,
        end: off,
        file_len: buf.len(),
    }
}

fn layout(dir: &Path) -> Vec<SegLayout> {
    segment_files(dir).iter().map(|p| layout_of(p)).collect()
}

/// Bodies of the `Enqueued` records of `segs`, in journal order.
fn bodies_in<'a>(segs: impl IntoIterator<Item = &'a SegLayout>) -> Vec<u64> {
    segs.into_iter()
        .flat_map(|s| s.recs.iter().filter_map(|r| r.body))
        .collect()
}

/// A fresh journal: one queue, `n` persistent messages with bodies `0..n`, sent
/// by one thread (journal order is send order); the broker is dropped cleanly.
/// Returns the layout of its segments.
fn fill(dir: &Path, n: u64) -> Vec<SegLayout> {
    {
        let b = Broker::open(opts(dir)).unwrap();
        let q = b.namespace(NS).unwrap().queue(QUEUE).unwrap();
        for i in 0..n {
            q.send(Message::new(i.to_le_bytes().to_vec()).persistent(true))
                .unwrap();
        }
    }
    let l = layout(dir);
    assert!(l.len() >= 4, "want several segments, got {}", l.len());
    assert_eq!(bodies_in(&l), (0..n).collect::<Vec<_>>());
    l
}

/// Opens `dir` (on a watchdog thread), receives every message leased (so they stay
/// in the journal) and returns the report and the bodies in delivery order.
fn reopen_and_collect(dir: &Path, what: &str) -> (RecoveryReport, Vec<u64>) {
    let dir = dir.to_path_buf();
    within(what, Duration::from_secs(30), move || {
        let b = Broker::open(opts(&dir)).expect("reopen");
        let report = b.recovery_report().expect("a report").clone();
        let q = b.namespace(NS).unwrap().queue(QUEUE).unwrap();
        let mut held = Vec::new();
        let mut bodies = Vec::new();
        loop {
            let batch = q.receive_batch(1024, Wait::Try).unwrap();
            if batch.is_empty() {
                break;
            }
            for d in batch {
                bodies.push(body_u64(d.body()));
                held.push(d);
            }
        }
        drop(held);
        drop(q);
        drop(b);
        (report, bodies)
    })
}

fn damaged(r: &RecoveryReport) -> bool {
    r.bytes_cut > 0 || !r.damage.is_empty()
}

/// After a damaging reopen: `got` is exactly `0..k` for some `k` in `lo..=hi` (a
/// prefix of the send order, nothing duplicated, nothing before the first damaged
/// record lost); the report agrees; a second reopen finds the same messages and
/// no damage (the damaged segments were moved to `damaged/`). Returns `k`.
fn check_prefix_in(
    dir: &Path,
    ctx: &str,
    report: &RecoveryReport,
    got: &[u64],
    lo: u64,
    hi: u64,
) -> u64 {
    let set: BTreeSet<u64> = got.iter().copied().collect();
    assert_eq!(
        set.len(),
        got.len(),
        "{ctx}: duplicates recovered; {report:?}"
    );
    let k = set.len() as u64;
    let prefix = set.iter().copied().eq(0..k);
    if !prefix || !(lo..=hi).contains(&k) {
        let holes: Vec<u64> = (0..k).filter(|n| !set.contains(n)).take(10).collect();
        let beyond: Vec<u64> = set.range(k..).copied().take(10).collect();
        panic!(
            "{ctx}: recovered {k} messages, want exactly 0..k with k in {lo}..={hi}; \
             missing {holes:?}, recovered beyond a gap {beyond:?}; {report:?}"
        );
    }
    assert_eq!(report.messages_recovered, k, "{ctx}: {report:?}");
    if !report.damage.is_empty() {
        let d = dir.join("damaged");
        let n = fs::read_dir(&d).map_or(0, |r| r.count());
        assert!(n > 0, "{ctx}: damage reported but nothing in {d:?}");
    }
    let (r2, got2) = reopen_and_collect(dir, &format!("{ctx}: second reopen"));
    assert!(
        !damaged(&r2),
        "{ctx}: second reopen still finds damage: {r2:?}"
    );
    let set2: BTreeSet<u64> = got2.iter().copied().collect();
    assert_eq!(
        set2.len(),
        got2.len(),
        "{ctx}: duplicates after second reopen"
    );
    assert_eq!(set2, set, "{ctx}: second reopen recovered something else");
    k
}

fn check_prefix(dir: &Path, ctx: &str, report: &RecoveryReport, got: &[u64], want: u64) {
    check_prefix_in(dir, ctx, report, got, want, want);
}

/// Messages before record `idx` of segment `si`.
fn count_before(l: &[SegLayout], si: usize, idx: usize) -> u64 {
    (bodies_in(&l[..si]).len()
        + l[si].recs[..idx]
            .iter()
            .filter(|r| r.body.is_some())
            .count()) as u64
}

const N: u64 = 4000;
