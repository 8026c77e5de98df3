//! Persistence across a reopen.
//!
//! Each runs on both backends; the part after `f.reopen(..)` (closing the broker
//! and opening its data directory again) runs on the journal only.

use super::*;

/// Receives everything ready (leased), returning (id, delivery count, body).
fn drain(q: &Queue) -> Vec<(u64, u32, Vec<u8>)> {
    let mut v = Vec::new();
    while let Some(d) = q.try_receive().unwrap() {
        v.push((d.id(), d.delivery_count(), d.body().to_vec()));
        d.ack().unwrap();
    }
    v
}

#[test]
fn conformance_fixture_persists_only_over_the_journal() {
    for backend in [Backend::Memory, Backend::Journal, Backend::Attached] {
        let f = Fixture::new(backend);
        let b = f.broker();
        let id = b.queue("q").unwrap().send(Message::new("x")).unwrap();
        let d = b.queue("q").unwrap().try_receive().unwrap().unwrap();
        assert_eq!(d.id(), id);
        assert_eq!(d.is_persistent(), f.is_journal(), "{backend:?}");
        assert_eq!(
            b.storage_name(),
            if f.is_journal() { "journal" } else { "memory" }
        );
        assert_eq!(f.reopen(b).is_some(), f.is_journal());
    }
}

pub(super) fn reopen_after_ack_nack_and_extend(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().lease_time(100 * MS))
        .unwrap();
    let send = |body: &str| {
        q.send(
            Message::new(body)
                .name(body)
                .header("k", body)
                .header("bin", vec![0u8, 0xff])
                .correlation_id(format!("c-{body}")),
        )
        .unwrap()
    };
    let (acked, nacked, extended, untouched) = (send("a"), send("n"), send("e"), send("u"));
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!(d.id(), acked);
    d.ack().unwrap();
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!(d.id(), nacked);
    d.nack().unwrap();
    let e = q.try_receive().unwrap().unwrap();
    assert_eq!(e.id(), extended);
    clock.advance(80 * MS);
    e.extend().unwrap();
    let Some(b) = f.reopen(b) else { return };
    // Leases are not kept: the extended message is ready again, its delivery counted.
    let q = b.namespace("n").unwrap().get_queue("q").unwrap();
    assert_eq!(q.options().lease_time, 100 * MS);
    let s = q.stats();
    assert_eq!((s.ready, s.leased, s.delayed), (3, 0, 0));
    let mut got = Vec::new();
    while let Some(d) = q.try_receive().unwrap() {
        let body = String::from_utf8(d.body().to_vec()).unwrap();
        assert_eq!(d.name(), Some(body.as_str()));
        assert_eq!(d.header_str("k"), Some(body.as_str()));
        assert_eq!(d.header("bin"), Some(&[0u8, 0xff][..]));
        assert_eq!(d.correlation_id(), Some(format!("c-{body}").as_str()));
        assert!(d.is_persistent());
        got.push((d.id(), d.delivery_count()));
        d.ack().unwrap();
    }
    got.sort();
    assert_eq!(got, vec![(nacked, 2), (extended, 2), (untouched, 1)]);
    let b = f.reopen(b).unwrap();
    let q = b.namespace("n").unwrap().get_queue("q").unwrap();
    assert_eq!(q.stats().depth(), 0, "acked after the first reopen: gone");
}

