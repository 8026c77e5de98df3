//! Space comes back while the broker runs: segments whose persistent messages
//! are all gone are deleted, segments pinned by a few old messages are
//! compacted (the live records copied forward), disk use stays bounded by live
//! data under a long steady workload, and what survives a reopen after all that
//! is exactly what was live. Also: a clean journal is not rewritten on open, and
//! ids are never reused, even after every message was acked.

use libqueue::*;
use std::path::Path;
use std::time::Duration;

const SEG: u64 = 64 * 1024;

fn open(dir: &Path) -> Broker {
    Broker::open(BrokerOptions::new().data_dir(dir).segment_size(SEG)).unwrap()
}

/// Segment files and their total size on disk.
fn disk(dir: &Path) -> (usize, u64) {
    let mut n = 0;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "lqj") {
            n += 1;
            bytes += e.metadata().unwrap().len();
        }
    }
    (n, bytes)
}

fn body(i: u64) -> Vec<u8> {
    let mut b = format!("message {i} ").into_bytes();
    b.resize(500, b'x');
    b
}

#[test]
fn steady_fill_and_drain_keeps_disk_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let q = b.queue("steady").unwrap();
    let mut most = 0;
    // 200 cycles x 100 messages of ~560 framed bytes = ~11 MB written through
    // 64 KiB segments: without reclamation that is ~170 segments.
    for cycle in 0..200u64 {
        for i in 0..100 {
            q.send(Message::new(body(cycle * 100 + i)).persistent(true))
                .unwrap();
        }
        for _ in 0..100 {
            q.try_receive().unwrap().unwrap().ack().unwrap();
        }
        most = most.max(disk(dir.path()).0);
    }
    // Live data peaks at 100 messages (~56 KB, about one segment): the journal
    // never holds more than a handful of segments.
    assert!(most <= 6, "up to {most} segments on disk");
    drop(q);
    drop(b);
    let b = open(dir.path());
    let r = b.recovery_report().unwrap();
    assert!(r.damage.is_empty(), "{r:?}");
    assert_eq!(r.messages_recovered, 0, "{r:?}");
    assert_eq!(b.queue("steady").unwrap().stats().ready, 0);
}

#[test]
fn a_segment_pinned_by_old_messages_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let q = b
        .namespace(DEFAULT_NAMESPACE)
        .unwrap()
        .create_queue(
            "pinned",
            QueueOptions::default().lease_time(Duration::from_secs(3600)),
        )
        .unwrap();
    // Three old messages: one stays ready, one is received (delivery count 1)
    // and nacked (count stays, ready again), one stays leased.
    let old: Vec<u64> = (0..3)
        .map(|i| {
            q.send(
                Message::new(format!("old {i}"))
                    .persistent(true)
                    .header("k", format!("v{i}")),
            )
            .unwrap()
        })
        .collect();
    let first = q.try_receive().unwrap().unwrap();
    assert_eq!(first.id(), old[0]);
    first.nack().unwrap();
    // Then a lot of traffic behind them, all acked (FIFO: skip the old ones by
    // receiving them first and putting them back).
    let mut keep = Vec::new();
    for _ in 0..3 {
        keep.push(q.try_receive().unwrap().unwrap());
    }
    for round in 0..100u64 {
        for i in 0..50 {
            q.send(Message::new(body(round * 50 + i)).persistent(true))
                .unwrap();
        }
        for _ in 0..50 {
            q.try_receive().unwrap().unwrap().ack().unwrap();
        }
    }
    let (n, bytes) = disk(dir.path());
    assert!(n <= 4, "{n} segments ({bytes} bytes) for 3 live messages");
    // Give two back (their counts: 2 and 1), keep the third leased.
    let leased = keep.pop().unwrap();
    for d in keep {
        d.nack().unwrap();
    }
    let leased_id = leased.id();
    std::mem::forget(leased); // still leased when the broker goes away
    drop(q);
    b.close();
    drop(b);

    let b = open(dir.path());
    let r = b.recovery_report().unwrap().clone();
    assert!(r.damage.is_empty(), "{r:?}");
    assert_eq!(r.messages_recovered, 3, "{r:?}");
    let q = b.queue("pinned").unwrap();
    let mut got = Vec::new();
    while let Some(d) = q.try_receive().unwrap() {
        got.push((
            d.id(),
            d.body().to_vec(),
            d.headers().get("k").cloned(),
            d.delivery_count(),
        ));
        d.ack().unwrap();
    }
    got.sort();
    assert_eq!(got.len(), 3, "{got:?}");
    for (i, (id, body, h, count)) in got.iter().enumerate() {
        assert_eq!(*id, old[i]);
        assert_eq!(body, format!("old {i}").as_bytes());
        assert_eq!(h.as_deref(), Some(format!("v{i}").as_bytes()));
        // Received again just now: old[0] was delivered twice before, the
        // others once (the leased one's delivery counts: it was not settled).
        let before = if *id == old[0] { 2 } else { 1 };
        assert_eq!(*count, before + 1, "message {id} (leased one: {leased_id})");
    }
}

