//! The host side: the process that holds a data directory serves the others
//! on a Unix socket in it (`libqueue.sock`). One thread accepts; each
//! connection has a thread that reads its frames (as many as one read
//! brings) and answers what does not wait, inline, the answers ready
//! together in one write (a receive that finds nothing, when the connection
//! has nothing else to read, looks again for [`INLINE_WAIT`] first); calls
//! that wait (a blocking receive, a send into a full queue, a
//! publish) run on a shared pool of waiter threads and answer when done, so
//! one client's wait never holds up its other calls or anyone else.
//!
//! Every call goes through the public API of this process's `Broker` (the
//! local flavor), so an attached process gets exactly the same semantics and
//! errors. Leases handed to a connection are kept here, by a number the
//! client uses to settle them; when the connection ends (the process exited,
//! died or was dropped) every lease it still held goes back to its queue at
//! once, counted as a delivery.
//!
//! A client is trusted with nothing: its uid is checked (`SO_PEERCRED`), its
//! frames are bounded ([`wire::MAX_FRAME`]) and decoded defensively, one that
//! does not finish its `HELLO` within [`HELLO_TIMEOUT`], stalls inside a frame
//! for [`STALL_TIMEOUT`], sends a frame that does not decode, does not read its
//! answers, or has more than [`MAX_WAITS`] calls waiting is dropped — counted,
//! with a line on stderr. (Tests shorten these limits: [`HostLimits`].)

use super::limits::HostLimits;
use super::notify::{ConnWatches, Sink, Watcher};
use super::wire::{self, op, Dec, Enc, Malformed};
use crate::broker::Broker;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::queue::ReceiveMode;
use crate::queue::{Delivery, Queue};
use crate::sync::fork::{Guarded, Origin};
use crate::topic::Topic;
use crate::types::{Message, OnFull, Wait};
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

/// A connection that has not said `HELLO` within this is dropped.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that stops sending in the middle of a frame for this long
/// (or does not read its answers for this long) is dropped.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are refused.
pub const MAX_CONNECTIONS: usize = 4096;
/// Calls of one connection waiting at once (each holds a waiter thread); a
/// connection that asks for more is dropped.
pub const MAX_WAITS: usize = 1024;
/// Lines a host writes about dropped clients per second at most (a flood of
/// bad connections must not flood its stderr); the rest are counted in the next line.
const LOG_LINES_PER_SEC: u32 = 10;
/// Queues a connection keeps resolved.
const QUEUE_CACHE: usize = 1024;
/// After a takeover, receives wait this long before they are served, so the
/// processes that held leases on the old host reclaim them first
/// (docs/multi-process.md, "Takeover").
pub const RECLAIM_GRACE: Duration = Duration::from_millis(500);
/// How long a host closing cleanly waits for its connections to end before it
/// writes the handover file.
const HANDOVER_WAIT: Duration = Duration::from_secs(2);

/// One attached process, as `HOST_INFO` and the stats show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// Its process id (from `SO_PEERCRED`).
    pub pid: u32,
    /// Its user id.
    pub uid: u32,
    /// When it connected (seconds since the Unix epoch).
    pub since: u64,
    /// Leases it holds now.
    pub leases: u64,
}

/// What a host says about itself (`libqueue stats DIR`, `Broker::host_info`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostInfo {
    /// The host's process id.
    pub pid: u32,
    /// Processes attached now.
    pub clients: Vec<ClientInfo>,
    /// Clients dropped for misbehaving (bad frames, stalls, wrong uid, too many).
    pub dropped: u64,
    /// Times the directory changed host since a host first opened it in this
    /// lineage (0: the first host; each takeover adds one).
    pub takeovers: u64,
}

impl Enc {
    fn host_info(&mut self, h: &HostInfo) -> &mut Self {
        self.u32(h.pid).u64(h.dropped).u64(h.takeovers);
        self.u32(h.clients.len() as u32);
        for c in &h.clients {
            self.u32(c.pid).u32(c.uid).u64(c.since).u64(c.leases);
        }
        self
    }
}

impl Dec<'_> {
    /// Reads a [`HostInfo`].
    pub fn host_info(&mut self) -> wire::DResult<HostInfo> {
        let pid = self.u32()?;
        let dropped = self.u64()?;
        let takeovers = self.u64()?;
        let n = self.count(24)?;
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            clients.push(ClientInfo {
                pid: self.u32()?,
                uid: self.u32()?,
                since: self.u64()?,
                leases: self.u64()?,
            });
        }
        Ok(HostInfo {
            pid,
            clients,
            dropped,
            takeovers,
        })
    }
}

/// The socket of a data directory.
pub(crate) fn socket_path(dir: &Path) -> PathBuf {
    dir.join("libqueue.sock")
}

/// Serves a data directory while it lives (held by its engine, so it stops
/// when the engine closes or drops).
pub(crate) struct Host {
    shared: Arc<Shared>,
    accept: Option<std::thread::JoinHandle<()>>,
    listener_fd: i32,
    origin: Origin,
}

struct Shared {
    engine: Weak<Engine>,
    path: PathBuf,
    /// The inode of the socket this host bound: only that one is removed
    /// when it stops (a successor may have bound its own at the path since).
    socket_ino: u64,
    stop: AtomicBool,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_conn: AtomicU64,
    allow_uids: Vec<u32>,
    dropped: AtomicU64,
    takeovers: u64,
    my_uid: u32,
    limits: HostLimits,
    /// Rate limit of the drop log: (second it counts, lines in it, lines left out).
    log: Mutex<(u64, u32, u64)>,
    /// Receives wait until then (a takeover's [`RECLAIM_GRACE`]).
    grace_until: Option<Instant>,
    /// Set once the listening socket is shut down (by the handover or the drop).
    listener_down: AtomicBool,
    /// Follows the queues that connections watch (started on the first `WATCH`).
    watcher: Mutex<Option<Watcher>>,
}

impl Host {
    /// Binds the directory's socket (replacing a stale one: the caller holds
    /// the directory's lock) with the directory's permissions, and starts
    /// accepting.
    pub(crate) fn start(
        engine: &Arc<Engine>,
        dir: &Path,
        allow_uids: Vec<u32>,
        takeovers: u64,
        limits: HostLimits,
    ) -> Result<Host> {
        let path = socket_path(dir);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| Error::Io(format!("cannot listen on {}: {e}", path.display())))?;
        // The socket takes the directory's permission bits: whoever may not
        // enter the directory may not connect either.
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(dir) {
            let mode = m.permissions().mode() & 0o777;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        }
        let listener = Guarded::new(listener);
        // SAFETY: geteuid has no preconditions.
        let my_uid = unsafe { libc::geteuid() };
        let shared = Arc::new(Shared {
            engine: Arc::downgrade(engine),
            socket_ino: socket_ino(&path).unwrap_or(0),
            path,
            stop: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            allow_uids,
            dropped: AtomicU64::new(0),
            takeovers,
            my_uid,
            limits,
            log: Mutex::new((0, 0, 0)),
            grace_until: (takeovers > 0).then(|| Instant::now() + RECLAIM_GRACE),
            listener_down: AtomicBool::new(false),
            watcher: Mutex::new(None),
        });
        let listener_fd = listener.as_raw_fd();
        {
            let s = shared.clone();
            let d = dir.to_path_buf();
            engine.set_close_hook(Box::new(move |e| hand_over(&s, e, &d, listener_fd)));
        }
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("libqueue-host".into())
            .spawn(move || accept_loop(s, listener))
            .map_err(|e| Error::Io(format!("cannot start the host thread: {e}")))?;
        Ok(Host {
            shared,
            accept: Some(accept),
            listener_fd,
            origin: Origin::here(),
        })
    }

    /// Who is attached, and the counters.
    pub(crate) fn info(&self) -> HostInfo {
        self.shared.info()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.origin.inherited_exact() {
            // A forked child's copy: the sockets are the parent's.
            if let Some(t) = self.accept.take() {
                std::mem::forget(t);
            }
            return;
        }
        self.shared.stop.store(true, SeqCst);
        shut_listener(&self.shared, self.listener_fd);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        remove_socket(&self.shared);
        let conns: Vec<_> = self.shared.conns.lock().values().cloned().collect();
        for c in conns {
            c.hang_up();
        }
        let watcher = self.shared.watcher.lock().take();
        drop(watcher);
    }
}

