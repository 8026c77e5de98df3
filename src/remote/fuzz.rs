//! Entry points for fuzzing the wire format's decoders (`tests/fuzz_wire.rs`,
//! a seeded run on stable, and the cargo-fuzz target `tests/fuzz/` target
//! `decode_frame`). Not part of the API.
//!
//! [`decode_request`] decodes a request frame's body field by field exactly
//! as the host's `handle()` does before it runs anything, without running it.
//! It mirrors that code (which also runs the calls): a new op, or a changed
//! field, goes in both places. Two tests keep them in step:
//! `every_op_has_a_sample` here (every op in `wire::op` has a frame in
//! [`sample_requests`] that this decoder accepts), and `tests/fuzz_wire.rs`
//! `host_and_mirror_agree`, which sends the samples and mutations of them to
//! a live host and checks that it drops exactly the connections whose frame
//! this decoder refuses.

use super::wire::{op, DResult, Dec, Enc, Malformed, HEADER, MAX_FRAME, MAX_HELLO, VERSION};
use crate::error::Error;
use crate::types::{Filter, Message, OnFull, QueueOptions, Quotas, Wait};
use std::time::Duration;

/// Decodes a request frame's body (after the length prefix) as the host
/// does, without running it: `Ok(op)` when the host would run it, `Err` when
/// the host would drop the connection that sent it. Never panics; allocates
/// at most a small multiple of `body.len()`.
pub fn decode_request(body: &[u8]) -> DResult<u8> {
    let mut d = Dec::new(body);
    let (_id, o) = d.header()?;
    match o {
        op::NAMESPACE => {
            d.string()?;
            if d.bool()? {
                d.quotas()?;
            }
            d.bool()?;
        }
        op::GET_NAMESPACE | op::LIST_QUEUES | op::NS_STATS | op::LIST_TOPICS => {
            d.string()?;
        }
        op::NAMESPACES | op::FLUSH | op::HOST_INFO => {}
        op::QUEUE => {
            d.string()?;
            d.string()?;
            if d.bool()? {
                d.options()?;
            }
            if d.u8()? > 2 {
                return Err(Malformed("bad queue mode"));
            }
        }
        op::DELETE_QUEUE | op::TOPIC | op::SUBSCRIPTIONS | op::TOPIC_STATS => {
            d.string()?;
            d.string()?;
        }
        // A queue named `ns queue serial` (what a handle of the queue sends).
        op::PURGE | op::QUEUE_STATS => {
            queue_at(&mut d)?;
        }
        op::SEND => {
            queue_at(&mut d)?;
            if d.bool()? {
                d.on_full()?;
            }
            let batch = d.bool()?;
            let msgs = d.messages()?;
            if !batch && msgs.len() != 1 {
                return Err(Malformed("a single send carries one message"));
            }
        }
        op::RECEIVE => {
            queue_at(&mut d)?;
            d.u32()?;
            d.wait()?;
            d.bool()?;
        }
        op::PEEK => {
            queue_at(&mut d)?;
            d.u32()?;
        }
        op::CANCEL | op::GIVE_BACK | op::WATCH => {
            queue_at(&mut d)?;
            d.u64()?;
        }
        op::ABORT | op::DEADLINE | op::FORGET => {
            d.u64()?;
        }
        op::RECLAIM => {
            let n = d.count(17)?;
            for _ in 0..n {
                d.string()?;
                d.string()?;
                d.u64()?;
                d.u32()?;
            }
        }
        op::ACK_BATCH => {
            let n = d.count(8)?;
            for _ in 0..n {
                d.u64()?;
            }
        }
        op::SETTLE => {
            d.u64()?;
            d.bool()?;
            d.opt_dur()?;
            d.string()?;
        }
        op::EXTEND => {
            d.u64()?;
            d.dur()?;
        }
        op::PUBLISH => {
            d.string()?;
            d.string()?;
            d.message()?;
        }
        op::SUBSCRIBE => {
            d.string()?;
            d.string()?;
            d.string()?;
            d.filter()?;
        }
        op::UNSUBSCRIBE | op::TOPIC_FILTER => {
            d.string()?;
            d.string()?;
            d.string()?;
        }
        _ => return Err(Malformed("unknown op")),
    }
    d.end()?;
    Ok(o)
}

/// `ns queue serial`.
fn queue_at(d: &mut Dec<'_>) -> DResult<()> {
    d.string()?;
    d.string()?;
    d.u64()?;
    Ok(())
}

