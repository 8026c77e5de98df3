//! Outbound throughput through the bridge (local queue → JetStream: leased
//! receive, publish with `Nats-Msg-Id`, PubAck, local ack) beside a plain
//! `async-nats` publisher with PubAck (the same 256 publishes in flight, the
//! same `Nats-Msg-Id` header, so the server does the same work), one run on
//! one nats-server (started here on 127.0.0.1 with a temporary store, file
//! storage), 64 B and 4 KiB bodies. Also the local send rate while the bridge
//! forwards. `make bench-bridge`; `LQ_BENCH_QUICK=1`: 10,000 messages.
//! The target: bridge ≥ 0.8× the plain client.

use libqueue::{Bridge, Broker, Message, QueueOptions};
use std::collections::VecDeque;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WINDOW: usize = 256;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::var("LQ_BENCH_QUICK").is_ok_and(|v| v != "0");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = tempfile::tempdir().unwrap();
    let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nats-server");
    let mut server = Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server (make setup installs it)");
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("nats://127.0.0.1:{port}");
    // "plain+h": the plain publisher with the two Lq- headers a default
    // message carries through the bridge (Lq-Priority, Lq-Persistent).
    println!(
        "{:>8} {:>9} {:>14} {:>16} {:>14} {:>7} {:>9} {:>14}",
        "size",
        "messages",
        "plain msg/s",
        "plain+h msg/s",
        "bridge msg/s",
        "ratio",
        "ratio+h",
        "local send/s"
    );
    // Rounds alternate between the two so that a busy machine hurts both
    // alike; each column is the median of its rounds.
    let rounds = if quick { 1 } else { 5 };
    for (size, n) in [(64usize, 50_000usize), (4096, 20_000)] {
        let n = if quick { n.min(10_000) } else { n };
        let (mut plain, mut plain_h, mut bridge, mut local) = (vec![], vec![], vec![], vec![]);
        for r in 0..rounds {
            plain.push(plain_publisher(&url, size, n, r, false));
            let (b, l) = through_bridge(&url, size, n, r);
            bridge.push(b);
            local.push(l);
            plain_h.push(plain_publisher(&url, size, n, r, true));
        }
        let (plain, plain_h) = (median(plain), median(plain_h));
        let (bridge, local) = (median(bridge), median(local));
        println!(
            "{size:>8} {n:>9} {plain:>14.0} {plain_h:>16.0} {bridge:>14.0} {:>7.2} {:>9.2} {local:>14.0}",
            bridge / plain,
            bridge / plain_h
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// Messages per second of a plain publisher: WINDOW publishes in flight,
/// PubAcks awaited in order.
fn plain_publisher(url: &str, size: usize, n: usize, round: usize, lq_headers: bool) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(c);
        let tag = format!("{size}r{round}{}", if lq_headers { "h" } else { "" });
        let name = format!("PLAIN{}", tag.to_uppercase());
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("plain{tag}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
        let subject = format!("plain{tag}.x");
        let body = bytes_of(size);
        let t = Instant::now();
        let mut inflight = VecDeque::new();
        for i in 0..n {
            if inflight.len() >= WINDOW {
                let ack: async_nats::jetstream::context::PublishAckFuture =
                    inflight.pop_front().unwrap();
                ack.await.unwrap();
            }
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", format!("plain:{size}:{i}").as_str());
            if lq_headers {
                h.insert("Lq-Priority", "4");
                h.insert("Lq-Persistent", "0");
            }
            let p = js
                .publish_with_headers(subject.clone(), h, body.clone().into())
                .await
                .unwrap();
            inflight.push_back(p);
        }
        for p in inflight {
            p.await.unwrap();
        }
        n as f64 / t.elapsed().as_secs_f64()
    })
}

/// Messages per second forwarded by a bridge from a local queue holding n
/// messages (connect and checks included), and the local send rate while
/// it forwards.
fn through_bridge(url: &str, size: usize, n: usize, round: usize) -> (f64, f64) {
    let broker = Broker::new();
    let q = broker
        .default_namespace()
        .unwrap()
        .create_queue("out", QueueOptions::default().strict_fifo(true))
        .unwrap();
    let body = bytes_of(size);
    for _ in 0..n {
        q.send(Message::new(body.clone())).unwrap();
    }
    let t = Instant::now();
    let bridge = Bridge::nats(url)
        .stream(
            &format!("BRIDGE{size}R{round}"),
            [format!("bridge{size}r{round}.>")],
        )
        .forward("out", &format!("bridge{size}r{round}.x"))
        .window(WINDOW)
        .start(&broker)
        .unwrap();
    // Local sends while it forwards: never wait for the network.
    let ls = Instant::now();
    let extra = n / 10;
    for _ in 0..extra {
        q.send(Message::new(body.clone())).unwrap();
    }
    let local = extra as f64 / ls.elapsed().as_secs_f64();
    while bridge.stats().forwarded < (n + extra) as u64 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let rate = (n + extra) as f64 / t.elapsed().as_secs_f64();
    (rate, local)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bytes_of(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}
