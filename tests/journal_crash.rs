//! Crash and corruption tests of the journal.
//!
//! - **Crash (SIGKILL)**: the test runs its own binary again as a child process
//!   (`child_workload`, selected with `--exact --ignored` and told what to do by
//!   `LQ_CHILD_*` environment variables) that opens a broker on a data directory
//!   and, on persistent messages, runs a producer sending one by one and one
//!   sending batches (1 to 7 messages) to `jobs`, a consumer there that acks
//!   (and nacks some a few times first), a producer to `dl` (max_deliveries 3),
//!   a consumer there that always nacks (so every message is dead-lettered) and
//!   one on `dl.dead` that acks; every third child uses `SyncMode::Always`. The
//!   child reports on stdout what completed (a line per event, ended by ` $`,
//!   a batch on one line; see `child_workload`). The parent kills it with
//!   SIGKILL after a random 20–200 ms (counting kills that land inside a
//!   checkpoint written while running), reopens the directory and checks that
//!   nothing reported sent and not taken is missing, nothing reported acked came
//!   back, nothing is duplicated or corrupt, nothing appears that was never
//!   sent; that the batch in flight is there whole or not at all; that no
//!   message is both in `dl` and `dl.dead`, none is delivered more than 3 times
//!   from `dl`, no acked dead letter (or its original) comes back and nothing
//!   sent to `dl` is lost; that no delivery count is ever at or below one seen
//!   before (child and parent deliveries, across rounds); and that no id is
//!   handed out twice in a queue (after each check the parent sends a
//!   non-persistent message to both queues, so the highest ids are ones no
//!   record names). Then the next round runs a child on the SAME directory.
//!   Every other round the check leaves the `jobs` messages in place (received
//!   leased, not acked) for the next child; the rounds between drain them
//!   (auto-ack), and the next round checks that drained messages stay gone;
//!   `dl` and `dl.dead` are drained every round. `LQ_CRASH_ROUNDS` sets the
//!   number of rounds (default 8; `make crash-long`: 300), `LQ_CRASH_SEED` the
//!   seed of the kill delays. One more thread of the child defines: a
//!   namespace with its own quotas (`D n`), a topic subscription with a filter
//!   of one of the four kinds (`U n`), for some an unsubscribe (`V n`); after
//!   the reopen every reported definition is there, exactly (quotas, filter),
//!   one in flight at the kill is there whole or not at all, every
//!   subscription delivers, and the definitions of every earlier round are
//!   still there.
//! - **Corruption**: a fresh directory with small segments (several of them) is
//!   damaged on disk — bytes flipped, the last segment truncated, a page zeroed,
//!   a middle segment deleted, garbage appended or added as a segment — and
//!   reopened: recovery never panics or hangs, reports the damage, and brings
//!   back exactly the messages whose records lie before the first damaged one
//!   (a single producer and no acks: the recovered bodies are `0..k`).
//! - **Lock**: a second open of a directory in use is `Error::Locked`.
//! - **Engine bugs** these tests found are kept at the end as `#[ignore]`d tests
//!   (run them with `--ignored`; they fail until the engine is fixed).
//!
//! The corruption tests read the segment layout themselves (64-byte segment
//! header; records of `len u32, type u8, commit u8, reserved u16, crc u32`, the
//! payload, padding to 8 bytes; the CRC covers length, type and payload) to know
//! which record a damaged byte belongs to.

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

// ---------------------------------------------------------------------------
// Crash test: SIGKILL a child process that sends (one by one and in batches),
// receives, nacks, acks and dead-letters
// ---------------------------------------------------------------------------

const CRASH_NS: &str = "crash";
const CRASH_QUEUE: &str = "jobs";
/// A queue whose messages are nacked until they are dead-lettered.
const DL_QUEUE: &str = "dl";
const DL_DEAD: &str = "dl.dead";
const DL_MAX: u32 = 3;
/// Producer p's i-th body is base + p * STRIDE + i. Producer 0 sends one by
/// one, producer 1 in batches (of `batch_len`), both to `jobs`; producer 2
/// sends to `dl`.
const STRIDE: u64 = 1 << 32;
const PRODUCERS: u64 = 2;

/// The length of producer 1's batch that starts with its `i`-th message.
fn batch_len(i: u64) -> u64 {
    1 + i % 7
}

fn emit(line: std::fmt::Arguments<'_>) {
    let out = std::io::stdout();
    let mut o = out.lock();
    let _ = o.write_fmt(line);
    // A line cut by the kill has no end mark: the parent ignores it.
    let _ = o.write_all(b" $\n");
    let _ = o.flush();
}

fn dl_options() -> QueueOptions {
    QueueOptions::default()
        .persistent(true)
        .max_deliveries(DL_MAX)
        .dead_letter_queue(DL_DEAD)
}

fn child_opts(dir: &Path) -> BrokerOptions {
    let sync = match std::env::var("LQ_CHILD_SYNC").as_deref() {
        Ok("always") => SyncMode::Always,
        _ => SyncMode::None,
    };
    opts(dir).sync_mode(sync)
}

