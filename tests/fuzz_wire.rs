//! A short, seeded fuzz run of the wire format's decoders on stable Rust (the
//! cargo-fuzz target is `tests/fuzz/` target `decode_frame`, `make
//! fuzz-wire`). Valid request frames of every op, built with `wire::Enc` as a
//! client builds them (`wire::fuzz::sample_requests`), are mutated (bit flips,
//! overwrites, truncations, splices, random lengths and counts, inserted and
//! deleted bytes), and random garbage is made up; then
//!
//! - the host's request decoding (`wire::fuzz::decode_request`, its mirror),
//!   the framing of a byte stream, the `HELLO` and every value decoder never
//!   panic, and never allocate more than a small multiple of the input
//!   (counted by this binary's allocator, per thread);
//! - a live host is sent samples and mutations (each on a connection of its
//!   own, framed with a consistent length): it drops exactly the connections
//!   whose frame the mirror refuses, answers the others, never panics or hangs.
//!
//! Reproduce a case with `FUZZ_SEED=<seed> cargo test --release --test
//! fuzz_wire` (every assertion names the seed and the case).

use libqueue::wire::{fuzz, op, HEADER};
use libqueue::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Counts the bytes each thread has allocated and not freed, and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
    });
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counting touches only const-initialised thread-locals (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            track(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        track(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            track(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result and the peak of bytes it had allocated at once.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    let r = f();
    (r, PEAK.with(|p| p.get()).max(0) as usize)
}

/// What decoding may allocate for `n` bytes of input: decoded values are
/// bigger than their encoding (a 14-byte message on the wire is a `Message`
/// of about 150 bytes, a header a map node), by a bounded factor.
fn alloc_bound(n: usize) -> usize {
    32 * n + 1024
}

fn base_seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_3143)
}

fn case_rng(seed: u64, case: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn boundary_u32(rng: &mut SmallRng, near: usize) -> u32 {
    match rng.gen_range(0..8) {
        0 => 0,
        1 => u32::MAX,
        2 => 0x8000_0000,
        3 => near as u32,
        4 => (near as u32).wrapping_add(rng.gen_range(1..16)),
        5 => (near as u32).wrapping_sub(rng.gen_range(1..16)),
        6 => rng.gen_range(0..64),
        _ => rng.gen(),
    }
}

/// 1 to 4 mutations of a frame body; returns what was done.
fn mutate(rng: &mut SmallRng, body: &[u8], pool: &[Vec<u8>]) -> (Vec<u8>, String) {
    let mut b = body.to_vec();
    let mut log = String::new();
    for _ in 0..rng.gen_range(1..=4) {
        if b.is_empty() {
            b.push(rng.gen());
        }
        let len = b.len();
        let pos = rng.gen_range(0..len);
        match rng.gen_range(0..10) {
            0 | 1 => {
                let bit = rng.gen_range(0..8);
                b[pos] ^= 1 << bit;
                log += &format!("flip {pos}.{bit}; ");
            }
            2 => {
                let n = rng.gen_range(1..=8).min(len - pos);
                for x in &mut b[pos..pos + n] {
                    *x = rng.gen();
                }
                log += &format!("overwrite {pos}+{n}; ");
            }
            3 => {
                let at = rng.gen_range(0..=len);
                b.truncate(at);
                log += &format!("truncate {at}; ");
            }
            4 => {
                let src = &pool[rng.gen_range(0..pool.len())];
                let from = rng.gen_range(0..src.len());
                let n = rng.gen_range(1..=64).min(src.len() - from).min(len - pos);
                b[pos..pos + n].copy_from_slice(&src[from..from + n]);
                log += &format!("splice {n} bytes at {pos} from {from}; ");
            }
            5 | 6 if pos + 4 <= len => {
                // A length or count (every string, list and map has one).
                let old = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap());
                let v = boundary_u32(rng, (old as usize).min(len - pos));
                b[pos..pos + 4].copy_from_slice(&v.to_le_bytes());
                log += &format!("length {v} at {pos}; ");
            }
            7 => {
                let n = rng.gen_range(1..=16);
                let ins: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                b.splice(pos..pos, ins);
                log += &format!("insert {n} at {pos}; ");
            }
            8 => {
                let n = rng.gen_range(1..=16).min(len - pos);
                b.drain(pos..pos + n);
                log += &format!("delete {pos}+{n}; ");
            }
            _ => {
                // A tag, bool, mode or op byte: the values just past the valid ones.
                b[pos] = [0u8, 1, 2, 3, 0xff, 0x80][rng.gen_range(0..6)];
                log += &format!("tag {pos}={}; ", b[pos]);
            }
        }
    }
    (b, log)
}

/// The sample bodies (after the length prefix).
fn bodies() -> Vec<Vec<u8>> {
    fuzz::sample_requests()
        .into_iter()
        .map(|(_, f)| f[4..].to_vec())
        .collect()
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn checked<T>(what: &str, input: &[u8], f: impl FnOnce() -> T) -> T {
    let (r, peak) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| peak_of(f)))
        .unwrap_or_else(|_| panic!("{what}: the decoder panicked"));
    assert!(
        peak <= alloc_bound(input.len()),
        "{what}: {peak} bytes allocated for {} bytes of input",
        input.len()
    );
    r
}

