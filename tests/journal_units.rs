//! What the journal promises about units of work and recovery (issue 13):
//!
//! - a batch of persistent messages is recovered whole or not at all, whatever
//!   byte its write was cut at (`a_batch_is_recovered_whole_or_not_at_all`);
//! - a dead-letter move leaves the message in exactly one of the two queues,
//!   whatever byte the write was cut at (`a_dead_letter_move_is_one_unit`), and
//!   a message whose last allowed delivery was cut by a restart is
//!   dead-lettered, never delivered beyond `max_deliveries`;
//! - an interrupted checkpoint never makes a delivery count go back;
//! - a segment cut inside a record's padding opens (the damage reported), any
//!   number of times, without leftover segments;
//! - ids are never reused after a reopen, even when the highest were those of
//!   non-persistent messages, at the cost of one record per 1024 ids;
//! - a version-1 journal (records of types 1 to 6) still opens.
//!
//! The cut-at-every-byte tests simulate a SIGKILL during a write: the journal
//! writes through a shared mapping, so what a killed process leaves is the
//! bytes written so far, followed by zeros (a record's commit mark is written
//! last). `tests/journal_crash/` kills real processes.

use libqueue::store::journal::fuzz;
use libqueue::store::{Record, Storage};
use libqueue::*;
use std::collections::BTreeSet;
use std::fs;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

#[path = "common/segments.rs"]
mod segments;
use segments::{cut_copy, only_segment, opts, segments};

/// Bodies ready in `ns/q` (received leased, then dropped).
fn bodies(b: &Broker, ns: &str, q: &str) -> Vec<String> {
    let q = b.namespace(ns).unwrap().queue(q).unwrap();
    let mut held = Vec::new();
    while let Some(d) = q.try_receive().unwrap() {
        held.push(d);
    }
    held.iter()
        .map(|d| String::from_utf8(d.body().to_vec()).unwrap())
        .collect()
}

#[test]
fn a_batch_is_recovered_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let batch: Vec<String> = (0..5).map(|i| format!("batch-{i}")).collect();
    let before_end;
    {
        let b = Broker::open(opts(dir.path())).unwrap();
        let q = b.queue("q").unwrap();
        q.send(Message::new("before").persistent(true)).unwrap();
        b.flush().unwrap();
        before_end = only_segment(dir.path()).1;
        q.send_batch(
            batch
                .iter()
                .map(|s| Message::new(s.clone()).persistent(true)),
        )
        .unwrap();
        b.close();
    }
    let (seg, end) = only_segment(dir.path());
    assert!(end > before_end + 5 * 40);
    let whole: BTreeSet<String> = std::iter::once("before".to_string())
        .chain(batch.iter().cloned())
        .collect();
    let none: BTreeSet<String> = ["before".to_string()].into();
    let (mut cut_whole, mut cut_none) = (0, 0);
    for at in (before_end..=end).step_by(8) {
        let d = cut_copy(dir.path(), &seg, at);
        let b = Broker::open(opts(d.path())).expect("a cut journal opens");
        let got: BTreeSet<String> = bodies(&b, "default", "q").into_iter().collect();
        if got == whole {
            cut_whole += 1;
        } else if got == none {
            cut_none += 1;
        } else {
            panic!("cut at byte {at}: a part of the batch came back: {got:?}");
        }
    }
    // Only a cut after the batch's last byte keeps it.
    assert_eq!(cut_whole, 1, "{cut_none} cuts lost the whole batch");
}

#[test]
fn a_dead_letter_move_is_one_unit() {
    let dir = tempfile::tempdir().unwrap();
    let qopts = QueueOptions::default()
        .persistent(true)
        .max_deliveries(1)
        .dead_letter_queue("dlq");
    let before_end;
    {
        let b = Broker::open(opts(dir.path())).unwrap();
        let q = b
            .namespace("n")
            .unwrap()
            .create_queue("q", qopts.clone())
            .unwrap();
        q.send(Message::new("m")).unwrap();
        let d = q.try_receive().unwrap().unwrap();
        b.flush().unwrap();
        before_end = only_segment(dir.path()).1;
        d.nack().unwrap(); // delivered once = max: moved to dlq
        b.close();
    }
    let (seg, end) = only_segment(dir.path());
    let (mut in_q, mut in_dlq) = (0, 0);
    for at in (before_end..=end).step_by(8) {
        let d = cut_copy(dir.path(), &seg, at);
        let b = Broker::open(opts(d.path())).expect("a cut journal opens");
        let q = bodies(&b, "n", "q");
        let dlq = bodies(&b, "n", "dlq");
        // Cut before the move: the message comes back in q with its one
        // delivery used up, so the restart dead-letters it (never a 2nd
        // delivery from q); after the move it is in dlq. Never both, never
        // neither.
        assert!(q.is_empty(), "cut at byte {at}: delivered again from q");
        assert_eq!(dlq, vec!["m".to_string()], "cut at byte {at}");
        if at == end {
            in_dlq += 1;
        } else {
            in_q += 1;
        }
        b.close();
        // And once more: the restart's own move is durable (one unit).
        let b = Broker::open(opts(d.path())).unwrap();
        assert!(bodies(&b, "n", "q").is_empty(), "cut at byte {at}: reopen");
        assert_eq!(bodies(&b, "n", "dlq"), vec!["m".to_string()]);
    }
    assert!(in_q > 1 && in_dlq == 1);
}