/// The crash test's child: does nothing unless `LQ_CHILD_DIR` is set.
///
/// Lines (each ended by ` $`): `O` (open), `S n id` (sent to jobs), `B n id
/// n id …` (a batch sent to jobs), `R n count` (received from
/// jobs), `N n` (nacked), `A n` (acked), `T n id` (sent to dl), `X n count`
/// (received from dl, then nacked), `Y n count` (received from dl.dead),
/// `Z n` (acked there).
#[test]
#[ignore = "the crash test's child process; runs only with LQ_CHILD_DIR set"]
fn child_workload() {
    let Some(dir) = std::env::var_os("LQ_CHILD_DIR") else {
        return;
    };
    let base: u64 = std::env::var("LQ_CHILD_BASE").unwrap().parse().unwrap();
    // End whatever the test harness printed without a newline.
    emit(format_args!(""));
    let b = Broker::open(child_opts(Path::new(&dir))).expect("child: open");
    let ns = b.namespace(CRASH_NS).unwrap();
    let q = ns.queue(CRASH_QUEUE).unwrap();
    let dl = ns
        .get_queue(DL_QUEUE)
        .or_else(|_| ns.create_queue(DL_QUEUE, dl_options()))
        .unwrap();
    let dead = ns.queue(DL_DEAD).unwrap();
    emit(format_args!("O"));
    // The parent kills us long before this.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut threads = Vec::new();
    {
        let q = q.clone();
        threads.push(thread::spawn(move || {
            let mut i = 0;
            while Instant::now() < deadline {
                let n = base + i;
                let id = q
                    .send(Message::new(n.to_le_bytes().to_vec()).persistent(true))
                    .expect("child: send");
                emit(format_args!("S {n} {id}"));
                i += 1;
            }
        }));
    }
    {
        let q = q.clone();
        threads.push(thread::spawn(move || {
            let mut i = 0;
            while Instant::now() < deadline {
                let k = batch_len(i);
                let ns: Vec<u64> = (i..i + k).map(|j| base + STRIDE + j).collect();
                let ids = q
                    .send_batch(
                        ns.iter()
                            .map(|n| Message::new(n.to_le_bytes().to_vec()).persistent(true)),
                    )
                    .expect("child: send_batch");
                // One line for the whole batch: reported whole or not at all.
                let pairs: Vec<String> = ns
                    .iter()
                    .zip(ids)
                    .map(|(n, id)| format!("{n} {id}"))
                    .collect();
                emit(format_args!("B {}", pairs.join(" ")));
                i += k;
            }
        }));
    }
    {
        let dl = dl.clone();
        threads.push(thread::spawn(move || {
            let mut i = 0;
            while Instant::now() < deadline {
                let n = base + 2 * STRIDE + i;
                let id = dl
                    .send(Message::new(n.to_le_bytes().to_vec()))
                    .expect("child: send to dl");
                emit(format_args!("T {n} {id}"));
                i += 1;
                thread::sleep(Duration::from_millis(1));
            }
        }));
    }
    threads.push(thread::spawn(move || {
        while Instant::now() < deadline {
            if let Some(d) = dl.receive_timeout(Duration::from_millis(5)).unwrap() {
                emit(format_args!(
                    "X {} {}",
                    body_u64(d.body()),
                    d.delivery_count()
                ));
                d.nack().expect("child: nack in dl");
            }
        }
    }));
    {
        let b = b.clone();
        threads.push(thread::spawn(move || define_workload(&b, base, deadline)));
    }
    threads.push(thread::spawn(move || {
        while Instant::now() < deadline {
            if let Some(d) = dead.receive_timeout(Duration::from_millis(5)).unwrap() {
                let n = body_u64(d.body());
                emit(format_args!("Y {n} {}", d.delivery_count()));
                // Dead letters wait a little before they are acked, so a kill
                // can find them in either queue.
                thread::sleep(Duration::from_millis(2));
                d.ack().expect("child: ack in dl.dead");
                emit(format_args!("Z {n}"));
            }
        }
    }));
    while Instant::now() < deadline {
        if let Some(d) = q.receive_timeout(Duration::from_millis(5)).unwrap() {
            let n = body_u64(d.body());
            let c = d.delivery_count();
            emit(format_args!("R {n} {c}"));
            // Some are nacked (redelivered with a higher count) a few times.
            if n % 4 == 0 && c < 3 {
                d.nack().expect("child: nack");
                emit(format_args!("N {n}"));
            } else {
                d.ack().expect("child: ack");
                emit(format_args!("A {n}"));
            }
        }
    }
    for t in threads {
        t.join().unwrap();
    }
}

/// What one child reported before it was killed.
#[derive(Default, Debug)]
struct Reported {
    opened: bool,
    /// Sent to jobs: body → id.
    sent: std::collections::HashMap<u64, u64>,
    /// Received from jobs (any number of times), with each delivery count.
    received: HashSet<u64>,
    deliveries: Vec<(u64, u32)>,
    acked: HashSet<u64>,
    /// Sent to dl: body → id.
    dl_sent: std::collections::HashMap<u64, u64>,
    /// Deliveries from dl (body, count), in order.
    dl_deliveries: Vec<(u64, u32)>,
    /// Received from dl.dead; acked there.
    dead_received: HashSet<u64>,
    dead_acked: HashSet<u64>,
    /// Definitions: namespace `d{n}` created (`D`), its topic subscribed
    /// (`U`), unsubscribed (`V`).
    defined: HashSet<u64>,
    subscribed: HashSet<u64>,
    unsubscribed: HashSet<u64>,
}

fn parse_child(lines: &[String]) -> Reported {
    let mut r = Reported::default();
    for line in lines {
        // The first line may follow what the harness printed.
        let mut t: Vec<&str> = line.split_whitespace().collect();
        if t.pop() != Some("$") {
            continue; // cut by the kill
        }
        let Some(at) = t.iter().rposition(|w| {
            matches!(
                *w,
                "O" | "S" | "B" | "R" | "N" | "A" | "T" | "X" | "Y" | "Z" | "D" | "U" | "V"
            )
        }) else {
            continue;
        };
        let n: Vec<u64> = t[at + 1..].iter().filter_map(|w| w.parse().ok()).collect();
        if n.len() != t.len() - at - 1 {
            continue;
        }
        match (t[at], n.as_slice()) {
            ("O", []) => r.opened = true,
            ("S", [n, id]) => {
                r.sent.insert(*n, *id);
            }
            ("B", pairs) if pairs.len() % 2 == 0 => {
                for p in pairs.chunks(2) {
                    r.sent.insert(p[0], p[1]);
                }
            }
            ("R", [n, c]) => {
                r.received.insert(*n);
                r.deliveries.push((*n, *c as u32));
            }
            ("A", [n]) => {
                r.acked.insert(*n);
            }
            ("T", [n, id]) => {
                r.dl_sent.insert(*n, *id);
            }
            ("X", [n, c]) => r.dl_deliveries.push((*n, *c as u32)),
            ("Y", [n, _]) => {
                r.dead_received.insert(*n);
            }
            ("Z", [n]) => {
                r.dead_acked.insert(*n);
            }
            ("D", [n]) => {
                r.defined.insert(*n);
            }
            ("U", [n]) => {
                r.subscribed.insert(*n);
            }
            ("V", [n]) => {
                r.unsubscribed.insert(*n);
            }
            _ => {}
        }
    }
    r
}