#[test]
fn samples_decode_whole() {
    let samples = fuzz::sample_requests();
    let mut ops: Vec<u8> = samples.iter().map(|(o, _)| *o).collect();
    ops.sort();
    ops.dedup();
    eprintln!("{} samples, ops {ops:?}", samples.len());
    let mut stream = fuzz::hello_frame();
    for (o, f) in &samples {
        let r = checked(&format!("op {o}"), f, || fuzz::decode_request(&f[4..]));
        assert_eq!(r, Ok(*o));
        stream.extend_from_slice(f);
    }
    assert_eq!(fuzz::decode_stream(&stream), samples.len() + 1);
    for v in fuzz::sample_values() {
        assert_eq!(fuzz::decode_values(&v[4 + HEADER - 1..]), 1);
    }
}

/// Mutated request frames: the mirror of the host's decoding, and the framing
/// of a stream of them after a `HELLO`, never panic nor over-allocate.
#[test]
fn mutated_requests_never_panic() {
    const CASES: u64 = 100_000;
    let seed = base_seed();
    let pool = bodies();
    let hello = fuzz::hello_frame();
    let (mut ok, mut refused) = (0u64, 0u64);
    let mut worst = 0f64;
    for case in 0..CASES {
        let mut rng = case_rng(seed, case);
        let i = rng.gen_range(0..pool.len());
        let (bad, log) = mutate(&mut rng, &pool[i], &pool);
        let what = format!("seed {seed} case {case}: sample {i}: {log}");
        let (r, peak) = std::panic::catch_unwind(|| peak_of(|| fuzz::decode_request(&bad)))
            .unwrap_or_else(|_| panic!("{what}: the decoder panicked"));
        assert!(
            peak <= alloc_bound(bad.len()),
            "{what}: {peak} bytes for {}",
            bad.len()
        );
        worst = worst.max(peak as f64 / bad.len().max(1) as f64);
        if r.is_ok() {
            ok += 1;
        } else {
            refused += 1;
        }
        if case % 10 == 0 {
            // In a stream: HELLO, a valid frame, the mutated one (its length
            // sometimes wrong), a valid frame.
            let mut s = hello.clone();
            s.extend_from_slice(&framed(&pool[(i + 1) % pool.len()]));
            let mut f = framed(&bad);
            if rng.gen_bool(0.3) {
                let v = boundary_u32(&mut rng, bad.len());
                f[..4].copy_from_slice(&v.to_le_bytes());
            }
            s.extend_from_slice(&f);
            s.extend_from_slice(&framed(&pool[i]));
            checked(&what, &s, || fuzz::decode_stream(&s));
            let mut input = vec![1u8];
            input.extend_from_slice(&s);
            checked(&what, &input, || fuzz::decode_input(&input));
        }
    }
    eprintln!(
        "{CASES} mutated frames: {ok} decode, {refused} refused; \
         worst allocation {worst:.1} bytes per input byte"
    );
    assert!(ok > CASES / 50 && refused > CASES / 2, "{ok} {refused}");
}

/// Random garbage through every entry point, and mutated answers through the
/// value decoders.
#[test]
fn garbage_and_mutated_values_never_panic() {
    let seed = base_seed() ^ 0x6A4B;
    let values: Vec<Vec<u8>> = fuzz::sample_values()
        .into_iter()
        .map(|v| v[4 + HEADER - 1..].to_vec())
        .collect();
    let mut decoded = 0;
    for case in 0..50_000u64 {
        let mut rng = case_rng(seed, case);
        let input: Vec<u8> = if case % 2 == 0 {
            let n = rng.gen_range(0..512);
            let mut g: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            if rng.gen_bool(0.5) && g.len() > 5 {
                // A small count/length up front, so reads get somewhere.
                g[1..5].copy_from_slice(&rng.gen_range(0u32..8).to_le_bytes());
            }
            g
        } else {
            let v = &values[rng.gen_range(0..values.len())];
            let mut chained = vec![3u8];
            for _ in 0..rng.gen_range(1..4) {
                chained.extend_from_slice(v);
            }
            mutate(&mut rng, &chained, &values).0
        };
        let what = format!("seed {seed} case {case}");
        decoded += checked(&what, &input, || fuzz::decode_input(&input));
        checked(&what, &input, || fuzz::decode_values(&input));
        checked(&what, &input, || fuzz::decode_request(&input).is_ok());
        checked(&what, &input, || fuzz::decode_hello(&input).is_ok());
    }
    assert!(decoded > 0);
}

// ---------------------------------------------------------------------------
// The host against its mirror.

