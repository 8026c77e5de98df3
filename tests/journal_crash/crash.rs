//! Crash test: SIGKILL a child process that sends (one by one and in batches),
//! receives, nacks, acks and dead-letters; the child's workload, how it reports
//! what completed, and the rounds of kill, reopen and check.

use super::*;

pub(super) const CRASH_NS: &str = "crash";
pub(super) const CRASH_QUEUE: &str = "jobs";
/// A queue whose messages are nacked until they are dead-lettered.
pub(super) const DL_QUEUE: &str = "dl";
pub(super) const DL_DEAD: &str = "dl.dead";
pub(super) const DL_MAX: u32 = 3;
/// Producer p's i-th body is base + p * STRIDE + i. Producer 0 sends one by
/// one, producer 1 in batches (of `batch_len`), both to `jobs`; producer 2
/// sends to `dl`.
pub(super) const STRIDE: u64 = 1 << 32;
pub(super) const PRODUCERS: u64 = 2;

/// The length of producer 1's batch that starts with its `i`-th message.
pub(super) fn batch_len(i: u64) -> u64 {
    1 + i % 7
}

pub(super) fn emit(line: std::fmt::Arguments<'_>) {
    let out = std::io::stdout();
    let mut o = out.lock();
    let _ = o.write_fmt(line);
    // A line cut by the kill has no end mark: the parent ignores it.
    let _ = o.write_all(b" $\n");
    let _ = o.flush();
}

pub(super) fn dl_options() -> QueueOptions {
    QueueOptions::default()
        .persistent(true)
        .max_deliveries(DL_MAX)
        .dead_letter_queue(DL_DEAD)
}

pub(super) fn child_opts(dir: &Path) -> BrokerOptions {
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
pub(super) struct Reported {
    pub(super) opened: bool,
    /// Sent to jobs: body → id.
    pub(super) sent: std::collections::HashMap<u64, u64>,
    /// Received from jobs (any number of times), with each delivery count.
    pub(super) received: HashSet<u64>,
    pub(super) deliveries: Vec<(u64, u32)>,
    pub(super) acked: HashSet<u64>,
    /// Sent to dl: body → id.
    pub(super) dl_sent: std::collections::HashMap<u64, u64>,
    /// Deliveries from dl (body, count), in order.
    pub(super) dl_deliveries: Vec<(u64, u32)>,
    /// Received from dl.dead; acked there.
    pub(super) dead_received: HashSet<u64>,
    pub(super) dead_acked: HashSet<u64>,
    /// Definitions: namespace `d{n}` created (`D`), its topic subscribed
    /// (`U`), unsubscribed (`V`).
    pub(super) defined: HashSet<u64>,
    pub(super) subscribed: HashSet<u64>,
    pub(super) unsubscribed: HashSet<u64>,
}

pub(super) fn parse_child(lines: &[String]) -> Reported {
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
pub(super) fn run_child_and_kill(
    dir: &Path,
    base: u64,
    delay: Duration,
    always: bool,
) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash::child_workload",
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

pub(super) const SIGKILL: i32 = 9;

/// Whether the newest checkpoint (from its flagged first segment on) has no
/// `Checkpoint` record: the kill fell inside it.
pub(super) fn inside_a_checkpoint(dir: &Path) -> bool {
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