/// Runs the child on `dir`, kills it after `delay`; returns its stdout lines.
fn run_child_and_kill(dir: &Path, base: u64, delay: Duration, always: bool) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_workload",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LQ_CHILD_DIR", dir)
        .env("LQ_CHILD_BASE", base.to_string())
        .env("LQ_CHILD_SYNC", if always { "always" } else { "none" })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
            .collect::<Vec<String>>()
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    thread::sleep(delay);
    let _ = child.kill(); // SIGKILL
    let status = child.wait().unwrap();
    let lines = out.join().unwrap();
    let err = err.join().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "the child ended on its own ({status:?}) instead of being killed:\n{err}\n{}",
        lines.join("\n")
    );
    lines
}

const SIGKILL: i32 = 9;

/// Whether the newest checkpoint (from its flagged first segment on) has no
/// `Checkpoint` record: the kill fell inside it.
fn inside_a_checkpoint(dir: &Path) -> bool {
    let segs: Vec<Vec<u8>> = segment_files(dir)
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
    let Some(first) = segs
        .iter()
        .rposition(|b| b.len() >= SEGMENT_HEADER && b[28] & 1 != 0)
    else {
        return false;
    };
    let has_checkpoint_record = |b: &Vec<u8>| {
        let mut off = SEGMENT_HEADER;
        while off + RECORD_HEADER <= b.len() && b[off + 5] == 0xA5 {
            if b[off + 4] == 5 {
                return true;
            }
            let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
            off += (RECORD_HEADER + len + 7) & !7;
        }
        false
    };
    !segs[first..].iter().any(has_checkpoint_record)
}

/// What the crash test remembers from round to round.
#[derive(Default)]
struct History {
    /// Messages left in jobs for the next child.
    carry: HashSet<u64>,
    /// The highest delivery count seen for each message (jobs and dl).
    counts: std::collections::HashMap<u64, u32>,
    /// Every id handed out, per queue (jobs 0, dl 1): never twice.
    ids: [HashSet<u64>; 2],
    /// Totals for the summary line.
    batches_in_flight: usize,
    batches_cut_whole: usize,
    dead_lettered: usize,
    dead_at_open: usize,
    both_checked: usize,
    /// Every namespace `d{n}` known to exist, and whether its subscription
    /// does (checked again after every later kill).
    defs: std::collections::BTreeMap<u64, bool>,
    /// Definitions checked (namespaces, subscriptions) over all rounds.
    defs_checked: (usize, usize),
    /// Namespace creations in flight at a kill: found whole / not there.
    ns_in_flight: (usize, usize),
    /// Subscribes or unsubscribes in flight at a kill: found subscribed / not.
    sub_in_flight: (usize, usize),
}

impl History {
    /// A delivery count observed for `n`: never at or below one seen before.
    fn delivered(&mut self, ctx: &str, n: u64, c: u32, what: &str) {
        let last = self.counts.entry(n).or_insert(0);
        assert!(
            c > *last,
            "{ctx}: message {n} delivered with count {c} after count {last} ({what}): \
             a delivery count went back"
        );
        *last = c;
    }

    /// An id handed out in queue `q`.
    fn id(&mut self, ctx: &str, q: usize, id: u64) {
        assert!(
            self.ids[q].insert(id),
            "{ctx}: id {id} handed out twice in queue {q}"
        );
    }
}

/// What the reopen found.
struct Found {
    report: RecoveryReport,
    /// jobs: (body, delivery count) in delivery order.
    got: Vec<(u64, u32)>,
    dl: Vec<(u64, u32)>,
    dead: Vec<(u64, u32, Option<String>)>,
    /// Ids of the non-persistent messages sent after the check (jobs, dl).
    fresh: [u64; 2],
    /// Namespaces `d{n}`: (n, quotas, the subscription's filter if any).
    defs: Vec<(u64, Quotas, Option<Filter>)>,
}

