//! A short, seeded fuzz run of the journal's record decoder on stable Rust (the
//! cargo-fuzz target is `tests/fuzz/`, `make fuzz`). Valid segments written by a
//! real broker are mutated (bit flips, overwrites, truncations, splices, random
//! lengths in record headers, inserted and deleted bytes, zeroed ranges), and
//! random garbage is made up; then
//!
//! - recovery's scanning and decoding (`store::journal::fuzz`) must never panic;
//! - records framed again with valid checksums around mutated payloads (which
//!   reach the payload decoder past the CRCs) must never panic it either;
//! - some of each are laid out as a data directory and opened for real: the
//!   open returns `Ok` (damage reported) or a typed error, never panics or
//!   hangs, and what it brings back can be received and acked.
//!
//! Reproduce a case with `FUZZ_SEED=<seed> cargo test --release --test
//! fuzz_decode` (every assertion names the seed and the case).

use libqueue::store::journal::{dump, fuzz, inspect};
use libqueue::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const SEGMENT_HEADER: usize = 64;
const RECORD_HEADER: usize = 12;
const SEG: u64 = 16 * 1024;
const MS: Duration = Duration::from_millis(1);

fn framed_len(payload: usize) -> usize {
    (RECORD_HEADER + payload + 7) & !7
}

fn opts(dir: &Path) -> BrokerOptions {
    BrokerOptions::new().data_dir(dir).segment_size(SEG)
}

fn segment_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "lqj"))
        .collect();
    v.sort();
    v.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Valid segments holding every record type and every payload field: a session
/// of a real broker, then a reopen (a checkpoint segment) and a few more records.
fn valid_segments() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000_000);
    let mut out = Vec::new();
    {
        let b = Broker::open(opts(dir.path()).clock(clock.clone())).unwrap();
        // Definitions (types 0x81 to 0x84): quotas set and unset, a topic,
        // filters of every kind, an unsubscribe.
        let ns = b
            .create_namespace(
                "tenant",
                Quotas::default()
                    .max_queues(20)
                    .max_bytes(1 << 30)
                    .max_message_size(1 << 20),
            )
            .unwrap();
        let topic = ns.topic("events").unwrap();
        topic.subscribe("all", Filter::All).unwrap();
        topic.subscribe("named", Filter::name("n2")).unwrap();
        topic
            .subscribe("hdr", Filter::header("bin", vec![0u8, 0xff]))
            .unwrap();
        topic
            .subscribe("exec", Filter::execution_id("e-1"))
            .unwrap();
        topic.unsubscribe("all").unwrap();
        let q = ns
            .create_queue(
                "orders",
                QueueOptions::default()
                    .persistent(true)
                    .max_messages(1000)
                    .max_bytes(1 << 20)
                    .on_full(OnFull::Timeout(5 * MS))
                    .default_ttl(Duration::from_secs(60))
                    .default_delay(MS)
                    .default_priority(2)
                    .lease_time(50 * MS)
                    .max_deliveries(2)
                    .dead_letter_queue("orders.dlq")
                    .shards(2),
            )
            .unwrap();
        let fifo = ns
            .create_queue(
                "fifo",
                QueueOptions::default().persistent(true).strict_fifo(true),
            )
            .unwrap();
        for i in 0..60u32 {
            let mut m = Message::new(i.to_le_bytes().repeat(i as usize % 7))
                .priority((i % 10) as u8)
                .delay(Duration::ZERO);
            if i % 2 == 0 {
                m = m.name(format!("n{i}")).header("execution_id", "e-1");
            }
            if i % 3 == 0 {
                m = m
                    .correlation_id(format!("c{i}"))
                    .header("bin", vec![0u8, 0xff, i as u8]);
            }
            if i % 5 == 0 {
                m = m.ttl(10 * MS);
            }
            if i % 7 == 0 {
                m = m.delay(20 * MS);
            }
            q.send(m).unwrap();
            fifo.send(Message::new("f").persistent(true)).unwrap();
        }
        for _ in 0..10 {
            q.try_receive().unwrap().unwrap().ack().unwrap();
        }
        for _ in 0..10 {
            q.try_receive().unwrap().unwrap().nack().unwrap();
        }
        let _held: Vec<Delivery> = (0..5).map(|_| q.try_receive().unwrap().unwrap()).collect();
        clock.advance(30 * MS);
        q.stats(); // expiry
        q.cancel(q.peek(1).unwrap()[0].id()).unwrap();
        fifo.purge().unwrap();
        ns.queue("tmp")
            .unwrap()
            .send(Message::new("t").persistent(true))
            .unwrap();
        ns.delete_queue("tmp").unwrap();
        // A batch of persistent messages: one group record (type 7).
        fifo.send_batch((0..3).map(|i| Message::new(format!("b{i}")).persistent(true)))
            .unwrap();
        clock.advance(100 * MS); // leases expire: redeliveries, dead letters (groups)
        q.stats();
        b.close();
    }
    out.extend(segment_files(dir.path()));
    {
        let b = Broker::open(opts(dir.path()).clock(clock.clone())).unwrap();
        let q = b.namespace("tenant").unwrap().get_queue("orders").unwrap();
        q.try_receive().unwrap().unwrap().ack().unwrap();
        b.close();
    }
    out.extend(segment_files(dir.path()));
    out
}

