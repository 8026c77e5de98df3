//! The broker's ticker costs no CPU while nothing is due (issue 13, item 7): it
//! sleeps until the earliest deadline, it does not poll. A test binary of its
//! own, so no other test's ticker thread is counted.

use libqueue::*;
use std::thread;
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);
const BOUND: Duration = Duration::from_secs(10);

/// CPU time (user + system, in clock ticks) of this process's threads named `name`.
#[cfg(target_os = "linux")]
fn thread_cpu(name: &str) -> Option<u64> {
    let mut total = None;
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != name {
            continue;
        }
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        // Fields 14 and 15 of stat (utime, stime), after pid and comm.
        let t: u64 = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        total = Some(total.unwrap_or(0) + t);
    }
    total
}

#[cfg(target_os = "linux")]
#[test]
fn the_ticker_sleeps_while_nothing_is_due() {
    // A lease an hour away: the ticker runs (started by that deadline) and must
    // sleep until then, not poll. A polling thread would burn most of the
    // 500 ms measured; a sleeping one uses none (limit: 5 ticks = 50 ms at 100 Hz).
    let b = Broker::new();
    let q = b
        .default_namespace()
        .unwrap()
        .create_queue(
            "idle",
            QueueOptions::default().lease_time(Duration::from_secs(3600)),
        )
        .unwrap();
    q.send(Message::new("x")).unwrap();
    let _held = q.try_receive().unwrap().unwrap();
    let start = Instant::now();
    let before = loop {
        if let Some(t) = thread_cpu("libqueue-ticker") {
            break t;
        }
        assert!(start.elapsed() < BOUND, "the ticker thread started");
        thread::sleep(MS);
    };
    thread::sleep(500 * MS);
    let used = thread_cpu("libqueue-ticker").unwrap() - before;
    assert!(used <= 5, "the idle ticker used {used} ticks in 500 ms");
}