/// One verification after a kill. With `keep` the jobs messages are received
/// leased and left in the journal (they become the next round's carry),
/// otherwise they are auto-acked (the next round must not see them again).
/// Both dead-letter queues are drained (acked) every round. Returns the
/// report's damage findings.
fn verify_after_kill(
    dir: &Path,
    ctx: &str,
    base: u64,
    rep: &Reported,
    h: &mut History,
    keep: bool,
) -> Vec<String> {
    // Sanity of what the child said: per producer, sends are 0..m contiguous
    // (batches included: their lines come after the batch returned); an ack
    // is reported only after its receive.
    let mut inflight = HashSet::new();
    let mut batch_inflight = Vec::new();
    for p in 0..PRODUCERS {
        let lo = base + p * STRIDE;
        let mut idx: Vec<u64> = rep
            .sent
            .keys()
            .filter(|n| (lo..lo + STRIDE).contains(*n))
            .map(|n| n - lo)
            .collect();
        idx.sort_unstable();
        assert!(
            idx.iter().enumerate().all(|(i, v)| i as u64 == *v),
            "{ctx}: producer {p}'s reported sends are not contiguous"
        );
        // Sent (maybe recorded) but killed before it was reported.
        let m = idx.len() as u64;
        if p == 1 {
            // Producer 1's batches start where batch_len says.
            let mut start = 0;
            while start < m {
                start += batch_len(start);
            }
            assert_eq!(start, m, "{ctx}: a batch was reported in part");
            batch_inflight = (m..m + batch_len(m)).map(|i| lo + i).collect();
            inflight.extend(batch_inflight.iter().copied());
        } else {
            inflight.insert(lo + m);
        }
    }
    assert!(
        rep.acked.is_subset(&rep.received),
        "{ctx}: ack before receive?"
    );
    for (n, id) in &rep.sent {
        assert!(
            n.checked_sub(base).is_some_and(|i| i < PRODUCERS * STRIDE),
            "{ctx}: body {n}"
        );
        h.id(ctx, 0, *id);
    }
    for id in rep.dl_sent.values() {
        h.id(ctx, 1, *id);
    }
    for (n, c) in &rep.deliveries {
        h.delivered(ctx, *n, *c, "reported by the child");
    }
    for (n, c) in &rep.dl_deliveries {
        assert!(*c <= DL_MAX, "{ctx}: {n} delivered {c} times from dl");
        h.delivered(ctx, *n, *c, "reported by the child from dl");
    }

    let d = dir.to_path_buf();
    let found = within(
        &format!("{ctx}: reopen"),
        Duration::from_secs(60),
        move || {
            let b = Broker::open(opts(&d)).expect("reopen after kill");
            let report = b.recovery_report().unwrap().clone();
            let ns = b.namespace(CRASH_NS).unwrap();
            let q = ns.queue(CRASH_QUEUE).unwrap();
            let mut got = Vec::new();
            let mut held = Vec::new();
            loop {
                let batch = if keep {
                    q.receive_batch(4096, Wait::Try).unwrap()
                } else {
                    q.receive_batch_auto_ack(4096, Wait::Try).unwrap()
                };
                if batch.is_empty() {
                    break;
                }
                for d in batch {
                    got.push((body_u64(d.body()), d.delivery_count()));
                    held.push(d);
                }
            }
            drop(held);
            let take = |name: &str| {
                let q = ns.queue(name).unwrap();
                let mut v = Vec::new();
                while let Some(d) = q.try_receive().unwrap() {
                    v.push((
                        body_u64(d.body()),
                        d.delivery_count(),
                        d.header_str("x-dead-letter-reason").map(str::to_string),
                    ));
                    d.ack().unwrap();
                }
                v
            };
            let dl = take(DL_QUEUE).into_iter().map(|(n, c, _)| (n, c)).collect();
            let dead = take(DL_DEAD);
            let defs = found_definitions(&b, base + DEFS_AT);
            // The highest ids are now non-persistent ones: the next child must
            // not hand them out again.
            let fresh = [
                q.send(Message::new("fresh").persistent(false)).unwrap(),
                ns.queue(DL_QUEUE)
                    .unwrap()
                    .send(Message::new("fresh").persistent(false))
                    .unwrap(),
            ];
            drop(q);
            drop(ns);
            b.close();
            Found {
                report,
                got,
                dl,
                dead,
                fresh,
                defs,
            }
        },
    );
    let Found {
        report,
        got,
        dl,
        dead,
        fresh,
        defs,
    } = found;
    check_definitions(ctx, base, rep, h, &defs);
    h.id(ctx, 0, fresh[0]);
    h.id(ctx, 1, fresh[1]);
    let set: HashSet<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        set.len(),
        got.len(),
        "{ctx}: duplicates recovered; {report:?}"
    );
    assert_eq!(
        report.messages_recovered,
        (got.len() + dl.len() + dead.len()) as u64,
        "{ctx}: report disagrees with what was delivered; {report:?}"
    );
    for (n, c) in &got {
        if keep {
            h.delivered(ctx, *n, *c, "after the reopen");
        }
    }
    // Sent (or carried) and not taken by the consumer: must be there.
    let missing: Vec<u64> = h
        .carry
        .iter()
        .chain(rep.sent.keys())
        .filter(|n| !rep.received.contains(n) && !set.contains(n))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{ctx}: {} reported-sent, not-received messages lost (e.g. {:?}); {report:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Acked (Removed written before `A` was printed): must not come back.
    let back: Vec<u64> = set.intersection(&rep.acked).copied().collect();
    assert!(
        back.is_empty(),
        "{ctx}: {} acked messages came back (e.g. {:?}); {report:?}",
        back.len(),
        &back[..back.len().min(10)]
    );
    // Nothing that was never sent (or was drained by an earlier round).
    let alien: Vec<u64> = set
        .iter()
        .filter(|n| !h.carry.contains(n) && !rep.sent.contains_key(n) && !inflight.contains(n))
        .copied()
        .collect();
    assert!(
        alien.is_empty(),
        "{ctx}: {} recovered messages were never sent or were already drained \
         (e.g. {:?}); {report:?}",
        alien.len(),
        &alien[..alien.len().min(10)]
    );
    // The batch in flight: whole or not at all (its members the consumer did
    // not take).
    let rest: Vec<u64> = batch_inflight
        .iter()
        .filter(|n| !rep.received.contains(n))
        .copied()
        .collect();
    let there = rest.iter().filter(|n| set.contains(n)).count();
    let committed = there > 0 || batch_inflight.iter().any(|n| rep.received.contains(n));
    assert!(
        !committed || there == rest.len(),
        "{ctx}: the batch in flight {batch_inflight:?} came back in part \
         ({there} of {} not received); {report:?}",
        rest.len()
    );
    h.batches_in_flight += 1;
    h.batches_cut_whole += usize::from(committed && batch_inflight.len() > 1);

    // Dead-letter moves: never in both queues, never delivered more than
    // max_deliveries times, an acked dead letter never back, nothing lost.
    let dl_set: HashSet<u64> = dl.iter().map(|g| g.0).collect();
    let dead_set: HashSet<u64> = dead.iter().map(|g| g.0).collect();
    assert_eq!(dl_set.len(), dl.len(), "{ctx}: duplicates in dl");
    assert_eq!(dead_set.len(), dead.len(), "{ctx}: duplicates in dl.dead");
    let both: Vec<_> = dl_set.intersection(&dead_set).collect();
    assert!(
        both.is_empty(),
        "{ctx}: messages both in dl and in its dead-letter queue: {both:?}; {report:?}"
    );
    h.both_checked += dl_set.len() + dead_set.len();
    for (n, c) in &dl {
        assert!(
            *c <= DL_MAX,
            "{ctx}: {n} delivered {c} times from dl; {report:?}"
        );
        h.delivered(ctx, *n, *c, "from dl after the reopen");
    }
    for (n, _, why) in &dead {
        assert!(
            !rep.dead_acked.contains(n),
            "{ctx}: dead letter {n} was acked and came back; {report:?}"
        );
        h.dead_at_open += usize::from(why.as_deref().is_some_and(|w| w.contains("restart")));
    }
    let dl_back: Vec<_> = dl_set.intersection(&rep.dead_acked).collect();
    assert!(
        dl_back.is_empty(),
        "{ctx}: original of an acked dead letter came back in dl: {dl_back:?}; {report:?}"
    );
    let dl_lost: Vec<_> = rep
        .dl_sent
        .keys()
        .filter(|n| !rep.dead_received.contains(n) && !dl_set.contains(n) && !dead_set.contains(n))
        .collect();
    assert!(
        dl_lost.is_empty(),
        "{ctx}: messages sent to dl lost: {dl_lost:?}; {report:?}"
    );
    let dl_alien: Vec<_> = dl_set
        .union(&dead_set)
        .filter(|n| (*n - base) / STRIDE != 2)
        .collect();
    assert!(
        dl_alien.is_empty(),
        "{ctx}: dl messages from another round: {dl_alien:?}"
    );
    h.dead_lettered += rep.dead_received.len();
    h.carry = if keep { set } else { HashSet::new() };
    report.damage
}