/// The written part of a segment (trailing zeros cut, then 8 kept).
fn trimmed(seg: &[u8]) -> Vec<u8> {
    let end = seg.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    seg[..(end + 8).min(seg.len())].to_vec()
}

/// Offsets of the records of a valid segment.
fn record_offsets(seg: &[u8]) -> Vec<usize> {
    let mut off = SEGMENT_HEADER;
    fuzz::records(seg)
        .iter()
        .map(|(_, p)| {
            let at = off;
            off += framed_len(p.len());
            at
        })
        .collect()
}

fn boundary_u32(rng: &mut SmallRng, near: usize) -> u32 {
    match rng.gen_range(0..8) {
        0 => 0,
        1 => u32::MAX,
        2 => 0x8000_0000,
        3 => near as u32,
        4 => (near as u32).wrapping_add(rng.gen_range(1..16)),
        5 => (near as u32).wrapping_sub(rng.gen_range(1..16)),
        _ => rng.gen(),
    }
}

/// 1 to 4 mutations of a segment's bytes; returns what was done.
fn mutate(rng: &mut SmallRng, seg: &[u8], pool: &[Vec<u8>]) -> (Vec<u8>, String) {
    let mut b = seg.to_vec();
    let offsets = record_offsets(seg);
    let mut log = String::new();
    for _ in 0..rng.gen_range(1..=4) {
        if b.is_empty() {
            b.push(rng.gen());
        }
        let len = b.len();
        let pos = rng.gen_range(0..len);
        match rng.gen_range(0..9) {
            0 => {
                let bit = rng.gen_range(0..8);
                b[pos] ^= 1 << bit;
                log += &format!("flip {pos}.{bit}; ");
            }
            1 => {
                let n = rng.gen_range(1..=8).min(len - pos);
                for x in &mut b[pos..pos + n] {
                    *x = rng.gen();
                }
                log += &format!("overwrite {pos}+{n}; ");
            }
            2 => {
                let at = rng.gen_range(0..=len);
                b.truncate(at);
                log += &format!("truncate {at}; ");
            }
            3 => {
                let src = &pool[rng.gen_range(0..pool.len())];
                let from = rng.gen_range(0..src.len());
                let n = rng.gen_range(1..=256).min(src.len() - from).min(len - pos);
                b[pos..pos + n].copy_from_slice(&src[from..from + n]);
                log += &format!("splice {n} bytes at {pos} from {from}; ");
            }
            4 if !offsets.is_empty() => {
                // A random length in a record header (the first 4 bytes).
                let at = offsets[rng.gen_range(0..offsets.len())];
                if at + 4 <= len {
                    let old = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
                    let v = boundary_u32(rng, old as usize);
                    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
                    log += &format!("length {v} at {at}; ");
                }
            }
            5 => {
                let n = rng.gen_range(1..=16);
                let ins: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                b.splice(pos..pos, ins);
                log += &format!("insert {n} at {pos}; ");
            }
            6 => {
                let n = rng.gen_range(1..=16).min(len - pos);
                b.drain(pos..pos + n);
                log += &format!("delete {pos}+{n}; ");
            }
            7 => {
                let n = rng.gen_range(1..=64).min(len - pos);
                b[pos..pos + n].fill(0);
                log += &format!("zero {pos}+{n}; ");
            }
            _ => {
                // A record header byte: type, commit mark or reserved.
                if let Some(&at) = offsets.get(rng.gen_range(0..offsets.len().max(1))) {
                    let i = at + rng.gen_range(4..8);
                    if i < len {
                        b[i] = rng.gen();
                        log += &format!("header byte {i}; ");
                    }
                }
            }
        }
    }
    (b, log)
}