#[test]
fn a_lease_cut_by_a_restart_at_max_deliveries_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let qopts = QueueOptions::default()
        .persistent(true)
        .max_deliveries(2)
        .dead_letter_queue("dlq");
    {
        let b = Broker::open(opts(dir.path())).unwrap();
        let q = b.namespace("n").unwrap().create_queue("q", qopts).unwrap();
        q.send(Message::new("m")).unwrap();
        q.try_receive().unwrap().unwrap().nack().unwrap();
        let d = q.try_receive().unwrap().unwrap();
        assert_eq!(d.delivery_count(), 2);
        std::mem::forget(d); // leased when the broker goes
        b.close();
    }
    let b = Broker::open(opts(dir.path())).unwrap();
    let ns = b.namespace("n").unwrap();
    assert!(ns.queue("q").unwrap().try_receive().unwrap().is_none());
    let dl = ns.queue("dlq").unwrap().try_receive().unwrap().unwrap();
    assert_eq!(dl.body(), b"m");
    assert_eq!(dl.header_str("x-delivery-count"), Some("2"));
    assert_eq!(dl.header_str("x-dead-letter-queue"), Some("q"));
    dl.ack().unwrap();
    b.close();
    // The move was recorded: nothing comes back.
    let b = Broker::open(opts(dir.path())).unwrap();
    assert!(bodies(&b, "n", "q").is_empty());
    assert!(bodies(&b, "n", "dlq").is_empty());
}

/// A checkpoint interrupted after copying a message's `Enqueued` record (its
/// count 0) must not take the message's delivery count back.
#[test]
fn an_interrupted_checkpoint_never_lowers_a_delivery_count() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = Broker::open(opts(dir.path())).unwrap();
        let q = b.queue("q").unwrap();
        q.send(Message::new("m").persistent(true)).unwrap();
        for n in 1..=2 {
            let d = q.try_receive().unwrap().unwrap();
            assert_eq!(d.delivery_count(), n);
            d.nack().unwrap();
        }
        b.close();
    }
    let (seg, _) = only_segment(dir.path());
    let buf = fs::read(&seg).unwrap();
    let seq = u64::from_le_bytes(buf[16..24].try_into().unwrap());
    let recs = fuzz::records(&buf);
    let enq = recs.iter().find(|r| r.0 == 2).expect("an Enqueued record");
    let del = recs.iter().find(|r| r.0 == 4).expect("a Delivered record");
    // The next segment: a checkpoint's first segment (flagged), holding the
    // byte copy of the Enqueued record and a Delivered record left torn (its
    // commit mark never written): the process died there.
    let mut next = fuzz::segment_file(seq + 1, 2, &[(2, &enq.1[..]), (4, &del.1[..])], true);
    let torn = 64 + ((12 + enq.1.len() + 7) & !7) + 5;
    next[torn] = 0;
    fs::write(
        seg.with_file_name(format!("seg-{:016x}.lqj", seq + 1)),
        next,
    )
    .unwrap();
    let b = Broker::open(opts(dir.path())).unwrap();
    let r = b.recovery_report().unwrap();
    assert!(!r.damage.is_empty(), "{r:?}");
    let d = b.queue("q").unwrap().try_receive().unwrap().unwrap();
    assert_eq!(d.delivery_count(), 3, "{r:?}");
}

