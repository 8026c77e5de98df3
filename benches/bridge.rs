//! Outbound throughput through the bridge (local queue → JetStream: leased
//! receive, publish with `Nats-Msg-Id`, PubAck, local ack) beside a plain
//! `async-nats` publisher with PubAck (the same 256 publishes in flight, the
//! same `Nats-Msg-Id` header, so the server does the same work), one run on
//! one nats-server (started here on 127.0.0.1 with a temporary store, file
//! storage), 64 B and 4 KiB bodies. Also the local send rate while the bridge
//! forwards. `make bench-bridge`; `LQ_BENCH_QUICK=1`: 10,000 messages.
//! The target: bridge ≥ 0.8× the plain client.
//!
//! Then the same for RabbitMQ (a private node from `benches/rabbitmq.sh`,
//! stopped at the end): the bridge (publisher confirms, `message_id`, local
//! ack after the confirm) beside a plain `amqprs` publisher with confirms and
//! the same 256 in flight, both to a durable queue through the default
//! exchange, non-persistent messages. `LQ_BENCH_RABBIT=0` skips it.

use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{
    BasicPublishArguments, Channel, ConfirmSelectArguments, QueueDeclareArguments,
    QueuePurgeArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, Nack, Return};
use libqueue::{Bridge, Broker, Message, QueueOptions};
use std::collections::{BTreeSet, VecDeque};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
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
    if std::env::var("LQ_BENCH_RABBIT").is_ok_and(|v| v == "0") {
        return;
    }
    rabbit(quick, rounds);
}

/// A private RabbitMQ node (benches/rabbitmq.sh), stopped when dropped.
struct RabbitNode(tempfile::TempDir);

impl Drop for RabbitNode {
    fn drop(&mut self) {
        let _ = Command::new("benches/rabbitmq.sh")
            .arg("stop")
            .arg(self.0.path().join("node"))
            .status();
    }
}

fn rabbit(quick: bool, rounds: usize) {
    let node = RabbitNode(tempfile::tempdir().unwrap());
    let out = Command::new("benches/rabbitmq.sh")
        .arg("start")
        .arg(node.0.path().join("node"))
        .stderr(Stdio::inherit())
        .output()
        .expect("benches/rabbitmq.sh");
    assert!(out.status.success(), "RabbitMQ did not start");
    let url = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .replace("rabbit://", "amqp://");
    println!(
        "RabbitMQ {:>3} {:>9} {:>14} {:>14} {:>7} {:>14}",
        "size", "messages", "plain msg/s", "bridge msg/s", "ratio", "local send/s"
    );
    for (size, n) in [(64usize, 50_000usize), (4096, 20_000)] {
        let n = if quick { n.min(10_000) } else { n };
        let (mut plain, mut bridge, mut local) = (vec![], vec![], vec![]);
        for _ in 0..rounds {
            plain.push(amqp_publisher(&url, size, n));
            let (b, l) = through_rabbit_bridge(&url, size, n);
            bridge.push(b);
            local.push(l);
        }
        let (plain, bridge, local) = (median(plain), median(bridge), median(local));
        println!(
            "{size:>12} {n:>9} {plain:>14.0} {bridge:>14.0} {:>7.2} {local:>14.0}",
            bridge / plain
        );
    }
}

/// Publisher confirms of the plain publisher: the tags still unconfirmed.
#[derive(Clone, Default)]
struct Unconfirmed(Arc<(Mutex<BTreeSet<u64>>, tokio::sync::Notify)>);

impl Unconfirmed {
    fn settle(&self, tag: u64, multiple: bool) {
        let mut s = self.0 .0.lock().unwrap();
        if multiple {
            *s = s.split_off(&(tag + 1));
        } else {
            s.remove(&tag);
        }
        drop(s);
        self.0 .1.notify_waiters();
    }

    /// Waits until at most `n` are unconfirmed.
    async fn at_most(&self, n: usize) {
        loop {
            let notified = self.0 .1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.0 .0.lock().unwrap().len() <= n {
                return;
            }
            notified.await;
        }
    }
}

#[async_trait::async_trait]
impl ChannelCallback for Unconfirmed {
    async fn close(&mut self, _: &Channel, c: CloseChannel) -> Result<(), amqprs::error::Error> {
        panic!("channel closed: {c}");
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        self.settle(ack.delivery_tag(), ack.mutiple());
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        panic!("nacked: {}", nack.delivery_tag());
    }
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {
        panic!("returned");
    }
}

/// The durable queue both write to (through the default exchange), empty.
async fn bench_queue(ch: &Channel) {
    ch.queue_declare(QueueDeclareArguments::durable_client_named("lq-bench"))
        .await
        .unwrap();
    ch.queue_purge(QueuePurgeArguments::new("lq-bench"))
        .await
        .unwrap();
}

/// Messages per second of a plain AMQP publisher with confirms, WINDOW in
/// flight, `message_id` and the properties the bridge sets.
fn amqp_publisher(url: &str, size: usize, n: usize) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = Connection::open(&OpenConnectionArguments::try_from(url).unwrap())
            .await
            .unwrap();
        let ch = conn.open_channel(None).await.unwrap();
        bench_queue(&ch).await;
        let unconfirmed = Unconfirmed::default();
        ch.register_callback(unconfirmed.clone()).await.unwrap();
        ch.confirm_select(ConfirmSelectArguments::default())
            .await
            .unwrap();
        let body = bytes_of(size);
        let t = Instant::now();
        for i in 0..n {
            unconfirmed.at_most(WINDOW - 1).await;
            unconfirmed.0 .0.lock().unwrap().insert(i as u64 + 1);
            let props = BasicProperties::default()
                .with_message_id(&format!("plain:{size}:{i}"))
                .with_priority(4)
                .with_delivery_mode(1)
                .finish();
            let mut args = BasicPublishArguments::new("", "lq-bench");
            args.mandatory(true);
            ch.basic_publish(props, body.clone(), args).await.unwrap();
        }
        unconfirmed.at_most(0).await;
        let rate = n as f64 / t.elapsed().as_secs_f64();
        let _ = ch.close().await;
        let _ = conn.close().await;
        rate
    })
}

/// As `through_bridge`, to RabbitMQ.
fn through_rabbit_bridge(url: &str, size: usize, n: usize) -> (f64, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = Connection::open(&OpenConnectionArguments::try_from(url).unwrap())
            .await
            .unwrap();
        let ch = conn.open_channel(None).await.unwrap();
        bench_queue(&ch).await;
        let _ = conn.close().await;
    });
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
    let bridge = Bridge::rabbitmq(url)
        .forward("out", "", "lq-bench")
        .window(WINDOW)
        .start(&broker)
        .unwrap();
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
