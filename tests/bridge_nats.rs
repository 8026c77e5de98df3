//! The NATS JetStream bridge against a real `nats-server` (Debian's package;
//! `make setup` installs it), which each test starts on 127.0.0.1 with a
//! free port and a temporary store directory, and kills at its end.
//!
//! Every field mapped both ways, the server killed mid-stream and restarted,
//! our own process SIGKILLed mid-stream and restarted (nothing lost, no
//! duplicate in the stream: its message count against the sent set), unmappable
//! messages dead-lettered, inbound back-pressure, bad URLs and unreachable
//! servers. `LQ_BRIDGE_N` sets the number of messages (default 5,000; the
//! ignored `nats_hundred_thousand_each_way` sends 100,000), `LQ_BRIDGE_OUTAGE_MS`
//! how long the server stays down (default 500).
#![cfg(feature = "bridge")]

use libqueue::{
    Bridge, Broker, BrokerOptions, Error, Message, MessageView, QueueOptions, SyncMode, Wait,
};
use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A nats-server with JetStream on 127.0.0.1, killed when dropped.
struct Server {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LQ_NATS_SERVER") {
        return p.into();
    }
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
    {
        let p = Path::new(dir).join("nats-server");
        if p.exists() {
            return p;
        }
    }
    panic!("nats-server not found: `make setup` installs it (apt-get install nats-server)");
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = Server {
            port,
            store: tempfile::tempdir().unwrap(),
            child: None,
        };
        s.restart();
        s
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts it on the same port and store; waits until it accepts.
    fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(nats_server_bin())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start within 15 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn n_messages(default: usize) -> usize {
    std::env::var("LQ_BRIDGE_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Waits (bounded) until `f` holds; panics with `what` and the bridge's stats.
fn wait_until(bridge: &Bridge, limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; {:?}",
            bridge.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The stream's message count and last sequence, read by a plain client.
fn stream_state(url: &str, stream: &str) -> (u64, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(c);
        let mut s = js.get_stream(stream).await.unwrap();
        let info = s.info().await.unwrap();
        (info.state.messages, info.state.last_sequence)
    })
}

fn full_message(i: usize) -> Message {
    Message::new(format!("body-{i}"))
        .name(format!("name-{i}"))
        .correlation_id(format!("corr-{i}"))
        .priority((i % 10) as u8)
        .ttl(Duration::from_secs(3600))
        .persistent(i % 2 == 0)
        .header("k", format!("v-{i}"))
        .header("execution_id", format!("e-{i}"))
}

/// Every field of `d` is that of `full_message(i)`; returns i.
fn check_full(d: &libqueue::Delivery, now: u64) -> usize {
    let body = std::str::from_utf8(d.body()).unwrap();
    let i: usize = body.strip_prefix("body-").unwrap().parse().unwrap();
    assert_eq!(d.name(), Some(format!("name-{i}").as_str()));
    assert_eq!(d.correlation_id(), Some(format!("corr-{i}").as_str()));
    assert_eq!(d.priority(), (i % 10) as u8);
    assert_eq!(d.header_str("k"), Some(format!("v-{i}").as_str()));
    assert_eq!(d.execution_id(), Some(format!("e-{i}").as_str()));
    assert_eq!(d.headers().len(), 2, "{:?}", d.headers());
    let left = d.expires_at().expect("a TTL") - now;
    assert!(
        left <= 3_600_000_000_000 && left > 3_000_000_000_000,
        "TTL left {left}"
    );
    i
}

/// N messages out through JetStream and back in, every field checked.
fn each_way(n: usize) {
    let server = Server::start();
    let broker = Broker::new();
    let out = broker.queue("out").unwrap();
    let inbox = broker.queue("inbox").unwrap();
    let t0 = Instant::now();
    for i in 0..n {
        out.send(full_message(i)).unwrap();
    }
    let bridge = Bridge::nats(&server.url())
        .stream("ROUNDTRIP", ["rt.>"])
        .forward("out", "rt.data")
        .receive("rt.data", "inbox")
        .start(&broker)
        .unwrap();
    let mut seen = vec![false; n];
    let deadline = Instant::now() + Duration::from_secs(60 + n as u64 / 1000);
    let mut got = 0;
    while got < n {
        assert!(
            Instant::now() < deadline,
            "{got}/{n} back; {:?}",
            bridge.stats()
        );
        for d in inbox
            .receive_batch(1000, Wait::For(Duration::from_millis(100)))
            .unwrap()
        {
            let i = check_full(&d, inbox.clock().now());
            assert_eq!(d.is_persistent(), i % 2 == 0);
            assert!(!seen[i], "message {i} twice");
            seen[i] = true;
            got += 1;
            d.ack().unwrap();
        }
    }
    let s = bridge.stats();
    println!("{n} each way in {:?}: {s:?}", t0.elapsed());
    assert_eq!(
        (s.forwarded, s.received, s.duplicates),
        (n as u64, n as u64, 0)
    );
    assert_eq!(s.pending_outbound, 0);
    assert!(s.connected);
    assert_eq!(
        stream_state(&server.url(), "ROUNDTRIP"),
        (n as u64, n as u64)
    );
}

#[test]
fn nats_every_field_each_way() {
    each_way(n_messages(5_000));
}

#[test]
#[ignore = "long: 100,000 messages each way (`make test-bridge-long`)"]
fn nats_hundred_thousand_each_way() {
    each_way(100_000);
}

/// The server is SIGKILLed mid-stream and restarted on the same store:
/// nothing lost, no duplicate in the stream.
#[test]
fn nats_server_killed_mid_stream_and_restarted() {
    let mut server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    let q = broker
        .namespace("app")
        .unwrap()
        .create_queue("jobs", QueueOptions::default().persistent(true))
        .unwrap();
    let n = n_messages(5_000);
    let bridge = Bridge::nats(&server.url())
        .stream("JOBS", ["jobs.>"])
        .forward("app/jobs", "jobs.created")
        .receive("jobs.created", "app/mirror")
        .backoff(Duration::from_millis(20), Duration::from_millis(500))
        .ack_timeout(Duration::from_secs(1))
        .start(&broker)
        .unwrap();
    let producer = {
        let q = q.clone();
        std::thread::spawn(move || {
            for i in 0..n {
                q.send(Message::new(i.to_string())).unwrap();
                if i % 500 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
    };
    wait_until(
        &bridge,
        Duration::from_secs(20),
        "a first part forwarded",
        || bridge.stats().forwarded >= (n / 5) as u64,
    );
    server.kill();
    // Local sends go on while the remote is down.
    producer.join().unwrap();
    wait_until(&bridge, Duration::from_secs(10), "the outage seen", || {
        let s = bridge.stats();
        !s.connected && s.last_error.is_some() && s.error_since.is_some()
    });
    // The outage: LQ_BRIDGE_OUTAGE_MS (default 500; `make test-bridge-long`:
    // 10 s, and 2 minutes with LQ_BRIDGE_OUTAGE_MS=120000).
    let outage = std::env::var("LQ_BRIDGE_OUTAGE_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    std::thread::sleep(Duration::from_millis(outage));
    assert!(bridge.stats().pending_outbound > 0);
    let before = bridge.stats().forwarded;
    server.restart();
    wait_until(
        &bridge,
        Duration::from_secs(30),
        "everything forwarded",
        || bridge.stats().pending_outbound == 0,
    );
    let s = bridge.stats();
    println!("{outage} ms outage at {before}/{n} forwarded; after the restart: {s:?}");
    assert!(s.connected, "{s:?}");
    assert!(s.retries > 0, "{s:?}");
    assert_eq!(s.forwarded, n as u64, "{s:?}");
    let (messages, last) = stream_state(&server.url(), "JOBS");
    assert_eq!((messages, last), (n as u64, n as u64), "{s:?}");
    check_stream_bodies(&server, "jobs.created", n);
    // The inbound route resumed by itself too: each message came back in
    // (at least once; a lost remote ack may repeat one).
    let mirror = broker.namespace("app").unwrap().queue("mirror").unwrap();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < n {
        assert!(
            Instant::now() < deadline,
            "{}/{n} mirrored; {:?}",
            seen.len(),
            bridge.stats()
        );
        for d in mirror
            .receive_batch(1000, Wait::For(Duration::from_millis(100)))
            .unwrap()
        {
            seen.insert(
                std::str::from_utf8(d.body())
                    .unwrap()
                    .parse::<usize>()
                    .unwrap(),
            );
            d.ack().unwrap();
        }
    }
}

/// Reads the whole subject back through a second bridge: each of 0..n once.
fn check_stream_bodies(server: &Server, subject: &str, n: usize) {
    let broker = Broker::new();
    let q = broker.queue("check").unwrap();
    let bridge = Bridge::nats(&server.url())
        .receive_durable(subject, "check", "checker")
        .start(&broker)
        .unwrap();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < n {
        assert!(Instant::now() < deadline, "{}/{n} read back", seen.len());
        for d in q
            .receive_batch(1000, Wait::For(Duration::from_millis(100)))
            .unwrap()
        {
            let i: usize = std::str::from_utf8(d.body()).unwrap().parse().unwrap();
            assert!(i < n && seen.insert(i), "{i} twice or unknown");
            d.ack().unwrap();
        }
    }
    drop(bridge);
}

/// The crash child: opens LQ_BRIDGE_CHILD_DIR, forwards app/jobs to the
/// server at LQ_BRIDGE_CHILD_URL until killed.
#[test]
#[ignore = "the SIGKILL test's child; does nothing without LQ_BRIDGE_CHILD_DIR"]
fn child_forwarder() {
    let Some(dir) = std::env::var_os("LQ_BRIDGE_CHILD_DIR") else {
        return;
    };
    let url = std::env::var("LQ_BRIDGE_CHILD_URL").unwrap();
    let broker = Broker::open(
        BrokerOptions::new()
            .data_dir(dir)
            .sync_mode(SyncMode::Always)
            .exclusive(true),
    )
    .unwrap();
    let _bridge = Bridge::nats(&url)
        .forward("app/jobs", "crash.jobs")
        .window(64)
        .start(&broker)
        .unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

/// Our process SIGKILLed mid-stream (leases held, PubAcks in flight) and
/// restarted on its data directory: the replays carry the same
/// `Nats-Msg-Id`, so the stream holds each message once.
#[test]
fn nats_our_process_killed_mid_stream_and_restarted() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let n = n_messages(5_000);
    {
        let broker =
            Broker::open(BrokerOptions::new().data_dir(dir.path()).exclusive(true)).unwrap();
        let q = broker
            .namespace("app")
            .unwrap()
            .create_queue(
                "jobs",
                QueueOptions::default()
                    .persistent(true)
                    .lease_time(Duration::from_secs(2)),
            )
            .unwrap();
        for i in 0..n {
            q.send(Message::new(i.to_string())).unwrap();
        }
        // The stream, made by a bridge that forwards nothing yet.
        let b = Bridge::nats(&server.url())
            .stream("CRASH", ["crash.>"])
            .receive_durable("crash.jobs", "unused", "unused")
            .start(&broker)
            .unwrap();
        drop(b);
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_forwarder",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LQ_BRIDGE_CHILD_DIR", dir.path())
        .env("LQ_BRIDGE_CHILD_URL", server.url())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Kill it once part of the queue is in the stream.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (m, _) = stream_state(&server.url(), "CRASH");
        if m >= (n / 3) as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "the child forwarded {m} in 20 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (at_kill, _) = stream_state(&server.url(), "CRASH");
    assert!(
        at_kill < n as u64,
        "the child finished before the kill ({at_kill})"
    );
    // Restart on the directory: the rest goes, the replays are suppressed.
    let broker = Broker::open(BrokerOptions::new().data_dir(dir.path()).exclusive(true)).unwrap();
    let q = broker.namespace("app").unwrap().queue("jobs").unwrap();
    let bridge = Bridge::nats(&server.url())
        .forward("app/jobs", "crash.jobs")
        .start(&broker)
        .unwrap();
    wait_until(
        &bridge,
        Duration::from_secs(30),
        "the rest forwarded",
        || {
            let s = q.stats();
            s.ready + s.leased + s.delayed == 0
        },
    );
    let s = bridge.stats();
    println!("killed at {at_kill}/{n} in the stream; after the restart: {s:?}");
    assert_eq!(
        stream_state(&server.url(), "CRASH"),
        (n as u64, n as u64),
        "{s:?}"
    );
    check_stream_bodies(&server, "crash.jobs", n);
}

/// A message whose header the remote cannot carry is dead-lettered locally
/// with the reason; those around it go through.
#[test]
fn nats_unmappable_message_is_dead_lettered_with_the_reason() {
    let server = Server::start();
    let broker = Broker::new();
    let q = broker.queue("out").unwrap();
    q.send(Message::new("ok-1")).unwrap();
    q.send(Message::new("bad").header("bad key", "x")).unwrap();
    q.send(Message::new("bad2").header("k", &b"\xff\xfe"[..]))
        .unwrap();
    q.send(Message::new("ok-2")).unwrap();
    let bridge = Bridge::nats(&server.url())
        .stream("DL", ["dl.>"])
        .forward("out", "dl.x")
        .start(&broker)
        .unwrap();
    let dlq = broker.queue("out.dlq").unwrap();
    wait_until(&bridge, Duration::from_secs(10), "all settled", || {
        let s = bridge.stats();
        s.forwarded == 2 && s.dead_lettered == 2
    });
    let dead = dlq.receive_batch(10, Wait::Try).unwrap();
    assert_eq!(dead.len(), 2);
    for d in &dead {
        let reason = d.header_str("x-dead-letter-reason").unwrap();
        assert!(reason.contains("cannot be forwarded"), "{reason}");
        assert_eq!(d.header_str("x-dead-letter-queue"), Some("out"));
    }
    assert_eq!(stream_state(&server.url(), "DL"), (2, 2));
}

/// Inbound fetches only what the local queue has room for: a full queue
/// keeps the backlog at the remote, and nothing is lost.
#[test]
fn nats_inbound_respects_the_local_capacity() {
    let server = Server::start();
    let broker = Broker::new();
    let src = broker.queue("src").unwrap();
    let small = broker
        .default_namespace()
        .unwrap()
        .create_queue("small", QueueOptions::default().max_messages(10))
        .unwrap();
    for i in 0..200 {
        src.send(Message::new(i.to_string())).unwrap();
    }
    let bridge = Bridge::nats(&server.url())
        .stream("BP", ["bp.>"])
        .forward("src", "bp.x")
        .receive("bp.x", "small")
        .start(&broker)
        .unwrap();
    wait_until(&bridge, Duration::from_secs(10), "forwarded", || {
        bridge.stats().forwarded == 200
    });
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 200 {
        assert!(
            Instant::now() < deadline,
            "{} received; {:?}",
            seen.len(),
            bridge.stats()
        );
        let s = small.stats();
        assert!(s.ready + s.leased + s.delayed <= 10, "{s:?}");
        if let Some(d) = small.receive_timeout(Duration::from_millis(100)).unwrap() {
            seen.insert(std::str::from_utf8(d.body()).unwrap().to_string());
            d.ack().unwrap();
        }
    }
    assert!(bridge.stats().pending_inbound < 200);
}

/// Bad input: a clear error from `start`, or (connecting in the background)
/// a visible last error, never a panic or a silent stall.
#[test]
fn nats_bad_urls_and_subjects_fail_clearly() {
    let broker = Broker::new();
    for url in ["", "nats://a b:4222"] {
        let e = Bridge::nats(url)
            .forward("q", "x.y")
            .start(&broker)
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{url:?}: {e}");
    }
    let e = Bridge::nats("nats://127.0.0.1:4222")
        .forward("q", "x.*")
        .start(&broker)
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    // Nobody listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let t = Instant::now();
    let e = Bridge::nats(&url)
        .forward("q", "x.y")
        .connect_timeout(Duration::from_secs(2))
        .start(&broker)
        .unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e}");
    assert!(e.to_string().contains(&url), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // In the background: start returns, the error shows.
    let b = Bridge::nats(&url)
        .forward("q", "x.y")
        .connect_in_background(true)
        .start(&broker)
        .unwrap();
    broker
        .queue("q")
        .unwrap()
        .send(Message::new("kept"))
        .unwrap();
    wait_until(&b, Duration::from_secs(10), "an error shown", || {
        b.stats().last_error.is_some()
    });
    let s = b.stats();
    assert!(!s.connected && s.pending_outbound == 1, "{s:?}");
    drop(b);
    // Reachable, but no stream takes the subject.
    let server = Server::start();
    let e = Bridge::nats(&server.url())
        .forward("q", "nobody.here")
        .start(&broker)
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
    // One forwarder per queue.
    let a = Bridge::nats(&server.url())
        .stream("ONE", ["one.>"])
        .forward("q", "one.x")
        .start(&broker)
        .unwrap();
    let e = Bridge::nats(&server.url())
        .forward("q", "one.x")
        .start(&broker)
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(_)), "{e}");
    // The message kept while nothing was reachable goes now.
    wait_until(
        &a,
        Duration::from_secs(10),
        "the kept message forwarded",
        || a.stats().forwarded == 1,
    );
    assert_eq!(stream_state(&server.url(), "ONE"), (1, 1));
}

/// The two-process test's child: attaches to LQ_BRIDGE_TWO_DIR (its parent
/// hosts it) and forwards app/jobs to the server at LQ_BRIDGE_TWO_URL until
/// killed.
#[test]
#[ignore = "the two-process test's child; does nothing without LQ_BRIDGE_TWO_DIR"]
fn child_attached_forwarder() {
    let Some(dir) = std::env::var_os("LQ_BRIDGE_TWO_DIR") else {
        return;
    };
    let url = std::env::var("LQ_BRIDGE_TWO_URL").unwrap();
    let broker = Broker::open(BrokerOptions::new().data_dir(dir)).unwrap();
    assert!(broker.is_attached());
    let bridge = Bridge::nats(&url)
        .forward("app/jobs", "two.jobs")
        .window(64)
        .start(&broker)
        .unwrap();
    // Tell the parent which bridge won the claim (its own stats say).
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let _ = bridge.stats();
    }
}

/// Two processes on one directory, both with a bridge forwarding the same
/// queue: the first (an attached child) forwards, the second (the host)
/// waits as a standby and forwards nothing; the child is SIGKILLed
/// mid-stream and the standby takes over within a bounded time. Nothing is
/// lost and the stream holds each message once (the replays of the child's
/// unconfirmed publishes carry the directory's identity, shared by both).
#[test]
fn nats_two_processes_one_forwarder_and_takeover() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let n = n_messages(5_000);
    let broker = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    assert!(!broker.is_attached());
    let q = broker
        .namespace("app")
        .unwrap()
        .create_queue("jobs", QueueOptions::default().persistent(true))
        .unwrap();
    // The stream, made by a bridge that forwards nothing.
    drop(
        Bridge::nats(&server.url())
            .stream("TWO", ["two.>"])
            .receive_durable("two.jobs", "unused", "unused")
            .start(&broker)
            .unwrap(),
    );
    for i in 0..n / 2 {
        q.send(Message::new(i.to_string())).unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_attached_forwarder",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LQ_BRIDGE_TWO_DIR", dir.path())
        .env("LQ_BRIDGE_TWO_URL", server.url())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // The child forwards first.
    let deadline = Instant::now() + Duration::from_secs(20);
    while stream_state(&server.url(), "TWO").0 == 0 {
        assert!(Instant::now() < deadline, "the child forwarded nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The host's own bridge on the same queue: a standby.
    let bridge = Bridge::nats(&server.url())
        .forward("app/jobs", "two.jobs")
        .window(64)
        .start(&broker)
        .unwrap();
    wait_until(&bridge, Duration::from_secs(5), "standby", || {
        bridge.stats().standby == 1
    });
    let producer = {
        let q = q.clone();
        std::thread::spawn(move || {
            for i in n / 2..n {
                q.send(Message::new(i.to_string())).unwrap();
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    // Both bridges' files (written every second): the child's is active,
    // ours a standby.
    let child_pid = child.id();
    let files_say = || {
        let files = libqueue::bridge_file::list(dir.path());
        files.len() == 2
            && files.iter().all(|f| {
                let r = f.record.as_ref().unwrap();
                f.alive && r.standby == u64::from(r.pid != child_pid)
            })
    };
    wait_until(&bridge, Duration::from_secs(5), "the files", files_say);
    // Kill the child mid-stream; until then ours forwarded nothing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stream_state(&server.url(), "TWO").0 < (n / 2) as u64 {
        assert!(Instant::now() < deadline, "the child is too slow");
        assert_eq!(bridge.stats().forwarded, 0, "two forwarders");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(bridge.stats().forwarded, 0, "two forwarders");
    child.kill().unwrap();
    let killed = Instant::now();
    child.wait().unwrap();
    let (at_kill, _) = stream_state(&server.url(), "TWO");
    assert!(at_kill < n as u64, "the child finished before the kill");
    wait_until(&bridge, Duration::from_secs(5), "takeover", || {
        let s = bridge.stats();
        s.standby == 0 && s.forwarded > 0
    });
    let takeover = killed.elapsed();
    producer.join().unwrap();
    wait_until(
        &bridge,
        Duration::from_secs(30),
        "the rest forwarded",
        || {
            let s = q.stats();
            s.ready + s.leased + s.delayed == 0
        },
    );
    let s = bridge.stats();
    println!("child killed at {at_kill}/{n} in the stream; took over in {takeover:?}; {s:?}");
    assert_eq!(
        stream_state(&server.url(), "TWO"),
        (n as u64, n as u64),
        "{s:?}"
    );
    check_stream_bodies(&server, "two.jobs", n);
    // The dead child's file is stale; ours goes at a clean stop.
    let files = libqueue::bridge_file::list(dir.path());
    let stale: Vec<_> = files.iter().filter(|f| !f.alive).collect();
    assert_eq!(stale.len(), 1, "{files:?}");
    assert_eq!(stale[0].record.as_ref().unwrap().pid, child_pid);
    drop(bridge);
    assert!(libqueue::bridge_file::list(dir.path())
        .iter()
        .all(|f| !f.alive));
}