/// A payload mutated in place (the record is framed again with a valid CRC).
fn mutate_payload(rng: &mut SmallRng, p: &mut Vec<u8>) {
    if p.is_empty() {
        p.extend((0..rng.gen_range(1..32)).map(|_| rng.gen::<u8>()));
        return;
    }
    let pos = rng.gen_range(0..p.len());
    match rng.gen_range(0..7) {
        0 => p[pos] ^= 1 << rng.gen_range(0..8),
        1 => {
            // A length prefix, a u32 count or part of an id.
            let v = boundary_u32(rng, p.len() - pos);
            let bytes = v.to_le_bytes();
            let n = 4.min(p.len() - pos);
            p[pos..pos + n].copy_from_slice(&bytes[..n]);
        }
        2 => p.truncate(pos),
        3 => p.extend((0..rng.gen_range(1..16)).map(|_| rng.gen::<u8>())),
        4 => p[pos] = [0u8, 1, 2, 0xff, 0x80, 0xc3][rng.gen_range(0..6)],
        5 => {
            let n = rng.gen_range(1..=8).min(p.len() - pos);
            for x in &mut p[pos..pos + n] {
                *x = rng.gen();
            }
        }
        _ => p[pos..].fill(0xff),
    }
}

fn put(p: &mut Vec<u8>, s: &[u8]) {
    p.extend_from_slice(&(s.len() as u32).to_le_bytes());
    p.extend_from_slice(s);
}

/// A queue definition payload with random, often out-of-range, option values.
fn random_definition(rng: &mut SmallRng, ns: &str, queue: &str) -> Vec<u8> {
    const KEYS: [&str; 13] = [
        "max_messages",
        "max_bytes",
        "on_full",
        "default_ttl_ns",
        "default_delay_ns",
        "default_priority",
        "lease_time_ns",
        "max_deliveries",
        "dead_letter_queue",
        "persistent",
        "strict_fifo",
        "shards",
        "unknown",
    ];
    let mut text = String::new();
    for _ in 0..rng.gen_range(0..8) {
        let k = KEYS[rng.gen_range(0..KEYS.len())];
        let v = match rng.gen_range(0..9) {
            0 => "0".to_string(),
            1 => u64::MAX.to_string(),
            2 => "99999999999999999999999".to_string(),
            3 => "-1".to_string(),
            4 => ["true", "false", "block", "reject"][rng.gen_range(0..4)].to_string(),
            5 => format!("timeout_ns:{}", rng.gen::<u64>()),
            6 => [queue, "q", "orders", "", "bad name"][rng.gen_range(0..5)].to_string(),
            7 => "=\n=".to_string(),
            _ => rng.gen_range(0..1000u64).to_string(),
        };
        text += &format!("{k}={v}\n");
    }
    let mut p = Vec::new();
    put(&mut p, ns.as_bytes());
    put(&mut p, queue.as_bytes());
    put(&mut p, text.as_bytes());
    p
}

/// Runs `f` on a watchdog thread: a panic or a hang (over 20 s) fails the test.
fn within<T: Send + 'static>(what: String, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(v) => {
            let _ = h.join();
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let p = h.join().expect_err("no result, no panic");
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: panicked: {msg}")
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: hung"),
    }
}

/// Lays `segs` out as a data directory (seg 1, 2, …), inspects and dumps it
/// read-only, opens it, and receives and acks everything it brought back.
/// Returns whether the open succeeded.
fn open_dir(segs: Vec<Vec<u8>>, what: String) -> bool {
    within(what.clone(), move || {
        let dir = tempfile::tempdir().unwrap();
        for (i, s) in segs.iter().enumerate() {
            std::fs::write(dir.path().join(format!("seg-{:016x}.lqj", i + 1)), s).unwrap();
        }
        let _ = inspect(dir.path());
        let _ = dump(dir.path(), &mut std::io::sink());
        let b = match Broker::open(opts(dir.path()).clock(ManualClock::new(1_000_000_000))) {
            Ok(b) => b,
            Err(e) => {
                // A typed error; the directory must not be locked by anyone.
                assert!(!matches!(e, Error::Locked(_)), "{what}: {e}");
                if std::env::var_os("FUZZ_VERBOSE").is_some() {
                    eprintln!("{what}: open refused: {e:?}");
                }
                return false;
            }
        };
        assert!(b.recovery_report().is_some());
        for n in b.namespaces() {
            let ns = b.namespace(&n).unwrap();
            let _ = ns.stats();
            for qn in ns.list_queues() {
                let q = ns.get_queue(&qn).unwrap();
                let _ = q.peek(16);
                for _ in 0..1000 {
                    match q.try_receive() {
                        Ok(Some(d)) => {
                            let _ = d.ack();
                        }
                        _ => break,
                    }
                }
            }
        }
        b.close();
        true
    })
}

