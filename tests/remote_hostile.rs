//! Hostile and broken clients of a host (issue 14, "Who may attach"): raw
//! connections to `DIR/libqueue.sock` that send garbage, a huge length, half
//! a frame then nothing, a `HELLO` then an unknown op, that never speak (a
//! thousand of them), never read their answers, ask for too many waits, or
//! die mid-call — while an attached client goes on sending and receiving.
//! The host keeps serving it within its normal latency, drops and counts each
//! misbehaving connection (`HostInfo::dropped`), and its threads and memory
//! stay bounded. The host's limits are shortened (`HostLimits`) so the whole
//! run takes seconds.

use libqueue::wire::{self, op, Enc};
use libqueue::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);
const IDLE: usize = 1000;

fn limits() -> HostLimits {
    HostLimits {
        hello_timeout: Duration::from_secs(3),
        stall_timeout: Duration::from_millis(1000),
        max_waits: 64,
        ..HostLimits::default()
    }
}

fn sock(dir: &Path) -> PathBuf {
    dir.join("libqueue.sock")
}

fn connect(dir: &Path) -> UnixStream {
    UnixStream::connect(sock(dir)).expect("connect to the host")
}

fn frame(id: u64, o: u8, f: impl FnOnce(&mut Enc)) -> Vec<u8> {
    let mut e = Enc::new(id, o);
    f(&mut e);
    e.finish().expect("a frame")
}