/// Where the definer's numbers start in a round (apart from the producers').
const DEFS_AT: u64 = 3 * STRIDE;

/// The quotas of namespace `d{n}`.
fn def_quotas(n: u64) -> Quotas {
    let q = Quotas::default().max_messages(n % 1000 + 1);
    if n % 2 == 0 {
        q.max_queues(n % 7 + 2)
    } else {
        q.max_bytes(n % 100_000 + 1)
    }
}

/// The filter of namespace `d{n}`'s subscription: each of the four kinds.
fn def_filter(n: u64) -> Filter {
    match n % 4 {
        0 => Filter::All,
        1 => Filter::name(format!("n{n}")),
        2 => Filter::header("h", n.to_le_bytes().to_vec()),
        _ => Filter::execution_id(format!("e{n}")),
    }
}

/// The child's definer: namespaces, subscriptions, unsubscribes, each
/// reported once it returned.
fn define_workload(b: &Broker, base: u64, deadline: Instant) {
    let mut i = 0;
    while Instant::now() < deadline {
        let n = base + DEFS_AT + i;
        let ns = b
            .create_namespace(&format!("d{n}"), def_quotas(n))
            .expect("child: create_namespace");
        emit(format_args!("D {n}"));
        let t = ns.topic("t").expect("child: topic");
        t.subscribe("s", def_filter(n)).expect("child: subscribe");
        emit(format_args!("U {n}"));
        if n % 3 == 0 {
            t.unsubscribe("s").expect("child: unsubscribe");
            emit(format_args!("V {n}"));
        }
        i += 1;
        thread::sleep(Duration::from_millis(1));
    }
}

/// The namespaces `d{n}` a reopened broker has, with their quotas and
/// subscriptions (those of this round, `n >= deliver_from`, checked to deliver
/// a matching message; earlier rounds' were checked in their round).
fn found_definitions(b: &Broker, deliver_from: u64) -> Vec<(u64, Quotas, Option<Filter>)> {
    let mut out = Vec::new();
    for name in b.namespaces() {
        let Some(n) = name.strip_prefix('d').and_then(|n| n.parse().ok()) else {
            continue;
        };
        let ns = b.namespace(&name).unwrap();
        let t = ns.topic("t").unwrap();
        let filter = t.filter("s");
        if let Some(f) = filter.as_ref().filter(|_| n >= deliver_from) {
            let m = match f {
                Filter::Name(x) => Message::new("m").name(x.clone()),
                Filter::Header { key, value } => Message::new("m").header(key, value.clone()),
                _ => Message::new("m"),
            };
            assert_eq!(t.publish(m).unwrap(), 1, "{name}: a subscription delivers");
            ns.get_queue("s").unwrap().purge().unwrap();
        }
        out.push((n, ns.quotas().clone(), filter));
    }
    out
}

/// Every definition reported (this round or an earlier one) is there exactly;
/// one in flight at the kill is there whole or not at all.
fn check_definitions(
    ctx: &str,
    base: u64,
    rep: &Reported,
    h: &mut History,
    found: &[(u64, Quotas, Option<Filter>)],
) {
    let found: std::collections::BTreeMap<u64, (&Quotas, &Option<Filter>)> =
        found.iter().map(|(n, q, f)| (*n, (q, f))).collect();
    // This round's, reported or in flight.
    let lo = base + DEFS_AT;
    let reported = rep
        .defined
        .iter()
        .filter(|n| (lo..lo + STRIDE).contains(*n));
    let next = lo + reported.count() as u64;
    for n in lo..=next {
        let sub = if rep.unsubscribed.contains(&n) {
            Some(false)
        } else if rep.subscribed.contains(&n) && n % 3 != 0 {
            Some(true)
        } else {
            None // in flight at the kill: either
        };
        match found.get(&n) {
            None => {
                assert!(
                    !rep.defined.contains(&n),
                    "{ctx}: namespace d{n} was created and is gone"
                );
                h.ns_in_flight.1 += 1;
            }
            Some((q, f)) => {
                assert_eq!(**q, def_quotas(n), "{ctx}: namespace d{n}'s quotas");
                if let Some(f) = f {
                    assert_eq!(*f, def_filter(n), "{ctx}: d{n}'s filter");
                }
                if let Some(want) = sub {
                    assert_eq!(f.is_some(), want, "{ctx}: d{n}'s subscription");
                }
                if n == next {
                    h.ns_in_flight.0 += 1;
                } else if sub.is_none() {
                    if f.is_some() {
                        h.sub_in_flight.0 += 1;
                    } else {
                        h.sub_in_flight.1 += 1;
                    }
                }
                h.defs.insert(n, f.is_some());
            }
        }
    }
    // Nothing else of this round, and every earlier round's still there.
    for (n, _) in found.range(lo..lo + STRIDE) {
        assert!(*n <= next, "{ctx}: namespace d{n} was never created");
    }
    for (n, sub) in h.defs.range(..lo) {
        let (q, f) = found
            .get(n)
            .unwrap_or_else(|| panic!("{ctx}: namespace d{n} of an earlier round is gone"));
        assert_eq!(**q, def_quotas(*n), "{ctx}: d{n}'s quotas changed");
        assert_eq!(f.is_some(), *sub, "{ctx}: d{n}'s subscription changed");
        if let Some(f) = f {
            assert_eq!(*f, def_filter(*n), "{ctx}: d{n}'s filter changed");
        }
    }
    h.defs_checked.0 += found.len();
    h.defs_checked.1 += found.values().filter(|(_, f)| f.is_some()).count();
}