/// Decodes a connection's first frame as the host does: `Ok(version)` when
/// it is a `HELLO` (a version other than [`VERSION`] is answered with an
/// error, then the connection closes).
pub fn decode_hello(body: &[u8]) -> DResult<u16> {
    if body.len() > MAX_HELLO {
        return Err(Malformed("HELLO too long"));
    }
    let mut d = Dec::new(body);
    let (_id, o) = d.header()?;
    if o != op::HELLO {
        return Err(Malformed("first frame is not HELLO"));
    }
    let v = d.u16()?;
    if v == VERSION {
        d.u32()?;
        d.end()?;
    }
    Ok(v)
}

/// Splits a byte stream into frames as the host's reader does (a length out
/// of `HEADER..=MAX_FRAME`, or a cut-off frame, ends it) and decodes the first
/// as a `HELLO` and the rest as requests, stopping where the host would drop
/// the connection. Returns how many frames decoded.
pub fn decode_stream(mut buf: &[u8]) -> usize {
    let mut n = 0;
    while buf.len() >= 4 {
        let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let max = if n == 0 { MAX_HELLO } else { MAX_FRAME };
        if !(HEADER..=max).contains(&len) || buf.len() - 4 < len {
            break;
        }
        let body = &buf[4..4 + len];
        buf = &buf[4 + len..];
        let ok = if n == 0 {
            decode_hello(body) == Ok(VERSION)
        } else {
            decode_request(body).is_ok()
        };
        if !ok {
            break;
        }
        n += 1;
    }
    n
}

/// Reads a sequence of values from `data`, each read chosen by the next byte
/// of `data` (every `Dec` method, the answers' shapes included: nodes, stats,
/// errors, host information); stops at the first that does not decode.
/// Returns how many decoded. Never panics.
pub fn decode_values(data: &[u8]) -> usize {
    let mut d = Dec::new(data);
    let mut n = 0;
    loop {
        let Ok(which) = d.u8() else { return n };
        let r: DResult<()> = match which % 24 {
            0 => d.header().map(drop),
            1 => d.bool().map(drop),
            2 => d.u16().map(drop),
            3 => d.count(1).map(drop),
            4 => d.bytes().map(drop),
            5 => d.string().map(drop),
            6 => d.opt_u64().map(drop),
            7 => d.opt_string().map(drop),
            8 => d.opt_dur().map(drop),
            9 => d.strs().map(drop),
            10 => d.message().map(drop),
            11 => d.messages().map(drop),
            12 => d.node().map(drop),
            13 => d.on_full().map(drop),
            14 => d.wait().map(drop),
            15 => d.quotas().map(drop),
            16 => d.options().map(drop),
            17 => d.queue_stats().map(drop),
            18 => d.topic_stats().map(drop),
            19 => d.filter().map(drop),
            20 => d.error().map(drop),
            21 => d.host_info().map(drop),
            22 => d.end(),
            _ => d.u64().map(drop),
        };
        if r.is_err() {
            return n;
        }
        n += 1;
    }
}

/// The cargo-fuzz target's input: the first byte picks a request body
/// ([`decode_request`]), a byte stream of frames ([`decode_stream`]), a
/// `HELLO` ([`decode_hello`]) or a sequence of values ([`decode_values`]).
pub fn decode_input(data: &[u8]) -> usize {
    let Some((&kind, rest)) = data.split_first() else {
        return 0;
    };
    match kind % 4 {
        0 => decode_request(rest).is_ok() as usize,
        1 => decode_stream(rest),
        2 => decode_hello(rest).is_ok() as usize,
        _ => decode_values(rest),
    }
}