pub(super) fn reopen_after_dead_letter_move(f: &Fixture) {
    let (clock, b) = f.manual();
    let ns = b.namespace("n").unwrap();
    let q = ns
        .create_queue(
            "work",
            f.opts()
                .lease_time(10 * MS)
                .max_deliveries(2)
                .dead_letter_queue("work.dlq"),
        )
        .unwrap();
    let poison = q
        .send(Message::new("poison").name("p").header("k", "v"))
        .unwrap();
    let slow = q.send(Message::new("slow")).unwrap();
    q.try_receive().unwrap().unwrap().nack().unwrap(); // poison: 1
    drop(q.try_receive().unwrap().unwrap()); // slow: 1, its lease will expire
    q.try_receive().unwrap().unwrap().nack().unwrap(); // poison: 2 → dead letter
    assert_eq!(ns.get_queue("work.dlq").unwrap().stats().ready, 1);
    let Some(b) = f.reopen(b) else { return };
    let ns = b.namespace("n").unwrap();
    let q = ns.get_queue("work").unwrap();
    assert_eq!(q.options().max_deliveries, Some(2));
    assert_eq!(q.options().dead_letter_queue.as_deref(), Some("work.dlq"));
    let dlq = ns.get_queue("work.dlq").unwrap();
    assert_eq!(dlq.stats().ready, 1);
    let dl = dlq.try_receive().unwrap().unwrap();
    assert_eq!((dl.body(), dl.name()), (&b"poison"[..], Some("p")));
    assert_eq!(dl.header_str("k"), Some("v"));
    assert_eq!(
        dl.header_str("x-dead-letter-reason"),
        Some("nacked; delivered 2 times (max_deliveries 2)")
    );
    assert_eq!(dl.header_str("x-dead-letter-queue"), Some("work"));
    assert_eq!(
        dl.header_str("x-original-id"),
        Some(poison.to_string().as_str())
    );
    assert_eq!(dl.delivery_count(), 1);
    dl.ack().unwrap();
    // "slow" came back ready with its one delivery; the second one is its last.
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!((d.id(), d.delivery_count()), (slow, 2));
    drop(d);
    clock.advance(10 * MS);
    assert!(q.try_receive().unwrap().is_none());
    let dl = dlq.try_receive().unwrap().unwrap();
    assert!(dl
        .header_str("x-dead-letter-reason")
        .unwrap()
        .starts_with("lease expired"));
    dl.ack().unwrap();
    let b = f.reopen(b).unwrap();
    let ns = b.namespace("n").unwrap();
    assert_eq!(ns.stats().totals.depth(), 0);
}

pub(super) fn reopen_ttl_expiry_on_the_clock(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b.queue("q").unwrap();
    let short = q.send(Message::new("short").ttl(100 * MS)).unwrap();
    let long = q.send(Message::new("long").ttl(300 * MS)).unwrap();
    let forever = q.send(Message::new("forever")).unwrap();
    let gone = q.send(Message::new("gone").ttl(10 * MS)).unwrap();
    let held = q.send(Message::new("held").ttl(200 * MS)).unwrap();
    let expires = START + 300_000_000;
    clock.advance(50 * MS); // "gone" expired, not yet swept
    let peek: Vec<u64> = q.peek(10).unwrap().iter().map(|m| m.id()).collect();
    assert_eq!(peek, vec![short, long, forever, held]);
    let _d = q.try_receive().unwrap().unwrap(); // short, leased
    let _ = gone;
    let Some(b) = f.reopen(b) else { return };
    let q = b.queue("q").unwrap();
    assert_eq!(q.stats().ready, 4);
    clock.advance(60 * MS); // 110 ms: "short" expired meanwhile
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!((d.id(), d.expires_at()), (long, Some(expires)));
    d.nack().unwrap();
    // 210 ms: "held" expired too. The advance swept it at once (timers run
    // whether or not anyone calls in); a sweep hands the ready messages on in
    // id order, so the nacked "long" need not come last: compare the sets.
    clock.advance(100 * MS);
    let mut left = ids(&q);
    left.sort_unstable();
    assert_eq!(left, vec![long, forever]);
    assert_eq!(q.stats().expired, 2);
    let b = f.reopen(b).unwrap();
    assert_eq!(b.queue("q").unwrap().stats().depth(), 0);
}

pub(super) fn reopen_delay_on_the_clock(f: &Fixture) {
    let (clock, b) = f.manual();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().default_delay(200 * MS))
        .unwrap();
    let late = q.send(Message::new("late").delay(100 * MS)).unwrap();
    let default = q.send(Message::new("default")).unwrap();
    let now = q.send(Message::new("now").delay(Duration::ZERO)).unwrap();
    let past = q.send(Message::new("past").delay(10 * MS)).unwrap();
    assert_eq!(q.stats().delayed, 3);
    clock.advance(50 * MS); // "past" is due (promoted by the next receive or stats)
    let Some(b) = f.reopen(b) else { return };
    let q = b.namespace("n").unwrap().get_queue("q").unwrap();
    assert_eq!(q.options().default_delay, Some(200 * MS));
    let s = q.stats();
    assert_eq!((s.ready, s.delayed), (2, 2), "{s:?}");
    assert_eq!(ids(&q), vec![now, past]);
    clock.advance(49 * MS);
    assert!(q.try_receive().unwrap().is_none());
    clock.advance(MS);
    assert_eq!(ids(&q), vec![late]);
    clock.advance(99 * MS);
    assert!(q.try_receive().unwrap().is_none());
    clock.advance(MS);
    assert_eq!(ids(&q), vec![default]);
}