/// Issue 13, item 5: the segment cut inside the padding of a record.
#[test]
fn a_segment_cut_in_a_records_padding_opens_every_time() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = Broker::open(BrokerOptions::new().data_dir(dir.path()).segment_size(4096)).unwrap();
        b.queue("q")
            .unwrap()
            .send(Message::new("hello").persistent(true))
            .unwrap();
        b.close();
    }
    let (seg, _) = only_segment(dir.path());
    let buf = fs::read(&seg).unwrap();
    // Find the Enqueued record (type 2) and cut the file after its payload.
    let mut off = 64;
    let cut = loop {
        assert_ne!(buf[off + 4], 0, "no Enqueued record");
        let len = u32::from_le_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        if buf[off + 4] == 2 {
            assert_ne!((12 + len) % 8, 0, "the record has padding");
            break off + 12 + len;
        }
        off += (12 + len + 7) & !7;
    };
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    for attempt in 0..3 {
        let b = Broker::open(BrokerOptions::new().data_dir(dir.path()).segment_size(4096))
            .unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
        let r = b.recovery_report().unwrap().clone();
        if attempt == 0 {
            assert!(r.damage.iter().any(|l| l.contains("truncated")), "{r:?}");
        }
        assert_eq!(bodies(&b, "default", "q"), vec!["hello".to_string()]);
        b.close();
        assert!(
            segments(dir.path()).len() <= 1,
            "{:?}",
            segments(dir.path())
        );
    }
}

#[test]
fn ids_are_not_reused_after_non_persistent_sends() {
    for fifo in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let qo = QueueOptions::default().strict_fifo(fifo);
        let last;
        {
            let b = Broker::open(opts(dir.path())).unwrap();
            let q = b
                .namespace("n")
                .unwrap()
                .create_queue("q", qo.clone())
                .unwrap();
            for _ in 0..3 {
                q.send(Message::new("p").persistent(true)).unwrap();
            }
            last = q.send(Message::new("v")).unwrap();
            b.close();
        }
        for round in 0..3 {
            let b = Broker::open(opts(dir.path())).unwrap();
            let q = b.namespace("n").unwrap().queue("q").unwrap();
            let id = q.send(Message::new("v")).unwrap();
            assert!(id > last, "fifo {fifo} round {round}: id {id} reused");
            // Even after thousands of non-persistent sends (several
            // reservations), a reopen continues above them all.
            let mut top = id;
            for _ in 0..3000 {
                top = q.send(Message::new("v")).unwrap();
            }
            b.close();
            let b = Broker::open(opts(dir.path())).unwrap();
            let q = b.namespace("n").unwrap().queue("q").unwrap();
            let next = q.send(Message::new("v")).unwrap();
            assert!(next > top, "fifo {fifo}: {next} after {top}");
            b.close();
        }
    }
}

/// A durable storage that counts what it is told.
#[derive(Default)]
struct Counting {
    next_ids: AtomicU64,
    other: AtomicU64,
}

impl Storage for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn append(&self, r: &Record<'_>) -> Result<()> {
        match r {
            Record::NextId { .. } => self.next_ids.fetch_add(1, SeqCst),
            _ => self.other.fetch_add(1, SeqCst),
        };
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    fn durable(&self) -> bool {
        true
    }
}

/// The id high-water mark costs one record per 1024 ids, not one per send.
#[test]
fn id_reservations_are_one_record_per_1024_ids() {
    let s = Arc::new(Counting::default());
    let b = Broker::open(BrokerOptions::new().storage(s.clone())).unwrap();
    let q = b.queue("q").unwrap();
    for _ in 0..10_240 {
        q.send(Message::new("v")).unwrap();
    }
    let n = s.next_ids.load(SeqCst);
    assert!((1..=11).contains(&n), "{n} NextId records");
    assert_eq!(
        s.other.load(SeqCst),
        2,
        "the definitions of the default namespace and of the queue only"
    );
}

