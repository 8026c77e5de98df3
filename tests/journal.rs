//! The journal through the broker: persistent messages survive a reopen with
//! their ids, headers, delivery counts and remaining TTL; acked ones never come
//! back; queue definitions survive; ids continue; one writer per directory;
//! disk use stays bounded across reopen cycles. (Crash and corruption tests are
//! in journal_crash/.)

use libqueue::*;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

fn open(dir: &Path) -> Broker {
    Broker::open(BrokerOptions::new().data_dir(dir)).unwrap()
}

fn open_clock(dir: &Path, clock: &Arc<ManualClock>) -> Broker {
    Broker::open(BrokerOptions::new().data_dir(dir).clock(clock.clone())).unwrap()
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "lqj"))
        .collect();
    v.sort();
    v
}

#[test]
fn persistent_messages_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b_id, c);
    {
        let b = open(dir.path());
        assert_eq!(b.storage_name(), "journal");
        let ns = b.namespace("tenant").unwrap();
        let q = ns
            .create_queue(
                "orders",
                QueueOptions::default()
                    .max_deliveries(5)
                    .lease_time(Duration::from_secs(7)),
            )
            .unwrap();
        a = q
            .send(
                Message::new(vec![0u8, 1, 2, 255])
                    .persistent(true)
                    .name("create")
                    .header("execution_id", "e-1")
                    .correlation_id("c-1")
                    .priority(8),
            )
            .unwrap();
        b_id = q
            .send(Message::new("gone").persistent(true).priority(9))
            .unwrap();
        c = q.send(Message::new("plain").persistent(true)).unwrap();
        q.send(Message::new("volatile")).unwrap(); // not persistent: lost on reopen
                                                   // b (highest priority) is acked: it must never come back.
        let d = q.try_receive().unwrap().unwrap();
        assert_eq!(d.id(), b_id);
        d.ack().unwrap();
        // a is received and nacked: still there, one delivery counted.
        let d = q.try_receive().unwrap().unwrap();
        assert_eq!(d.id(), a);
        d.nack().unwrap();
    }
    let b = open(dir.path());
    let r = b.recovery_report().unwrap().clone();
    assert!(r.damage.is_empty(), "{r:?}");
    assert_eq!(r.messages_recovered, 2, "{r:?}");
    let ns = b.namespace("tenant").unwrap();
    let q = ns.get_queue("orders").expect("queue definition survives");
    assert_eq!(q.options().max_deliveries, Some(5));
    assert_eq!(q.options().lease_time, Duration::from_secs(7));
    let mut got = Vec::new();
    while let Some(d) = q.try_receive().unwrap() {
        got.push(d.id());
        if d.id() == a {
            assert_eq!(d.body(), &[0u8, 1, 2, 255]);
            assert_eq!(d.name(), Some("create"));
            assert_eq!(d.execution_id(), Some("e-1"));
            assert_eq!(d.correlation_id(), Some("c-1"));
            assert_eq!(d.priority(), 8);
            assert!(d.is_persistent());
        }
        d.ack().unwrap();
    }
    got.sort();
    assert_eq!(got, vec![a, c]);
    // Ids continue without reuse.
    let next = q.send(Message::new("new").persistent(true)).unwrap();
    assert!(next > c, "{next} after {c}");
}

#[test]
fn delivery_counts_and_remaining_ttl_survive() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000_000);
    {
        let b = open_clock(dir.path(), &clock);
        let q = b.queue("q").unwrap();
        q.send(Message::new("twice").persistent(true)).unwrap();
        q.send(Message::new("short").persistent(true).ttl(100 * MS))
            .unwrap();
        let d = q.try_receive().unwrap().unwrap();
        assert_eq!(d.body(), b"twice");
        d.nack().unwrap(); // back of the lane, behind "short"
        let d = q.try_receive().unwrap().unwrap();
        assert_eq!(d.body(), b"short");
        d.nack().unwrap();
        let d = q.try_receive().unwrap().unwrap();
        assert_eq!((d.body(), d.delivery_count()), (&b"twice"[..], 2));
        drop(d); // leased when the process goes away
    }
    clock.advance(60 * MS);
    let b = open_clock(dir.path(), &clock);
    let q = b.queue("q").unwrap();
    let mut seen = std::collections::HashMap::new();
    while let Some(d) = q.try_receive().unwrap() {
        seen.insert(d.body().to_vec(), d.delivery_count());
        d.nack().unwrap();
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.get(&b"twice"[..]), Some(&3), "{seen:?}");
    assert_eq!(seen.get(&b"short"[..]), Some(&2));
    // 40 ms of its TTL were left: it expires on time, not 100 ms after reopening.
    clock.advance(41 * MS);
    let mut left = Vec::new();
    while let Some(d) = q.receive_auto_ack(Wait::Try).unwrap() {
        left.push(d.body().to_vec());
    }
    assert_eq!(left, vec![b"twice".to_vec()]);
}