pub(super) fn reopen_after_purge_cancel_and_delete(f: &Fixture) {
    let b = f.broker();
    let ns = b.namespace("n").unwrap();
    let p = ns.create_queue("purged", f.opts()).unwrap();
    p.send_batch((0..5).map(|_| Message::new("x"))).unwrap();
    p.send(Message::new("later").delay(Duration::from_secs(60)))
        .unwrap();
    p.send(Message::new("ready")).unwrap();
    let held = p.try_receive().unwrap().unwrap(); // the first of the batch
    let held_id = held.id();
    // Purge takes ready and delayed messages; the leased one stays.
    assert_eq!(p.purge().unwrap(), 6);
    let c = ns.create_queue("cancelled", f.opts()).unwrap();
    let a = c.send(Message::new("a")).unwrap();
    let d = c
        .send(Message::new("d").delay(Duration::from_secs(60)))
        .unwrap();
    let z = c.send(Message::new("z")).unwrap();
    c.cancel(a).unwrap();
    c.cancel(d).unwrap();
    let gone = ns.create_queue("deleted", f.opts()).unwrap();
    gone.send(Message::new("1")).unwrap();
    let _leased = gone.try_receive().unwrap().unwrap();
    gone.send(Message::new("2")).unwrap();
    ns.delete_queue("deleted").unwrap();
    let Some(b) = f.reopen(b) else { return };
    let ns = b.namespace("n").unwrap();
    assert_eq!(ns.list_queues(), vec!["cancelled", "purged"]);
    let p = ns.get_queue("purged").unwrap();
    assert_eq!(
        drain(&p).iter().map(|m| (m.0, m.1)).collect::<Vec<_>>(),
        vec![(held_id, 2)]
    );
    let c = ns.get_queue("cancelled").unwrap();
    assert_eq!(ids(&c), vec![z]);
    assert_eq!(c.stats().delayed, 0);
    // A queue of the deleted one's name starts empty.
    assert_eq!(ns.queue("deleted").unwrap().stats().depth(), 0);
}

pub(super) fn reopen_keeps_priority_order(f: &Fixture) {
    let b = f.broker();
    let q = b.queue("q").unwrap();
    let mut sent = Vec::new();
    for i in 0..40u8 {
        let p = (u16::from(i) * 7 % 10) as u8;
        sent.push((p, q.send(Message::new(vec![i]).priority(p)).unwrap()));
    }
    let mut expect: Vec<(u8, u64)> = sent.clone();
    expect.sort_by_key(|(p, id)| (std::cmp::Reverse(*p), *id));
    let expect: Vec<u64> = expect.into_iter().map(|(_, id)| id).collect();
    let peek: Vec<u64> = q.peek(100).unwrap().iter().map(|m| m.id()).collect();
    assert_eq!(peek, expect);
    let Some(b) = f.reopen(b) else {
        assert_eq!(ids(&q), expect);
        return;
    };
    let q = b.queue("q").unwrap();
    for m in q.peek(100).unwrap() {
        let p = sent.iter().find(|(_, id)| *id == m.id()).unwrap().0;
        assert_eq!(m.priority(), p);
    }
    assert_eq!(ids(&q), expect);
}