#[test]
fn ids_are_never_reused_after_everything_was_acked() {
    let dir = tempfile::tempdir().unwrap();
    let mut last = 0;
    for round in 0..4 {
        let b = open(dir.path());
        let q = b.queue("ids").unwrap();
        // Enough traffic in some rounds to force checkpoints while running.
        let n = if round % 2 == 0 { 10 } else { 400 };
        for i in 0..n {
            let id = q.send(Message::new(body(i)).persistent(true)).unwrap();
            assert!(id > last, "round {round}: id {id} after {last}");
            last = id;
        }
        while let Some(d) = q.try_receive().unwrap() {
            d.ack().unwrap();
        }
    }
}

#[test]
fn a_clean_journal_is_not_rewritten_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        let q = b.queue("q").unwrap();
        for i in 0..20 {
            q.send(Message::new(body(i)).persistent(true)).unwrap();
        }
    }
    let before = disk(dir.path());
    for _ in 0..20 {
        let b = open(dir.path());
        assert_eq!(b.recovery_report().unwrap().messages_recovered, 20);
    }
    // Twenty opens later: the same files (appends continue in the newest).
    assert_eq!(disk(dir.path()), before);
    let b = open(dir.path());
    let q = b.queue("q").unwrap();
    q.send(Message::new("one more").persistent(true)).unwrap();
    drop(q);
    drop(b);
    let b = open(dir.path());
    assert_eq!(b.recovery_report().unwrap().messages_recovered, 21);
    assert_eq!(disk(dir.path()), before);
}

#[test]
fn deleted_queues_and_dead_letters_survive_compaction_correctly() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        let ns = b.namespace("t").unwrap();
        let q = ns
            .create_queue(
                "work",
                QueueOptions::default()
                    .max_deliveries(1)
                    .dead_letter_queue("work.dlq"),
            )
            .unwrap();
        let gone = ns.queue("gone").unwrap();
        gone.send(Message::new("lost with its queue").persistent(true))
            .unwrap();
        ns.delete_queue("gone").unwrap();
        let dead = q.send(Message::new("poison").persistent(true)).unwrap();
        q.try_receive().unwrap().unwrap().nack().unwrap(); // -> work.dlq
        for i in 0..2000 {
            q.send(Message::new(body(i)).persistent(true)).unwrap();
            q.try_receive().unwrap().unwrap().ack().unwrap();
        }
        assert!(disk(dir.path()).0 <= 4);
        let dlq = ns.get_queue("work.dlq").unwrap();
        let peeked = dlq.peek(10).unwrap();
        assert_eq!(peeked.len(), 1);
        assert_eq!(peeked[0].body(), b"poison");
        let _ = dead;
    }
    let b = open(dir.path());
    let r = b.recovery_report().unwrap();
    assert!(r.damage.is_empty(), "{r:?}");
    assert_eq!(r.messages_recovered, 1, "{r:?}");
    let ns = b.namespace("t").unwrap();
    assert!(ns.get_queue("gone").is_err());
    let work = ns.get_queue("work").unwrap();
    assert_eq!(
        work.options().dead_letter_queue.as_deref(),
        Some("work.dlq")
    );
    let d = ns
        .get_queue("work.dlq")
        .unwrap()
        .try_receive()
        .unwrap()
        .unwrap();
    assert_eq!(d.body(), b"poison");
}

#[test]
fn an_open_compacts_a_dead_journal_and_ids_still_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut last = 0;
    {
        let b = open(dir.path());
        let q = b.queue("q").unwrap();
        // All sent first (every segment is live when it fills: no checkpoint
        // while running), then all acked, newest first: whichever checkpoint
        // comes (while acking or at the next open) finds the highest ids gone.
        for i in 0..400 {
            last = q.send(Message::new(body(i)).persistent(true)).unwrap();
        }
        assert!(disk(dir.path()).0 >= 3);
        let mut all = Vec::new();
        while let Some(d) = q.try_receive().unwrap() {
            all.push(d);
        }
        for d in all.into_iter().rev() {
            d.ack().unwrap();
        }
    }
    {
        // After the checkpoint: one segment left, holding no message (and
        // perhaps the next one, being prepared).
        let b = open(dir.path());
        assert!(disk(dir.path()).0 <= 2);
        assert_eq!(b.recovery_report().unwrap().messages_recovered, 0);
    }
    // The checkpoint carried the next id: ids continue after the acked ones.
    let b = open(dir.path());
    let id = b
        .queue("q")
        .unwrap()
        .send(Message::new("next").persistent(true))
        .unwrap();
    assert!(id > last, "id {id} reused (last was {last})");
}