#[test]
fn sigkill_loses_nothing_reported_and_resurrects_no_ack() {
    let rounds: usize = std::env::var("LQ_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("LQ_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash test: {rounds} rounds, LQ_CRASH_SEED={seed}");
    let started = Instant::now();
    let mut rng = SmallRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::default();
    let (mut sent, mut acked, mut torn, mut before_open, mut in_checkpoint, mut always) =
        (0, 0, 0, 0, 0, 0);
    for round in 0..rounds {
        let ctx = format!("seed {seed} round {round}");
        let base = (round as u64 + 1) << 40;
        let delay = Duration::from_millis(rng.gen_range(20..=200));
        // Every third child syncs every send (SyncMode::Always).
        let sync_always = round % 3 == 1;
        always += usize::from(sync_always);
        let lines = run_child_and_kill(dir.path(), base, delay, sync_always);
        let rep = parse_child(&lines);
        sent += rep.sent.len() + rep.dl_sent.len();
        acked += rep.acked.len();
        before_open += usize::from(!rep.opened);
        if rep.opened && inside_a_checkpoint(dir.path()) {
            in_checkpoint += 1;
        }
        // Every other round keeps the messages for the next child.
        let keep = round % 2 == 0;
        let damage = verify_after_kill(dir.path(), &ctx, base, &rep, &mut h, keep);
        if !damage.is_empty() {
            torn += 1;
            println!("crash test: {ctx}: reopen found {damage:?}");
        }
    }
    println!(
        "crash test: {rounds} kills ({always} with SyncMode::Always), 0 failures, in {:.0?}: \
         {sent} sends and {acked} acks reported, {before_open} kills before the child's broker \
         opened, {in_checkpoint} kills inside a running checkpoint, {torn} reopens with a torn \
         tail; {} batches in flight checked ({} of several messages recovered whole, the rest \
         not at all), {} dead letters received ({} dead-lettered at a reopen), {} messages \
         checked in dl and dl.dead, {} ids checked unique; {} namespaces and {} \
         subscriptions checked after kills; in flight at a kill: {} namespace creations ({} \
         found whole, {} not there), {} subscribes or unsubscribes ({} found subscribed, {} \
         not)",
        started.elapsed(),
        h.batches_in_flight,
        h.batches_cut_whole,
        h.dead_lettered,
        h.dead_at_open,
        h.both_checked,
        h.ids[0].len() + h.ids[1].len(),
        h.defs_checked.0,
        h.defs_checked.1,
        h.ns_in_flight.0 + h.ns_in_flight.1,
        h.ns_in_flight.0,
        h.ns_in_flight.1,
        h.sub_in_flight.0 + h.sub_in_flight.1,
        h.sub_in_flight.0,
        h.sub_in_flight.1,
    );
}

// ---------------------------------------------------------------------------
// Corruption tests
// ---------------------------------------------------------------------------

/// (a) Random bytes flipped in the last segment (after its header).
#[test]
fn flipped_bytes_in_the_last_segment() {
    for seed in 0..8u64 {
        let mut rng = SmallRng::seed_from_u64(0xF11B ^ seed);
        let dir = tempfile::tempdir().unwrap();
        let l = fill(dir.path(), N);
        let si = l.len() - 1;
        let last = &l[si];
        let mut buf = fs::read(&last.path).unwrap();
        // The first record a flip must cut at (a checksummed byte changed), and
        // the first one it may cut at (its reserved header bytes or its padding,
        // which the format may or may not check).
        let (mut must, mut may) = (usize::MAX, usize::MAX);
        // A flip just past the last record makes a non-zero "next header".
        let mut tail_hit = false;
        let mut flips = Vec::new();
        for _ in 0..rng.gen_range(1..=3) {
            let p = rng.gen_range(SEGMENT_HEADER..(last.end + 64).min(last.file_len));
            buf[p] ^= rng.gen_range(1..=255u8);
            flips.push(p);
            if let Some(i) = last.recs.iter().position(|r| r.covers(p)) {
                must = must.min(i);
            } else if let Some(i) = last.recs.iter().rposition(|r| r.start <= p) {
                if p < last.end {
                    may = may.min(i);
                }
            }
            tail_hit |= (last.end..last.end + RECORD_HEADER).contains(&p);
        }
        fs::write(&last.path, &buf).unwrap();
        let ctx = format!(
            "seed {seed}: flips at {flips:?} (records end at {})",
            last.end
        );
        let (report, got) = reopen_and_collect(dir.path(), &ctx);
        let hi = if must == usize::MAX {
            N
        } else {
            count_before(&l, si, must)
        };
        let lo = if may < must {
            count_before(&l, si, may)
        } else {
            hi
        };
        if must != usize::MAX || tail_hit {
            assert!(damaged(&report), "{ctx}: damage not reported: {report:?}");
        }
        check_prefix_in(dir.path(), &ctx, &report, &got, lo, hi);
    }
}

/// (b) The last segment truncated at random offsets.
#[test]
fn truncated_last_segment() {
    for seed in 0..8u64 {
        let mut rng = SmallRng::seed_from_u64(0x7A11 ^ seed);
        let dir = tempfile::tempdir().unwrap();
        let l = fill(dir.path(), N);
        let si = l.len() - 1;
        let last = &l[si];
        // Mostly inside the records; one seed in eight keeps them all.
        let at = if seed == 7 {
            last.end + rng.gen_range(0..64)
        } else {
            rng.gen_range(SEGMENT_HEADER..last.end)
        };
        fs::OpenOptions::new()
            .write(true)
            .open(&last.path)
            .unwrap()
            .set_len(at as u64)
            .unwrap();
        // Records whose checksummed bytes all precede the cut survive; a record
        // whose padding is cut may be taken for damaged.
        let i = last
            .recs
            .iter()
            .position(|r| r.payload_end() > at)
            .unwrap_or(last.recs.len());
        let hi = count_before(&l, si, i);
        let in_padding = i > 0 && last.recs.get(i).map_or(last.end, |r| r.start) > at;
        let lo = if in_padding {
            count_before(&l, si, i - 1)
        } else {
            hi
        };
        let ctx = format!("seed {seed}: last segment cut at byte {at}");
        let (report, got) = reopen_and_collect(dir.path(), &ctx);
        if let Some(r) = last.recs.get(i) {
            // Cut inside a record's payload: must be reported. (Cut inside its
            // header: see the ignored test `truncation_inside_a_record_header_...`.)
            if at >= r.start + RECORD_HEADER {
                assert!(damaged(&report), "{ctx}: damage not reported: {report:?}");
            }
        }
        check_prefix_in(dir.path(), &ctx, &report, &got, lo, hi);
    }
}

/// Picks a 4 KiB page (page-aligned in the file) in the middle of segment `s`
/// whose first byte falls inside a record's checksummed bytes (`straddle`) or
/// exactly on a record's first byte (`!straddle`). Returns the page offset and
/// the index of the first record it damages.
fn pick_page(s: &SegLayout, rng: &mut SmallRng, straddle: bool) -> (usize, usize) {
    let pages: Vec<usize> = (1..s.end / 4096).map(|k| k * 4096).collect();
    assert!(!pages.is_empty(), "segment too short for a middle page");
    for _ in 0..10_000 {
        let p = pages[rng.gen_range(0..pages.len())];
        if p + 4096 > s.end {
            continue;
        }
        if straddle {
            // The page must change the record: it starts before the body's
            // length field (a small body's high bytes are zeros already).
            if let Some(i) = s
                .recs
                .iter()
                .position(|r| r.start < p && p + 12 <= r.payload_end())
            {
                return (p, i);
            }
        } else if let Some(i) = s.recs.iter().position(|r| r.start == p) {
            return (p, i);
        }
    }
    // Make one: shift the page to a record start (still 4 KiB zeroed).
    let r = s
        .recs
        .iter()
        .position(|r| r.start >= 4096 && r.start + 4096 < s.end)
        .unwrap();
    if straddle {
        (s.recs[r].start + 8, r)
    } else {
        (s.recs[r].start, r)
    }
}

fn zero(path: &Path, at: usize, n: usize) {
    let mut buf = fs::read(path).unwrap();
    buf[at..at + n].fill(0);
    fs::write(path, &buf).unwrap();
}

/// (c) A whole 4 KiB page zeroed in the middle of a segment (any segment,
/// middle ones included), starting inside a record.
#[test]
fn zeroed_page_in_a_segment() {
    for seed in 0..8u64 {
        let mut rng = SmallRng::seed_from_u64(0x2E80 ^ seed);
        let dir = tempfile::tempdir().unwrap();
        let l = fill(dir.path(), N);
        let si = rng.gen_range(0..l.len());
        let (p, i) = pick_page(&l[si], &mut rng, true);
        zero(&l[si].path, p, 4096);
        let ctx = format!("seed {seed}: segment {si} of {}, page at {p}", l.len());
        let (report, got) = reopen_and_collect(dir.path(), &ctx);
        assert!(damaged(&report), "{ctx}: damage not reported: {report:?}");
        check_prefix(dir.path(), &ctx, &report, &got, count_before(&l, si, i));
    }
}

/// (d) A middle segment deleted: the report names the missing segment;
/// everything before it comes back, nothing after it.
#[test]
fn deleted_middle_segment() {
    for seed in 0..6u64 {
        let mut rng = SmallRng::seed_from_u64(0xDE1 ^ seed);
        let dir = tempfile::tempdir().unwrap();
        let l = fill(dir.path(), N);
        let si = rng.gen_range(1..l.len() - 1);
        fs::remove_file(&l[si].path).unwrap();
        let ctx = format!("seed {seed}: segment {si} of {} deleted", l.len());
        let (report, got) = reopen_and_collect(dir.path(), &ctx);
        assert!(
            report.damage.iter().any(|d| d.contains("missing")),
            "{ctx}: missing segment not reported: {report:?}"
        );
        assert!(report.bytes_cut > 0, "{ctx}: {report:?}");
        assert!(report.segments_damaged >= 1, "{ctx}: {report:?}");
        check_prefix(dir.path(), &ctx, &report, &got, count_before(&l, si, 0));
    }
}

/// (e) Garbage: appended to the last segment, written over its zeros right after
/// the last record, added as the next segment, as a segment far beyond, and files
/// that only look like segments. Never panics; nothing is lost.
#[test]
fn garbage_never_panics_and_loses_nothing() {
    for seed in 0..4u64 {
        for case in 0..5 {
            let mut rng = SmallRng::seed_from_u64(0x6A4B ^ (seed << 8) ^ case);
            let dir = tempfile::tempdir().unwrap();
            let l = fill(dir.path(), N);
            let last = l.last().unwrap();
            let n = rng.gen_range(0..10_000usize);
            let garbage: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            let seq = |p: &Path| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                u64::from_str_radix(&name[4..20], 16).unwrap()
            };
            let expect_damage = match case {
                0 => {
                    // Appended past the end of the (preallocated) file.
                    let mut f = fs::OpenOptions::new()
                        .append(true)
                        .open(&last.path)
                        .unwrap();
                    f.write_all(&garbage).unwrap();
                    false
                }
                1 => {
                    // Over the zeros right after the last record.
                    let mut buf = fs::read(&last.path).unwrap();
                    let k = n.clamp(1, buf.len() - last.end);
                    for b in &mut buf[last.end..last.end + k] {
                        *b = rng.gen();
                    }
                    buf[last.end] |= 1; // not a zero header
                    fs::write(&last.path, &buf).unwrap();
                    true
                }
                2 => {
                    // A garbage file named like the next segment.
                    let next = seq(&last.path) + 1;
                    fs::write(dir.path().join(format!("seg-{next:016x}.lqj")), &garbage).unwrap();
                    true
                }
                3 => {
                    // A garbage segment far beyond the last (a gap before it).
                    let far = seq(&last.path) + rng.gen_range(2..1000);
                    fs::write(dir.path().join(format!("seg-{far:016x}.lqj")), &garbage).unwrap();
                    true
                }
                _ => {
                    // Names that are not segments: ignored.
                    for name in ["seg-xyz.lqj", "seg-0000000000000001.lqj.tmp", "segment.lqj"] {
                        fs::write(dir.path().join(name), &garbage).unwrap();
                    }
                    fs::create_dir(dir.path().join("seg-zz.lqj")).unwrap();
                    false
                }
            };
            let ctx = format!("seed {seed} case {case}: {n} garbage bytes");
            let (report, got) = reopen_and_collect(dir.path(), &ctx);
            if expect_damage {
                assert!(damaged(&report), "{ctx}: damage not reported: {report:?}");
            } else {
                assert!(report.damage.is_empty(), "{ctx}: {report:?}");
            }
            check_prefix(dir.path(), &ctx, &report, &got, N);
        }
    }
}