fn base_seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_1A4B)
}

#[test]
fn valid_segments_decode_whole() {
    let segs = valid_segments();
    assert!(segs.len() >= 2, "{} segments", segs.len());
    let mut total = 0;
    for (i, s) in segs.iter().enumerate() {
        let recs = fuzz::records(s);
        assert!(!recs.is_empty(), "segment {i}");
        assert_eq!(fuzz::decode_segment(s), recs.len(), "segment {i}");
        assert_eq!(fuzz::decode_segment(&trimmed(s)), recs.len(), "segment {i}");
        let borrowed: Vec<(u8, &[u8])> = recs.iter().map(|(k, p)| (*k, &p[..])).collect();
        let again = fuzz::segment(&borrowed, true);
        assert_eq!(fuzz::decode_segment(&again), recs.len(), "segment {i}");
        assert_eq!(fuzz::decode_records(&again[SEGMENT_HEADER..]), recs.len());
        for input in seed_inputs(s) {
            assert_eq!(fuzz::decode_input(&input), recs.len(), "segment {i}");
        }
        total += recs.len();
        let mut kinds: Vec<u8> = recs.iter().map(|r| r.0).collect();
        kinds.sort();
        kinds.dedup();
        eprintln!("segment {i}: {} records, types {kinds:?}", recs.len());
    }
    let kinds: std::collections::BTreeSet<u8> = segs
        .iter()
        .flat_map(|s| fuzz::records(s).into_iter().map(|r| r.0))
        .collect();
    assert_eq!(
        kinds,
        (1..=8).chain(0x81..=0x84).collect(),
        "every record type"
    );
    assert!(total > 100);
    assert!(open_dir(segs, "the valid segments".into()));
}