/// A journal of format version 1 (as earlier builds wrote: records of types
/// 1 to 6) opens, and is rewritten in the current format.
#[test]
fn a_version_1_journal_opens() {
    let src = tempfile::tempdir().unwrap();
    {
        let b = Broker::open(opts(src.path())).unwrap();
        let q = b.queue("q").unwrap();
        for i in 0..4 {
            q.send(Message::new(format!("m{i}")).persistent(true))
                .unwrap();
        }
        let d = q.try_receive().unwrap().unwrap();
        d.ack().unwrap();
        q.try_receive().unwrap().unwrap().nack().unwrap();
        b.close();
    }
    let (seg, _) = only_segment(src.path());
    let buf = fs::read(&seg).unwrap();
    let recs: Vec<(u8, Vec<u8>)> = fuzz::records(&buf)
        .into_iter()
        .filter(|r| r.0 <= 6)
        .collect();
    assert!(recs.iter().any(|r| r.0 == 5), "a checkpoint record");
    let borrowed: Vec<(u8, &[u8])> = recs.iter().map(|(k, p)| (*k, &p[..])).collect();
    let dir = tempfile::tempdir().unwrap();
    let v1 = fuzz::segment_file(1, 1, &borrowed, true);
    assert_eq!(&v1[8..12], &1u32.to_le_bytes());
    fs::write(dir.path().join("seg-0000000000000001.lqj"), v1).unwrap();
    {
        let b = Broker::open(opts(dir.path())).unwrap();
        let r = b.recovery_report().unwrap().clone();
        assert!(r.damage.is_empty(), "{r:?}");
        assert_eq!(r.messages_recovered, 3);
        let q = b.queue("q").unwrap();
        let mut got = Vec::new();
        while let Some(d) = q.try_receive().unwrap() {
            got.push((
                String::from_utf8(d.body().to_vec()).unwrap(),
                d.delivery_count(),
            ));
        }
        got.sort();
        // m1 was delivered once before (nacked): this is its second delivery.
        assert_eq!(
            got,
            vec![("m1".into(), 2), ("m2".into(), 1), ("m3".into(), 1)]
        );
        assert!(q.send(Message::new("new").persistent(true)).unwrap() > 4);
        b.close();
    }
    // Rewritten as version 2 (not continued as version 1).
    let (seg, _) = only_segment(dir.path());
    assert_eq!(&fs::read(&seg).unwrap()[8..12], &2u32.to_le_bytes());
    let b = Broker::open(opts(dir.path())).unwrap();
    assert_eq!(b.recovery_report().unwrap().messages_recovered, 4);
}

#[test]
fn batches_under_sync_always_survive_a_reopen_whole() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = Broker::open(opts(dir.path()).sync_mode(SyncMode::Always)).unwrap();
        let q = b.queue("q").unwrap();
        for k in 0..20 {
            q.send_batch((0..k).map(|i| Message::new(format!("{k}-{i}")).persistent(true)))
                .unwrap();
        }
        b.close();
    }
    let b = Broker::open(opts(dir.path())).unwrap();
    assert_eq!(bodies(&b, "default", "q").len(), (0..20).sum::<usize>());
    let _ = Duration::ZERO;
}

fn enc_str(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// Records whose checksums hold but that cannot be restored (a queue name that
/// is not valid, a queue that is its own dead-letter queue) are left out and
/// reported; the rest opens.
#[test]
fn what_cannot_be_restored_is_left_out_and_reported() {
    let src = tempfile::tempdir().unwrap();
    {
        let b = Broker::open(opts(src.path())).unwrap();
        b.queue("q")
            .unwrap()
            .send(Message::new("keep").persistent(true))
            .unwrap();
        b.close();
    }
    let (seg, _) = only_segment(src.path());
    let mut recs = fuzz::records(&fs::read(&seg).unwrap());
    let enq = recs.iter().find(|r| r.0 == 2).unwrap().1.clone();
    let addr = enc_str("default").len() + enc_str("q").len();
    let mut bad_enq = [enc_str("default"), enc_str("bad name")].concat();
    bad_enq.extend_from_slice(&enq[addr..]);
    let bad_def = [
        enc_str("default"),
        enc_str("bad name"),
        enc_str("persistent=true"),
    ]
    .concat();
    let self_dlq = [
        enc_str("default"),
        enc_str("loop"),
        enc_str("dead_letter_queue=loop"),
    ]
    .concat();
    recs.push((1, bad_def));
    recs.push((2, bad_enq));
    recs.push((1, self_dlq));
    let borrowed: Vec<(u8, &[u8])> = recs.iter().map(|(k, p)| (*k, &p[..])).collect();
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("seg-0000000000000001.lqj"),
        fuzz::segment_file(1, 2, &borrowed, true),
    )
    .unwrap();
    let b = Broker::open(opts(dir.path())).expect("opens with what it can restore");
    let r = b.recovery_report().unwrap().clone();
    assert!(
        r.damage
            .iter()
            .any(|l| l.contains("default/bad name not restored")),
        "{r:?}"
    );
    assert!(
        r.damage
            .iter()
            .any(|l| l.contains("default/loop not restored")),
        "{r:?}"
    );
    assert!(
        r.damage
            .iter()
            .any(|l| l.starts_with("1 messages of queue default/bad name not restored")),
        "{r:?}"
    );
    assert_eq!(r.messages_recovered, 1, "{r:?}");
    assert_eq!(bodies(&b, "default", "q"), vec!["keep".to_string()]);
}