fn socket_ino(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

/// Removes the socket file if it is still the one this host bound.
fn remove_socket(shared: &Shared) {
    if socket_ino(&shared.path).is_some_and(|i| i == shared.socket_ino) {
        let _ = std::fs::remove_file(&shared.path);
    }
}

/// Shuts the listening socket down once (waking the accept loop, which owns
/// the descriptor and closes it when it returns: a second shutdown could hit
/// a number reused since).
fn shut_listener(shared: &Shared, fd: i32) {
    if !shared.listener_down.swap(true, SeqCst) {
        // SAFETY: our own listening socket, still open: the accept loop closes
        // it only after this shutdown wakes it.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    }
}

/// The engine is closing (or dropped unclosed): if other processes are
/// attached, the host hands over — it stops accepting, ends every connection
/// (their leases are *not* returned: each survivor reclaims its own from the
/// next host) and writes its in-memory messages to the handover file, all
/// before the engine lets the directory's lock go.
fn hand_over(shared: &Arc<Shared>, engine: &Engine, dir: &Path, listener_fd: i32) {
    let me = std::process::id();
    let others = shared
        .conns
        .lock()
        .values()
        .any(|c| c.hello_done.load(SeqCst) && c.pid != me && !c.gone.load(SeqCst));
    if !others {
        return;
    }
    shared.stop.store(true, SeqCst);
    shut_listener(shared, listener_fd);
    // Each connection stops reading: the request it is running is answered
    // (a send is not sent twice for nothing), then it ends.
    let conns: Vec<_> = shared.conns.lock().values().cloned().collect();
    for c in &conns {
        c.handover.store(true, SeqCst);
        // SAFETY: shutdown on a descriptor this connection owns until its
        // reader thread returns; it wakes that thread's read.
        unsafe {
            libc::shutdown(c.fd, libc::SHUT_RD);
        }
    }
    let give_up = Instant::now() + HANDOVER_WAIT;
    while !shared.conns.lock().is_empty() && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(1));
    }
    for c in &conns {
        c.hang_up();
    }
    drop(conns);
    match super::handover::write(engine, dir) {
        Ok(0) => {}
        Ok(n) => eprintln!("libqueue[{me}]: handed {n} in-memory messages over to the next host"),
        Err(e) => eprintln!(
            "libqueue[{me}]: could not write the handover file in {}: {e}; its in-memory messages are lost",
            dir.display()
        ),
    }
}

impl Shared {
    fn info(&self) -> HostInfo {
        let mut clients: Vec<ClientInfo> = self
            .conns
            .lock()
            .values()
            .filter(|c| c.hello_done.load(SeqCst))
            .map(|c| ClientInfo {
                pid: c.pid,
                uid: c.uid,
                since: c.since,
                leases: c.leases.lock().map.len() as u64,
            })
            .collect();
        clients.sort_by_key(|c| (c.since, c.pid));
        HostInfo {
            pid: std::process::id(),
            clients,
            dropped: self.dropped.load(SeqCst),
            takeovers: self.takeovers,
        }
    }

    /// Counts a misbehaving client and says so on stderr (at most
    /// [`LOG_LINES_PER_SEC`] lines a second; the next line counts the rest).
    fn drop_client(&self, c: &Conn, why: &str) {
        self.dropped.fetch_add(1, SeqCst);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let left_out = {
            let mut log = self.log.lock();
            if log.0 != now {
                log.0 = now;
                log.1 = 0;
            }
            if log.1 >= LOG_LINES_PER_SEC {
                log.2 += 1;
                return;
            }
            log.1 += 1;
            std::mem::take(&mut log.2)
        };
        let more = if left_out > 0 {
            format!(" ({left_out} more dropped before, not shown)")
        } else {
            String::new()
        };
        eprintln!(
            "libqueue[{}]: dropped client pid {} uid {}: {why}{more}",
            std::process::id(),
            c.pid,
            c.uid
        );
    }

    fn broker(&self) -> Result<Broker> {
        let e = self.engine.upgrade().ok_or(Error::Closed)?;
        if e.is_closed() {
            return Err(Error::Closed);
        }
        Ok(Broker::from_engine(e))
    }
}

/// The peer's pid and uid.
fn peer_cred(s: &UnixStream) -> Option<(u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some((cred.pid as u32, cred.uid))
}

/// A uid may attach if it is the host's or on the allow-list. (The hidden
/// [`HostLimits::peer_uid`] replaces the peer's uid, so the refusal can be
/// tested without a second user.)
fn uid_allowed(shared: &Shared, uid: u32) -> bool {
    uid == shared.my_uid || shared.allow_uids.contains(&uid)
}

fn accept_loop(shared: Arc<Shared>, listener: Guarded<UnixListener>) {
    let injected_uid = shared.limits.peer_uid;
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => Guarded::new(s),
            Err(e) => {
                if shared.stop.load(SeqCst) {
                    return;
                }
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        };
        if shared.stop.load(SeqCst) {
            return;
        }
        super::client::set_buffers(stream.as_raw_fd());
        let (pid, uid) = peer_cred(&stream).unwrap_or((0, u32::MAX));
        let uid = injected_uid.unwrap_or(uid);
        let since = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id = shared.next_conn.fetch_add(1, SeqCst);
        let writer = match stream.try_clone() {
            Ok(w) => Guarded::new(w),
            Err(_) => continue,
        };
        let writer_fd = writer.as_raw_fd();
        let conn = Arc::new(Conn {
            id,
            pid,
            uid,
            since,
            writer: Mutex::new(writer),
            leases: Mutex::new(Leases {
                next: lease_base(),
                ..Leases::default()
            }),
            waits: Mutex::new(HashMap::new()),
            hello_done: AtomicBool::new(false),
            // The writer's descriptor (a duplicate that lives as long as the
            // `Conn`): a hang-up after the reader has returned must not
            // reach a descriptor number the reader closed and the process reused.
            fd: writer_fd,
            gone: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            handover: AtomicBool::new(false),
            watches: ConnWatches::default(),
            home: crate::sync::fresh_home(),
        });
        if !uid_allowed(&shared, uid) {
            refuse(
                &stream,
                Error::Locked(format!(
                    "uid {uid} may not attach to this data directory (its host, pid {}, \
                     runs as uid {}; see BrokerOptions::allow_uids)",
                    std::process::id(),
                    shared.my_uid
                )),
            );
            shared.drop_client(&conn, "uid not allowed to attach");
            continue;
        }
        {
            let mut conns = shared.conns.lock();
            if conns.len() >= shared.limits.max_connections {
                drop(conns);
                refuse(
                    &stream,
                    Error::Io(format!(
                        "the host serves {} connections already",
                        shared.limits.max_connections
                    )),
                );
                shared.drop_client(&conn, "too many connections");
                continue;
            }
            conns.insert(id, conn.clone());
        }
        let (s, c) = (shared.clone(), conn.clone());
        let spawned = std::thread::Builder::new()
            .name("libqueue-conn".into())
            .stack_size(256 << 10)
            .spawn(move || {
                // A bug met while serving one client (a panic) ends that
                // client, cleanly: its leases go back, the host goes on.
                let conn = c;
                let why = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::sync::with_home(conn.home, || serve(&s, &conn, stream))
                }))
                .unwrap_or_else(|p| {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|m| m.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Some(format!("the host failed serving it (panic: {msg})"))
                });
                // Counted before the client can see the end.
                if let Some(why) = why {
                    s.drop_client(&conn, &why);
                }
                conn.hang_up();
                conn.end();
                conn.watches.end(s.watcher.lock().as_ref());
                s.conns.lock().remove(&conn.id);
            });
        if spawned.is_err() {
            shared.conns.lock().remove(&id);
            shared.drop_client(&conn, "no thread to serve it");
        }
    }
}

