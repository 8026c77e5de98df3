//! Takeover under load: attached processes produce and consume persistent
//! messages (sync `always`: a send that returned is on disk) while the
//! parent SIGKILLs whichever process hosts the directory (the holder of its
//! lock, from /proc/locks), again and again, starting a new worker for each
//! one killed. At the end every worker is killed and the parent opens the
//! directory itself and drains it.
//!
//! Checked: no call in any worker failed (callers see no error); nothing
//! reported sent is missing (unless a consumer received it: its ack may
//! have landed just before a kill cut the report); nothing found that was
//! never sent (nothing corrupt); a message reported acked and found again
//! (resurrected) only within the at-least-once window — counted, at most
//! one per kill; duplicates counted and printed. `LQ_TAKEOVER_ROUNDS` sets
//! the changes of host (default 3; `make crash-long`: 60); every third is a
//! clean close of the host (it hands over) instead of a SIGKILL.

use super::*;
use libqueue::store::journal::SyncMode;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

/// Set when the worker closes its broker on the parent's word: calls fail
/// with `Closed` from then on, which is no failure.
static CLOSING: AtomicBool = AtomicBool::new(false);

fn failed(what: std::fmt::Arguments<'_>) {
    if !CLOSING.load(SeqCst) {
        emit(format_args!("X {} {what}", std::process::id()));
    }
}

/// A worker: one producer (one by one, every fourth a batch of 3) and two
/// consumers (leased, acked) on `tk`, until killed. Lines: `O`, `S v` (sent,
/// returned), `R v count` (received), `A v` (acked), `X what` (a call failed).
pub(crate) fn worker(dir: &Path) {
    let me = env_u64("LQ_MP_ID", 0);
    let b = Broker::open(opts(dir).sync_mode(SyncMode::Always)).unwrap();
    let q = b.queue("tk").unwrap();
    emit(format_args!("O"));
    let mut ts = Vec::new();
    {
        // `close` on stdin: a clean close (the host hands over), then exit.
        let b = b.clone();
        thread::spawn(move || {
            let mut l = String::new();
            while std::io::stdin().read_line(&mut l).is_ok_and(|n| n > 0) {
                if l.trim() == "close" {
                    CLOSING.store(true, SeqCst);
                    b.close();
                    emit(format_args!("C"));
                    std::process::exit(0);
                }
                l.clear();
            }
        });
    }
    {
        let q = q.clone();
        ts.push(thread::spawn(move || {
            let mut i = 0u64;
            loop {
                let v = (me << 32) | i;
                if i % 4 == 3 {
                    let vs = [v, v + 1, v + 2];
                    match q.send_batch(
                        vs.iter()
                            .map(|v| Message::new(v.to_le_bytes().to_vec()).persistent(true)),
                    ) {
                        Ok(_) => emit(format_args!("S {} {} {}", vs[0], vs[1], vs[2])),
                        Err(e) => failed(format_args!("send_batch {e}")),
                    }
                    i += 3;
                } else {
                    match q.send(Message::new(v.to_le_bytes().to_vec()).persistent(true)) {
                        Ok(_) => emit(format_args!("S {v}")),
                        Err(e) => failed(format_args!("send {e}")),
                    }
                    i += 1;
                }
                thread::sleep(Duration::from_micros(300));
            }
        }));
    }
    for _ in 0..2 {
        let q = q.clone();
        ts.push(thread::spawn(move || loop {
            match q.receive_timeout(Duration::from_millis(50)) {
                Ok(Some(d)) => {
                    let (v, id) = (body_u64(d.body()), d.id());
                    emit(format_args!("R {v} {} {id}", d.delivery_count()));
                    match d.ack() {
                        Ok(()) => emit(format_args!("A {v} {id}")),
                        Err(e) => failed(format_args!("ack {v} {e}")),
                    }
                }
                Ok(None) => {}
                Err(e) => failed(format_args!("receive {e}")),
            }
        }));
    }
    for t in ts {
        t.join().unwrap();
    }
}

