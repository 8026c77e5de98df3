//! Ordering: FIFO within a priority (higher first), per producer across
//! threads, and queue-wide for a strict-FIFO queue.

use super::*;

pub(super) fn fifo_within_priority_higher_first(f: &Fixture) {
    let q = f.broker().queue("q").unwrap();
    let mut expect = Vec::new();
    let mut sent = Vec::new();
    for i in 0..30u8 {
        let p = i % 3 * 4; // 0, 4, 8
        let id = q.send(Message::new(vec![i]).priority(p)).unwrap();
        sent.push((p, id));
    }
    for p in [8, 4, 0] {
        expect.extend(sent.iter().filter(|(pp, _)| *pp == p).map(|(_, id)| *id));
    }
    assert_eq!(ids(&q), expect);
}

pub(super) fn fifo_per_producer_across_threads(f: &Fixture) {
    let q = f.broker().queue("q").unwrap();
    let producers: Vec<_> = (0..4u8)
        .map(|p| {
            let q = q.clone();
            thread::spawn(move || {
                for i in 0..2000u32 {
                    let mut body = vec![p];
                    body.extend_from_slice(&i.to_le_bytes());
                    q.send(Message::new(body)).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0u32; 4];
    let mut got = 0;
    while got < 8000 {
        if let Some(d) = q
            .receive_auto_ack(Wait::For(Duration::from_secs(5)))
            .unwrap()
        {
            let p = d.body()[0] as usize;
            let i = u32::from_le_bytes(d.body()[1..5].try_into().unwrap());
            assert_eq!(i, next[p], "producer {p} out of order");
            next[p] += 1;
            got += 1;
        }
    }
    for p in producers {
        p.join().unwrap();
    }
}

pub(super) fn strict_fifo_queue_wide(f: &Fixture) {
    let ns = f.broker().namespace("n").unwrap();
    let q = ns.create_queue("q", f.opts().strict_fifo(true)).unwrap();
    let a = q.clone();
    let sent: Vec<u64> = thread::spawn(move || {
        (0..100)
            .map(|_| a.send(Message::new("a")).unwrap())
            .collect()
    })
    .join()
    .unwrap();
    let more: Vec<u64> = (0..100)
        .map(|_| q.send(Message::new("b")).unwrap())
        .collect();
    let all: Vec<u64> = sent.into_iter().chain(more).collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(ids(&q), all);
}