/// Tells a connection refused at once why, as the answer to its `HELLO`
/// (request id 0, as clients send it), without waiting for it: a few bytes
/// into an empty socket never block the accepting thread.
fn refuse(stream: &UnixStream, why: Error) {
    let mut e = Enc::new(0, op::REPLY);
    e.u8(1).error(&why);
    if let (Some(f), Ok(())) = (e.finish(), stream.set_nonblocking(true)) {
        let _ = (&*stream).write(&f);
    }
}

#[derive(Default)]
struct Leases {
    map: HashMap<u64, Delivery>,
    next: u64,
    /// Set when the connection ended: leases arriving later go straight back.
    closed: bool,
}

/// Where a connection's lease numbers start: random in the high 32 bits. A
/// client that reconnects (to a new host after a takeover, or to this one)
/// may still settle a delivery by its old number; counting every connection
/// from 1 would make that number another delivery's, settling the wrong
/// message. From a random base it is nobody's: `LeaseExpired`.
fn lease_base() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish() & !0xFFFF_FFFF
}

/// A blocked call of a connection, so `ABORT` (or the connection's end) can
/// end it.
struct WaitEntry {
    flag: Arc<AtomicBool>,
    wake: Waker,
}

#[derive(Clone)]
enum Waker {
    Queue(Queue),
    Topic(Topic),
    /// A receive deferred by a takeover's grace: it looks at its flag itself.
    Deferred,
}

impl Waker {
    fn wake(&self) {
        match self {
            Waker::Queue(q) => q.wake_all(),
            Waker::Topic(t) => t.wake_publishers(),
            Waker::Deferred => {}
        }
    }
}

/// One attached process.
struct Conn {
    id: u64,
    pid: u32,
    uid: u32,
    since: u64,
    writer: Mutex<Guarded<UnixStream>>,
    leases: Mutex<Leases>,
    waits: Mutex<HashMap<u64, WaitEntry>>,
    hello_done: AtomicBool,
    fd: i32,
    gone: AtomicBool,
    /// An answer could not be written for the stall timeout: the client does
    /// not read (dropped, counted).
    stalled: AtomicBool,
    /// The host is handing over: leases are left for the survivors to
    /// reclaim from the next host instead of going back.
    handover: AtomicBool,
    /// The queues it watches (`WATCH`): brought up to date before each answer.
    watches: ConnWatches,
    /// The home shard hint its calls run with, on its reader thread and on
    /// waiter threads alike: one attached process's sends stay on one shard,
    /// so in order (per-producer FIFO), wherever they run.
    home: usize,
}

impl Conn {
    /// Registers request `id` as waiting (so `ABORT`, or the connection's
    /// end, sets the flag it returns and wakes `wake`).
    fn park(&self, id: u64, wake: Waker) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.waits.lock().insert(
            id,
            WaitEntry {
                flag: flag.clone(),
                wake,
            },
        );
        flag
    }
}

impl Sink for Conn {
    fn send_frame(&self, frame: &[u8]) {
        self.send(frame);
    }
}

impl Conn {
    /// Sends one frame; a client that does not read its answers for the
    /// stall timeout is hung up on (and counted as dropped).
    fn send(&self, frame: &[u8]) {
        if self.gone.load(SeqCst) {
            return;
        }
        let mut w = self.writer.lock();
        if let Err(e) = w.write_all(frame) {
            drop(w);
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                self.stalled.store(true, SeqCst);
            }
            self.hang_up();
        }
    }

    fn reply(&self, id: u64, r: Result<Enc>) {
        if let Some(f) = self.answer(id, r) {
            self.send(&f);
        }
    }

    /// Appends the answer to `out` (the connection's thread writes what is
    /// ready together).
    fn reply_into(&self, out: &mut Vec<u8>, id: u64, r: Result<Enc>) {
        if let Some(f) = self.answer(id, r) {
            if out.is_empty() {
                *out = f;
            } else {
                out.extend_from_slice(&f);
            }
        }
    }

    /// The answer's frame, once what the request did to a watched queue has
    /// reached the client (its `NOTIFY` goes first).
    fn answer(&self, id: u64, r: Result<Enc>) -> Option<Vec<u8>> {
        self.watches.sync();
        let frame = match r {
            Ok(body) => body.finish(),
            Err(e) => {
                let mut enc = Enc::new(id, op::REPLY);
                enc.u8(1).error(&e);
                enc.finish()
            }
        };
        frame.or_else(|| {
            let mut enc = Enc::new(id, op::REPLY);
            enc.u8(1).error(&Error::InvalidArgument(
                "the answer is larger than a frame may be".into(),
            ));
            enc.finish()
        })
    }

    /// Ends the connection from our side (the reader thread then cleans up).
    fn hang_up(&self) {
        self.gone.store(true, SeqCst);
        // SAFETY: shutdown on the writer's descriptor, which this `Conn`
        // owns (it is closed only when the `Conn` drops); it ends the socket
        // both ways, so it also wakes the reader thread's read.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
    }

    /// The connection is over: its waits end and its leases go back.
    fn end(&self) {
        self.gone.store(true, SeqCst);
        let waits: Vec<WaitEntry> = self.waits.lock().drain().map(|(_, w)| w).collect();
        for w in waits {
            w.flag.store(true, SeqCst);
            w.wake.wake();
        }
        let held: Vec<Delivery> = {
            let mut l = self.leases.lock();
            l.closed = true;
            l.map.drain().map(|(_, d)| d).collect()
        };
        self.give_back_all(held);
    }

    /// Leases of a connection that ended go back to their queues, counted —
    /// unless the host is handing over (see `hand_over`).
    fn give_back_all(&self, held: Vec<Delivery>) {
        if self.handover.load(SeqCst) {
            return;
        }
        for d in held {
            let _ = d.nack_with(None, "its consumer process disconnected");
        }
    }

    /// Keeps a reclaimed lease under a new number (0 if the connection is over).
    fn keep(&self, d: Delivery) -> u64 {
        let mut l = self.leases.lock();
        if l.closed {
            drop(l);
            self.give_back_all(vec![d]);
            return 0;
        }
        l.next += 1;
        let n = l.next;
        l.map.insert(n, d);
        n
    }

    /// Keeps leased deliveries under new numbers, or (connection over) gives
    /// them straight back. Leased ones that would take the answer past
    /// [`ANSWER_BUDGET`] go back to `q` uncounted (`Queue::give_back`): the
    /// client gets what fits, as a receive of fewer.
    fn hold(&self, q: &Queue, mut ds: Vec<Delivery>, enc: &mut Enc) {
        let mut bytes = enc.len_so_far() + 4;
        let mut fit = 0;
        for d in &ds {
            bytes += 12 + wire::node_len(d.node());
            if bytes > ANSWER_BUDGET && fit > 0 && d.is_leased() {
                break;
            }
            fit += 1;
        }
        for d in ds.drain(fit..) {
            if let Some(t) = d.ticket() {
                let _ = q.give_back(t);
            }
        }
        // The answer's size is known: one allocation.
        enc.reserve(bytes.min(ANSWER_BUDGET));
        enc.u32(ds.len() as u32);
        let mut late = Vec::new();
        {
            let mut l = self.leases.lock();
            for d in ds {
                let handle = if d.is_leased() {
                    l.next += 1;
                    l.next
                } else {
                    0
                };
                enc.u64(handle).u32(d.delivery_count()).node(d.node());
                if handle != 0 {
                    if l.closed {
                        late.push(d);
                    } else {
                        l.map.insert(handle, d);
                    }
                }
            }
        }
        self.give_back_all(late);
    }

    fn take_lease(&self, handle: u64) -> Result<Delivery> {
        self.leases
            .lock()
            .map
            .remove(&handle)
            .ok_or(Error::LeaseExpired { id: 0 })
    }
}