#[test]
fn delayed_persistent_message_keeps_its_due_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000_000);
    {
        let b = open_clock(dir.path(), &clock);
        b.queue("q")
            .unwrap()
            .send(Message::new("later").persistent(true).delay(100 * MS))
            .unwrap();
    }
    clock.advance(50 * MS);
    let b = open_clock(dir.path(), &clock);
    let q = b.queue("q").unwrap();
    assert!(q.try_receive().unwrap().is_none());
    assert_eq!(q.stats().delayed, 1);
    clock.advance(50 * MS);
    assert_eq!(q.try_receive().unwrap().unwrap().body(), b"later");
}

#[test]
fn queue_default_persistence_and_dead_letters_survive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        let ns = b.namespace("n").unwrap();
        let q = ns
            .create_queue(
                "work",
                QueueOptions::default()
                    .persistent(true)
                    .max_deliveries(1)
                    .dead_letter_queue("work.dlq"),
            )
            .unwrap();
        q.send(Message::new("poison")).unwrap();
        q.send(Message::new("fine")).unwrap();
        q.try_receive().unwrap().unwrap().nack().unwrap(); // → work.dlq
    }
    let b = open(dir.path());
    let ns = b.namespace("n").unwrap();
    let dl = ns
        .get_queue("work.dlq")
        .unwrap()
        .try_receive()
        .unwrap()
        .expect("dead letter survives");
    assert_eq!(dl.body(), b"poison");
    assert!(dl.header_str("x-dead-letter-reason").is_some());
    let w = ns.get_queue("work").unwrap();
    assert_eq!(w.try_receive().unwrap().unwrap().body(), b"fine");
}

#[test]
fn second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    // Exclusive: a shared open attaches to the holder instead (tests/attach_smoke.rs).
    let err = Broker::open(BrokerOptions::new().data_dir(dir.path()).exclusive(true)).unwrap_err();
    assert!(matches!(err, Error::Locked(_)), "{err:?}");
    assert!(err.to_string().contains("locked"));
    b.close();
    // close() releases the directory, even with handles still around.
    let q = b.queue("x");
    assert!(q.is_err());
    open(dir.path());
}

#[test]
fn closed_broker_refuses_persistent_sends() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let q = b.queue("q").unwrap();
    b.close();
    assert_eq!(
        q.send(Message::new("x").persistent(true)).unwrap_err(),
        Error::Closed
    );
}

#[test]
fn segments_roll_and_disk_use_stays_bounded_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let body = vec![7u8; 1000];
    let mut sizes = Vec::new();
    for round in 0..5 {
        let b = Broker::open(
            BrokerOptions::new()
                .data_dir(dir.path())
                .segment_size(16 * 1024),
        )
        .unwrap();
        let q = b.queue("q").unwrap();
        // Fill: many segments' worth, then drain all but 3.
        for _ in 0..200 {
            q.send(Message::new(body.clone()).persistent(true)).unwrap();
        }
        if round == 0 {
            assert!(segments(dir.path()).len() > 5, "segments roll");
        }
        while q.stats().ready > 3 + round {
            q.receive_auto_ack(Wait::Try).unwrap().unwrap();
        }
        drop(q);
        drop(b);
        let total: u64 = segments(dir.path())
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        sizes.push(total);
    }
    let b = Broker::open(
        BrokerOptions::new()
            .data_dir(dir.path())
            .segment_size(16 * 1024),
    )
    .unwrap();
    assert_eq!(b.queue("q").unwrap().stats().ready, 3 + 4);
    // After each reopen only live data is rewritten: the footprint does not grow
    // with the 1000 messages that came and went.
    let after_open: u64 = segments(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        after_open <= 2 * 16 * 1024,
        "{after_open} bytes on disk for 7 live messages; per round {sizes:?}"
    );
}