/// One valid request frame (length prefix included) for every op a client
/// sends after `HELLO`, with every optional field present in some, built with
/// [`Enc`] as the client builds them; request ids are 1, 2, …. None waits
/// long on a host (timeouts of a few milliseconds).
pub fn sample_requests() -> Vec<(u8, Vec<u8>)> {
    let ms = Duration::from_millis;
    let msg = Message::new("body")
        .name("n")
        .correlation_id("c")
        .header("k", "v")
        .header("bin", vec![0u8, 0xff])
        .priority(3)
        .ttl(Duration::from_secs(60))
        .delay(Duration::ZERO)
        .persistent(false);
    let plain = Message::new(Vec::<u8>::new());
    let opts = QueueOptions::default()
        .max_messages(100)
        .max_bytes(1 << 20)
        .on_full(OnFull::Timeout(ms(5)))
        .default_ttl(Duration::from_secs(60))
        .default_delay(Duration::ZERO)
        .default_priority(2)
        .lease_time(Duration::from_secs(30))
        .max_deliveries(5)
        .dead_letter_queue("fz.dlq")
        .shards(2);
    let quotas = Quotas::default()
        .max_queues(50)
        .max_messages(1000)
        .max_bytes(1 << 24)
        .max_message_size(1 << 20);
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut id = 0u64;
    let mut add = |o: u8, f: &dyn Fn(&mut Enc)| {
        id += 1;
        let mut e = Enc::new(id, o);
        f(&mut e);
        out.push((o, e.finish().expect("a small frame")));
    };
    let (ns, q, t) = ("fz", "fq", "ft");
    add(op::NAMESPACE, &|e| {
        e.str(ns).u8(1).quotas(&quotas).bool(true);
    });
    add(op::NAMESPACE, &|e| {
        e.str(ns).u8(0).bool(false);
    });
    add(op::GET_NAMESPACE, &|e| {
        e.str(ns);
    });
    add(op::NAMESPACES, &|_| {});
    add(op::FLUSH, &|_| {});
    add(op::HOST_INFO, &|_| {});
    add(op::QUEUE, &|e| {
        e.str(ns).str(q).u8(0).u8(0);
    });
    add(op::QUEUE, &|e| {
        e.str(ns).str("fq2").u8(1).options(&opts).u8(1);
    });
    add(op::QUEUE, &|e| {
        e.str(ns).str(q).u8(0).u8(2);
    });
    add(op::LIST_QUEUES, &|e| {
        e.str(ns);
    });
    add(op::NS_STATS, &|e| {
        e.str(ns);
    });
    add(op::TOPIC, &|e| {
        e.str(ns).str(t);
    });
    add(op::LIST_TOPICS, &|e| {
        e.str(ns);
    });
    add(op::SEND, &|e| {
        e.str(ns)
            .str(q)
            .u64(0)
            .u8(0)
            .bool(false)
            .u32(1)
            .message(&msg);
    });
    add(op::SEND, &|e| {
        e.str(ns)
            .str(q)
            .u64(0)
            .u8(1)
            .on_full(OnFull::Reject)
            .bool(true);
        e.u32(3).message(&plain).message(&msg).message(&plain);
    });
    add(op::SEND, &|e| {
        e.str(ns)
            .str(q)
            .u64(0)
            .u8(1)
            .on_full(OnFull::Timeout(ms(2)))
            .bool(true)
            .u32(0);
    });
    add(op::RECEIVE, &|e| {
        e.str(ns).str(q).u64(0).u32(2).wait(Wait::Try).bool(false);
    });
    add(op::RECEIVE, &|e| {
        e.str(ns)
            .str(q)
            .u64(0)
            .u32(1)
            .wait(Wait::For(ms(5)))
            .bool(true);
    });
    add(op::PEEK, &|e| {
        e.str(ns).str(q).u64(0).u32(10);
    });
    add(op::CANCEL, &|e| {
        e.str(ns).str(q).u64(0).u64(12345);
    });
    add(op::PURGE, &|e| {
        e.str(ns).str("fq2").u64(0);
    });
    add(op::QUEUE_STATS, &|e| {
        e.str(ns).str(q).u64(0);
    });
    add(op::WATCH, &|e| {
        e.str(ns).str(q).u64(0).u64(5);
    });
    add(op::ABORT, &|e| {
        e.u64(999);
    });
    add(op::SETTLE, &|e| {
        e.u64(77).bool(true).opt_dur(Some(ms(1))).str("why");
    });
    add(op::SETTLE, &|e| {
        e.u64(78).bool(false).opt_dur(None).str("");
    });
    add(op::ACK_BATCH, &|e| {
        e.u32(3).u64(77).u64(78).u64(79);
    });
    add(op::EXTEND, &|e| {
        e.u64(77).dur(ms(100));
    });
    add(op::DEADLINE, &|e| {
        e.u64(77);
    });
    add(op::GIVE_BACK, &|e| {
        e.str(ns).str(q).u64(0).u64(77);
    });
    add(op::FORGET, &|e| {
        e.u64(77);
    });
    add(op::RECLAIM, &|e| {
        e.u32(2)
            .str(ns)
            .str("q")
            .u64(1)
            .u32(1)
            .str(ns)
            .str("nope")
            .u64(9)
            .u32(3);
    });
    add(op::SUBSCRIBE, &|e| {
        e.str(ns).str(t).str("fs1").filter(&Filter::All);
    });
    add(op::SUBSCRIBE, &|e| {
        e.str(ns).str(t).str("fs2").filter(&Filter::name("n"));
    });
    add(op::SUBSCRIBE, &|e| {
        e.str(ns)
            .str(t)
            .str("fs3")
            .filter(&Filter::header("k", "v"));
    });
    add(op::PUBLISH, &|e| {
        e.str(ns).str(t).message(&msg);
    });
    add(op::SUBSCRIPTIONS, &|e| {
        e.str(ns).str(t);
    });
    add(op::TOPIC_STATS, &|e| {
        e.str(ns).str(t);
    });
    add(op::TOPIC_FILTER, &|e| {
        e.str(ns).str(t).str("fs3");
    });
    add(op::UNSUBSCRIBE, &|e| {
        e.str(ns).str(t).str("fs1");
    });
    add(op::DELETE_QUEUE, &|e| {
        e.str(ns).str("fq2");
    });
    out
}

