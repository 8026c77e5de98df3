//! The `libqueue` command: verify, stats and inspect a data directory, read-only
//! (also while a broker has it open).

use libqueue::*;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_libqueue"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn verify_stats_inspect_and_damage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let b = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    let q = b.namespace("t").unwrap().queue("jobs").unwrap();
    for i in 0..10 {
        q.send(
            Message::new(format!("job {i}"))
                .name("run")
                .persistent(true),
        )
        .unwrap();
    }
    q.try_receive().unwrap().unwrap().ack().unwrap();
    b.flush().unwrap();

    // Read-only: works while the broker holds the lock.
    let (code, out) = run(&["verify", d]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK") && out.contains("9 messages"), "{out}");
    let (code, out) = run(&["stats", d]);
    assert_eq!(code, 0);
    assert!(out.contains("t/jobs") && out.contains(" 9 "), "{out}");
    let (code, out) = run(&["inspect", d]);
    assert_eq!(code, 0);
    assert!(out.contains("define t/jobs"), "{out}");
    assert_eq!(out.matches("enqueue t/jobs").count(), 10, "{out}");
    assert!(out.contains("remove t/jobs"), "{out}");
    drop(q);
    drop(b);

    // Flip a byte inside the records: verify reports damage and exits 1.
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "lqj"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[64 + 40] ^= 0x40;
    std::fs::write(&seg, bytes).unwrap();
    let (code, out) = run(&["verify", d]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DAMAGE"), "{out}");

    assert_eq!(run(&["bogus", d]).0, 2);
    assert_eq!(run(&["verify"]).0, 2);
}

/// `stats` of a directory a live process hosts shows the host, its attached
/// processes and its counters — asked over the socket: the command never
/// attaches, so it never becomes the host; with no host it reads the journal
/// alone and leaves the directory as it found it.
#[test]
fn stats_shows_the_host_and_its_clients_without_hosting() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let host = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    let att = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    assert!(att.is_attached());
    let q = att.namespace("t").unwrap().queue("jobs").unwrap();
    q.send(Message::new("a").persistent(true)).unwrap();
    q.send(Message::new("b").persistent(true)).unwrap();
    let held = q.try_receive().unwrap().unwrap();
    // A client dropped for garbage.
    let mut bad =
        std::os::unix::net::UnixStream::connect(dir.path().join("libqueue.sock")).unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while host.host_info().unwrap().dropped == 0 {
        assert!(std::time::Instant::now() < until);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    host.flush().unwrap();

    let (code, out) = run(&["stats", d]);
    assert_eq!(code, 0, "{out}");
    let me = std::process::id();
    assert!(
        out.contains(&format!("host: pid {me}, 0 takeovers, 1 client dropped")),
        "{out}"
    );
    assert!(out.contains("attached: 1 process\n"), "{out}");
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("pid {me} ")))
        .unwrap_or_else(|| panic!("no line for the attached process: {out}"));
    assert!(
        line.contains(" UTC (") && line.ends_with("leases 1"),
        "{line}"
    );
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert!(line.contains(&format!("uid {uid} ")), "{line}");
    assert!(out.contains("t/jobs"), "{out}");
    // The command is gone: it is no client any more; the host is unchanged.
    // (The host notices the command's connection end when its thread reads
    // the end of the stream: wait for it, bounded.)
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut info = host.host_info().unwrap();
    while info.clients.len() > 1 && std::time::Instant::now() < give_up {
        std::thread::sleep(std::time::Duration::from_millis(10));
        info = host.host_info().unwrap();
    }
    assert_eq!((info.clients.len(), info.dropped), (1, 1), "{info:?}");
    held.ack().unwrap();
    drop(q);
    att.close();
    host.close();
    drop(host);

    // No host: the journal alone; the command does not become the host.
    let (code, out) = run(&["stats", d]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("host: none"), "{out}");
    assert!(out.contains("t/jobs") && out.contains(" 1 "), "{out}");
    assert!(!dir.path().join("libqueue.sock").exists());
    let b = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    assert!(!b.is_attached(), "the directory was left held");
}

/// `stats` shows the bridges running on a directory, from their files in
/// `DIR/bridges/`: configuration without credentials, counters, health and
/// last error; a file whose process died as stale, a damaged one as
/// unreadable; a bridge stopped cleanly leaves no file. (No server needed:
/// the bridge connects in the background to a port nobody listens on.)
#[cfg(feature = "bridge")]
#[test]
fn stats_shows_the_bridges_of_the_directory() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out) = run(&["stats", d]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("bridges: none"), "{out}");

    let b = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bridge = Bridge::nats(&format!("nats://user:s3cret@127.0.0.1:{port}"))
        .forward("app/jobs", "jobs.created")
        .connect_in_background(true)
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .start(&b)
        .unwrap();
    let q = b.namespace("app").unwrap().queue("jobs").unwrap();
    q.send(Message::new("kept")).unwrap();
    // The file is rewritten every second: wait (bounded) for the error.
    let until = Instant::now() + Duration::from_secs(10);
    let out = loop {
        let (code, out) = run(&["stats", d]);
        assert_eq!(code, 0, "{out}");
        if out.contains("last error") && out.contains("pending out 1 ") {
            break out;
        }
        assert!(Instant::now() < until, "{out}\n{:?}", bridge.stats());
        std::thread::sleep(Duration::from_millis(100));
    };
    let me = std::process::id();
    assert!(out.contains("bridges: 1\n"), "{out}");
    assert!(
        out.contains(&format!("nats nats://127.0.0.1:{port}  pid {me} ")),
        "{out}"
    );
    assert!(!out.contains("s3cret"), "{out}");
    assert!(out.contains("disconnected"), "{out}");
    assert!(out.contains("out app/jobs -> jobs.created\n"), "{out}");
    assert!(out.contains("(failing since "), "{out}");

    // A stale file (its process is gone) and a damaged one.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let live = libqueue::bridge_file::list(dir.path());
    assert_eq!(live.len(), 1);
    let mut rec = live[0].record.clone().unwrap();
    rec.pid = gone_pid;
    let bridges = dir.path().join("bridges");
    std::fs::write(
        bridges.join(format!("bridge-{gone_pid}-1.json")),
        rec.to_json(),
    )
    .unwrap();
    std::fs::write(bridges.join("bridge-0-0.json"), "{\"version\":1,").unwrap();
    let (code, out) = run(&["stats", d]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("bridges: 3\n"), "{out}");
    assert!(
        out.contains(&format!("pid {gone_pid} ")) && out.contains("STALE: its process is gone"),
        "{out}"
    );
    assert!(
        out.contains("bridge-0-0.json: unreadable (malformed JSON"),
        "{out}"
    );

    // A clean stop removes the bridge's own file.
    bridge.stop();
    let (_, out) = run(&["stats", d]);
    assert!(out.contains("bridges: 2\n"), "{out}");
    assert!(!out.contains(&format!("pid {me} ")), "{out}");
}