#[test]
fn a_queue_deleted_and_created_again_keeps_only_its_new_messages() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        let ns = b.namespace("t").unwrap();
        let q = ns.queue("again").unwrap();
        for i in 0..5 {
            q.send(Message::new(format!("old {i}")).persistent(true))
                .unwrap();
        }
        let leased = q.try_receive().unwrap().unwrap();
        ns.delete_queue("again").unwrap();
        assert!(leased.ack().is_err());
        let q = ns.queue("again").unwrap();
        for i in 0..3 {
            q.send(Message::new(format!("new {i}")).persistent(true))
                .unwrap();
        }
    }
    let b = open(dir.path());
    let q = b.namespace("t").unwrap().queue("again").unwrap();
    let mut got = Vec::new();
    while let Some(d) = q.try_receive().unwrap() {
        got.push(String::from_utf8(d.body().to_vec()).unwrap());
        d.ack().unwrap();
    }
    assert_eq!(got, ["new 0", "new 1", "new 2"]);
}

#[test]
fn a_segment_that_was_being_created_at_a_crash_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        let q = b.queue("q").unwrap();
        for i in 0..10 {
            q.send(Message::new(body(i)).persistent(true)).unwrap();
        }
    }
    // A crash between creating the next segment file and writing its header:
    // preallocated zeros (or an empty file), no record in it.
    let newest = (0..1000u64)
        .rev()
        .find(|n| dir.path().join(format!("seg-{n:016x}.lqj")).exists())
        .unwrap();
    let unstarted = dir.path().join(format!("seg-{:016x}.lqj", newest + 1));
    std::fs::write(&unstarted, vec![0u8; SEG as usize]).unwrap();
    let b = open(dir.path());
    let r = b.recovery_report().unwrap();
    assert!(r.damage.is_empty(), "{r:?}");
    assert_eq!(r.messages_recovered, 10);
    assert!(!unstarted.exists());
    let q = b.queue("q").unwrap();
    q.send(Message::new("after").persistent(true)).unwrap();
    drop(q);
    drop(b);
    assert_eq!(
        open(dir.path())
            .recovery_report()
            .unwrap()
            .messages_recovered,
        11
    );
}

#[test]
fn large_messages_written_straight_into_segments_come_back_intact() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [4095usize, 4096, 5000, 40_000, 70_000, 200_000, 1, 64];
    let mut sent = Vec::new();
    {
        let b = open(dir.path());
        let q = b.queue("big").unwrap();
        for (i, &n) in sizes.iter().cycle().take(40).enumerate() {
            let body: Vec<u8> = (0..n).map(|j| (i * 31 + j * 7) as u8).collect();
            let id = q
                .send(
                    Message::new(body.clone())
                        .persistent(true)
                        .name(format!("m{i}"))
                        .header("i", i.to_string()),
                )
                .unwrap();
            sent.push((id, body, i));
        }
        // Some acked, so the journal has dead records among the live ones.
        for _ in 0..10 {
            q.try_receive().unwrap().unwrap().ack().unwrap();
        }
        sent.drain(..10);
    }
    let b = open(dir.path());
    let r = b.recovery_report().unwrap();
    assert!(r.damage.is_empty(), "{r:?}");
    let q = b.queue("big").unwrap();
    for (id, body, i) in sent {
        let d = q.try_receive().unwrap().unwrap();
        assert_eq!(d.id(), id);
        assert_eq!(d.name(), Some(format!("m{i}").as_str()));
        assert_eq!(
            d.headers().get("i").map(|v| v.as_slice()),
            Some(i.to_string().as_bytes())
        );
        assert!(d.body() == body.as_slice(), "message {i}: body differs");
        d.ack().unwrap();
    }
    assert!(q.try_receive().unwrap().is_none());
}

/// The next segment is prepared (created, preallocated, faulted in) by a
/// helper thread only once the current one is half full: a broker that
/// appends little keeps one segment file. A prepared segment that was never
/// used is deleted on close.
#[test]
fn next_segment_is_prepared_only_past_half_full() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let q = b.queue("q").unwrap();
    // 500-byte bodies: ~550 bytes per record, so 40 stay under half of 64 KiB.
    for i in 0..40 {
        q.send(Message::new(body(i)).persistent(true)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(disk(dir.path()).0, 1, "nothing prepared below half full");
    for i in 40..70 {
        q.send(Message::new(body(i)).persistent(true)).unwrap();
    }
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while disk(dir.path()).0 < 2 {
        assert!(std::time::Instant::now() < end, "no segment prepared");
        std::thread::sleep(Duration::from_millis(1));
    }
    b.close();
    assert_eq!(
        disk(dir.path()).0,
        1,
        "the unused prepared segment is deleted"
    );
    let b = open(dir.path());
    assert_eq!(b.queue("q").unwrap().stats().ready, 70);
}
