//! `make demo`'s bridge scene (feature `bridge`): a local queue forwarding to
//! NATS JetStream while the server is stopped and restarted.
//!
//! It starts its own `nats-server` (Debian's, `make setup` installs it; or
//! `LQ_NATS_SERVER`) on 127.0.0.1 with a free port and a temporary store, and
//! a persistent broker in a temporary directory whose queue `shop/orders` a
//! bridge forwards to the subject `orders.created` (stream `ORDERS`). A
//! producer sends orders at a steady pace; one second in, the server is
//! killed (SIGKILL, as a crash) and stays down for three seconds while the
//! producer goes on — its sends never wait for the network, the orders pile
//! up in the local journal — then it is started again on the same store and
//! the bridge resumes by itself. The proof: the stream's message count and
//! last sequence equal the number sent, and reading the whole stream back
//! finds every order exactly once. Exits 1 if not.
//!
//! `cargo run --release --features bridge --example bridge_demo`

use libqueue::{Bridge, Broker, BrokerOptions, Message, MessageView, QueueOptions, Wait};
use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ORDERS: usize = 30_000;
/// The producer's pace: orders per 10 ms tick (about 5 s of sending).
const PER_TICK: usize = 60;

fn nats_server_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LQ_NATS_SERVER") {
        return Some(p.into());
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
        .map(|d| Path::new(d).join("nats-server"))
        .find(|p| p.exists())
}

fn start_server(bin: &Path, port: u16, store: &Path) -> Child {
    let child = Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The stream's message count and last sequence, asked by a plain client.
fn stream_state(url: &str) -> (u64, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(c);
        let mut s = js.get_stream("ORDERS").await.unwrap();
        let info = s.info().await.unwrap();
        (info.state.messages, info.state.last_sequence)
    })
}

fn main() {
    let Some(bin) = nats_server_bin() else {
        eprintln!("bridge demo: nats-server not found (`make setup` installs it)");
        std::process::exit(1);
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let mut server = Some(start_server(&bin, port, store.path()));
    println!("== The bridge: a local queue forwarding to NATS JetStream ({url})");

    let broker = Broker::open(BrokerOptions::new().data_dir(data.path())).unwrap();
    let orders = broker
        .namespace("shop")
        .unwrap()
        .create_queue("orders", QueueOptions::default().persistent(true))
        .unwrap();
    let bridge = Bridge::nats(&url)
        .stream("ORDERS", ["orders.>"])
        .forward("shop/orders", "orders.created")
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .ack_timeout(Duration::from_secs(1))
        .start(&broker)
        .unwrap();
    let t0 = Instant::now();
    let producer = {
        let q = orders.clone();
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            for i in 0..ORDERS {
                let t = Instant::now();
                q.send(Message::new(format!("order-{i}")).name("order.created"))
                    .unwrap();
                slowest = slowest.max(t.elapsed());
                if i % PER_TICK == PER_TICK - 1 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            (slowest, t0.elapsed())
        })
    };
    let show = |what: &str| {
        let s = bridge.stats();
        println!(
            "  {:>5.1} s  {what:<28} forwarded {:>6}  pending {:>6}  connected {:<5}  retries {:>4}  duplicates {:>3}{}",
            t0.elapsed().as_secs_f64(),
            s.forwarded,
            s.pending_outbound,
            s.connected,
            s.retries,
            s.duplicates,
            match (&s.last_error, s.error_since) {
                (Some(e), Some(_)) => format!("  last error: {}", e.chars().take(60).collect::<String>()),
                _ => String::new(),
            }
        );
    };
    std::thread::sleep(Duration::from_secs(1));
    show("forwarding");
    if let Some(mut c) = server.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let down_at = bridge.stats().forwarded;
    show("nats-server killed");
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        show("server down, sends go on");
    }
    let pending_at_restart = bridge.stats().pending_outbound;
    server = Some(start_server(&bin, port, store.path()));
    show("nats-server restarted");
    let (slowest, sending) = producer.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_show = Instant::now();
    loop {
        let s = orders.stats();
        if s.ready + s.leased + s.delayed == 0 {
            break;
        }
        if Instant::now() > deadline {
            show("gave up waiting");
            std::process::exit(1);
        }
        if last_show.elapsed() > Duration::from_millis(500) {
            show("draining the backlog");
            last_show = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    show("drained");
    let stats = bridge.stats();
    bridge.stop();

    // The proof: the stream against the sent set.
    let (messages, last_seq) = stream_state(&url);
    let checker = Broker::new();
    let back = checker.queue("back").unwrap();
    let reader = Bridge::nats(&url)
        .receive_durable("orders.created", "back", "demo-checker")
        .start(&checker)
        .unwrap();
    let mut seen = HashSet::new();
    let mut twice = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() + twice < messages as usize && Instant::now() < deadline {
        for d in back
            .receive_batch(1000, Wait::For(Duration::from_millis(100)))
            .unwrap()
        {
            let body = String::from_utf8_lossy(d.body()).into_owned();
            if !seen.insert(body) {
                twice += 1;
            }
            d.ack().unwrap();
        }
    }
    drop(reader);
    let missing = (0..ORDERS)
        .filter(|i| !seen.contains(&format!("order-{i}")))
        .count();
    println!("== Summary");
    println!(
        "  sent {ORDERS} orders locally in {:.1} s at a steady pace (slowest send {:?}, while the server was down too)",
        sending.as_secs_f64(),
        slowest
    );
    println!(
        "  the server went down after {down_at} forwarded; {pending_at_restart} were waiting in the local journal at its restart"
    );
    println!(
        "  bridge: forwarded {}, retries {}, duplicates suppressed by JetStream {}, dead-lettered {}",
        stats.forwarded, stats.retries, stats.duplicates, stats.dead_lettered
    );
    println!(
        "  stream ORDERS: {messages} messages, last sequence {last_seq}; read back: {} distinct, {twice} twice, {missing} missing",
        seen.len()
    );
    let ok = messages == ORDERS as u64
        && last_seq == ORDERS as u64
        && seen.len() == ORDERS
        && twice == 0
        && missing == 0
        && stats.forwarded == ORDERS as u64;
    if let Some(mut c) = server.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    if ok {
        println!("  OK: every order arrived in the stream exactly once");
    } else {
        println!("  FAILED: the stream does not hold every order exactly once");
        std::process::exit(1);
    }
}
