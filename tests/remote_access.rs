//! Who may attach to a host (issue 14): a new data directory is 0700 and its
//! socket takes the directory's permissions; a peer of another uid
//! (`SO_PEERCRED`) is refused and counted unless `BrokerOptions::allow_uids`
//! names it. Run as root, the other user is real: a child process of this
//! test running as `nobody`; otherwise the uid is injected (the hidden
//! `HostLimits::peer_uid`).

use libqueue::wire::{self, op};
use libqueue::*;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// What a raw client gets from the host of `dir`: "connect: <error>",
/// "refused" (hung up on after HELLO, or an error answer) or "attached".
fn try_attach(dir: &Path) -> String {
    let mut s = match UnixStream::connect(dir.join("libqueue.sock")) {
        Ok(s) => s,
        Err(e) => return format!("connect: {:?}", e.kind()),
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if s.write_all(&wire::fuzz::hello_frame()).is_err() {
        return "refused".into();
    }
    // The answer's length, then the frame (a refused peer reads the end).
    let mut b = [0u8; 14];
    if s.read_exact(&mut b).is_ok() && b[12] == op::REPLY && b[13] == 0 {
        "attached".into()
    } else {
        "refused".into()
    }
}

/// Runs `try_attach` in a child process of this test as `nobody`.
fn attach_as_nobody(dir: &Path) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_attach",
            "--nocapture",
            "--include-ignored",
        ])
        .env("LQ_ACCESS_CHILD", dir)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("the child said nothing: {text}"))
        .to_string()
}

#[test]
#[ignore = "run by the tests below, as another user"]
fn child_attach() {
    let dir = std::env::var_os("LQ_ACCESS_CHILD").expect("LQ_ACCESS_CHILD");
    println!("RESULT {}", try_attach(Path::new(&dir)));
}

fn wait_dropped(b: &Broker, n: u64) {
    let until = Instant::now() + Duration::from_secs(5);
    while b.host_info().unwrap().dropped < n {
        assert!(Instant::now() < until, "{:?}", b.host_info());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_new_data_directory_is_private_and_its_socket_too() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("new").join("data");
    let b = Broker::open(BrokerOptions::new().data_dir(&dir)).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("libqueue.sock")), 0o700);
    b.close();
    // An existing directory keeps its mode, and the socket takes it.
    let open = parent.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o750)).unwrap();
    let b = Broker::open(BrokerOptions::new().data_dir(&open)).unwrap();
    assert_eq!(mode(&open), 0o750);
    assert_eq!(mode(&open.join("libqueue.sock")), 0o750);
    drop(b);
}

#[test]
fn another_user_is_refused_by_the_directory_then_by_its_uid() {
    if !is_root() {
        eprintln!("not root: no second user here (the injected-uid test covers the check)");
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    // A new (0700) directory: nobody cannot even reach the socket.
    let private = parent.path().join("private");
    let host = Broker::open(BrokerOptions::new().data_dir(&private)).unwrap();
    assert_eq!(attach_as_nobody(&private), "connect: PermissionDenied");
    assert_eq!(host.host_info().unwrap().dropped, 0);
    drop(host);

    // A directory open to all (and so its socket): the uid check refuses.
    let shared = parent.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let host = Broker::open(BrokerOptions::new().data_dir(&shared)).unwrap();
    assert_eq!(mode(&shared.join("libqueue.sock")), 0o777);
    assert_eq!(attach_as_nobody(&shared), "refused");
    wait_dropped(&host, 1);
    assert!(host.host_info().unwrap().clients.is_empty());
    assert_eq!(try_attach(&shared), "attached", "the host's own uid");
    drop(host);

    // Unless the host allows it.
    let host = Broker::open(BrokerOptions::new().data_dir(&shared).allow_uids([NOBODY])).unwrap();
    assert_eq!(attach_as_nobody(&shared), "attached");
    assert_eq!(host.host_info().unwrap().dropped, 0);
}

#[test]
fn an_injected_uid_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let limits = HostLimits {
        peer_uid: Some(NOBODY),
        ..HostLimits::default()
    };
    let host = Broker::open(
        BrokerOptions::new()
            .data_dir(dir.path())
            .host_limits(limits.clone()),
    )
    .unwrap();
    assert_eq!(try_attach(dir.path()), "refused");
    wait_dropped(&host, 1);
    // Told why, in an error answer to its HELLO.
    let mut s = UnixStream::connect(dir.path().join("libqueue.sock")).unwrap();
    // (The host answers and closes without reading: the write may find the
    // connection closed already.)
    let _ = s.write_all(&wire::fuzz::hello_frame());
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let mut d = wire::Dec::new(&answer[4..]);
    assert_eq!(d.header().unwrap(), (0, op::REPLY));
    assert_eq!(d.u8().unwrap(), 1);
    let e = d.error().unwrap();
    assert!(
        matches!(e, Error::Locked(_)) && e.to_string().contains("uid 65534"),
        "{e}"
    );
    wait_dropped(&host, 2);
    // A broker opened meanwhile does not attach (and cannot host: the lock is held).
    let t = Instant::now();
    assert!(Broker::open(BrokerOptions::new().data_dir(dir.path()).exclusive(true)).is_err());
    assert!(t.elapsed() < Duration::from_secs(5));
    // A plain open is told the host's refusal at once (it does not retry).
    let t = Instant::now();
    match Broker::open(BrokerOptions::new().data_dir(dir.path())) {
        Err(Error::Locked(why)) => assert!(why.contains("uid 65534"), "{why}"),
        other => panic!("want the host's refusal, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop(host);

    let _host = Broker::open(
        BrokerOptions::new()
            .data_dir(dir.path())
            .host_limits(limits)
            .allow_uids([NOBODY]),
    )
    .unwrap();
    assert_eq!(try_attach(dir.path()), "attached");
    let att = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    assert!(att.is_attached());
    let info = att.host_info().unwrap();
    assert_eq!(info.dropped, 0);
    assert!(info.clients.iter().all(|c| c.uid == NOBODY), "{info:?}");
}
