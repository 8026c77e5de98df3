//! Memory per queued message: `N` messages (1,000,000; `LQ_BENCH_QUICK=1`:
//! 100,000) with a 64-byte body, each a freshly allocated `Vec<u8>` of exactly
//! 64 bytes, sent and left queued (nothing receives). Each peer runs in a
//! fresh child process (this program re-executed), so no peer inherits
//! another's freed-but-kept memory. Reported per queued message:
//! - `heap`: bytes live in the global allocator (a counting wrapper around
//!   the system allocator) after the sends minus before;
//! - `rss`: the process's resident set (`/proc/self/statm`) after minus
//!   before: heap plus allocator overhead plus touched mapped pages (for
//!   `libqueue_persistent`, the journal's memory-mapped segment pages).
//!
//! Peers: libqueue in memory (unbounded queue), libqueue with a data directory
//! and persistent messages (`SyncMode::None`), crossbeam-channel unbounded,
//! kanal unbounded, flume unbounded, and `VecDeque<Vec<u8>>` (a reference:
//! what holding the bodies costs at least).
//!
//! Writes `$LQ_BENCH_OUT/memory.json`. Under `cargo test --all-targets`: 1,000.

#[path = "common/out.rs"]
mod out;

use libqueue::{Broker, BrokerOptions, Message, SyncMode};
use out::Record;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a
// counter of live bytes is kept beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            LIVE.fetch_add(l.size() as isize, Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            LIVE.fetch_add(l.size() as isize, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size() as isize, Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            LIVE.fetch_add(new as isize - l.size() as isize, Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BODY: usize = 64;
const PEERS: [&str; 6] = [
    "libqueue",
    "libqueue_persistent",
    "crossbeam_unbounded",
    "kanal_unbounded",
    "flume_unbounded",
    "vecdeque_reference",
];

fn body(i: usize) -> Vec<u8> {
    let mut v = vec![0x5a; BODY];
    v[..8].copy_from_slice(&(i as u64).to_le_bytes());
    v
}

fn rss_bytes() -> isize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: isize = statm
        .split_whitespace()
        .nth(1)
        .expect("rss")
        .parse()
        .expect("number");
    // SAFETY: sysconf takes an integer.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as isize
}

/// Sets a peer up (outside the measurement: a broker, a mapped segment), then
/// sends `n` messages; returns the growth of (live heap, RSS) in bytes.
fn fill<H>(n: usize, setup: impl FnOnce() -> H, send: impl Fn(&H, Vec<u8>)) -> (isize, isize) {
    let holder = setup();
    let (heap0, rss0) = (LIVE.load(Relaxed), rss_bytes());
    for i in 0..n {
        send(&holder, body(i));
    }
    let r = (LIVE.load(Relaxed) - heap0, rss_bytes() - rss0);
    black_box(&holder);
    r
}

/// In the child: fills one peer with `n` messages, prints "heap rss" bytes per message.
fn child(peer: &str, n: usize) {
    // Kept alive to the end of the child (the closures below only borrow it).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let lq = |persistent: bool| {
        let path = path.clone();
        move || {
            let b = if persistent {
                let opts = BrokerOptions::new()
                    .data_dir(&path)
                    .sync_mode(SyncMode::None);
                Broker::open(opts).expect("open")
            } else {
                Broker::new()
            };
            let q = b.queue("mem").expect("queue");
            (b, q, persistent)
        }
    };
    let lq_send = |h: &(Broker, libqueue::Queue, bool), v: Vec<u8>| {
        h.1.send(Message::new(v).persistent(h.2)).expect("send");
    };
    let (heap, rss) = match peer {
        "libqueue" => fill(n, lq(false), lq_send),
        "libqueue_persistent" => fill(n, lq(true), lq_send),
        "crossbeam_unbounded" => fill(n, crossbeam_channel::unbounded, |h, v| {
            h.0.send(v).expect("send")
        }),
        "kanal_unbounded" => fill(n, kanal::unbounded, |h, v| h.0.send(v).expect("send")),
        "flume_unbounded" => fill(n, flume::unbounded, |h, v| h.0.send(v).expect("send")),
        "vecdeque_reference" => fill(
            n,
            || std::cell::RefCell::new(VecDeque::new()),
            |h, v| h.borrow_mut().push_back(v),
        ),
        _ => unreachable!("peer {peer}"),
    };
    println!("{} {}", heap as f64 / n as f64, rss as f64 / n as f64);
    drop(dir);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], args[i + 2].parse().expect("n"));
        return;
    }
    let n = out::size(1_000_000, 100_000, 1_000);
    let exe = std::env::current_exe().expect("current_exe");
    let mut records = Vec::new();
    println!("memory per queued message, {n} messages of {BODY} bytes (bytes/message)");
    for peer in PEERS {
        let mut cmd = Command::new(&exe);
        if out::bench_mode() {
            cmd.arg("--bench");
        }
        let o = cmd
            .args(["--child", peer, &n.to_string()])
            .output()
            .expect("run child");
        assert!(
            o.status.success(),
            "{peer}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let line = String::from_utf8(o.stdout).expect("utf-8");
        let mut it = line
            .split_whitespace()
            .map(|x| x.parse::<f64>().expect("number"));
        let (heap, rss) = (it.next().expect("heap"), it.next().expect("rss"));
        println!("  {peer:<22} heap {heap:8.1}   rss {rss:8.1}");
        records.push(Record::new("memory_per_message", peer, "heap", heap).unit("B/msg"));
        records.push(Record::new("memory_per_message", peer, "rss", rss).unit("B/msg"));
    }
    out::write(
        "memory",
        &[
            ("messages", n.to_string()),
            ("payload_bytes", BODY.to_string()),
            ("capacities", "all unbounded".into()),
        ],
        &records,
    );
}
