//! The cost the C boundary adds: the same single-thread loop (send a 64-byte
//! message, try_receive it, read the body, ack, free) through the Rust API and
//! through the C ABI (`libqueue::ffi::lq_*`, the functions C calls), interleaved
//! in one run; prints ns/op of each and the ratio (`make bench-c`).
//!
//! Under `cargo test` (no `--bench` argument) it runs a few iterations only.
//! Writes `$LQ_BENCH_OUT/ffi_boundary.json` (`LQ_BENCH_QUICK=1`: 50,000 x 3).

#[path = "common/out.rs"]
mod out;

use libqueue::ffi::*;
use libqueue::{Broker, Message, MessageView};
use std::hint::black_box;
use std::ptr;
use std::time::Instant;

const BODY: [u8; 64] = [7u8; 64];

fn rust_loop(n: usize) -> f64 {
    let q = Broker::new().queue("bench").expect("queue");
    let t = Instant::now();
    for _ in 0..n {
        q.send(Message::new(&BODY[..])).expect("send");
        let d = q.try_receive().expect("receive").expect("ready");
        black_box(d.body());
        d.ack().expect("ack");
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn rust_named_loop(n: usize) -> f64 {
    let q = Broker::new().queue("bench").expect("queue");
    let t = Instant::now();
    for _ in 0..n {
        q.send(Message::new(&BODY[..]).name("create_member").priority(5))
            .expect("send");
        let d = q.try_receive().expect("receive").expect("ready");
        black_box((d.body(), d.name()));
        d.ack().expect("ack");
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn ok(s: lq_status) {
    assert_eq!(s, lq_status::LQ_OK);
}

fn c_loop(n: usize, named: bool) -> f64 {
    // SAFETY: every pointer passed is valid for the call; handles are freed once.
    unsafe {
        let mut b = ptr::null_mut();
        ok(lq_broker_open(ptr::null(), &mut b));
        let mut q = ptr::null_mut();
        ok(lq_broker_queue(b, b"bench".as_ptr(), 5, &mut q));
        let t = Instant::now();
        for _ in 0..n {
            if named {
                let mut m = ptr::null_mut();
                ok(lq_message_new(BODY.as_ptr(), BODY.len(), &mut m));
                ok(lq_message_set_name(m, b"create_member".as_ptr(), 13));
                ok(lq_message_set_priority(m, 5));
                ok(lq_queue_send(q, m, ptr::null_mut()));
            } else {
                ok(lq_queue_send_bytes(
                    q,
                    BODY.as_ptr(),
                    BODY.len(),
                    ptr::null_mut(),
                ));
            }
            let mut d = ptr::null_mut();
            ok(lq_queue_try_receive(q, &mut d));
            let (mut p, mut len) = (ptr::null(), 0usize);
            ok(lq_delivery_body(d, &mut p, &mut len));
            black_box((p, len));
            if named {
                ok(lq_delivery_name(d, &mut p, &mut len));
                black_box((p, len));
            }
            ok(lq_delivery_ack(d));
            lq_delivery_free(d);
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        lq_queue_free(q);
        lq_broker_free(b);
        ns
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let (n, rounds) = out::size((200_000, 7), (50_000, 3), (1_000, 1));
    let (mut r, mut c, mut rn, mut cn) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        r.push(rust_loop(n));
        c.push(c_loop(n, false));
        rn.push(rust_named_loop(n));
        cn.push(c_loop(n, true));
    }
    let (r, c, rn, cn) = (median(r), median(c), median(rn), median(cn));
    println!("C boundary cost: send + try_receive + body + ack (+ free), one thread, {n} msgs x {rounds} rounds, medians");
    println!(
        "  plain 64-byte body:     Rust API {r:7.1} ns/op   C ABI {c:7.1} ns/op   C/Rust {:.2}",
        c / r
    );
    println!(
        "  named, priority, name:  Rust API {rn:7.1} ns/op   C ABI {cn:7.1} ns/op   C/Rust {:.2}",
        cn / rn
    );
    let ns = |peer: &str, v: f64| out::Record::new("ffi_boundary", peer, "per_op", v).unit("ns");
    out::write(
        "ffi_boundary",
        &[
            ("messages", n.to_string()),
            ("rounds", rounds.to_string()),
            ("payload_bytes", BODY.len().to_string()),
        ],
        &[
            ns("libqueue_rust_api", r),
            ns("libqueue_c_abi", c),
            ns("libqueue_rust_api_named", rn),
            ns("libqueue_c_abi_named", cn),
        ],
    );
}