/// (f) One writer per directory: a second open is `Error::Locked` while the first
/// broker lives, and works once it and its queue handles are gone.
#[test]
fn second_open_is_locked_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(opts(dir.path())).unwrap();
    let q = b.namespace(NS).unwrap().queue(QUEUE).unwrap();
    q.send(Message::new(7u64.to_le_bytes().to_vec()).persistent(true))
        .unwrap();
    for _ in 0..3 {
        match Broker::open(opts(dir.path())) {
            Err(Error::Locked(d)) => assert!(d.contains(&*dir.path().to_string_lossy()), "{d}"),
            other => panic!("second open: want Error::Locked, got {other:?}"),
        }
    }
    // From another thread too (flock is per open file, not per thread).
    let d = dir.path().to_path_buf();
    let r = thread::spawn(move || Broker::open(opts(&d)).map(|_| ()))
        .join()
        .unwrap();
    assert!(matches!(r, Err(Error::Locked(_))), "{r:?}");
    // The refused opens changed nothing.
    q.send(Message::new(8u64.to_le_bytes().to_vec()).persistent(true))
        .unwrap();
    drop(q);
    drop(b);
    let (report, got) = reopen_and_collect(dir.path(), "open after drop");
    assert!(report.damage.is_empty(), "{report:?}");
    assert_eq!(got, vec![7, 8]);
}