/// Mutated bytes: the decoder never panics, and every `OPEN_EVERY`th case is
/// opened as a data directory (alone, or after a valid segment).
#[test]
fn mutated_segments_never_panic() {
    const CASES: u64 = 30_000;
    const OPEN_EVERY: u64 = 300;
    let seed = base_seed();
    let full = valid_segments();
    let pool: Vec<Vec<u8>> = full.iter().map(|s| trimmed(s)).collect();
    let mut decoded = 0;
    for case in 0..CASES {
        let mut rng = SmallRng::seed_from_u64(seed ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let i = rng.gen_range(0..pool.len());
        let src = if rng.gen_bool(0.1) {
            &full[i]
        } else {
            &pool[i]
        };
        let (bad, log) = mutate(&mut rng, src, &pool);
        let what = format!("seed {seed} case {case}: segment {i}: {log}");
        let n =
            std::panic::catch_unwind(|| fuzz::decode_segment(&bad) + fuzz::decode_records(&bad))
                .unwrap_or_else(|_| panic!("{what}: the decoder panicked"));
        decoded += n;
        if case % OPEN_EVERY == 0 {
            let segs = if rng.gen_bool(0.5) {
                vec![bad]
            } else {
                vec![full[0].clone(), bad]
            };
            // Damage never makes a directory unopenable.
            assert!(open_dir(segs, what.clone()), "{what}: the open was refused");
        }
    }
    assert!(decoded > 0);
}

/// Mutated payloads framed again with valid checksums: the payload decoder sees
/// them (where bit flips alone stop at the CRC) and never panics; some are
/// opened for real, queue definitions with random option values among them.
#[test]
fn mutated_payloads_with_valid_checksums_never_panic() {
    const CASES: u64 = 10_000;
    const OPEN_EVERY: u64 = 100;
    let seed = base_seed() ^ 0xC5C;
    let recs: Vec<Vec<(u8, Vec<u8>)>> = valid_segments().iter().map(|s| fuzz::records(s)).collect();
    let (mut opened, mut refused) = (0, 0);
    for case in 0..CASES {
        let mut rng = SmallRng::seed_from_u64(seed ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let i = rng.gen_range(0..recs.len());
        let mut r = recs[i].clone();
        let mut log = String::new();
        for _ in 0..rng.gen_range(1..=3) {
            let j = rng.gen_range(0..r.len());
            match rng.gen_range(0..10) {
                0 => {
                    r[j].0 = rng.gen_range(1..=8);
                    log += &format!("type of {j}; ");
                }
                1 => {
                    let (ns, q) = (["tenant", "t", "", "bad name"], ["orders", "q", ""]);
                    let n = ns[rng.gen_range(0..ns.len())];
                    let qn = q[rng.gen_range(0..q.len())];
                    let def = random_definition(&mut rng, n, qn);
                    log += &format!("definition {:?} at {j}; ", String::from_utf8_lossy(&def));
                    r.insert(j, (1, def));
                }
                2 => {
                    let k = rng.gen_range(0..r.len());
                    let dup = r[k].clone();
                    r.insert(j, dup);
                    log += &format!("record {k} again at {j}; ");
                }
                3 => {
                    r.remove(j);
                    log += &format!("remove {j}; ");
                    if r.is_empty() {
                        r.push((5, Vec::new()));
                    }
                }
                _ => {
                    mutate_payload(&mut rng, &mut r[j].1);
                    log += &format!("payload of {j}; ");
                }
            }
        }
        let what = format!("seed {seed} case {case}: segment {i}: {log}");
        let borrowed: Vec<(u8, &[u8])> = r.iter().map(|(k, p)| (*k, &p[..])).collect();
        let seg = fuzz::segment(&borrowed, rng.gen_bool(0.8));
        std::panic::catch_unwind(|| fuzz::decode_segment(&seg))
            .unwrap_or_else(|_| panic!("{what}: the decoder panicked"));
        if case % OPEN_EVERY == 0 {
            if open_dir(vec![seg], what) {
                opened += 1;
            } else {
                refused += 1;
            }
        }
    }
    eprintln!("opened {opened}, refused with an error {refused}");
    // What cannot be restored (invalid names, a queue that is its own
    // dead-letter queue...) is left out and reported, never a refused open.
    assert_eq!(refused, 0);
    assert!(opened > 0);
}

/// Random garbage, with and without a valid segment header in front.
#[test]
fn garbage_never_panics() {
    let seed = base_seed() ^ 0x6A4B;
    for case in 0..5_000u64 {
        let mut rng = SmallRng::seed_from_u64(seed ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let n = rng.gen_range(0..2048);
        let with_header = rng.gen_bool(0.5);
        let garbage: Vec<u8> = (0..n).map(|_| rng.gen::<u8>()).collect();
        let buf: Vec<u8> = if with_header {
            // A valid header declaring room for the garbage after it.
            let mut b = fuzz::segment(&[(5, &vec![0u8; n][..])], true);
            b.truncate(SEGMENT_HEADER);
            b.extend(garbage);
            b
        } else {
            garbage
        };
        let what = format!("seed {seed} case {case}");
        std::panic::catch_unwind(|| fuzz::decode_segment(&buf) + fuzz::decode_records(&buf))
            .unwrap_or_else(|_| panic!("{what}: the decoder panicked"));
        if case % 500 == 0 {
            open_dir(vec![buf], what);
        }
    }
}

/// The cargo-fuzz target's seeds for one valid segment: the segment itself, its
/// records without the header, and its records in the structured form.
fn seed_inputs(seg: &[u8]) -> Vec<Vec<u8>> {
    let t = trimmed(seg);
    let recs = fuzz::records(seg);
    let borrowed: Vec<(u8, &[u8])> = recs.iter().map(|(k, p)| (*k, &p[..])).collect();
    let mut raw = vec![0u8];
    raw.extend_from_slice(&t);
    let mut headless = vec![1u8];
    headless.extend_from_slice(&t[SEGMENT_HEADER..]);
    vec![raw, headless, fuzz::structured_input(&borrowed)]
}

/// Writes the seed corpus of the cargo-fuzz target into `$FUZZ_CORPUS` (`make
/// fuzz` runs it first).
#[test]
#[ignore = "writes the cargo-fuzz seed corpus (make fuzz)"]
fn write_seed_corpus() {
    let dir = std::env::var("FUZZ_CORPUS").expect("FUZZ_CORPUS: where to write the seeds");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, s) in valid_segments().iter().enumerate() {
        for (j, input) in seed_inputs(s).into_iter().enumerate() {
            std::fs::write(Path::new(&dir).join(format!("seed-{i}-{j}")), input).unwrap();
        }
    }
}