/// A `HELLO` frame of this build (request id 0).
pub fn hello_frame() -> Vec<u8> {
    let mut e = Enc::new(0, op::HELLO);
    e.u16(VERSION).u32(std::process::id());
    e.finish().expect("small")
}

/// Encoded answers of every shape (length prefix included), for the value
/// decoders' seeds: errors of every kind, nodes, statistics, host information.
pub fn sample_values() -> Vec<Vec<u8>> {
    let errors = [
        Error::InvalidName("x".into()),
        Error::InvalidArgument("x".into()),
        Error::MessageTooLarge { size: 9, limit: 8 },
        Error::Full,
        Error::QuotaExceeded {
            namespace: "ns".into(),
            quota: "max_bytes",
            limit: 7,
        },
        Error::Timeout,
        Error::Closed,
        Error::NotFound("x".into()),
        Error::AlreadyExists("x".into()),
        Error::LeaseExpired { id: 3 },
        Error::InvalidState("x".into()),
        Error::Storage("x".into()),
        Error::Remote("x".into()),
        Error::Locked("x".into()),
        Error::Io("x".into()),
        Error::Forked,
    ];
    let mut out = Vec::new();
    for e in &errors {
        let mut enc = Enc::new(0, 20); // decode_values: 20 = an error
        enc.error(e);
        out.push(enc.finish().expect("small"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every op of `wire::op` (read from its source, so a new op cannot be
    /// missed) has a sample frame, and the mirror decodes every sample whole.
    #[test]
    fn every_op_has_a_sample() {
        let src = include_str!("wire.rs");
        let start = src.find("pub mod op {").expect("the op module");
        let end = start + src[start..].find("\n}").expect("its end");
        let ops: Vec<(String, u8)> = src[start..end]
            .lines()
            .filter_map(|l| {
                let l = l.trim().strip_prefix("pub const ")?;
                let (name, rest) = l.split_once(": u8 = ")?;
                Some((name.to_string(), rest.trim_end_matches(';').parse().ok()?))
            })
            .collect();
        assert!(ops.len() >= 25, "{ops:?}");
        let samples = sample_requests();
        for (name, code) in &ops {
            // Not requests: the first frame, answers and the host's notifications.
            if *code == op::HELLO || *code == op::REPLY || *code == op::NOTIFY {
                continue;
            }
            assert!(
                samples.iter().any(|(o, _)| o == code),
                "op {name} ({code}) has no sample in remote::fuzz::sample_requests \
                 (and probably no decoding in decode_request)"
            );
        }
        for (o, f) in &samples {
            assert_eq!(decode_request(&f[4..]), Ok(*o), "op {o}");
            // Cut anywhere, it is refused (every op's fields are required).
            for cut in HEADER..f.len() - 4 {
                if *o != op::NAMESPACES && *o != op::FLUSH && *o != op::HOST_INFO {
                    assert!(
                        decode_request(&f[4..4 + cut]).is_err(),
                        "op {o} cut at {cut}"
                    );
                }
            }
        }
        let mut stream = hello_frame();
        for (_, f) in &samples {
            stream.extend_from_slice(f);
        }
        assert_eq!(decode_stream(&stream), samples.len() + 1);
        for v in sample_values() {
            assert_eq!(decode_values(&v[4 + HEADER - 1..]), 1);
        }
    }
}
