//! The attached side: one connection to the host of a data directory, shared
//! by every handle of an attached `Broker` (calls from many threads are in
//! flight on it at once, each waiting for the answer with its request id).
//! A calling thread reads its own answer from the socket when no other
//! thread is reading (leader/follower, see [`Conn`]): on the common path a
//! call is one write and one read, with no thread hand-off.
//!
//! When the connection ends (the host closed or died), its watcher thread —
//! woken by the end even while no call is in flight — at once finds the new
//! host — or becomes it: it takes the directory's lock,
//! replays the journal and serves, and this process then talks to its own
//! host through the same socket (takeover). Before anything else goes to the
//! new host, the leases this process still holds are *reclaimed* (`RECLAIM`):
//! the new host leases each message, put back as ready by its replay (or
//! handed over by a host that closed cleanly), to this process again under a
//! new number, so a delivery held across the takeover can still be acked,
//! nacked or extended. A lease is known here by a number of this process's
//! own (the registry `leases`), mapped to the host's number on the current
//! connection. Calls in flight are sent again to the new host, so a caller
//! sees no error; a send whose answer was lost may so be applied twice (the
//! at-least-once window, docs/multi-process.md).

use super::host::{socket_path, HostInfo};
use super::wire::{self, op, Dec, Enc};
use crate::error::{Error, Result};
use crate::sync::eventfd::EventFd;
use crate::sync::fork::{Guarded, Origin};
use crate::types::{
    Filter, Message, Node, OnFull, QueueOptions, QueueStats, Quotas, TopicStats, Wait,
};
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long a process looks for (or tries to become) a new host before a
/// call fails with [`Error::Io`].
pub(crate) const TAKEOVER_LIMIT: Duration = Duration::from_secs(60);

/// Makes this process the directory's host (the broker layer opens a local
/// engine and its `Host`); `Err(Locked)` while another process holds it. The
/// argument is the takeover count the new host reports.
pub(crate) type BecomeHost =
    Box<dyn Fn(u64) -> Result<Box<dyn std::any::Any + Send + Sync>> + Send + Sync>;

/// Numbers every connection of this process (a lease is known on one).
static CONN_SERIAL: AtomicU64 = AtomicU64::new(1);

/// A lease this process holds: what the next host needs to find its message,
/// and its number on the connection it is known on.
struct Held {
    ns: String,
    queue: String,
    id: u64,
    /// The delivery count this process was given.
    seen: u32,
    /// The connection (serial) its number belongs to.
    conn: u64,
    number: u64,
}

/// See the module documentation.
pub(crate) struct Client {
    me: Weak<Client>,
    dir: PathBuf,
    conn: RwLock<Arc<Conn>>,
    reconnecting: Mutex<()>,
    /// Held across a reclaim (two at once could both ask for one lease, and
    /// the second answer, "not reclaimed", would forget it).
    reclaiming: Mutex<()>,
    become_host: BecomeHost,
    /// The broker this process hosts after a takeover (kept alive here).
    hosted: Mutex<Option<Box<dyn std::any::Any + Send + Sync>>>,
    closed: AtomicBool,
    origin: Origin,
    takeovers: AtomicU64,
    /// The attached broker's clock: the system clock (the host's timers run
    /// on the host's, which reads the same monotonic clock).
    clock: Arc<dyn crate::clock::Clock>,
    /// Leases held, by this process's own numbers (what a `Delivery` keeps).
    leases: Mutex<HashMap<u64, Held>>,
    next_lease: AtomicU64,
    /// The queues whose pollable descriptor this process asked for (`WATCH`).
    watched: Mutex<HashMap<(String, String), Arc<Watched>>>,
    /// Their descriptors by watch number, for the connections' readers.
    notify: Notify,
    /// The numbers of the queues this process deleted (their handles are closed).
    deleted: Mutex<std::collections::HashSet<u64>>,
}

/// The descriptors of the watched queues by watch number (`NOTIFY` sets them).
type Notify = Arc<Mutex<HashMap<u64, Arc<EventFd>>>>;

/// A watched queue: its descriptor in this process, and its watch number.
struct Watched {
    efd: Arc<EventFd>,
    id: u64,
}

/// How a request names a queue: `ns queue serial` (see `wire::op::QUEUE`).
#[derive(Clone, Copy)]
pub(crate) struct QueueAt<'a> {
    pub(crate) ns: &'a str,
    pub(crate) name: &'a str,
    pub(crate) serial: u64,
}

impl Enc {
    fn queue_at(&mut self, q: QueueAt<'_>) -> &mut Self {
        self.str(q.ns).str(q.name).u64(q.serial)
    }
}

/// What an answer holds after its status byte.
pub(crate) struct Reply {
    buf: Vec<u8>,
    /// The connection that answered (its serial).
    conn: u64,
}

impl Reply {
    pub(crate) fn dec(&self) -> Dec<'_> {
        Dec::new(&self.buf[wire::HEADER + 1..])
    }
}

/// What an exchange learns: its answer, or that the connection ended first.
enum Answer {
    Waiting,
    Reply(Vec<u8>),
    Lost,
}

struct SlotState {
    answer: Answer,
    /// Made the next to read the connection (see [`Conn::pass_on`]).
    promoted: bool,
}

struct Slot {
    state: Mutex<SlotState>,
    cv: Condvar,
}

/// The read side of a connection: the thread that holds it (the *leader*)
/// reads the socket, keeps its own answer and hands the others to their
/// callers. Frames read but not handled yet wait in `buf[start..]`.
struct ReadSide {
    stream: Guarded<UnixStream>,
    buf: Vec<u8>,
    start: usize,
}

/// How much a read asks the socket for at least.
const READ_CHUNK: usize = 64 << 10;

/// The epoll tokens of a connection's watcher.
const TOKEN_SOCKET: u64 = 1;
const TOKEN_STOP: u64 = 2;