/// Connects and says `HELLO`; the host answers ok.
fn hello(dir: &Path) -> UnixStream {
    let mut s = connect(dir);
    s.write_all(&wire::fuzz::hello_frame()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    assert_eq!(body[8], op::REPLY);
    assert_eq!(body[9], 0, "HELLO refused");
    s
}

/// Whether the host hangs up on `s` within `within` (what it sends first is read and dropped).
fn hung_up(s: &mut UnixStream, within: Duration) -> bool {
    let until = Instant::now() + within;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

fn proc_status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn threads() -> u64 {
    proc_status("Threads:")
}

fn rss_kib() -> u64 {
    proc_status("VmRSS:")
}

fn raise_nofile(want: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid rlimit to write to, then to read from.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        if r.rlim_cur < want {
            r.rlim_cur = want.min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn p99(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() * 99 / 100).copied().unwrap_or_default()
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        std::thread::sleep(5 * MS);
    }
}

#[test]
fn hostile_clients_are_dropped_and_the_others_served() {
    raise_nofile(4096);
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        BrokerOptions::new()
            .data_dir(dir.path())
            .host_limits(limits())
    };
    let host = Broker::open(opts()).unwrap();
    assert!(!host.is_attached());
    let d = dir.path();
    // A queue of big messages, for the client that does not read its answers.
    let fat = host.namespace("t").unwrap().queue("fat").unwrap();
    for _ in 0..4 {
        fat.send(Message::new(vec![7u8; 256 << 10])).unwrap();
    }
    host.namespace("t").unwrap().queue("empty").unwrap();

    // The normal client: an attached broker sending and receiving in a loop,
    // its round trips tagged with the phase (0 before, 1 under attack).
    let att = Broker::open(opts()).unwrap();
    assert!(att.is_attached());
    let phase = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<[Vec<Duration>; 2]>> = Arc::default();
    let normal = {
        let (phase, stop, samples) = (phase.clone(), stop.clone(), samples.clone());
        let q = att.namespace("t").unwrap().queue("work").unwrap();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(SeqCst) && n < 1_000_000 {
                let p = phase.load(SeqCst) as usize;
                let t = Instant::now();
                q.send(Message::new(n.to_le_bytes().to_vec())).unwrap();
                let got = q.receive_timeout(Duration::from_secs(5)).unwrap().unwrap();
                assert_eq!(got.body(), n.to_le_bytes());
                got.ack().unwrap();
                samples.lock().unwrap()[p.min(1)].push(t.elapsed());
                n += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            n
        })
    };
    wait_for("baseline", Duration::from_secs(10), || {
        samples.lock().unwrap()[0].len() >= 300
    });
    let (threads0, rss0) = (threads(), rss_kib());
    phase.store(1, SeqCst);
    let attack_start = Instant::now();
    let mut expected_drops = 0u64;

    // 1. Garbage, seeded: random bytes (the op byte never HELLO), then close.
    let mut rng = SmallRng::seed_from_u64(0x0405_711E);
    for _ in 0..20 {
        let mut s = connect(d);
        let mut g: Vec<u8> = (0..rng.gen_range(1..2048)).map(|_| rng.gen()).collect();
        if g.len() > 12 {
            g[12] = 0xEE;
        }
        let _ = s.write_all(&g);
        drop(s);
        expected_drops += 1;
    }
    // Something else's protocol: the length it reads is out of bounds.
    let mut http = connect(d);
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    expected_drops += 1;
    // 2. A huge length prefix, then nothing: dropped at once, nothing read.
    let mut huge = connect(d);
    huge.write_all(&0xFFFF_FFF0u32.to_le_bytes()).unwrap();
    expected_drops += 1;
    // ... and after HELLO, the largest frame a host accepts announced, 1 MiB of
    // it sent, then silence: dropped when it stalls, 1 MiB held meanwhile.
    let mut big = hello(d);
    big.write_all(&(wire::MAX_FRAME as u32).to_le_bytes())
        .unwrap();
    big.write_all(&vec![0u8; 1 << 20]).unwrap();
    expected_drops += 1;
    // 3. Half a frame, then silence: before HELLO, and after it.
    let hello_f = wire::fuzz::hello_frame();
    let mut half_hello = connect(d);
    half_hello.write_all(&hello_f[..hello_f.len() / 2]).unwrap();
    expected_drops += 1;
    let send_f = frame(1, op::SEND, |e| {
        e.str("t").str("work").u64(0).u8(0).bool(false).u32(1);
        e.message(&Message::new("never finished"));
    });
    let mut half = hello(d);
    half.write_all(&send_f[..send_f.len() / 2]).unwrap();
    expected_drops += 1;
    // 4. A thousand connections that never speak.
    let idle: Vec<UnixStream> = (0..IDLE).map(|_| connect(d)).collect();
    expected_drops += IDLE as u64;
    // 5. Dies mid-call: mid-frame (counted), and after a whole blocking
    // receive (a client going away: not counted, its wait ends).
    let mut mid = hello(d);
    mid.write_all(&send_f[..10]).unwrap();
    drop(mid);
    expected_drops += 1;
    let mut waiting = hello(d);
    waiting
        .write_all(&frame(1, op::RECEIVE, |e| {
            e.str("t")
                .str("empty")
                .u64(0)
                .u32(1)
                .wait(Wait::Forever)
                .bool(false);
        }))
        .unwrap();
    // 6. A valid HELLO, then an unknown op; a REPLY; a second HELLO.
    let mut unknown = Vec::new();
    for o in [0xEEu8, op::REPLY, op::HELLO] {
        let mut s = hello(d);
        s.write_all(&frame(2, o, |e| {
            e.u64(0);
        }))
        .unwrap();
        unknown.push(s);
        expected_drops += 1;
    }
    // 7. A HELLO of another version: told so, then dropped.
    let mut v2 = connect(d);
    v2.write_all(&frame(0, op::HELLO, |e| {
        e.u16(wire::VERSION + 1).u32(1).u64(42);
    }))
    .unwrap();
    expected_drops += 1;
    // 8. Never reads its answers: asks for 1 MiB peeks and reads nothing.
    let mut deaf = hello(d);
    deaf.set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let peek = frame(9, op::PEEK, |e| {
        e.str("t").str("fat").u64(0).u32(4);
    });
    let mut deaf_w = deaf.try_clone().unwrap();
    let deaf_writer = std::thread::spawn(move || {
        for _ in 0..64 {
            if deaf_w.write_all(&peek).is_err() {
                break;
            }
        }
    });
    expected_drops += 1;
    // 9. More waits than a connection may have (64 here).
    let mut greedy = hello(d);
    for i in 0..100u64 {
        let f = frame(100 + i, op::RECEIVE, |e| {
            e.str("t")
                .str("empty")
                .u64(0)
                .u32(1)
                .wait(Wait::For(Duration::from_secs(30)))
                .bool(false);
        });
        if greedy.write_all(&f).is_err() {
            break;
        }
    }
    expected_drops += 1;

    // Under attack (the idle thousand and the stalled ones still there).
    let threads1 = threads();
    let rss1 = rss_kib();
    let host_info = host.host_info().unwrap();
    eprintln!(
        "attack opened in {:?}: threads {threads0} -> {threads1}, RSS {rss0} -> {rss1} KiB, \
         {} clients, {} dropped so far",
        attack_start.elapsed(),
        host_info.clients.len(),
        host_info.dropped
    );
    std::thread::sleep(Duration::from_millis(500));
    wait_for("samples under attack", Duration::from_secs(10), || {
        samples.lock().unwrap()[1].len() >= 300
    });

    // The huge length and the garbage were dropped at once.
    assert!(
        hung_up(&mut huge, Duration::from_secs(2)),
        "huge length not dropped"
    );
    assert!(
        hung_up(&mut http, Duration::from_secs(2)),
        "HTTP not dropped"
    );
    for s in &mut unknown {
        assert!(hung_up(s, Duration::from_secs(2)), "unknown op not dropped");
    }
    // The other version is told which it speaks.
    v2.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answer = Vec::new();
    let _ = v2.read_to_end(&mut answer);
    assert!(
        answer.len() > 14 && answer[12] == op::REPLY && answer[13] == 1,
        "{answer:?}"
    );
    assert!(String::from_utf8_lossy(&answer).contains("wire version"));
    // The stalled ones, the idle ones and the deaf one go by their timeouts.
    assert!(
        hung_up(&mut big, Duration::from_secs(4)),
        "stalled big frame not dropped"
    );
    assert!(
        hung_up(&mut half, Duration::from_secs(4)),
        "half frame not dropped"
    );
    assert!(
        hung_up(&mut half_hello, Duration::from_secs(4)),
        "half HELLO not dropped"
    );
    assert!(
        hung_up(&mut greedy, Duration::from_secs(4)),
        "too many waits not dropped"
    );
    for mut s in idle {
        assert!(
            hung_up(&mut s, Duration::from_secs(4)),
            "idle connection not dropped"
        );
    }
    wait_for("every drop counted", Duration::from_secs(8), || {
        host.host_info().unwrap().dropped >= expected_drops
    });
    // (Read only now: reading would let the host's writes through.)
    assert!(
        hung_up(&mut deaf, Duration::from_secs(2)),
        "deaf client not dropped"
    );
    deaf_writer.join().unwrap();
    let attack_time = attack_start.elapsed();
    stop.store(true, SeqCst);
    let round_trips = normal.join().unwrap();

    let info = host.host_info().unwrap();
    assert_eq!(info.dropped, expected_drops, "{info:?}");
    // Left: the normal client and the one waiting in its receive.
    assert_eq!(info.clients.len(), 2, "{info:?}");
    drop(waiting);
    wait_for("the waiting client gone", Duration::from_secs(2), || {
        host.host_info().unwrap().clients.len() == 1
    });
    assert_eq!(
        host.host_info().unwrap().dropped,
        expected_drops,
        "a client going is no drop"
    );
    assert_eq!(att.host_info().unwrap().clients.len(), 1);

    // The host's threads and memory: one thread a connection while they
    // lasted, none left after; the announced 256 MiB frame never allocated.
    let threads2 = threads();
    let rss2 = rss_kib();
    eprintln!("after: threads {threads2}, RSS {rss2} KiB");
    assert!(
        threads1 <= threads0 + IDLE as u64 + 256,
        "{threads0} -> {threads1}"
    );
    assert!(
        threads1 >= threads0 + IDLE as u64 / 2,
        "idle connections not served? {threads1}"
    );
    assert!(rss1 < rss0 + 160 * 1024, "RSS {rss0} -> {rss1} KiB");

    // The normal client's latency, before and under attack.
    let mut s = std::mem::take(&mut *samples.lock().unwrap());
    let (n0, n1) = (s[0].len(), s[1].len());
    let (before, during) = (p99(&mut s[0]), p99(&mut s[1]));
    eprintln!(
        "normal client: {round_trips} round trips; p99 before {before:?} ({n0}), \
         under attack {during:?} ({n1}); attack lasted {attack_time:?}"
    );
    assert!(
        during <= Duration::from_millis(50).max(before * 5),
        "p99 before {before:?}, under attack {during:?}"
    );
    host.close();
}

