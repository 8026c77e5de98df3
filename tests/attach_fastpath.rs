//! The attached side's read path (src/remote/client.rs): calls read their own
//! answers (leader/follower), and a watcher thread reads while no call is in
//! flight. These check what that must keep:
//!
//! - many threads calling at once, one of them blocked in a receive that
//!   waits on the host (it reads the socket for everyone meanwhile), all
//!   answered;
//! - a cancellable receive that is the one reading is still cancelled;
//! - while no call is in flight, a `NOTIFY` still raises the queue's
//!   descriptor, and a host killed is noticed at once: this process takes
//!   over without making a call.
//!
//! The host is a child process: this test binary run again (`LQ_FP_ROLE`).

use libqueue::{Broker, BrokerOptions, Message, MessageView, Wait};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn open(dir: &Path) -> Broker {
    Broker::open(BrokerOptions::new().data_dir(dir)).unwrap()
}

/// A host child: it opens `dir`, says `LQ-READY`, then obeys lines on stdin
/// (`send Q`: one message into Q; anything else, or the end: exits).
struct Host {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Host {
    fn start(dir: &Path) -> Host {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LQ_FP_ROLE", "host")
            .env("LQ_FP_DIR", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "the host child ended"
            );
            // (libtest may have written "test child ... " on the same line)
            if line.trim_end().ends_with("LQ-READY") {
                break;
            }
        }
        Host { child, out }
    }

    fn say(&mut self, what: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{what}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert!(line.trim_end().ends_with("LQ-DONE"), "{line}");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "the host child of these tests; runs only with LQ_FP_ROLE set"]
fn child() {
    if std::env::var("LQ_FP_ROLE").is_err() {
        return;
    }
    let dir = std::env::var_os("LQ_FP_DIR").unwrap();
    let b = open(Path::new(&dir));
    assert!(!b.is_attached());
    println!("LQ-READY");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        match line.split_once(' ') {
            Some(("send", q)) => {
                b.queue(q).unwrap().send_bytes(b"x").unwrap();
                println!("LQ-DONE");
            }
            _ => break,
        }
    }
    b.close();
}

fn readable(fd: i32, wait: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut p, 1, wait.as_millis() as i32) };
    r == 1
}

#[test]
fn many_threads_answered_while_one_waits_on_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let _h = Host::start(dir.path());
    let b = open(dir.path());
    assert!(b.is_attached());
    let q = b.queue("many").unwrap();
    let last = b.queue("last").unwrap();
    // Blocked on the host until the others are done (it may be the one
    // reading the socket for all of them).
    let blocked = {
        let last = last.clone();
        std::thread::spawn(move || last.receive_auto_ack(Wait::Forever).unwrap().is_some())
    };
    std::thread::sleep(Duration::from_millis(50));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..500u64 {
                    q.send(Message::new((t * 1000 + i).to_le_bytes().to_vec()))
                        .unwrap();
                    if i % 3 == 0 {
                        q.receive_auto_ack(Wait::Try).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = q.stats();
    assert_eq!(s.sent, 8 * 500);
    last.send_bytes(b"end").unwrap();
    assert!(blocked.join().unwrap());
    b.close();
}

#[test]
fn a_reading_receive_is_still_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let _h = Host::start(dir.path());
    let b = open(dir.path());
    let q = b.queue("cancel").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let t = {
        let (q, stop) = (q.clone(), stop.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            let got = q.receive_cancellable(Wait::Forever, &stop).unwrap();
            (got.is_none(), t.elapsed())
        })
    };
    // Alone, it reads the socket itself.
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, SeqCst);
    q.wake_receivers();
    let (none, took) = t.join().unwrap();
    assert!(none);
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The connection goes on.
    q.send_bytes(b"a").unwrap();
    assert!(q.receive_auto_ack(Wait::Try).unwrap().is_some());
    b.close();
}

#[test]
fn idle_process_gets_notified_and_takes_over_without_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Host::start(dir.path());
    let b = open(dir.path());
    assert!(b.is_attached());
    let q = b.queue("idle").unwrap();
    let fd = q.fd().unwrap();
    assert!(!readable(fd, Duration::ZERO));
    for round in 0..3 {
        // No call of this process is in flight: the watcher reads the NOTIFY.
        h.say("send idle");
        assert!(readable(fd, Duration::from_secs(5)), "round {round}");
        assert!(q.receive_auto_ack(Wait::Try).unwrap().is_some());
        let t = Instant::now();
        while readable(fd, Duration::ZERO) {
            assert!(t.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // The host dies while this process makes no call: it takes over by itself.
    let _ = h.child.kill();
    let _ = h.child.wait();
    let t = Instant::now();
    while b.is_attached() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no takeover without a call"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    q.send_bytes(b"after").unwrap();
    assert!(readable(fd, Duration::from_secs(5)));
    b.close();
}

/// A client may pipeline: many requests in one write, cut anywhere, are
/// each answered (the host reads many frames per read and writes the
/// answers ready together), and the sends keep their order.
#[test]
fn pipelined_requests_in_one_write_are_all_answered() {
    use libqueue::wire::{self, op, Enc};
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let host = open(dir.path());
    let q = host.queue("pipe").unwrap();
    let mut s = UnixStream::connect(dir.path().join("libqueue.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let read_frame = |s: &mut UnixStream| {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        s.read_exact(&mut body).unwrap();
        body
    };
    s.write_all(&wire::fuzz::hello_frame()).unwrap();
    assert_eq!(read_frame(&mut s)[9], 0);
    let n = 500u64;
    let mut all = Vec::new();
    for i in 1..=n {
        let mut e = Enc::new(i, op::SEND);
        e.str("default").str("pipe").u64(0).u8(0).bool(false).u32(1);
        e.message(&Message::new(i.to_le_bytes().to_vec()));
        all.extend_from_slice(&e.finish().unwrap());
    }
    // Written in odd pieces (frames cut in the middle), without waiting.
    for piece in all.chunks(777) {
        s.write_all(piece).unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..n {
        let body = read_frame(&mut s);
        let id = u64::from_le_bytes(body[..8].try_into().unwrap());
        assert_eq!(body[8], op::REPLY);
        assert_eq!(body[9], 0, "answer {id} is an error");
        assert!(seen.insert(id));
    }
    assert_eq!(seen.len() as u64, n);
    for i in 1..=n {
        let d = q.receive_auto_ack(Wait::Try).unwrap().unwrap();
        assert_eq!(d.body(), i.to_le_bytes(), "in the order sent");
    }
    drop(s);
    host.close();
}