/// One connection to one host.
///
/// Calls read their own answers (leader/follower): a calling thread that
/// finds the read side free takes it ([`Conn::lead`]) and reads the socket
/// until its own answer is there, handing the other answers it meets to
/// their callers and handling `NOTIFY` frames; a caller that finds it taken
/// waits for its answer on its slot. Whoever lets the read side go passes it
/// on ([`Conn::pass_on`]): to a caller still waiting (promoted, it reads
/// next), or, when none is, to the connection's watcher thread — which
/// sleeps in `epoll_wait` on the socket (armed one-shot only while no call
/// is in flight, so a call's answer never wakes it) and reads what comes
/// while this process makes no call: `NOTIFY` frames, and the end of the
/// connection, which it turns into a takeover at once.
struct Conn {
    writer: Mutex<Guarded<UnixStream>>,
    rx: Mutex<ReadSide>,
    fd: i32,
    pending: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    dead: AtomicBool,
    host_pid: u32,
    /// The host's takeover count: a new host has another.
    generation: u64,
    serial: u64,
    notify: Notify,
    /// The watcher's epoll set: the socket (one-shot) and `stop`.
    epoll: OwnedFd,
    /// Whether the socket is armed in `epoll` (serializes arming).
    armed: Mutex<bool>,
    /// Raised when the connection is killed: ends the watcher's wait.
    stop: EventFd,
    /// Raised by [`Client::wake_waiters`]: a leader with a cancel flag
    /// waits on it beside the socket.
    intr: EventFd,
}