fn hello(dir: &Path) -> UnixStream {
    let mut s = UnixStream::connect(dir.join("libqueue.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&fuzz::hello_frame()).unwrap();
    let body = read_frame(&mut s).expect("the HELLO answer");
    assert_eq!((body[8], body[9]), (op::REPLY, 0));
    s
}

/// The next frame's body, `None` when the host hung up.
fn read_frame(s: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("the host does not answer")
        }
        Err(_) => return None,
    }
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

const PROBE_ID: u64 = u64::MAX - 7;

/// Sends `body` framed on a connection of its own, then a `HOST_INFO`:
/// whether the host kept the connection (answered the `HOST_INFO`).
fn host_keeps(dir: &Path, body: &[u8]) -> bool {
    let mut s = hello(dir);
    let mut out = framed(body);
    out.extend_from_slice(&wire::Enc::new(PROBE_ID, op::HOST_INFO).finish().unwrap());
    if s.write_all(&out).is_err() {
        return false;
    }
    loop {
        match read_frame(&mut s) {
            None => return false,
            Some(b) if b[..8] == PROBE_ID.to_le_bytes() && b[8] == op::REPLY => return true,
            Some(_) => {}
        }
    }
}

use libqueue::wire;

/// The host drops exactly the connections whose request the mirror refuses,
/// for every sample and for mutations of them; and it never stops serving.
#[test]
fn host_and_mirror_agree() {
    const CASES: u64 = 3000;
    let seed = base_seed() ^ 0x4057;
    let dir = tempfile::tempdir().unwrap();
    let host = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    let ns = host.namespace("fz").unwrap();
    ns.queue("fq").unwrap();
    let pool = bodies();
    let t = Instant::now();
    let mut disagree = Vec::new();
    let (mut kept, mut dropped) = (0u64, 0u64);
    for (i, b) in pool.iter().enumerate() {
        if !host_keeps(dir.path(), b) {
            disagree.push(format!("sample {i} (op {}): dropped by the host", b[8]));
        }
    }
    for case in 0..CASES {
        let mut rng = case_rng(seed, case);
        let i = rng.gen_range(0..pool.len());
        let (mut bad, log) = mutate(&mut rng, &pool[i], &pool);
        if bad.len() > 8 {
            bad[..8].copy_from_slice(&(case + 1).to_le_bytes()); // never the probe's id
        }
        let mirror = fuzz::decode_request(&bad).is_ok();
        let keeps = host_keeps(dir.path(), &bad);
        if keeps {
            kept += 1;
        } else {
            dropped += 1;
        }
        if keeps != mirror {
            disagree.push(format!(
                "seed {seed} case {case}: sample {i}: {log}: host {}, mirror {}",
                if keeps { "kept" } else { "dropped" },
                if mirror { "accepts" } else { "refuses" }
            ));
        }
    }
    let until = Instant::now() + Duration::from_secs(5);
    while host.host_info().unwrap().dropped < dropped && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let info = host.host_info().unwrap();
    eprintln!(
        "{} samples and {CASES} mutations in {:?}: host kept {kept}, dropped {dropped} \
         (counted {}); {} disagreements",
        pool.len(),
        t.elapsed(),
        info.dropped,
        disagree.len()
    );
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
    assert_eq!(info.dropped, dropped);
    assert!(kept > 0 && dropped > 0);
    // Still serving, an attached broker included.
    let att = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    assert!(att.is_attached());
    att.namespace("fz")
        .unwrap()
        .queue("after")
        .unwrap()
        .send(Message::new("x"))
        .unwrap();
}

/// Writes the cargo-fuzz target's seed corpus into `$FUZZ_CORPUS` (`make
/// fuzz-wire` runs it first): each sample request in each of the target's
/// input kinds, a stream of them all, and every answer shape.
#[test]
#[ignore = "writes the cargo-fuzz seed corpus (make fuzz-wire)"]
fn write_seed_corpus() {
    let dir = std::env::var("FUZZ_CORPUS").expect("FUZZ_CORPUS: where to write the seeds");
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut stream = vec![1u8];
    stream.extend_from_slice(&fuzz::hello_frame());
    for (i, (_, f)) in fuzz::sample_requests().iter().enumerate() {
        let mut req = vec![0u8];
        req.extend_from_slice(&f[4..]);
        std::fs::write(dir.join(format!("request-{i}")), req).unwrap();
        stream.extend_from_slice(f);
    }
    std::fs::write(dir.join("stream"), stream).unwrap();
    let mut hello = vec![2u8];
    hello.extend_from_slice(&fuzz::hello_frame()[4..]);
    std::fs::write(dir.join("hello"), hello).unwrap();
    for (i, v) in fuzz::sample_values().iter().enumerate() {
        let mut input = vec![3u8];
        input.extend_from_slice(&v[4 + HEADER - 1..]);
        std::fs::write(dir.join(format!("value-{i}")), input).unwrap();
    }
}