/// Reads exactly `buf.len()` bytes. `Ok(false)`: the peer closed before the
/// first byte (`at_boundary`) — a clean end — or the host stops. A read
/// timeout before the first byte of a frame is idleness (waited out); inside a
/// frame it counts toward the stall timeout. Past `deadline` (the `HELLO`'s),
/// the connection is dropped whatever it sends.
fn read_full(
    shared: &Shared,
    s: &mut UnixStream,
    buf: &mut [u8],
    at_boundary: bool,
    deadline: Option<Instant>,
) -> std::result::Result<bool, String> {
    let mut got = 0;
    let mut last = Instant::now();
    let late = || deadline.is_some_and(|t| Instant::now() >= t);
    let late_why = |got: usize| {
        if got == 0 && at_boundary {
            "said nothing after connecting".to_string()
        } else {
            "did not finish its HELLO in time".to_string()
        }
    };
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => {
                return if got == 0 && at_boundary {
                    Ok(false)
                } else {
                    Err("closed in the middle of a frame".into())
                };
            }
            Ok(n) => {
                got += n;
                last = Instant::now();
                if got < buf.len() && late() {
                    return Err(late_why(got));
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if shared.stop.load(SeqCst) {
                    return Ok(false);
                }
                if late() {
                    return Err(late_why(got));
                }
                if (got > 0 || !at_boundary) && last.elapsed() >= shared.limits.stall_timeout {
                    return Err("stalled in the middle of a frame".into());
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Ok(false),
        }
    }
    Ok(true)
}

/// Reads one frame body into `buf`: `Ok(false)` at a clean end. A length out
/// of `HEADER..=max_len` drops the connection before anything is read or
/// allocated; the body's buffer grows only as its bytes arrive.
fn read_frame(
    shared: &Shared,
    s: &mut UnixStream,
    buf: &mut Vec<u8>,
    max_len: usize,
    deadline: Option<Instant>,
) -> std::result::Result<bool, String> {
    let mut len = [0u8; 4];
    if !read_full(shared, s, &mut len, true, deadline)? {
        return Ok(false);
    }
    let len = u32::from_le_bytes(len) as usize;
    if !(wire::HEADER..=max_len).contains(&len) {
        return Err(format!("frame length {len} out of bounds"));
    }
    // Grown 64 KiB at a time as the bytes arrive: a huge length followed by
    // nothing costs nothing.
    buf.clear();
    while buf.len() < len {
        let at = buf.len();
        buf.resize(at + (len - at).min(64 * 1024), 0);
        if !read_full(shared, s, &mut buf[at..], false, deadline)? {
            return Ok(false);
        }
    }
    // A connection that once sent a big frame does not keep its buffer.
    if buf.capacity() > (1 << 20) && len < (1 << 16) {
        buf.shrink_to(1 << 16);
    }
    Ok(true)
}

/// Serves one connection until it ends; `Some(why)` if it was dropped for
/// misbehaving.
fn serve(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    mut stream: Guarded<UnixStream>,
) -> Option<String> {
    let limits = &shared.limits;
    let _ = stream.set_read_timeout(Some(limits.tick()));
    let _ = conn
        .writer
        .lock()
        .set_write_timeout(Some(limits.stall_timeout));
    let mut buf = Vec::new();
    // HELLO first, whole within the HELLO timeout.
    let hello_by = Instant::now() + limits.hello_timeout;
    match read_frame(
        shared,
        &mut stream,
        &mut buf,
        wire::MAX_HELLO,
        Some(hello_by),
    ) {
        Ok(true) => {}
        Ok(false) => return None,
        Err(why) => return Some(why),
    }
    // The version comes first and is checked before the rest, so a client of
    // another version (whose HELLO may carry more) is told, not just dropped.
    let mut d = Dec::new(&buf);
    let hello = (|| -> wire::DResult<(u64, u16)> {
        let (id, o) = d.header()?;
        if o != op::HELLO {
            return Err(Malformed("first frame is not HELLO"));
        }
        Ok((id, d.u16()?))
    })();
    let (id, version) = match hello {
        Ok(h) => h,
        Err(m) => return Some(m.0.to_string()),
    };
    if version != wire::VERSION {
        let mut e = Enc::new(id, op::REPLY);
        e.u8(1).error(&Error::InvalidArgument(format!(
            "wire version {version} is not spoken by this host (it speaks {})",
            wire::VERSION
        )));
        if let Some(f) = e.finish() {
            conn.send(&f);
        }
        return Some(format!("wire version {version}"));
    }
    if let Err(m) = d.u32().and_then(|_pid| d.end()) {
        return Some(format!("bad HELLO: {}", m.0));
    }
    let mut e = Enc::new(id, op::REPLY);
    e.u8(0)
        .u16(wire::VERSION)
        .u32(std::process::id())
        .u64(shared.takeovers);
    // Listed as attached before it can know it is.
    conn.hello_done.store(true, SeqCst);
    conn.reply(id, Ok(e));

    drop(buf);
    let mut cache = QueueCache::new();
    let mut inbox = Inbox::default();
    let mut out = Vec::new();
    let why = serve_frames(shared, conn, &mut stream, &mut cache, &mut inbox, &mut out);
    // Whatever was answered before the end still goes (a handover answers
    // the requests it read).
    if !out.is_empty() {
        conn.send(&out);
    }
    why
}

/// What a connection has read and not handled yet: `buf[start..]`.
#[derive(Default)]
struct Inbox {
    buf: Vec<u8>,
    start: usize,
}

/// Bytes a read asks for at least (and what the buffer grows by at most
/// beyond what has arrived, whatever length a frame announces).
const READ_CHUNK: usize = 64 << 10;
/// Answers ready together go out in one write, up to this many bytes.
const OUT_LIMIT: usize = 256 << 10;
/// How long a receive that found nothing looks again on the connection's
/// thread, when that thread has nothing else to read, before a waiter thread
/// takes its wait.
const INLINE_WAIT: Duration = Duration::from_micros(50);

/// Serves the requests after `HELLO`: reads as many frames as one read
/// brings, handles each, and writes the answers that are ready together in
/// one write before it reads again. `Some(why)`: dropped for misbehaving.
fn serve_frames(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    stream: &mut UnixStream,
    cache: &mut QueueCache,
    inbox: &mut Inbox,
    out: &mut Vec<u8>,
) -> Option<String> {
    let limits = &shared.limits;
    let mut last = Instant::now();
    loop {
        // Every whole frame read so far.
        loop {
            let have = &inbox.buf[inbox.start..];
            if have.len() < 4 {
                break;
            }
            let len = u32::from_le_bytes(have[..4].try_into().expect("4 bytes")) as usize;
            if !(wire::HEADER..=wire::MAX_FRAME).contains(&len) {
                return Some(format!("frame length {len} out of bounds"));
            }
            if have.len() < 4 + len {
                break;
            }
            let at = inbox.start + 4;
            inbox.start = at + len;
            let frame = &inbox.buf[at..at + len];
            if conn.stalled.load(SeqCst) {
                return Some("does not read its answers".into());
            }
            if conn.gone.load(SeqCst) {
                return None;
            }
            if conn.waits.lock().len() >= limits.max_waits {
                return Some(format!(
                    "more than {} calls waiting at once",
                    limits.max_waits
                ));
            }
            let mut d = Dec::new(frame);
            let (id, o) = match d.header() {
                Ok(h) => h,
                Err(m) => return Some(m.0.to_string()),
            };
            if o == op::RECEIVE && in_grace(shared) {
                defer_receive(shared, conn, id, frame);
                continue;
            }
            // The last whole frame read, and nothing answered is waiting to go.
            cache.idle = inbox.buf.len() - inbox.start < 4 && out.is_empty();
            match handle(shared, conn, cache, id, o, &mut d) {
                Ok(Some(r)) => conn.reply_into(out, id, r),
                Ok(None) => {}
                Err(m) => return Some(format!("bad request (op {o}): {}", m.0)),
            }
            if out.len() >= OUT_LIMIT {
                conn.send(out);
                out.clear();
            }
        }
        // Nothing whole is left: what is ready goes, then read again.
        if !out.is_empty() {
            conn.send(out);
            out.clear();
            if out.capacity() > 4 * OUT_LIMIT {
                out.shrink_to(OUT_LIMIT);
            }
        }
        if conn.stalled.load(SeqCst) {
            return Some("does not read its answers".into());
        }
        let kept = inbox.buf.len() - inbox.start;
        if inbox.start > 0 {
            inbox.buf.copy_within(inbox.start.., 0);
            inbox.buf.truncate(kept);
            inbox.start = 0;
        }
        // A connection that once sent a big frame does not keep its buffer.
        if inbox.buf.capacity() > (1 << 20) && kept < READ_CHUNK {
            inbox.buf.shrink_to(2 * READ_CHUNK);
        }
        if kept == 0 {
            last = Instant::now();
        }
        // Room for what may come: at most READ_CHUNK beyond what arrived,
        // so an announced length costs only what is really sent.
        inbox.buf.reserve(READ_CHUNK);
        let spare = inbox.buf.capacity() - kept;
        // SAFETY: reads into the vector's spare capacity (`spare` bytes from
        // its end); only the bytes the kernel wrote are then counted. The
        // socket's read timeout (the tick) applies.
        let n = unsafe {
            libc::read(
                stream.as_raw_fd(),
                inbox.buf.as_mut_ptr().add(kept).cast(),
                spare,
            )
        };
        let r = if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            // SAFETY: the kernel initialized `n` more bytes.
            unsafe { inbox.buf.set_len(kept + n as usize) };
            Ok(n as usize)
        };
        match r {
            Ok(0) => {
                return if kept == 0 {
                    None
                } else {
                    Some("closed in the middle of a frame".into())
                };
            }
            Ok(_) => last = Instant::now(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if shared.stop.load(SeqCst) {
                    return None;
                }
                if kept > 0 && last.elapsed() >= limits.stall_timeout {
                    return Some("stalled in the middle of a frame".into());
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
        if conn.stalled.load(SeqCst) {
            return Some("does not read its answers".into());
        }
    }
}

/// Whether receives are still held back after a takeover (see [`RECLAIM_GRACE`]).
fn in_grace(shared: &Shared) -> bool {
    shared.grace_until.is_some_and(|t| Instant::now() < t)
}

/// Runs a receive that came during [`RECLAIM_GRACE`] once it has passed, on
/// a waiter thread (so the connection's other calls — its reclaims, acks —
/// go on meanwhile), so leases held by surviving processes are reclaimed
/// before anyone can receive their messages.
fn defer_receive(shared: &Arc<Shared>, conn: &Arc<Conn>, id: u64, frame: &[u8]) {
    let (s, c, frame) = (shared.clone(), conn.clone(), frame.to_vec());
    let flag = conn.park(id, Waker::Deferred);
    waiter(conn.home, move || {
        let t = s.grace_until.unwrap_or_else(Instant::now);
        while Instant::now() < t && !flag.load(SeqCst) {
            std::thread::sleep((t - Instant::now()).min(Duration::from_millis(10)));
        }
        c.waits.lock().remove(&id);
        if flag.load(SeqCst) {
            // Aborted (or the connection ended) while deferred: nothing received.
            let mut e = ok(id);
            e.u32(0);
            c.reply(id, Ok(e));
            return;
        }
        let mut cache = QueueCache::new();
        let mut d = Dec::new(&frame);
        if d.header().is_err() {
            return;
        }
        match handle(&s, &c, &mut cache, id, op::RECEIVE, &mut d) {
            Ok(Some(r)) => c.reply(id, r),
            Ok(None) => {}
            Err(m) => {
                s.drop_client(&c, &format!("bad request (op {}): {}", op::RECEIVE, m.0));
                c.hang_up();
            }
        }
    });
}

/// `RECLAIM`: leases again, to this connection, the messages it held on the
/// previous host (each answered with its new number, 0 if not reclaimed).
fn reclaim(
    shared: &Shared,
    conn: &Conn,
    cache: &mut QueueCache,
    id: u64,
    d: &mut Dec<'_>,
) -> Handled {
    let n = d.count(17)?;
    let mut want = Vec::with_capacity(n);
    for _ in 0..n {
        want.push((d.string()?, d.string()?, d.u64()?, d.u32()?));
    }
    d.end()?;
    let mut e = ok(id);
    e.u32(n as u32);
    for (ns, name, mid, seen) in want {
        let got = shared
            .broker()
            .and_then(|b| queue_of(&b, cache, &ns, &name, 0))
            .and_then(|q| q.reclaim(mid, seen));
        e.u64(got.map_or(0, |dl| conn.keep(dl)));
    }
    Ok(Some(Ok(e)))
}

/// The reply's encoder with the ok status written.
fn ok(id: u64) -> Enc {
    let mut e = Enc::new(id, op::REPLY);
    e.u8(0);
    e
}

/// The number by which requests name one queue (see `wire::op::QUEUE`):
/// this host's pid in the high half, so that after a takeover the next host
/// tells a number of its predecessor's from one of its own.
fn wire_serial(pid: u32, q: &Queue) -> u64 {
    (u64::from(pid) << 32) | (q.serial() & 0xffff_ffff)
}

/// The queues a connection has resolved, by namespace then name (looked up
/// with the request's borrowed names: no allocation per request), and the
/// host's pid (read once: serials are made from it).
struct QueueCache {
    pid: u32,
    map: HashMap<String, HashMap<String, Queue>>,
    len: usize,
    /// Set by the connection's thread while the request it runs is the last
    /// one it has read: a receive that finds nothing may then look again for
    /// a moment ([`INLINE_WAIT`]) before it goes to a waiter thread.
    idle: bool,
}

impl QueueCache {
    fn new() -> Self {
        QueueCache {
            pid: std::process::id(),
            map: HashMap::new(),
            len: 0,
            idle: false,
        }
    }

    fn get(&self, ns: &str, name: &str) -> Option<&Queue> {
        self.map.get(ns)?.get(name)
    }

    fn insert(&mut self, ns: &str, name: &str, q: Queue) {
        if self.len >= QUEUE_CACHE {
            self.map.clear();
            self.len = 0;
        }
        let old = self
            .map
            .entry(ns.to_string())
            .or_default()
            .insert(name.to_string(), q);
        if old.is_none() {
            self.len += 1;
        }
    }

    fn remove(&mut self, ns: &str, name: &str) {
        if let Some(m) = self.map.get_mut(ns) {
            if m.remove(name).is_some() {
                self.len -= 1;
            }
        }
    }

    fn serial(&self, q: &Queue) -> u64 {
        wire_serial(self.pid, q)
    }
}

/// The queue a request names: `ns`/`name`, which must be the queue numbered
/// `serial` when that is one of this host's numbers. A handle whose queue
/// is gone (deleted, or never made on this host) is closed; one whose queue
/// was deleted on this connection still reaches it (its statistics stay).
fn queue_of(
    b: &Broker,
    cache: &mut QueueCache,
    ns: &str,
    name: &str,
    serial: u64,
) -> Result<Queue> {
    let any = serial == 0 || serial >> 32 != u64::from(cache.pid);
    if let Some(q) = cache.get(ns, name) {
        if cache.serial(q) == serial || (any && !q.is_closed()) {
            return Ok(q.clone());
        }
        if !q.is_closed() {
            return Err(Error::Closed); // the name names another queue now
        }
        cache.remove(ns, name);
    }
    let q = b
        .get_namespace(ns)
        .and_then(|n| n.get_queue(name))
        .map_err(|e| match e {
            Error::NotFound(_) => Error::Closed,
            e => e,
        })?;
    cache.insert(ns, name, q.clone());
    if any || cache.serial(&q) == serial {
        Ok(q)
    } else {
        Err(Error::Closed)
    }
}

type Handled = wire::DResult<Option<Result<Enc>>>;

/// Runs `f` (lets `run!` use `?` in its body).
fn call<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// Decodes and runs one request. `Ok(None)`: answered later (a waiter) or
/// never (`ABORT`, `FORGET`). `Err`: the frame does not decode.
fn handle(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    cache: &mut QueueCache,
    id: u64,
    o: u8,
    d: &mut Dec<'_>,
) -> Handled {
    // Decoding first (a malformed frame drops the client), then running.
    macro_rules! run {
        ($body:expr) => {{
            d.end()?;
            let r: Result<Enc> = call(|| $body);
            Ok(Some(r))
        }};
    }
    let broker = || shared.broker();
    match o {
        op::NAMESPACE => {
            let name = d.string()?;
            let quotas = if d.bool()? { Some(d.quotas()?) } else { None };
            let create = d.bool()?;
            run!({
                let b = broker()?;
                let n = match (quotas, create) {
                    (Some(q), true) => b.create_namespace(&name, q)?,
                    _ => b.namespace(&name)?,
                };
                let mut e = ok(id);
                e.quotas(n.quotas());
                Ok(e)
            })
        }
        op::GET_NAMESPACE => {
            let name = d.string()?;
            run!({
                let n = broker()?.get_namespace(&name)?;
                let mut e = ok(id);
                e.quotas(n.quotas());
                Ok(e)
            })
        }
        op::NAMESPACES => run!({
            let mut e = ok(id);
            e.strs(&broker()?.namespaces());
            Ok(e)
        }),
        op::FLUSH => run!({
            broker()?.flush()?;
            Ok(ok(id))
        }),
        op::HOST_INFO => run!({
            let mut e = ok(id);
            e.host_info(&shared.info());
            Ok(e)
        }),
        op::QUEUE => {
            let ns = d.string()?;
            let name = d.string()?;
            let opts = if d.bool()? { Some(d.options()?) } else { None };
            let mode = d.u8()?;
            if mode > 2 {
                return Err(Malformed("bad queue mode"));
            }
            run!({
                let n = broker()?.get_namespace(&ns)?;
                let q = match (mode, opts) {
                    (1, Some(o)) => n.create_queue(&name, o)?,
                    (2, _) => n.get_queue(&name)?,
                    _ => n.queue(&name)?,
                };
                let mut e = ok(id);
                e.options(q.options()).u64(cache.serial(&q));
                cache.insert(&ns, &name, q);
                Ok(e)
            })
        }
        op::DELETE_QUEUE => {
            let (ns, name) = (d.string()?, d.string()?);
            run!({
                let n = broker()?.get_namespace(&ns)?;
                let q = n.get_queue(&name).ok();
                n.delete_queue(&name)?;
                let mut e = ok(id);
                e.u64(q.as_ref().map_or(0, |q| cache.serial(q)));
                // Kept (closed): this connection's handles of it read its
                // last statistics, as a local handle does.
                match q {
                    Some(q) => cache.insert(&ns, &name, q),
                    None => cache.remove(&ns, &name),
                }
                Ok(e)
            })
        }
        op::LIST_QUEUES => {
            let ns = d.string()?;
            run!({
                let mut e = ok(id);
                e.strs(&broker()?.get_namespace(&ns)?.list_queues());
                Ok(e)
            })
        }
        op::NS_STATS => {
            let ns = d.string()?;
            run!({
                let s = broker()?.get_namespace(&ns)?.stats();
                let mut e = ok(id);
                e.u64(s.queues).queue_stats(&s.totals).quotas(&s.quotas);
                Ok(e)
            })
        }
        op::TOPIC => {
            let (ns, name) = (d.string()?, d.string()?);
            run!({
                broker()?.get_namespace(&ns)?.topic(&name)?;
                Ok(ok(id))
            })
        }
        op::LIST_TOPICS => {
            let ns = d.string()?;
            run!({
                let mut e = ok(id);
                e.strs(&broker()?.get_namespace(&ns)?.list_topics());
                Ok(e)
            })
        }
        op::SEND => {
            let (ns, name, serial) = (d.str()?, d.str()?, d.u64()?);
            let on_full = if d.bool()? { Some(d.on_full()?) } else { None };
            let batch = d.bool()?;
            let msgs = d.messages()?;
            if !batch && msgs.len() != 1 {
                return Err(Malformed("a single send carries one message"));
            }
            d.end()?;
            let q = match broker().and_then(|b| queue_of(&b, cache, ns, name, serial)) {
                Ok(q) => q,
                Err(e) => return Ok(Some(Err(e))),
            };
            let on_full = on_full.unwrap_or(q.options().on_full);
            // Try without waiting; only a full queue whose policy waits goes
            // to a waiter thread (a send that waits must not hold up the
            // connection: the ack that makes room may come on it). Only a
            // queue with a capacity can be full: only then is a copy kept
            // for the second try.
            let bounded = q.options().max_messages.is_some() || q.options().max_bytes.is_some();
            let first = if on_full == OnFull::Reject || !bounded {
                None
            } else {
                Some((msgs.clone(), on_full))
            };
            match send(&q, msgs, OnFull::Reject, batch, None) {
                Err(Error::Full) if first.is_some() => {
                    let (msgs, on_full) = first.expect("checked");
                    let flag = conn.park(id, Waker::Queue(q.clone()));
                    let c = conn.clone();
                    waiter(c.home, move || {
                        let r = send(&q, msgs, on_full, batch, Some(&flag));
                        c.waits.lock().remove(&id);
                        c.reply(id, r.map(|ids| ids_reply(id, &ids)));
                    });
                    Ok(None)
                }
                r => Ok(Some(r.map(|ids| ids_reply(id, &ids)))),
            }
        }
        op::RECEIVE => {
            let (ns, name, serial) = (d.str()?, d.str()?, d.u64()?);
            let max = d.u32()? as usize;
            let wait = d.wait()?;
            let auto_ack = d.bool()?;
            d.end()?;
            let q = match broker().and_then(|b| queue_of(&b, cache, ns, name, serial)) {
                Ok(q) => q,
                Err(e) => return Ok(Some(Err(e))),
            };
            let mode = ReceiveMode::from_auto_ack(auto_ack);
            let max = max.min(65_536);
            let mut got = match receive_for_answer(&q, max, Wait::Try, mode, None) {
                Ok(got) => got,
                Err(e) => return Ok(Some(Err(e))),
            };
            if got.is_empty() && wait != Wait::Try && std::mem::take(&mut cache.idle) {
                // Nothing else of this connection to read: look again for a
                // moment here (a reply often comes within microseconds),
                // yielding the CPU between looks, before a waiter thread
                // takes the wait (one wake-up more).
                let budget = match wait {
                    Wait::For(d) => d.min(INLINE_WAIT),
                    _ => INLINE_WAIT,
                };
                let t = Instant::now();
                while got.is_empty() && t.elapsed() < budget {
                    std::thread::yield_now();
                    got = match receive_for_answer(&q, max, Wait::Try, mode, None) {
                        Ok(got) => got,
                        Err(e) => return Ok(Some(Err(e))),
                    };
                }
            }
            if !got.is_empty() || wait == Wait::Try {
                let mut e = ok(id);
                conn.hold(&q, got, &mut e);
                return Ok(Some(Ok(e)));
            }
            let flag = conn.park(id, Waker::Queue(q.clone()));
            let c = conn.clone();
            waiter(c.home, move || {
                let r = receive_for_answer(&q, max, wait, mode, Some(&flag));
                c.waits.lock().remove(&id);
                let r = r.map(|got| {
                    let mut e = ok(id);
                    c.hold(&q, got, &mut e);
                    e
                });
                c.reply(id, r);
            });
            Ok(None)
        }
        op::PEEK => {
            let (ns, name, serial) = (d.str()?, d.str()?, d.u64()?);
            let max = d.u32()? as usize;
            run!({
                let q = queue_of(&broker()?, cache, ns, name, serial)?;
                let ps = q.peek(max)?;
                let mut e = ok(id);
                e.u32(ps.len() as u32);
                for p in &ps {
                    e.node(p.node());
                }
                Ok(e)
            })
        }
        op::CANCEL => {
            let (ns, name, serial) = (d.str()?, d.str()?, d.u64()?);
            let mid = d.u64()?;
            run!({
                queue_of(&broker()?, cache, ns, name, serial)?.cancel(mid)?;
                Ok(ok(id))
            })
        }
        op::PURGE => {
            let (ns, name, serial) = (d.str()?, d.str()?, d.u64()?);
            run!({
                let n = queue_of(&broker()?, cache, ns, name, serial)?.purge()?;
                let mut e = ok(id);
                e.u64(n);
                Ok(e)
            })
        }
        op::QUEUE_STATS => {
            let (ns, name, serial) = (d.str()?, d.str()?, d.u64()?);
            run!({
                let s = queue_of(&broker()?, cache, ns, name, serial)?.stats();
                let mut e = ok(id);
                e.queue_stats(&s);
                Ok(e)
            })
        }
        op::WATCH => {
            let (ns, name, serial) = (d.str()?, d.str()?, d.u64()?);
            let watch = d.u64()?;
            run!({
                let q = queue_of(&broker()?, cache, ns, name, serial)?;
                let mut w = shared.watcher.lock();
                if w.is_none() {
                    *w = Some(Watcher::start()?);
                }
                let sink: std::sync::Weak<dyn Sink> = Arc::downgrade(conn) as _;
                conn.watches
                    .watch(w.as_ref().expect("started"), sink, watch, q)?;
                Ok(ok(id))
            })
        }
        op::ABORT => {
            let target = d.u64()?;
            d.end()?;
            if let Some(w) = conn.waits.lock().get(&target) {
                w.flag.store(true, SeqCst);
                w.wake.wake();
            }
            Ok(None)
        }
        op::SETTLE => {
            let lease = d.u64()?;
            let nack = d.bool()?;
            let delay = d.opt_dur()?;
            let reason = d.string()?;
            run!({
                let dl = conn.take_lease(lease)?;
                if nack {
                    dl.nack_with(delay, &reason)?;
                } else {
                    dl.ack()?;
                }
                Ok(ok(id))
            })
        }
        op::ACK_BATCH => {
            let n = d.count(8)?;
            let leases = (0..n)
                .map(|_| d.u64())
                .collect::<wire::DResult<Vec<u64>>>()?;
            run!({
                if leases.is_empty() {
                    return Err(Error::InvalidArgument("an empty ack batch".into()));
                }
                let mut e = ok(id);
                e.u32(leases.len() as u32);
                for lease in leases {
                    match conn.take_lease(lease).and_then(|dl| dl.ack()) {
                        Ok(()) => e.bool(true),
                        Err(err) => e.bool(false).error(&err),
                    };
                }
                Ok(e)
            })
        }
        op::EXTEND => {
            let lease = d.u64()?;
            let by = d.dur()?;
            run!({
                let l = conn.leases.lock();
                let dl = l.map.get(&lease).ok_or(Error::LeaseExpired { id: 0 })?;
                dl.extend_by(by)?;
                let mut e = ok(id);
                e.u64(dl.lease_deadline().unwrap_or(0));
                Ok(e)
            })
        }
        op::DEADLINE => {
            let lease = d.u64()?;
            run!({
                let l = conn.leases.lock();
                let dl = l.map.get(&lease).and_then(|d| d.lease_deadline());
                let mut e = ok(id);
                e.opt_u64(dl);
                Ok(e)
            })
        }
        op::GIVE_BACK => {
            let (ns, name, serial) = (d.str()?, d.str()?, d.u64()?);
            let lease = d.u64()?;
            run!({
                let q = queue_of(&broker()?, cache, ns, name, serial)?;
                // Only the queue the lease is of gives it back (a ticket
                // shown to another queue grants nothing, as locally).
                let t = {
                    let l = conn.leases.lock();
                    let dl = l.map.get(&lease).ok_or(Error::LeaseExpired { id: 0 })?;
                    let mine = dl.namespace_name() == Some(ns) && dl.queue_name() == Some(name);
                    dl.ticket()
                        .filter(|_| mine)
                        .ok_or(Error::LeaseExpired { id: 0 })?
                };
                q.give_back(t)?;
                conn.leases.lock().map.remove(&lease);
                Ok(ok(id))
            })
        }
        op::RECLAIM => reclaim(shared, conn, cache, id, d),
        op::FORGET => {
            let lease = d.u64()?;
            d.end()?;
            conn.leases.lock().map.remove(&lease);
            Ok(None)
        }
        op::PUBLISH => {
            let (ns, name) = (d.string()?, d.string()?);
            let msg = d.message()?;
            d.end()?;
            let (n, t) = match broker().and_then(|b| {
                let n = b.get_namespace(&ns)?;
                let t = n.topic(&name)?;
                Ok((n, t))
            }) {
                Ok(x) => x,
                Err(e) => return Ok(Some(Err(e))),
            };
            // A publish that cannot wait (no subscription queue is bounded
            // with a policy that waits for room) runs here, like a send: on
            // this connection's thread its messages take ids in order, so a
            // publisher's messages stay in order (per-producer FIFO) even
            // where a queue orders by id (peek, stats, sweeps).
            let may_wait = t.subscriptions().iter().any(|s| {
                n.get_queue(s).is_ok_and(|q| {
                    let o = q.options();
                    o.on_full != OnFull::Reject
                        && (o.max_messages.is_some() || o.max_bytes.is_some())
                })
            });
            if !may_wait {
                return Ok(Some(t.publish(msg).map(|k| {
                    let mut e = ok(id);
                    e.u64(k as u64);
                    e
                })));
            }
            let flag = conn.park(id, Waker::Topic(t.clone()));
            let c = conn.clone();
            waiter(c.home, move || {
                let r = t.publish_until(msg, Some(&flag));
                c.waits.lock().remove(&id);
                c.reply(
                    id,
                    r.map(|n| {
                        let mut e = ok(id);
                        e.u64(n as u64);
                        e
                    }),
                );
            });
            Ok(None)
        }
        op::SUBSCRIBE => {
            let (ns, name, queue) = (d.string()?, d.string()?, d.string()?);
            let filter = d.filter()?;
            run!({
                let q = broker()?
                    .get_namespace(&ns)?
                    .topic(&name)?
                    .subscribe(&queue, filter)?;
                let mut e = ok(id);
                e.options(q.options()).u64(cache.serial(&q));
                Ok(e)
            })
        }
        op::UNSUBSCRIBE | op::SUBSCRIPTIONS | op::TOPIC_STATS | op::TOPIC_FILTER => {
            let (ns, name) = (d.string()?, d.string()?);
            let queue = if matches!(o, op::UNSUBSCRIBE | op::TOPIC_FILTER) {
                Some(d.string()?)
            } else {
                None
            };
            run!({
                let t = broker()?.get_namespace(&ns)?.topic(&name)?;
                let mut e = ok(id);
                match o {
                    op::UNSUBSCRIBE => t.unsubscribe(queue.as_deref().unwrap_or_default())?,
                    op::SUBSCRIPTIONS => {
                        e.strs(&t.subscriptions());
                    }
                    op::TOPIC_STATS => {
                        e.topic_stats(&t.stats());
                    }
                    _ => match t.filter(queue.as_deref().unwrap_or_default()) {
                        None => {
                            e.u8(0);
                        }
                        Some(f) => {
                            e.u8(1).filter(&f);
                        }
                    },
                }
                Ok(e)
            })
        }
        _ => Err(Malformed("unknown op")),
    }
}

/// What the deliveries of one `RECEIVE` answer may take of a frame.
const ANSWER_BUDGET: usize = wire::MAX_FRAME - (1 << 20);

/// Receives for a `RECEIVE`: up to `max`, waiting as `wait` says for the
/// first, never more than one answer can carry. Leased messages past the
/// frame are given back by [`Conn::hold`]; auto-acked ones cannot be, so they
/// are taken in runs that fit even if each were as large as the namespace
/// allows (one run for small `max` or a namespace of small messages).
fn receive_for_answer(
    q: &Queue,
    max: usize,
    wait: Wait,
    mode: ReceiveMode,
    cancel: Option<&AtomicBool>,
) -> Result<Vec<Delivery>> {
    let mut got = Vec::new();
    if max == 0 || mode == ReceiveMode::Leased {
        q.receive_into(max, wait, mode, cancel, |d| got.push(d))?;
        return Ok(got);
    }
    let per = usize::try_from(q.max_message_size())
        .unwrap_or(usize::MAX)
        .saturating_add(64 << 10);
    let mut bytes = 0usize;
    let mut wait = wait;
    loop {
        let room = (ANSWER_BUDGET.saturating_sub(bytes) / per).min(max - got.len());
        // The first message always fits (a message is smaller than a frame).
        let k = if got.is_empty() { room.max(1) } else { room };
        if k == 0 {
            break;
        }
        let n = q.receive_into(k, wait, mode, cancel, |d| {
            bytes += 12 + wire::node_len(d.node());
            got.push(d)
        })?;
        wait = Wait::Try;
        if n < k {
            break;
        }
    }
    Ok(got)
}

fn send(
    q: &Queue,
    mut msgs: Vec<Message>,
    on_full: OnFull,
    batch: bool,
    cancel: Option<&AtomicBool>,
) -> Result<Vec<u64>> {
    if batch {
        q.send_batch_until(msgs, on_full, cancel)
    } else {
        let m = msgs.pop().expect("one message");
        q.send_until(m, on_full, cancel).map(|id| vec![id])
    }
}

fn ids_reply(id: u64, ids: &[u64]) -> Enc {
    let mut e = ok(id);
    e.u32(ids.len() as u32);
    for i in ids {
        e.u64(*i);
    }
    e
}

/// The waiter threads: calls that wait run here, so the connection's reader
/// goes on. Threads are made on demand and end after a minute idle. A job is
/// either taken by a new thread or reserved for an idle one (`wakeups`), so
/// none is left behind while every thread is blocked in a long wait.
fn waiter(home: usize, job: impl FnOnce() + Send + 'static) {
    type Job = Box<dyn FnOnce() + Send>;
    let job = move || crate::sync::with_home(home, job);
    #[derive(Default)]
    struct State {
        jobs: VecDeque<Job>,
        idle: usize,
        wakeups: usize,
    }
    struct Pool {
        state: Mutex<State>,
        cv: Condvar,
    }
    static POOL: std::sync::OnceLock<Arc<Pool>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        Arc::new(Pool {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        })
    });
    let job: Job = Box::new(job);
    {
        let mut g = pool.state.lock();
        if g.idle > 0 {
            g.idle -= 1;
            g.wakeups += 1;
            g.jobs.push_back(job);
            pool.cv.notify_one();
            return;
        }
    }
    let p = pool.clone();
    let slot = Arc::new(Mutex::new(Some(job)));
    let mine = slot.clone();
    let spawned = std::thread::Builder::new()
        .name("libqueue-wait".into())
        .stack_size(256 << 10)
        .spawn(move || {
            let mut next = mine.lock().take();
            loop {
                if let Some(j) = next.take() {
                    j();
                }
                let mut g = p.state.lock();
                loop {
                    if let Some(j) = g.jobs.pop_front() {
                        next = Some(j);
                        break;
                    }
                    g.idle += 1;
                    let timed_out = p.cv.wait_for(&mut g, Duration::from_secs(60)).timed_out();
                    if g.wakeups > 0 {
                        // Reserved by a push (which took our idle count).
                        g.wakeups -= 1;
                        continue;
                    }
                    g.idle -= 1;
                    if timed_out {
                        return;
                    }
                }
            }
        });
    if spawned.is_err() {
        // No thread to spare: run it here (the connection waits meanwhile).
        if let Some(j) = slot.lock().take() {
            j();
        }
    }
}