#[test]
fn sync_modes_work_and_flush_is_a_barrier() {
    for mode in [
        SyncMode::None,
        SyncMode::Always,
        SyncMode::Interval(Duration::from_millis(5)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        {
            let b =
                Broker::open(BrokerOptions::new().data_dir(dir.path()).sync_mode(mode)).unwrap();
            let q = b.queue("q").unwrap();
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let q = q.clone();
                    std::thread::spawn(move || {
                        for i in 0..50u32 {
                            q.send(Message::new(format!("{t}-{i}")).persistent(true))
                                .unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            b.flush().unwrap();
        }
        let b = open(dir.path());
        assert_eq!(b.queue("q").unwrap().stats().ready, 200, "{mode:?}");
    }
}

#[test]
fn non_persistent_queues_still_survive_as_definitions() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        b.namespace("a")
            .unwrap()
            .create_queue("plain", QueueOptions::default().max_messages(9))
            .unwrap();
    }
    let b = open(dir.path());
    let q = b.namespace("a").unwrap().get_queue("plain").unwrap();
    assert_eq!(q.options().max_messages, Some(9));
}

#[test]
fn deleted_queues_stay_deleted_and_the_latest_definition_wins() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        let ns = b.namespace("n").unwrap();
        let q = ns
            .create_queue("gone", QueueOptions::default().persistent(true))
            .unwrap();
        q.send(Message::new("x")).unwrap();
        ns.create_queue("again", QueueOptions::default().max_messages(5))
            .unwrap();
        ns.delete_queue("gone").unwrap();
        ns.delete_queue("again").unwrap();
        ns.create_queue("again", QueueOptions::default().max_messages(7))
            .unwrap();
    }
    let b = open(dir.path());
    let ns = b.namespace("n").unwrap();
    assert!(matches!(ns.get_queue("gone"), Err(Error::NotFound(_))));
    assert_eq!(
        ns.get_queue("again").unwrap().options().max_messages,
        Some(7)
    );
}

#[test]
fn long_names_and_extreme_durations_survive() {
    let dir = tempfile::tempdir().unwrap();
    let long = "n".repeat(70_000);
    {
        let b = open(dir.path());
        let ns = b.namespace("n").unwrap();
        let q = ns
            .create_queue(
                "q",
                QueueOptions::default()
                    .on_full(OnFull::Timeout(Duration::MAX))
                    .default_ttl(Duration::from_micros(1500))
                    .lease_time(Duration::from_nanos(123_456_789)),
            )
            .unwrap();
        q.send(Message::new("a").name(long.clone()).persistent(true))
            .unwrap();
        q.send(Message::new("b").persistent(true)).unwrap();
    }
    let b = open(dir.path());
    assert!(b.recovery_report().unwrap().damage.is_empty());
    let q = b.namespace("n").unwrap().get_queue("q").unwrap();
    let o = q.options();
    assert_eq!(o.default_ttl, Some(Duration::from_micros(1500)));
    assert_eq!(o.lease_time, Duration::from_nanos(123_456_789));
    assert!(matches!(o.on_full, OnFull::Timeout(d) if d.as_secs() > 500 * 365 * 86_400));
    // Their TTL (1.5 ms) may have passed; either way the log must be readable.
    let r = b.recovery_report().unwrap();
    assert_eq!(r.messages_recovered, 2, "{r:?}");
}

#[test]
fn a_damaged_leftover_older_than_the_checkpoint_cuts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        let q = b.queue("q").unwrap();
        for i in 0..20 {
            q.send(Message::new(format!("m{i}")).persistent(true))
                .unwrap();
        }
    }
    // A crash between a checkpoint and the clean-up can leave an older, damaged
    // segment behind (numbered before the checkpoint, which is segment 1 here):
    // it must not cut the newer checkpoint.
    std::fs::write(
        dir.path().join("seg-0000000000000000.lqj"),
        vec![0xEEu8; 8192],
    )
    .unwrap();
    let b = open(dir.path());
    let r = b.recovery_report().unwrap();
    assert_eq!(r.messages_recovered, 20, "{r:?}");
    assert!(r.damage.is_empty(), "{r:?}");
    assert_eq!(b.queue("q").unwrap().stats().ready, 20);
}

#[test]
fn a_recreated_dead_letter_queue_keeps_its_options() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        let ns = b.namespace("n").unwrap();
        ns.create_queue(
            "work",
            QueueOptions::default()
                .max_deliveries(2)
                .dead_letter_queue("dead"),
        )
        .unwrap();
        // The DLQ is deleted and created again later, with its own options: its
        // definition now comes after the queue that names it.
        ns.delete_queue("dead").unwrap();
        ns.create_queue("dead", QueueOptions::default().default_priority(7))
            .unwrap();
    }
    let b = open(dir.path());
    let ns = b.namespace("n").unwrap();
    assert_eq!(ns.get_queue("dead").unwrap().options().default_priority, 7);
    assert_eq!(
        ns.get_queue("work")
            .unwrap()
            .options()
            .dead_letter_queue
            .as_deref(),
        Some("dead")
    );
}