#[test]
fn takeover_under_load() {
    let rounds = env_u64("LQ_TAKEOVER_ROUNDS", 3);
    let dir = tempfile::tempdir().unwrap();
    let mut next_id = 0u64;
    let spawn = |next_id: &mut u64| {
        let mut p = Proc::spawn("takeover", dir.path(), &[("LQ_MP_ID", next_id.to_string())]);
        *next_id += 1;
        p.wait_for("O", Duration::from_secs(60));
        p
    };
    let mut live: Vec<Proc> = Vec::new();
    for _ in 0..3 {
        live.push(spawn(&mut next_id));
    }
    let mut lines: Vec<String> = Vec::new();
    let mut by_pid: Vec<(u32, Vec<String>)> = Vec::new();
    let mut changes: Vec<(u32, &str)> = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut takeover_times = Vec::new();
    let mut closes = 0;
    let mut stderrs: Vec<(u32, String, Vec<String>)> = Vec::new();
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        thread::sleep(Duration::from_millis(200 + seed % 400));
        let host = lock_holder(dir.path()).expect("a host holds the lock");
        let at = live
            .iter()
            .position(|p| p.pid() == host)
            .expect("the host is one of the workers");
        let mut h = live.remove(at);
        let t = Instant::now();
        if round % 3 == 1 {
            // A clean close of the host under load: it hands over.
            closes += 1;
            h.say("close");
            let (st, l, err) = h.finish();
            stderrs.push((host, err.clone(), l.iter().rev().take(5).cloned().collect()));
            assert!(
                st.success(),
                "the host did not close cleanly: {st:?}\n{err}"
            );
            assert!(l.iter().any(|l| l == "C"));
            by_pid.push((host, l.clone()));
            changes.push((host, "closed"));
            lines.extend(l);
        } else {
            h.kill();
            let (_, l, err) = h.finish();
            stderrs.push((
                host,
                err,
                l.iter().rev().take(5).cloned().collect::<Vec<_>>(),
            ));
            by_pid.push((host, l.clone()));
            changes.push((host, "killed"));
            lines.extend(l);
        }
        loop {
            match lock_holder(dir.path()) {
                Some(p) if p != host => break,
                _ => {}
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no process took over"
            );
            thread::sleep(Duration::from_millis(1));
        }
        takeover_times.push(t.elapsed());
        live.push(spawn(&mut next_id));
    }
    thread::sleep(Duration::from_millis(300));
    for p in &mut live {
        p.kill();
    }
    for p in live {
        let pid = p.pid();
        let (_, l, err) = p.finish();
        stderrs.push((
            pid,
            err,
            l.iter().filter(|l| l.starts_with('X')).cloned().collect(),
        ));
        by_pid.push((pid, l.clone()));
        lines.extend(l);
    }

    let (mut sent, mut received, mut acked) = (HashSet::new(), HashSet::new(), HashSet::new());
    let mut failures = Vec::new();
    // Copies of a body (its ids): more than one when a send was sent again.
    let mut copies: HashMap<u64, HashSet<u64>> = HashMap::new();
    let mut acked_ids = HashSet::new();
    for l in &lines {
        let mut f = l.split(' ');
        let tag = f.next().unwrap_or_default();
        let nums: Vec<u64> = f.clone().filter_map(|x| x.parse().ok()).collect();
        match tag {
            "S" => sent.extend(nums),
            "R" => {
                received.insert(nums[0]);
                copies.entry(nums[0]).or_default().insert(nums[2]);
            }
            "A" => {
                acked.insert(nums[0]);
                acked_ids.insert((nums[0], nums[1]));
            }
            "X" => failures.push(l.clone()),
            "C" => {}
            _ => {}
        }
    }
    if !failures.is_empty() {
        for (pid, err, l) in &stderrs {
            eprintln!("--- worker {pid}: {l:?}\n{err}");
        }
    }
    assert!(
        failures.is_empty(),
        "calls failed in the workers: {failures:?}"
    );

    let b = Broker::open(opts(dir.path()).exclusive(true)).unwrap();
    let q = b.queue("tk").unwrap();
    let mut left: HashMap<u64, u32> = HashMap::new();
    let mut left_ids = HashSet::new();
    while let Some(d) = q.try_receive().unwrap() {
        let v = body_u64(d.body());
        *left.entry(v).or_default() += 1;
        left_ids.insert((v, d.id()));
        copies.entry(v).or_default().insert(d.id());
        d.ack().unwrap();
    }
    b.close();
    let lost: Vec<u64> = sent
        .iter()
        .filter(|v| !acked.contains(v) && !left.contains_key(v) && !received.contains(v))
        .copied()
        .collect();
    let corrupt: Vec<u64> = left
        .keys()
        .filter(|v| (**v >> 32) >= next_id)
        .copied()
        .collect();
    // The very copy reported acked, found again.
    let resurrected = acked_ids.intersection(&left_ids).count();
    for (v, _) in acked_ids.intersection(&left_ids) {
        eprintln!(
            "resurrected {v} (left {}); host changes {changes:?}",
            left[v]
        );
        for (pid, l) in &by_pid {
            for (i, x) in l.iter().enumerate() {
                if x.split(' ').any(|w| w == v.to_string()) {
                    eprintln!("  {pid} line {i}/{}: {x}", l.len());
                }
            }
        }
    }
    let duplicated = copies.values().filter(|c| c.len() > 1).count();
    println!(
        "takeover under load: {rounds} changes of host ({closes} clean closes, the others SIGKILL), takeover {:?} (kill → new lock holder), {} sent, {} acked, {} left, {} resurrected (the acked copy found again: at-least-once window), {} sent twice (a send re-sent)",
        takeover_times,
        sent.len(),
        acked.len(),
        left.len(),
        resurrected,
        duplicated
    );
    assert!(lost.is_empty(), "reported durable and lost: {lost:?}");
    assert!(corrupt.is_empty(), "never sent: {corrupt:?}");
    assert!(
        resurrected as u64 <= rounds,
        "{resurrected} acked messages came back"
    );
    assert!(!sent.is_empty() && !acked.is_empty());
}