// ---------------------------------------------------------------------------
// Engine bugs found by these tests (ignored so the suite stays green)
// ---------------------------------------------------------------------------

/// Recovery treats an all-zero record header as the clean end of a segment
/// without looking further, and then goes on replaying the next segments. A
/// zeroed page that starts exactly at a record boundary (or in a record's
/// padding) in a middle segment therefore loses the rest of that segment
/// silently — no damage in the report — while later segments are still
/// replayed: the recovered messages are no longer a prefix of the journal.
#[test]
fn zeroed_page_at_a_record_boundary_in_a_middle_segment() {
    let dir = tempfile::tempdir().unwrap();
    let l = fill(dir.path(), N);
    let si = 1;
    let mut rng = SmallRng::seed_from_u64(1);
    let (p, i) = pick_page(&l[si], &mut rng, false);
    zero(&l[si].path, p, 4096);
    let ctx = format!("segment {si} of {}, page at record boundary {p}", l.len());
    let (report, got) = reopen_and_collect(dir.path(), &ctx);
    let want = count_before(&l, si, i);
    let beyond = got.iter().filter(|b| **b >= want).count();
    assert!(
        damaged(&report) && beyond == 0,
        "{ctx}: the records from byte {p} to the end of segment {si} are lost \
         ({} of {N} messages recovered), {beyond} messages from after them came back \
         and the report shows no damage: {report:?}",
        got.len()
    );
    check_prefix(dir.path(), &ctx, &report, &got, want);
}

/// The same root cause at the end of the journal: a segment cut inside a record
/// header (fewer than 12 bytes of it left) reads as a clean end, so the lost
/// record is not reported (`bytes_cut` 0, no `damage`).
#[test]
fn truncation_inside_a_record_header_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let l = fill(dir.path(), N);
    let si = l.len() - 1;
    let last = &l[si];
    let i = last.recs.len() / 2;
    let at = last.recs[i].start + 6;
    fs::OpenOptions::new()
        .write(true)
        .open(&last.path)
        .unwrap()
        .set_len(at as u64)
        .unwrap();
    let ctx = format!("last segment cut at byte {at}, inside record {i}'s header");
    let (report, got) = reopen_and_collect(dir.path(), &ctx);
    assert!(damaged(&report), "{ctx}: damage not reported: {report:?}");
    check_prefix(dir.path(), &ctx, &report, &got, count_before(&l, si, i));
}

/// Every healthy directory starts with a checkpoint segment (each open writes
/// one first and removes what came before it). When that first segment is
/// missing, recovery replays the rest as if nothing were wrong: the messages it
/// held (and the queue definition) are lost and the report is clean.
#[test]
fn deleted_first_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let l = fill(dir.path(), N);
    fs::remove_file(&l[0].path).unwrap();
    let ctx = "first segment deleted";
    let (report, got) = reopen_and_collect(dir.path(), ctx);
    assert!(
        damaged(&report),
        "{ctx}: damage not reported; {} of {N} messages recovered: {report:?}",
        got.len()
    );
}

/// A stray file named like a segment with a huge number: new segment numbers
/// continue after it and wrap past u64::MAX. In a debug build the roll panics
/// (`attempt to add with overflow`, in `Writer::roll`, from a send); in a release
/// build the numbers wrap to 0, the wrapped segments sort before the checkpoint,
/// and the next open fails for good (`cannot create seg-0000000000000000.lqj:
/// File exists`), so the directory can no longer be opened.
#[test]
fn stray_segment_with_a_huge_number() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("seg-fffffffffffffffe.lqj"), b"garbage").unwrap();
    let d = dir.path().to_path_buf();
    within("open and send", Duration::from_secs(30), move || {
        let b = Broker::open(opts(&d)).expect("open");
        let q = b.namespace(NS).unwrap().queue(QUEUE).unwrap();
        for i in 0..N {
            q.send(Message::new(i.to_le_bytes().to_vec()).persistent(true))
                .expect("send");
        }
    });
    let (report, got) = reopen_and_collect(dir.path(), "reopen after the wrap");
    check_prefix(dir.path(), "reopen after the wrap", &report, &got, N);
}

/// Segment names are parsed leniently (`from_str_radix` of whatever is between
/// `seg-` and `.lqj`: short, long, `+`-prefixed), so a stray `seg-2.lqj` is taken
/// for segment 2 beside the real `seg-0000000000000002.lqj`: recovery reports a
/// nonsensical gap ("segments 3 to 1 are missing") or a bad header, and cuts
/// everything from there (of 4000 messages, 816 or 1634 come back; the real
/// segments go to `damaged/`).
#[test]
fn non_canonical_segment_names_are_not_segments() {
    for name in ["seg-2.lqj", "seg-+2.lqj", "seg-00000000000000002.lqj"] {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), N);
        fs::write(dir.path().join(name), b"garbage").unwrap();
        let (report, got) = reopen_and_collect(dir.path(), name);
        check_prefix(dir.path(), name, &report, &got, N);
    }
}