impl Conn {
    /// Connects and says `HELLO`. The connection's watcher starts with
    /// [`Conn::start`].
    fn open(dir: &Path, notify: &Notify) -> std::io::Result<(Arc<Conn>, u64)> {
        let mut s = Guarded::new(UnixStream::connect(socket_path(dir))?);
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut hello = Enc::new(0, op::HELLO);
        hello.u16(wire::VERSION).u32(std::process::id());
        s.write_all(&hello.finish().expect("small"))?;
        let body = read_frame(&mut s)?.ok_or_else(|| bad("the host closed"))?;
        let mut d = Dec::new(&body);
        let (_, o) = d.header().map_err(|_| bad("bad HELLO answer"))?;
        if o != op::REPLY {
            return Err(bad("bad HELLO answer"));
        }
        match d.u8() {
            Ok(0) => {}
            _ => {
                // The host refused this process (its uid, its version, its
                // connection limit): the typed error travels inside, so the
                // open fails with it at once instead of looking for a host.
                let e = d
                    .error()
                    .unwrap_or_else(|_| Error::Io("the host refused this process".into()));
                return Err(std::io::Error::other(e));
            }
        }
        let (_v, host_pid, takeovers) =
            (|| Ok::<_, wire::Malformed>((d.u16()?, d.u32()?, d.u64()?)))()
                .map_err(|_| bad("bad HELLO answer"))?;
        s.set_read_timeout(None)?;
        set_buffers(s.as_raw_fd());
        // SAFETY: epoll_create1 takes no pointers.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        let (stop, intr) = (EventFd::new()?, EventFd::new()?);
        let fd = s.as_raw_fd();
        epoll_ctl(
            ep,
            libc::EPOLL_CTL_ADD,
            stop.raw(),
            libc::EPOLLIN as u32,
            TOKEN_STOP,
        )?;
        // Armed: no call is in flight yet.
        epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, ARMED, TOKEN_SOCKET)?;
        let conn = Arc::new(Conn {
            writer: Mutex::new(Guarded::new(s.try_clone()?)),
            rx: Mutex::new(ReadSide {
                stream: s,
                buf: Vec::new(),
                start: 0,
            }),
            fd,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            dead: AtomicBool::new(false),
            host_pid,
            generation: takeovers,
            serial: CONN_SERIAL.fetch_add(1, SeqCst),
            notify: notify.clone(),
            epoll,
            armed: Mutex::new(true),
            stop,
            intr,
        });
        Ok((conn, takeovers))
    }

    /// Starts the connection's watcher thread (see [`Conn`]); when the
    /// connection ends it finds the next host at once (a takeover, see the
    /// module documentation).
    fn start(self: &Arc<Conn>, owner: Weak<Client>) -> std::io::Result<()> {
        let c = self.clone();
        std::thread::Builder::new()
            .name("libqueue-attach".into())
            .stack_size(256 << 10)
            .spawn(move || {
                c.watch();
                if let Some(client) = owner.upgrade() {
                    if client.check().is_ok() {
                        let _ = client.reconnect(&c);
                    }
                }
            })?;
        Ok(())
    }

    /// The watcher: reads what comes while no call reads, until the
    /// connection is dead.
    fn watch(&self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
        while !self.dead.load(SeqCst) {
            // SAFETY: `events` is valid for writes of 2 entries.
            let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // Nothing sensible left to wait with: end the connection
                // (calls then go to a new one).
                self.kill();
                break;
            }
            if self.dead.load(SeqCst) {
                break;
            }
            let fired = events[..n as usize].iter().any(|e| e.u64 == TOKEN_SOCKET);
            if !fired {
                continue;
            }
            // One-shot: disarmed by the kernel now.
            *self.armed.lock() = false;
            // Taken: its holder passes it on (re-arming) when done.
            if let Some(mut rx) = self.rx.try_lock() {
                self.drain(&mut rx);
                drop(rx);
                self.pass_on();
            }
        }
    }

    /// Reads (without blocking) and handles everything the socket holds.
    fn drain(&self, rx: &mut ReadSide) {
        loop {
            match self.fill(rx, libc::MSG_DONTWAIT) {
                Ok(true) => {
                    if !self.handle_frames(rx) {
                        return;
                    }
                }
                Ok(false) => return,
                Err(()) => {
                    // Handle what came before the end, then end it.
                    self.handle_frames(rx);
                    self.kill();
                    return;
                }
            }
        }
    }

    /// Reads once from the socket into `rx.buf`. `Ok(true)`: bytes came;
    /// `Ok(false)`: none now (non-blocking); `Err`: the connection ended.
    fn fill(&self, rx: &mut ReadSide, flags: i32) -> std::result::Result<bool, ()> {
        // Room for at least READ_CHUNK (or the rest of a large frame).
        let have = rx.buf.len() - rx.start;
        if rx.start > 0
            && (rx.start >= rx.buf.len() / 2 || rx.buf.capacity() - rx.buf.len() < READ_CHUNK)
        {
            rx.buf.copy_within(rx.start.., 0);
            rx.buf.truncate(have);
            rx.start = 0;
        }
        let want = if have >= 4 {
            let len = u32::from_le_bytes(rx.buf[..4].try_into().expect("4 bytes")) as usize;
            (len + 4).saturating_sub(have).max(READ_CHUNK)
        } else {
            READ_CHUNK
        };
        rx.buf.reserve(want);
        let spare = rx.buf.capacity() - rx.buf.len();
        loop {
            // SAFETY: reads into the vector's spare capacity, `spare` bytes
            // from its end; only the bytes the kernel wrote are then counted.
            let r = unsafe {
                libc::recv(
                    rx.stream.as_raw_fd(),
                    rx.buf.as_mut_ptr().add(rx.buf.len()).cast(),
                    spare,
                    flags,
                )
            };
            if r > 0 {
                // SAFETY: the kernel initialized `r` more bytes.
                unsafe { rx.buf.set_len(rx.buf.len() + r as usize) };
                return Ok(true);
            }
            if r == 0 {
                return Err(());
            }
            match std::io::Error::last_os_error().kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => return Ok(false),
                _ => return Err(()),
            }
        }
    }

    /// Handles every whole frame in `rx.buf`; false if one is malformed
    /// (the connection is then killed).
    fn handle_frames(&self, rx: &mut ReadSide) -> bool {
        loop {
            let have = &rx.buf[rx.start..];
            if have.len() < 4 {
                break;
            }
            let len = u32::from_le_bytes(have[..4].try_into().expect("4 bytes")) as usize;
            if !(wire::HEADER..=wire::MAX_FRAME).contains(&len) {
                self.kill();
                return false;
            }
            if have.len() < 4 + len {
                break;
            }
            let ok = self.handle_frame(&have[4..4 + len]);
            rx.start += 4 + len;
            if !ok {
                self.kill();
                return false;
            }
        }
        if rx.start == rx.buf.len() {
            rx.buf.clear();
            rx.start = 0;
            // A connection that once read a big answer does not keep its buffer.
            if rx.buf.capacity() > 4 * READ_CHUNK {
                rx.buf.shrink_to(READ_CHUNK);
            }
        }
        true
    }

    /// Handles one frame body: a `NOTIFY`, or an answer for its caller.
    fn handle_frame(&self, body: &[u8]) -> bool {
        let mut d = Dec::new(body);
        let Ok((id, o)) = d.header() else {
            return false;
        };
        if o == op::NOTIFY && id == 0 {
            let Ok((watch, readable)) = (|| Ok::<_, wire::Malformed>((d.u64()?, d.bool()?)))()
            else {
                return false;
            };
            // Under the map's lock, and not once killed: a closing client
            // raises every descriptor under it, after the kill.
            let m = self.notify.lock();
            if self.dead.load(SeqCst) {
                return true;
            }
            if let Some(efd) = m.get(&watch) {
                if readable {
                    efd.raise();
                } else {
                    efd.clear();
                }
            }
            return true;
        }
        if o != op::REPLY {
            return false;
        }
        let slot = self.pending.lock().remove(&id);
        if let Some(slot) = slot {
            slot.state.lock().answer = Answer::Reply(body.to_vec());
            slot.cv.notify_one();
        }
        true
    }

    /// Reads the socket as the leader until `slot` (request `id`) has its
    /// answer; sends `ABORT` for it once `cancel` is set.
    fn lead(
        &self,
        rx: &mut ReadSide,
        slot: &Slot,
        id: u64,
        cancel: Option<&AtomicBool>,
        aborted: &mut bool,
    ) {
        self.disarm();
        loop {
            if !self.handle_frames(rx) {
                return;
            }
            if !matches!(slot.state.lock().answer, Answer::Waiting) {
                return;
            }
            if let Some(c) = cancel {
                if !*aborted && c.load(SeqCst) {
                    *aborted = true;
                    self.abort(id);
                }
                if !*aborted && !self.wait_readable_or_intr() {
                    // Woken by `wake_waiters`: look at the flag again.
                    continue;
                }
            }
            if self.fill(rx, 0).is_err() {
                self.handle_frames(rx);
                self.kill();
                return;
            }
        }
    }

    /// Waits until the socket is readable (true) or `intr` is raised
    /// (false, and cleared).
    fn wait_readable_or_intr(&self) -> bool {
        let mut p = [
            libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.intr.raw(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `p` is two valid, writable pollfds for the duration of the call.
        let r = unsafe { libc::poll(p.as_mut_ptr(), 2, -1) };
        if r > 0 && p[1].revents != 0 {
            self.intr.clear();
            return false;
        }
        true
    }

    /// Sends `ABORT` for request `id`.
    fn abort(&self, id: u64) {
        let mut a = Enc::new(0, op::ABORT);
        a.u64(id);
        self.write(&a.finish().expect("small"));
    }

    /// After the read side was let go: makes a caller still waiting the
    /// next to read, or, when none waits, arms the watcher.
    fn pass_on(&self) {
        if self.dead.load(SeqCst) {
            return;
        }
        {
            let pending = self.pending.lock();
            for slot in pending.values() {
                let mut g = slot.state.lock();
                if matches!(g.answer, Answer::Waiting) {
                    if !g.promoted {
                        g.promoted = true;
                        slot.cv.notify_one();
                    }
                    return;
                }
            }
        }
        self.arm();
    }

    fn arm(&self) {
        let mut a = self.armed.lock();
        if !*a {
            *a = true;
            let _ = epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_MOD,
                self.fd,
                ARMED,
                TOKEN_SOCKET,
            );
        }
    }

    fn disarm(&self) {
        let mut a = self.armed.lock();
        if *a {
            *a = false;
            let _ = epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_MOD,
                self.fd,
                libc::EPOLLONESHOT as u32,
                TOKEN_SOCKET,
            );
        }
    }

    /// Marks it dead: every call waiting on it learns its answer is lost.
    fn kill(&self) {
        self.dead.store(true, SeqCst);
        // SAFETY: shutdown on the descriptor this connection owns (until it
        // drops); wakes a blocked read.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
        self.stop.raise();
        let lost: Vec<_> = self.pending.lock().drain().map(|(_, s)| s).collect();
        for slot in lost {
            slot.state.lock().answer = Answer::Lost;
            slot.cv.notify_all();
        }
    }

    fn write(&self, frame: &[u8]) -> bool {
        let ok = self.writer.lock().write_all(frame).is_ok();
        if !ok {
            self.kill();
        }
        ok
    }
}