#[test]
fn connections_over_the_limit_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let host = Broker::open(
        BrokerOptions::new()
            .data_dir(dir.path())
            .host_limits(HostLimits {
                max_connections: 4,
                ..limits()
            }),
    )
    .unwrap();
    let kept: Vec<UnixStream> = (0..4).map(|_| hello(dir.path())).collect();
    let mut over = connect(dir.path());
    assert!(hung_up(&mut over, Duration::from_secs(2)));
    assert_eq!(host.host_info().unwrap().dropped, 1);
    assert_eq!(host.host_info().unwrap().clients.len(), 4);
    drop(kept);
    wait_for("room again", Duration::from_secs(2), || {
        host.host_info().unwrap().clients.is_empty()
    });
    let _again = hello(dir.path());
    assert_eq!(host.host_info().unwrap().dropped, 1);
}

/// An attached process killed while it holds a lease and waits in a receive:
/// its lease is back at once, it is not counted as misbehaving, and the host
/// goes on.
#[test]
fn a_process_killed_mid_call_gives_its_leases_back() {
    if let Some(dir) = std::env::var_os("LQ_HOSTILE_CHILD") {
        return child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let host = Broker::open(
        BrokerOptions::new()
            .data_dir(dir.path())
            .host_limits(limits()),
    )
    .unwrap();
    let q = host.namespace("t").unwrap().queue("held").unwrap();
    q.send(Message::new("lease me")).unwrap();
    let mut kid = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_process_killed_mid_call_gives_its_leases_back",
            "--nocapture",
        ])
        .env("LQ_HOSTILE_CHILD", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = kid.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut b = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("HELD") {
        let n = out.read(&mut b).unwrap();
        assert!(n > 0, "the child ended: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&b[..n]);
    }
    assert_eq!(q.stats().leased, 1);
    std::thread::sleep(50 * MS); // in its blocking receive
    kid.kill().unwrap();
    kid.wait().unwrap();
    let t = Instant::now();
    wait_for("the lease back", Duration::from_secs(2), || {
        q.stats().ready == 1
    });
    eprintln!("lease back {:?} after the kill", t.elapsed());
    let info = host.host_info().unwrap();
    assert_eq!(info.dropped, 0, "{info:?}");
    assert!(info.clients.is_empty(), "{info:?}");
    let d = q.try_receive().unwrap().unwrap();
    assert_eq!(d.delivery_count(), 2);
    d.ack().unwrap();
}

fn child(dir: &Path) {
    let b = Broker::open(BrokerOptions::new().data_dir(dir)).unwrap();
    assert!(b.is_attached());
    let ns = b.namespace("t").unwrap();
    let d = ns.queue("held").unwrap().try_receive().unwrap().unwrap();
    println!("HELD");
    std::io::stdout().flush().unwrap();
    let _ = ns
        .queue("empty")
        .unwrap()
        .receive_timeout(Duration::from_secs(60));
    drop(d);
}

/// A `HELLO` trickled in a byte at a time never stalls, but must still be
/// whole within the HELLO timeout; a first frame longer than `MAX_HELLO` is
/// dropped unread.
#[test]
fn a_slow_or_long_hello_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let host = Broker::open(
        BrokerOptions::new()
            .data_dir(dir.path())
            .host_limits(HostLimits {
                hello_timeout: Duration::from_millis(500),
                stall_timeout: Duration::from_secs(5),
                ..HostLimits::default()
            }),
    )
    .unwrap();
    let t = Instant::now();
    let mut slow = connect(dir.path());
    let mut hung = false;
    for b in wire::fuzz::hello_frame() {
        if slow.write_all(&[b]).is_err() {
            hung = true;
            break;
        }
        std::thread::sleep(100 * MS);
    }
    assert!(hung || hung_up(&mut slow, Duration::from_secs(2)));
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    wait_for("slow HELLO counted", Duration::from_secs(2), || {
        host.host_info().unwrap().dropped == 1
    });

    let mut long = connect(dir.path());
    let f = frame(0, op::HELLO, |e| {
        e.u16(wire::VERSION).u32(1).bytes(&[0u8; wire::MAX_HELLO]);
    });
    let _ = long.write_all(&f[..64]);
    assert!(hung_up(&mut long, Duration::from_millis(400)));
    assert_eq!(host.host_info().unwrap().dropped, 2);
    // A HELLO of the right size, in time, is served.
    let _ok = hello(dir.path());
    assert_eq!(host.host_info().unwrap().clients.len(), 1);
}