pub(super) fn reopen_ids_continue(f: &Fixture) {
    let b = f.broker();
    let q = b.queue("q").unwrap();
    let first = q.send_batch((0..10).map(|_| Message::new("x"))).unwrap();
    let dlq_src = b
        .default_namespace()
        .unwrap()
        .create_queue("src", f.opts().max_deliveries(1).dead_letter_queue("dl"))
        .unwrap();
    dlq_src.send(Message::new("d")).unwrap();
    dlq_src.try_receive().unwrap().unwrap().nack().unwrap();
    // Ack all but the highest id and one in the middle.
    for d in q.receive_batch(10, Wait::Try).unwrap() {
        if d.id() == first[9] || d.id() == first[4] {
            drop(d);
        } else {
            d.ack().unwrap();
        }
    }
    let Some(b) = f.reopen(b) else { return };
    let q = b.queue("q").unwrap();
    let next = q.send(Message::new("new")).unwrap();
    assert!(next > first[9], "id {next} reused (ids up to {})", first[9]);
    let all = ids(&q);
    assert_eq!(all, vec![first[4], first[9], next]);
    let dl = b.queue("dl").unwrap();
    let moved = dl.peek(1).unwrap()[0].id();
    assert!(dl.send(Message::new("y")).unwrap() > moved);
}

pub(super) fn reopen_ids_not_reused_after_everything_was_acked(f: &Fixture) {
    let b = f.broker();
    let q = b.queue("q").unwrap();
    let sent = q.send_batch((0..3).map(|_| Message::new("x"))).unwrap();
    assert_eq!(ids(&q), sent);
    let Some(b) = f.reopen(b) else { return };
    let next = b.queue("q").unwrap().send(Message::new("new")).unwrap();
    assert!(next > sent[2], "id {next} reused (ids up to {})", sent[2]);
}

pub(super) fn reopen_keeps_queue_options_and_volatile_messages_are_lost(f: &Fixture) {
    let b = f.broker();
    let ns = b.namespace("n").unwrap();
    let opts = f
        .opts()
        .max_messages(7)
        .max_bytes(1000)
        .on_full(OnFull::Reject)
        .default_ttl(Duration::from_secs(60))
        .default_priority(3)
        .lease_time(Duration::from_secs(9))
        .max_deliveries(4)
        .dead_letter_queue("dead")
        .strict_fifo(true);
    let q = ns.create_queue("q", opts.clone()).unwrap();
    ns.create_queue("plain", QueueOptions::default()).unwrap();
    let kept = q.send(Message::new("kept")).unwrap();
    q.send(Message::new("volatile").persistent(false)).unwrap();
    let Some(b) = f.reopen(b) else { return };
    let ns = b.namespace("n").unwrap();
    assert_eq!(ns.list_queues(), vec!["dead", "plain", "q"]);
    let q = ns.get_queue("q").unwrap();
    assert_eq!(q.options(), &opts);
    assert!(!ns.get_queue("plain").unwrap().options().persistent);
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!((d.id(), d.priority()), (kept, 3));
    assert!(q.try_receive().unwrap().is_none(), "non-persistent: gone");
}

pub(super) fn reopen_stats_gauges_are_exact(f: &Fixture) {
    let (clock, b) = f.manual();
    let ns = b.namespace("n").unwrap();
    let q = ns.queue("q").unwrap();
    q.send(Message::new("12345").name("nm")).unwrap();
    clock.advance(5 * MS);
    q.send(Message::new("123").header("k", "v")).unwrap();
    q.send(Message::new("1").delay(10 * MS)).unwrap();
    let _leased = q.try_receive().unwrap().unwrap();
    let before = q.stats();
    let Some(b) = f.reopen(b) else { return };
    let q = b.namespace("n").unwrap().get_queue("q").unwrap();
    let s = q.stats();
    // The leased message is ready again; counters restart (not journaled).
    assert_eq!(
        (s.ready, s.leased, s.delayed, s.bytes, s.oldest_age),
        (2, 0, 1, before.bytes, before.oldest_age)
    );
    assert_eq!(s.depth(), before.depth());
}

pub(super) fn reopen_repeatedly_keeps_delivery_counts(f: &Fixture) {
    let b = f.broker();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().max_deliveries(3).dead_letter_queue("q.dlq"))
        .unwrap();
    let id = q.send(Message::new("x")).unwrap();
    q.send(Message::new("ok")).unwrap();
    let mut b = b;
    for round in 1..=3u32 {
        let q = b.namespace("n").unwrap().get_queue("q").unwrap();
        let d = q.try_receive().unwrap().unwrap();
        assert_eq!((d.id(), d.delivery_count()), (id, round));
        if round < 3 {
            drop(d); // leased when the broker closes
        } else {
            d.nack().unwrap(); // the third delivery: dead-lettered
        }
        match f.reopen(b) {
            Some(next) => b = next,
            None => return,
        }
    }
    let ns = b.namespace("n").unwrap();
    let q = ns.get_queue("q").unwrap();
    assert_eq!(drain(&q).len(), 1);
    let dl = ns
        .get_queue("q.dlq")
        .unwrap()
        .try_receive()
        .unwrap()
        .unwrap();
    assert_eq!(dl.header_str("x-delivery-count"), Some("3"));
}