/// The socket in the watcher's epoll set while armed.
const ARMED: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;

fn epoll_ctl(ep: i32, op: i32, fd: i32, events: u32, token: u64) -> std::io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    if unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The host's refusal inside an error of [`Conn::open`], if that is what it is.
fn refusal(e: std::io::Error) -> Option<Error> {
    e.get_ref()?.downcast_ref::<Error>().cloned()
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Reads one frame body (`None` at the end of the stream).
fn read_frame(s: &mut UnixStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if !(wire::HEADER..=wire::MAX_FRAME).contains(&len) {
        return Err(bad("frame length out of bounds"));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(Some(body))
}

/// Closes the broker this process hosts after a takeover: a clean close,
/// so it hands over to the next host.
fn close_hosted(hosted: Option<Box<dyn std::any::Any + Send + Sync>>) {
    if let Some(b) = hosted
        .as_ref()
        .and_then(|h| h.downcast_ref::<crate::broker::Broker>())
    {
        b.close();
    }
}

/// An answer: its result, or the error the host sent.
fn decode_reply(buf: Vec<u8>, conn: u64) -> Result<Reply> {
    let mut d = Dec::new(&buf[wire::HEADER..]);
    match d.u8()? {
        0 => Ok(Reply { buf, conn }),
        _ => Err(d.error()?),
    }
}

/// Whether a call whose answer was lost with its host is sent again to the next.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resend {
    /// Yes (reads, declarations, receives, sends: at least once).
    Yes,
    /// No: it named a lease of the old host, which is gone with it.
    No,
}

impl Client {
    /// Attaches to the live host of `dir`; `Ok(None)` if there is none to
    /// reach, `Err` if the host refused this process.
    pub(crate) fn attach(dir: &Path, become_host: BecomeHost) -> Result<Option<Arc<Client>>> {
        let notify = Notify::default();
        let (conn, takeovers) = match Conn::open(dir, &notify) {
            Ok(c) => c,
            Err(e) => return refusal(e).map_or(Ok(None), Err),
        };
        let client = Arc::new_cyclic(|me| Client {
            me: me.clone(),
            dir: dir.to_path_buf(),
            conn: RwLock::new(conn),
            reconnecting: Mutex::new(()),
            reclaiming: Mutex::new(()),
            become_host,
            hosted: Mutex::new(None),
            closed: AtomicBool::new(false),
            origin: Origin::here(),
            takeovers: AtomicU64::new(takeovers),
            clock: Arc::new(crate::clock::SystemClock::new()),
            leases: Mutex::new(HashMap::new()),
            next_lease: AtomicU64::new(1),
            watched: Mutex::new(HashMap::new()),
            notify,
            deleted: Mutex::new(Default::default()),
        });
        let conn = client.conn.read().clone();
        if conn.start(client.me.clone()).is_err() {
            return Ok(None);
        }
        Ok(Some(client))
    }

    /// The data directory this client is attached to.
    #[cfg_attr(not(feature = "bridge"), allow(dead_code))]
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// [`Error::Forked`] in a child that inherited this connection; [`Error::Closed`] once closed.
    pub(crate) fn check(&self) -> Result<()> {
        if self.origin.inherited() {
            return Err(Error::Forked);
        }
        if self.closed.load(SeqCst) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub(crate) fn check_fork(&self) -> Result<()> {
        if self.origin.inherited() {
            Err(Error::Forked)
        } else {
            Ok(())
        }
    }

    /// The clock of the attached broker's handles.
    pub(crate) fn clock(&self) -> &Arc<dyn crate::clock::Clock> {
        &self.clock
    }

    /// Whether this process became the host (after a takeover).
    pub(crate) fn is_hosting(&self) -> bool {
        self.hosted.lock().is_some()
    }

    /// Ends the connection; every later call fails with [`Error::Closed`]. A
    /// process that took over stops hosting (another takes over from it).
    pub(crate) fn close(&self) {
        if self.closed.swap(true, SeqCst) || self.origin.inherited_exact() {
            return;
        }
        self.conn.read().kill();
        // Closed: every descriptor stays readable (a receive says why), as a
        // local queue's does.
        let _m = self.notify.lock();
        for w in self.watched.lock().values() {
            w.efd.raise();
        }
        let hosted = self.hosted.lock().take();
        close_hosted(hosted);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Wakes every call of this process waiting on the host, so each
    /// re-checks its cancel flag.
    pub(crate) fn wake_waiters(&self) {
        let conn = self.conn.read().clone();
        let slots: Vec<_> = conn.pending.lock().values().cloned().collect();
        for s in slots {
            let _g = s.state.lock();
            s.cv.notify_all();
        }
        // A caller reading the socket for its answer waits on this too.
        conn.intr.raise();
    }

    /// Finds the next host after `dead` ended, or becomes it; then asks the
    /// new host to follow every watched queue again.
    fn reconnect(&self, dead: &Arc<Conn>) -> Result<()> {
        if self.reconnect_inner(dead)? {
            let watched: Vec<_> = self
                .watched
                .lock()
                .iter()
                .map(|((ns, q), w)| (ns.clone(), q.clone(), w.id))
                .collect();
            for (ns, q, id) in watched {
                // A queue gone meanwhile: its descriptor stays as it was.
                let at = QueueAt {
                    ns: &ns,
                    name: &q,
                    serial: 0,
                };
                let _ = self.call(
                    op::WATCH,
                    |e| {
                        e.queue_at(at).u64(id);
                    },
                    None,
                    Resend::No,
                );
            }
        }
        Ok(())
    }

    /// `Ok(true)` if it replaced the connection.
    fn reconnect_inner(&self, dead: &Arc<Conn>) -> Result<bool> {
        let _g = self.reconnecting.lock();
        if !Arc::ptr_eq(&self.conn.read(), dead) {
            return Ok(false);
        }
        let give_up = Instant::now() + TAKEOVER_LIMIT;
        let mut pause = Duration::from_millis(1);
        loop {
            self.check()?;
            if !self.dir.is_dir() {
                // Deleted: nothing to host (and nothing to create again).
                return Err(Error::Io(format!("{} is gone", self.dir.display())));
            }
            match Conn::open(&self.dir, &self.notify) {
                Ok((c, t)) => return self.install(c, t).map(|()| true),
                Err(e) => {
                    if let Some(refused) = refusal(e) {
                        return Err(refused);
                    }
                }
            }
            match (self.become_host)(self.takeovers.load(SeqCst) + 1) {
                Ok(hosted) => {
                    {
                        let mut h = self.hosted.lock();
                        if self.closed.load(SeqCst) {
                            // Closed while it took over: it hands over again.
                            drop(h);
                            close_hosted(Some(hosted));
                            return Err(Error::Closed);
                        }
                        *h = Some(hosted);
                    }
                    let (c, t) = Conn::open(&self.dir, &self.notify).map_err(|e| {
                        Error::Io(format!(
                            "took over {} but cannot reach it: {e}",
                            self.dir.display()
                        ))
                    })?;
                    return self.install(c, t).map(|()| true);
                }
                Err(Error::Locked(_)) => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= give_up {
                return Err(Error::Io(format!(
                    "no host for {} answered within {TAKEOVER_LIMIT:?}",
                    self.dir.display()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Makes `c` the connection: its reader starts, calls go to it, and the
    /// leases held are reclaimed on it (the new host holds receives back
    /// meanwhile, for [`RECLAIM_GRACE`](super::host::RECLAIM_GRACE); a
    /// settle of a lease not reclaimed yet waits for the reclaim).
    fn install(&self, c: Arc<Conn>, takeovers: u64) -> Result<()> {
        c.start(self.me.clone())
            .map_err(|e| Error::Io(format!("cannot start the attach thread: {e}")))?;
        self.takeovers.store(takeovers, SeqCst);
        *self.conn.write() = c.clone();
        self.reclaim_on(&c, None);
        Ok(())
    }

    /// Reclaims on `conn` the leases known on another connection (only
    /// `only`, if given). A lease the host does not give back is forgotten
    /// (settling it then fails with `LeaseExpired`). False if `conn` died
    /// before it answered (nothing changed).
    fn reclaim_on(&self, conn: &Arc<Conn>, only: Option<u64>) -> bool {
        let _g = self.reclaiming.lock();
        let want: Vec<(u64, String, String, u64, u32)> = self
            .leases
            .lock()
            .iter()
            .filter(|(k, h)| h.conn != conn.serial && only.map_or(true, |o| o == **k))
            .map(|(k, h)| (*k, h.ns.clone(), h.queue.clone(), h.id, h.seen))
            .collect();
        if want.is_empty() {
            return true;
        }
        let body = |e: &mut Enc| {
            e.u32(want.len() as u32);
            for (_, ns, q, id, seen) in &want {
                e.str(ns).str(q).u64(*id).u32(*seen);
            }
        };
        let Ok(Some(buf)) = self.exchange(conn, op::RECLAIM, &body, None) else {
            return false;
        };
        let numbers = decode_reply(buf, conn.serial)
            .and_then(|r| {
                let mut d = r.dec();
                let n = d.count(8)?;
                Ok((0..n)
                    .map(|_| d.u64())
                    .collect::<wire::DResult<Vec<u64>>>()?)
            })
            .unwrap_or_default();
        let mut l = self.leases.lock();
        for (i, (k, ..)) in want.iter().enumerate() {
            match numbers.get(i).copied().unwrap_or(0) {
                0 => {
                    l.remove(k);
                }
                n => {
                    if let Some(h) = l.get_mut(k) {
                        (h.conn, h.number) = (conn.serial, n);
                    }
                }
            }
        }
        true
    }

    /// The live connection (reconnecting if it died).
    fn live_conn(&self) -> Result<Arc<Conn>> {
        loop {
            let c = self.conn.read().clone();
            if !c.dead.load(SeqCst) {
                return Ok(c);
            }
            self.reconnect(&c)?;
        }
    }

    /// A call on the lease this process knows as `lease`: sent with its
    /// number on the live connection (reclaimed there first if it is known
    /// on an older one), and sent again to the next host if the answer is
    /// lost. `Ok(None)`: the answer was lost with its host and the next host
    /// no longer has the lease — the call may have been applied.
    fn lease_call(&self, lease: u64, o: u8, body: impl Fn(&mut Enc, u64)) -> Result<Option<Reply>> {
        self.check()?;
        let mut lost = false;
        loop {
            let conn = self.live_conn()?;
            let known = self.leases.lock().get(&lease).map(|h| (h.conn, h.number));
            let number = match known {
                None if lost => return Ok(None),
                None => return Err(Error::LeaseExpired { id: 0 }),
                Some((c, n)) if c == conn.serial => n,
                Some(_) => {
                    // Received just as the host changed: not reclaimed yet
                    // (if `conn` dies meanwhile, the next turn reconnects).
                    self.reclaim_on(&conn, Some(lease));
                    continue;
                }
            };
            match self.exchange(&conn, o, &|e: &mut Enc| body(e, number), None)? {
                Some(buf) => return decode_reply(buf, conn.serial).map(Some),
                None => {
                    self.reconnect(&conn)?;
                    self.same_host_check(&conn)?;
                    lost = true;
                }
            }
        }
    }

    /// After a reconnect: [`Error::Io`] if it is the same host (which ended
    /// the connection: it dropped this process, see its stderr).
    fn same_host_check(&self, old: &Conn) -> Result<()> {
        let now = self.conn.read().clone();
        if (now.host_pid, now.generation) == (old.host_pid, old.generation) {
            return Err(Error::Io(format!(
                "the host (pid {}) dropped the connection",
                old.host_pid
            )));
        }
        Ok(())
    }

    /// Sends one request on `conn` and waits for its answer (`None`: the
    /// connection ended first). `cancel`: see [`call`](Self::call).
    fn exchange(
        &self,
        conn: &Arc<Conn>,
        o: u8,
        body: &dyn Fn(&mut Enc),
        cancel: Option<&AtomicBool>,
    ) -> Result<Option<Vec<u8>>> {
        let id = conn.next_id.fetch_add(1, SeqCst);
        let mut enc = Enc::new(id, o);
        body(&mut enc);
        let frame = enc.finish().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "the request is larger than a frame may be ({} bytes)",
                wire::MAX_FRAME
            ))
        })?;
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState {
                answer: Answer::Waiting,
                promoted: false,
            }),
            cv: Condvar::new(),
        });
        conn.pending.lock().insert(id, slot.clone());
        if conn.dead.load(SeqCst) {
            // Killed before we registered: nobody will answer.
            conn.pending.lock().remove(&id);
            return Ok(None);
        }
        conn.write(&frame);
        let mut aborted = false;
        let mut g = slot.state.lock();
        loop {
            match std::mem::replace(&mut g.answer, Answer::Waiting) {
                Answer::Reply(b) => {
                    let promoted = std::mem::take(&mut g.promoted);
                    drop(g);
                    if promoted {
                        // Made the next reader, but answered meanwhile:
                        // the next waiting caller reads instead.
                        conn.pass_on();
                    }
                    return Ok(Some(b));
                }
                Answer::Lost => return Ok(None),
                Answer::Waiting => {}
            }
            g.promoted = false;
            if !aborted && cancel.is_some_and(|c| c.load(SeqCst)) {
                aborted = true;
                drop(g);
                conn.abort(id);
                g = slot.state.lock();
                continue;
            }
            if let Some(mut rx) = conn.rx.try_lock() {
                // Nobody reads: this caller does, until its answer is there.
                drop(g);
                conn.lead(&mut rx, &slot, id, cancel, &mut aborted);
                drop(rx);
                conn.pass_on();
                g = slot.state.lock();
                continue;
            }
            slot.cv.wait(&mut g);
        }
    }

    /// Sends a request and waits for its answer. `cancel`, once set (and
    /// [`wake_waiters`](Self::wake_waiters) called), aborts a wait on the host.
    pub(crate) fn call(
        &self,
        o: u8,
        body: impl Fn(&mut Enc),
        cancel: Option<&AtomicBool>,
        resend: Resend,
    ) -> Result<Reply> {
        self.check()?;
        loop {
            let conn = self.conn.read().clone();
            if conn.dead.load(SeqCst) {
                if resend == Resend::No {
                    return Err(Error::LeaseExpired { id: 0 });
                }
                self.reconnect(&conn)?;
                continue;
            }
            let Some(buf) = self.exchange(&conn, o, &body, cancel)? else {
                if resend == Resend::No {
                    return Err(Error::LeaseExpired { id: 0 });
                }
                self.reconnect(&conn)?;
                self.same_host_check(&conn)?;
                continue;
            };
            return decode_reply(buf, conn.serial);
        }
    }

    /// Sends a request that has no answer (best effort).
    #[allow(dead_code)] // not used by this crate yet (observability, one-way requests)
    pub(crate) fn tell(&self, o: u8, body: impl Fn(&mut Enc)) {
        if self.check().is_err() {
            return;
        }
        let conn = self.conn.read().clone();
        let mut enc = Enc::new(0, o);
        body(&mut enc);
        if let Some(f) = enc.finish() {
            conn.write(&f);
        }
    }

    // ---- typed calls (one per operation of docs/wire.md) ----

    pub(crate) fn namespace(
        &self,
        name: &str,
        quotas: Option<&Quotas>,
        create: bool,
    ) -> Result<Quotas> {
        let r = self.call(
            op::NAMESPACE,
            |e| {
                e.str(name);
                match quotas {
                    None => e.u8(0),
                    Some(q) => e.u8(1).quotas(q),
                };
                e.bool(create);
            },
            None,
            Resend::Yes,
        )?;
        Ok(r.dec().quotas()?)
    }

    pub(crate) fn get_namespace(&self, name: &str) -> Result<Quotas> {
        let r = self.call(
            op::GET_NAMESPACE,
            |e| {
                e.str(name);
            },
            None,
            Resend::Yes,
        )?;
        Ok(r.dec().quotas()?)
    }

    pub(crate) fn names(&self, o: u8, args: &[&str]) -> Result<Vec<String>> {
        let r = self.call(
            o,
            |e| {
                for a in args {
                    e.str(a);
                }
            },
            None,
            Resend::Yes,
        )?;
        Ok(r.dec().strs()?)
    }

    pub(crate) fn unit(&self, o: u8, args: &[&str]) -> Result<()> {
        self.call(
            o,
            |e| {
                for a in args {
                    e.str(a);
                }
            },
            None,
            Resend::Yes,
        )
        .map(|_| ())
    }

    pub(crate) fn host_info(&self) -> Result<HostInfo> {
        let r = self.call(op::HOST_INFO, |_| {}, None, Resend::Yes)?;
        Ok(r.dec().host_info()?)
    }

    /// Declares or looks up a queue: its options and number.
    pub(crate) fn queue(
        &self,
        ns: &str,
        name: &str,
        opts: Option<&QueueOptions>,
        mode: u8,
    ) -> Result<(QueueOptions, u64)> {
        let r = self.call(
            op::QUEUE,
            |e| {
                e.str(ns).str(name);
                match opts {
                    None => e.u8(0),
                    Some(o) => e.u8(1).options(o),
                };
                e.u8(mode);
            },
            None,
            Resend::Yes,
        )?;
        let mut d = r.dec();
        Ok((d.options()?, d.u64()?))
    }

    /// Deletes a queue; every handle of it in this process is closed.
    pub(crate) fn delete_queue(&self, ns: &str, name: &str) -> Result<()> {
        let r = self.call(
            op::DELETE_QUEUE,
            |e| {
                e.str(ns).str(name);
            },
            None,
            Resend::Yes,
        )?;
        let serial = r.dec().u64()?;
        self.deleted.lock().insert(serial);
        Ok(())
    }

    /// Whether this process deleted the queue numbered `serial`.
    pub(crate) fn was_deleted(&self, serial: u64) -> bool {
        serial != 0 && self.deleted.lock().contains(&serial)
    }

    pub(crate) fn ns_stats(&self, ns: &str) -> Result<(u64, QueueStats, Quotas)> {
        let r = self.call(
            op::NS_STATS,
            |e| {
                e.str(ns);
            },
            None,
            Resend::Yes,
        )?;
        let mut d = r.dec();
        Ok((d.u64()?, d.queue_stats()?, d.quotas()?))
    }

    pub(crate) fn send(
        &self,
        q: QueueAt<'_>,
        on_full: Option<OnFull>,
        batch: bool,
        msgs: &[Message],
        cancel: Option<&AtomicBool>,
    ) -> Result<Vec<u64>> {
        let r = self.call(
            op::SEND,
            |e| {
                if msgs.len() > 1 {
                    e.reserve(msgs.iter().map(wire::message_len).sum::<usize>() + 64);
                }
                e.queue_at(q);
                match on_full {
                    None => e.u8(0),
                    Some(f) => e.u8(1).on_full(f),
                };
                e.bool(batch).u32(msgs.len() as u32);
                for m in msgs {
                    e.message(m);
                }
            },
            cancel,
            Resend::Yes,
        )?;
        let mut d = r.dec();
        let n = d.count(8)?;
        let ids = (0..n)
            .map(|_| d.u64())
            .collect::<wire::DResult<Vec<u64>>>()?;
        Ok(ids)
    }

    /// Receives: (lease number or 0 when auto-acked, delivery count, message).
    pub(crate) fn receive(
        &self,
        q: QueueAt<'_>,
        max: usize,
        wait: Wait,
        auto_ack: bool,
        cancel: Option<&AtomicBool>,
    ) -> Result<Vec<(u64, u32, Node)>> {
        let r = self.call(
            op::RECEIVE,
            |e| {
                e.queue_at(q)
                    .u32(max.min(u32::MAX as usize) as u32)
                    .wait(wait)
                    .bool(auto_ack);
            },
            cancel,
            Resend::Yes,
        )?;
        let mut d = r.dec();
        let n = d.count(12)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (number, count, node) = (d.u64()?, d.u32()?, d.node()?);
            let lease = if number == 0 {
                0
            } else {
                let mine = self.next_lease.fetch_add(1, SeqCst);
                let held = Held {
                    ns: q.ns.to_string(),
                    queue: q.name.to_string(),
                    id: node.id,
                    seen: count,
                    conn: r.conn,
                    number,
                };
                self.leases.lock().insert(mine, held);
                mine
            };
            out.push((lease, count, node));
        }
        // Answered by a host that has gone since (the connection changed
        // before these leases were registered): reclaimed now, before the
        // caller sees them (a reclaim in progress covers those registered
        // before the change; see `install`).
        let now = self.conn.read().clone();
        if out.iter().any(|o| o.0 != 0) && now.serial != r.conn && !now.dead.load(SeqCst) {
            self.reclaim_on(&now, None);
        }
        Ok(out)
    }

    pub(crate) fn peek(&self, q: QueueAt<'_>, max: usize) -> Result<Vec<Node>> {
        let r = self.call(
            op::PEEK,
            |e| {
                e.queue_at(q).u32(max.min(u32::MAX as usize) as u32);
            },
            None,
            Resend::Yes,
        )?;
        let mut d = r.dec();
        let n = d.count(8)?;
        (0..n).map(|_| d.node().map_err(Error::from)).collect()
    }

    pub(crate) fn cancel(&self, q: QueueAt<'_>, id: u64) -> Result<()> {
        self.call(
            op::CANCEL,
            |e| {
                e.queue_at(q).u64(id);
            },
            None,
            Resend::Yes,
        )
        .map(|_| ())
    }

    pub(crate) fn purge(&self, q: QueueAt<'_>) -> Result<u64> {
        let r = self.call(
            op::PURGE,
            |e| {
                e.queue_at(q);
            },
            None,
            Resend::Yes,
        )?;
        Ok(r.dec().u64()?)
    }

    pub(crate) fn queue_stats(&self, q: QueueAt<'_>) -> Result<QueueStats> {
        let r = self.call(
            op::QUEUE_STATS,
            |e| {
                e.queue_at(q);
            },
            None,
            Resend::Yes,
        )?;
        Ok(r.dec().queue_stats()?)
    }

    /// Acks or nacks a lease (this process's number). An ack or nack whose
    /// answer was lost with its host, and whose message the next host no
    /// longer has, counts as done: the message went on without this lease.
    pub(crate) fn settle(
        &self,
        lease: u64,
        nack: bool,
        delay: Option<Duration>,
        reason: &str,
    ) -> Result<()> {
        let r = self.lease_call(lease, op::SETTLE, |e, n| {
            e.u64(n).bool(nack).opt_dur(delay).str(reason);
        });
        self.leases.lock().remove(&lease);
        r.map(|_| ())
    }

    /// Acks many leases (this process's numbers) in one request (`ACK_BATCH`):
    /// one result per lease, in order. The leases this connection's host does
    /// not know under its numbers (received just as the host changed), and
    /// all of them if the connection ends before the answer, are acked one by
    /// one as [`settle`](Self::settle) does, with its rules for a lost answer.
    pub(crate) fn ack_batch(&self, leases: &[u64]) -> Result<Vec<Result<()>>> {
        self.check()?;
        let conn = self.live_conn()?;
        // Where each lease's number is in the request (None: settled alone).
        let mut at = Vec::with_capacity(leases.len());
        let mut numbers = Vec::with_capacity(leases.len());
        {
            let held = self.leases.lock();
            for lease in leases {
                match held.get(lease) {
                    Some(h) if h.conn == conn.serial => {
                        at.push(Some(numbers.len()));
                        numbers.push(h.number);
                    }
                    _ => at.push(None),
                }
            }
        }
        let mut answers: Option<Vec<Result<()>>> = None;
        if !numbers.is_empty() {
            let body = |e: &mut Enc| {
                e.u32(numbers.len() as u32);
                for n in &numbers {
                    e.u64(*n);
                }
            };
            if let Some(buf) = self.exchange(&conn, op::ACK_BATCH, &body, None)? {
                let r = decode_reply(buf, conn.serial);
                let mut held = self.leases.lock();
                for (lease, a) in leases.iter().zip(&at) {
                    if a.is_some() {
                        held.remove(lease);
                    }
                }
                drop(held);
                let r = r?;
                let mut d = r.dec();
                let n = d.count(1)?;
                if n != numbers.len() {
                    return Err(wire::Malformed("ACK_BATCH answered another count").into());
                }
                let mut got = Vec::with_capacity(n);
                for _ in 0..n {
                    got.push(if d.bool()? { Ok(()) } else { Err(d.error()?) });
                }
                answers = Some(got);
            }
        }
        let mut answers = answers.map(Vec::into_iter);
        Ok(at
            .iter()
            .zip(leases)
            .map(|(a, &lease)| match (a, answers.as_mut()) {
                (Some(_), Some(it)) => it.next().unwrap_or(Err(Error::LeaseExpired { id: 0 })),
                _ => self.settle(lease, false, None, ""),
            })
            .collect())
    }

    pub(crate) fn extend(&self, lease: u64, by: Duration) -> Result<u64> {
        let r = self
            .lease_call(lease, op::EXTEND, |e, n| {
                e.u64(n).dur(by);
            })?
            .ok_or(Error::LeaseExpired { id: 0 })?;
        Ok(r.dec().u64()?)
    }

    pub(crate) fn deadline(&self, lease: u64) -> Option<u64> {
        let r = self
            .lease_call(lease, op::DEADLINE, |e, n| {
                e.u64(n);
            })
            .ok()??;
        r.dec().opt_u64().ok().flatten()
    }

    pub(crate) fn give_back(&self, q: QueueAt<'_>, lease: u64) -> Result<()> {
        let r = self.lease_call(lease, op::GIVE_BACK, |e, n| {
            e.queue_at(q).u64(n);
        });
        // Refused (a ticket shown to another queue), the lease is still held.
        if r.is_ok() {
            self.leases.lock().remove(&lease);
        }
        r.map(|_| ())
    }

    /// The pollable descriptor of a queue of the host's (one per queue in
    /// this process, owned by this client): kept readable exactly when a
    /// receive would succeed by the host's `NOTIFY` frames (`WATCH`).
    pub(crate) fn watch(&self, q: QueueAt<'_>) -> Result<std::os::fd::RawFd> {
        self.check()?;
        let key = (q.ns.to_string(), q.name.to_string());
        let (w, fresh) = {
            let mut m = self.watched.lock();
            match m.get(&key) {
                Some(w) => (w.clone(), false),
                None => {
                    static NEXT: AtomicU64 = AtomicU64::new(1);
                    let efd = EventFd::new()
                        .map_err(|e| Error::Io(format!("cannot create an eventfd: {e}")))?;
                    let w = Arc::new(Watched {
                        efd: Arc::new(efd),
                        id: NEXT.fetch_add(1, SeqCst),
                    });
                    self.notify.lock().insert(w.id, w.efd.clone());
                    m.insert(key.clone(), w.clone());
                    (w, true)
                }
            }
        };
        let r = self.call(
            op::WATCH,
            |e| {
                e.queue_at(q).u64(w.id);
            },
            None,
            Resend::Yes,
        );
        if let Err(e) = r {
            if fresh {
                self.watched.lock().remove(&key);
                self.notify.lock().remove(&w.id);
            }
            return Err(e);
        }
        Ok(w.efd.raw())
    }

    pub(crate) fn forget(&self, lease: u64) {
        let Some(h) = self.leases.lock().remove(&lease) else {
            return;
        };
        // Only on the connection the number belongs to (on a newer one it
        // could name another lease).
        let conn = self.conn.read().clone();
        if h.conn == conn.serial && self.check().is_ok() {
            let mut e = Enc::new(0, op::FORGET);
            e.u64(h.number);
            if let Some(f) = e.finish() {
                conn.write(&f);
            }
        }
    }

    pub(crate) fn publish(
        &self,
        ns: &str,
        topic: &str,
        msg: &Message,
        cancel: Option<&AtomicBool>,
    ) -> Result<usize> {
        let r = self.call(
            op::PUBLISH,
            |e| {
                e.str(ns).str(topic).message(msg);
            },
            cancel,
            Resend::Yes,
        )?;
        Ok(r.dec().u64()? as usize)
    }

    /// Subscribes a queue: its options and number.
    pub(crate) fn subscribe(
        &self,
        ns: &str,
        topic: &str,
        queue: &str,
        filter: &Filter,
    ) -> Result<(QueueOptions, u64)> {
        let r = self.call(
            op::SUBSCRIBE,
            |e| {
                e.str(ns).str(topic).str(queue).filter(filter);
            },
            None,
            Resend::Yes,
        )?;
        let mut d = r.dec();
        Ok((d.options()?, d.u64()?))
    }

    pub(crate) fn topic_stats(&self, ns: &str, topic: &str) -> Result<TopicStats> {
        let r = self.call(
            op::TOPIC_STATS,
            |e| {
                e.str(ns).str(topic);
            },
            None,
            Resend::Yes,
        )?;
        Ok(r.dec().topic_stats()?)
    }

    pub(crate) fn topic_filter(
        &self,
        ns: &str,
        topic: &str,
        queue: &str,
    ) -> Result<Option<Filter>> {
        let r = self.call(
            op::TOPIC_FILTER,
            |e| {
                e.str(ns).str(topic).str(queue);
            },
            None,
            Resend::Yes,
        )?;
        let mut d = r.dec();
        Ok(if d.bool()? { Some(d.filter()?) } else { None })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

/// Socket buffers of 1 MiB each way (best effort; the kernel caps them at
/// `net.core.[wr]mem_max`): a batch's frame goes in one write, and the
/// host's answers to pipelined requests in one.
pub(crate) fn set_buffers(fd: i32) {
    let size: libc::c_int = 1 << 20;
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: `size` is a valid c_int for the duration of the call.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}