pub(super) fn reopen_after_auto_ack_and_batches(f: &Fixture) {
    let b = f.broker();
    let q = b.queue("q").unwrap();
    let sent = q
        .send_batch((0..10u8).map(|i| Message::new(vec![i])))
        .unwrap();
    assert_eq!(q.receive_batch_auto_ack(3, Wait::Try).unwrap().len(), 3);
    q.receive_auto_ack(Wait::Try).unwrap().unwrap();
    let batch = q.receive_batch(3, Wait::Try).unwrap();
    for d in batch.into_iter().skip(1) {
        d.ack().unwrap();
    }
    let Some(b) = f.reopen(b) else { return };
    let q = b.queue("q").unwrap();
    let got = drain(&q);
    let want: Vec<(u64, u32, Vec<u8>)> = [4usize, 7, 8, 9]
        .iter()
        .map(|&i| (sent[i], if i == 4 { 2 } else { 1 }, vec![i as u8]))
        .collect();
    assert_eq!(got, want);
}

/// Consumed messages' nodes (and bodies up to 4 KiB) are recycled for later
/// sends on the same thread: nothing of an old message may show through a new
/// one — not its headers, name, correlation id, priority, expiry, delivery
/// count or body bytes — whether the new one is a `Message` or a `send_bytes`
/// copy of the same length (buffer reused in place) or another length.
pub(super) fn recycled_messages_carry_nothing_over(f: &Fixture) {
    let b = f.broker();
    let q = b
        .namespace("n")
        .unwrap()
        .create_queue("q", f.opts().max_deliveries(5))
        .unwrap();
    let full = || {
        Message::new("old!")
            .name("old-name")
            .correlation_id("old-corr")
            .header("k", "v")
            .priority(9)
            .ttl(Duration::from_secs(3600))
    };
    for round in 0..3 {
        // Leased, nacked once (delivery count 2), then acked; and auto-acked.
        q.send(full()).unwrap();
        q.try_receive().unwrap().unwrap().nack().unwrap();
        let d = q.try_receive().unwrap().unwrap();
        assert_eq!(d.delivery_count(), 2);
        d.ack().unwrap();
        q.send(full()).unwrap();
        drop(q.receive_auto_ack(Wait::Try).unwrap().unwrap());

        let ids = [
            q.send_bytes(b"new1").unwrap(),
            q.send_bytes(b"xy").unwrap(),
            q.send(Message::new("newer")).unwrap(),
            q.send_bytes(&[7u8; 4096]).unwrap(),
            q.send_bytes(b"").unwrap(),
        ];
        let bodies: [&[u8]; 5] = [b"new1", b"xy", b"newer", &[7u8; 4096], b""];
        let s = q.stats();
        assert_eq!(
            s.bytes,
            bodies.iter().map(|b| b.len() as u64).sum::<u64>(),
            "round {round}"
        );
        let b2 = f.reopen(b.clone());
        let q2 = match &b2 {
            Some(b2) => b2.namespace("n").unwrap().queue("q").unwrap(),
            None => q.clone(),
        };
        for (id, body) in ids.iter().zip(bodies) {
            let d = q2.try_receive().unwrap().unwrap();
            assert_eq!(d.id(), *id, "round {round}");
            assert_eq!(d.body(), body);
            assert!(d.headers().is_empty(), "headers carried over");
            assert_eq!((d.name(), d.correlation_id()), (None, None));
            assert_eq!(d.priority(), DEFAULT_PRIORITY);
            assert_eq!(d.expires_at(), None);
            assert_eq!(d.delivery_count(), 1);
            d.ack().unwrap();
        }
        assert!(q2.try_receive().unwrap().is_none());
        if b2.is_some() {
            return; // the journal variant ends after one reopen
        }
    }
}
