//! The host's side of an attached process's pollable descriptor
//! (`Queue::fd`, ops `WATCH` and `NOTIFY`).
//!
//! The attached process keeps an eventfd per watched queue; the host follows
//! the queue's own pollable descriptor (the local queue's eventfd, raised and
//! cleared by the engine exactly as for a local `Queue::fd`) and sends a
//! `NOTIFY` frame whenever its state differs from the one last sent to that
//! watch. Two paths send, both reading the state and sending under the
//! watch's lock, so the last frame sent is the latest state:
//!
//! - a connection checks its watches before each answer it sends, so what a
//!   request did to a queue (a send, a receive that emptied it, a nack, a
//!   purge) reaches the client's descriptor before the request returns there;
//! - one thread per host waits (epoll, edge-triggered) on the local
//!   descriptors for what nobody of that connection asked for: other
//!   processes' sends, timers (delays falling due, leases running out). A
//!   local descriptor is raised by a write, so every rise is an event; a fall
//!   that no request of the connection caused (another process took the last
//!   message, a TTL sweep) is seen by a re-check every [`RECHECK`] while a
//!   watch stands readable — and a client's receive that finds nothing
//!   clears its descriptor in any case (the answer is checked first).

use super::wire::{op, Enc};
use crate::error::{Error, Result};
use crate::queue::Queue;
use crate::sync::eventfd::EventFd;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often the watcher re-checks watches that stand readable (for falls
/// nobody of their connection caused).
pub(crate) const RECHECK: Duration = Duration::from_millis(20);

/// Whether `fd` is readable now.
fn readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid, writable pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r == 1 && p.revents & libc::POLLIN != 0
}

/// Sends frames to the client that asked for a watch.
pub(crate) trait Sink: Send + Sync {
    /// Sends one frame (or nothing if the connection is gone).
    fn send_frame(&self, frame: &[u8]);
}

/// One watch of one connection: a queue of this host, and the state last
/// sent for it.
pub(crate) struct Sub {
    /// The number the client chose for it.
    id: u64,
    queue: Queue,
    fd: RawFd,
    sink: Weak<dyn Sink>,
    last: Mutex<Option<bool>>,
}

impl Sub {
    /// Sends `NOTIFY` if the queue's state differs from the one last sent.
    pub(crate) fn sync(&self) {
        let Some(sink) = self.sink.upgrade() else {
            return;
        };
        let mut last = self.last.lock();
        let now = readable(self.fd);
        if *last != Some(now) {
            let mut e = Enc::new(0, op::NOTIFY);
            e.u64(self.id).bool(now);
            sink.send_frame(&e.finish().expect("small"));
            *last = Some(now);
        }
    }

    fn stands_readable(&self) -> bool {
        *self.last.lock() == Some(true)
    }
}

/// The watches of one connection, by the client's numbers.
#[derive(Default)]
pub(crate) struct ConnWatches {
    subs: Mutex<HashMap<u64, Arc<Sub>>>,
    any: AtomicBool,
}

impl ConnWatches {
    /// Brings every watch of the connection up to date (before an answer).
    pub(crate) fn sync(&self) {
        if !self.any.load(SeqCst) {
            return;
        }
        let subs: Vec<Arc<Sub>> = self.subs.lock().values().cloned().collect();
        for s in subs {
            s.sync();
        }
    }

    /// Watch `id` follows `queue` (again: re-pointed if its queue changed).
    pub(crate) fn watch(
        &self,
        watcher: &Watcher,
        sink: Weak<dyn Sink>,
        id: u64,
        queue: Queue,
    ) -> Result<()> {
        let fd = queue.fd()?;
        let mut subs = self.subs.lock();
        if let Some(s) = subs.get(&id) {
            if s.fd == fd {
                return Ok(());
            }
        }
        let sub = Arc::new(Sub {
            id,
            queue,
            fd,
            sink,
            last: Mutex::new(None),
        });
        watcher.add(&sub)?;
        if let Some(old) = subs.insert(id, sub) {
            watcher.remove(&old);
        }
        self.any.store(true, SeqCst);
        Ok(())
    }

    /// The connection ended: its watches go.
    pub(crate) fn end(&self, watcher: Option<&Watcher>) {
        let subs: Vec<Arc<Sub>> = self.subs.lock().drain().map(|(_, s)| s).collect();
        self.any.store(false, SeqCst);
        if let Some(w) = watcher {
            for s in &subs {
                w.remove(s);
            }
        }
    }
}

/// The local queues watched by some connection, by their descriptor.
struct Watched {
    /// Keeps the queue's descriptor open while registered.
    _queue: Queue,
    subs: Vec<Weak<Sub>>,
}

/// The host's thread that follows watched queues' descriptors (started on
/// the first `WATCH`, stopped with the host).
pub(crate) struct Watcher {
    ep: Arc<OwnedFd>,
    stop: EventFd,
    /// Raised when a watch is added: the thread checks every watch once.
    kick: EventFd,
    by_fd: Arc<Mutex<HashMap<RawFd, Watched>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The epoll token of the stop descriptor (a queue's is its descriptor).
const STOP: u64 = u64::MAX;
/// The epoll token of the kick descriptor.
const KICK: u64 = u64::MAX - 1;

impl Watcher {
    pub(crate) fn start() -> Result<Watcher> {
        let io = |what: &str, e: std::io::Error| Error::Io(format!("{what}: {e}"));
        // SAFETY: epoll_create1 takes no pointers.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io(
                "cannot create an epoll",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: `ep` is a fresh descriptor nothing else owns.
        let ep = Arc::new(unsafe { OwnedFd::from_raw_fd(ep) });
        let stop = EventFd::new().map_err(|e| io("cannot create an eventfd", e))?;
        let kick = EventFd::new().map_err(|e| io("cannot create an eventfd", e))?;
        for (fd, token) in [(stop.raw(), STOP), (kick.raw(), KICK)] {
            ctl(&ep, libc::EPOLL_CTL_ADD, fd, token)
                .map_err(|e| io("cannot watch an eventfd", e))?;
        }
        let by_fd: Arc<Mutex<HashMap<RawFd, Watched>>> = Arc::default();
        let (e, m) = (ep.clone(), by_fd.clone());
        let thread = std::thread::Builder::new()
            .name("libqueue-watch".into())
            .stack_size(256 << 10)
            .spawn(move || watch_loop(&e, &m))
            .map_err(|e| io("cannot start the watch thread", e))?;
        Ok(Watcher {
            ep,
            stop,
            kick,
            by_fd,
            thread: Some(thread),
        })
    }

    fn add(&self, sub: &Arc<Sub>) -> Result<()> {
        let mut m = self.by_fd.lock();
        match m.get_mut(&sub.fd) {
            Some(w) => w.subs.push(Arc::downgrade(sub)),
            None => {
                ctl(&self.ep, libc::EPOLL_CTL_ADD, sub.fd, sub.fd as u64)
                    .map_err(|e| Error::Io(format!("cannot watch a queue: {e}")))?;
                m.insert(
                    sub.fd,
                    Watched {
                        _queue: sub.queue.clone(),
                        subs: vec![Arc::downgrade(sub)],
                    },
                );
            }
        }
        self.kick.raise();
        Ok(())
    }

    fn remove(&self, sub: &Arc<Sub>) {
        let mut m = self.by_fd.lock();
        let Some(w) = m.get_mut(&sub.fd) else {
            return;
        };
        w.subs
            .retain(|s| s.upgrade().is_some_and(|s| !Arc::ptr_eq(&s, sub)));
        if w.subs.is_empty() {
            let _ = ctl(&self.ep, libc::EPOLL_CTL_DEL, sub.fd, 0);
            m.remove(&sub.fd);
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.raise();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ctl(ep: &OwnedFd, op: libc::c_int, fd: RawFd, token: u64) -> std::io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET) as u32,
        u64: token,
    };
    // SAFETY: `ev` is a valid epoll_event; `ep` is our epoll and `fd` an open
    // descriptor kept open by its `Watched` entry while registered.
    let r = unsafe { libc::epoll_ctl(ep.as_raw_fd(), op, fd, &mut ev) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn watch_loop(ep: &OwnedFd, by_fd: &Mutex<HashMap<RawFd, Watched>>) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut timeout = -1;
    loop {
        // SAFETY: `events` is a valid, writable array of 64 events.
        let n = unsafe {
            libc::epoll_wait(
                ep.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout,
            )
        };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let mut fds = Vec::with_capacity(n as usize);
        let mut all = false;
        for ev in &events[..n as usize] {
            let token = ev.u64; // packed struct: copy the field out
            match token {
                STOP => return,
                KICK => all = true,
                fd => fds.push(fd as RawFd),
            }
        }
        // The descriptors that fired, and every watch standing readable (a
        // fall nobody of its connection caused shows only here).
        let subs: Vec<Arc<Sub>> = {
            let m = by_fd.lock();
            m.iter()
                .flat_map(|(fd, w)| {
                    let fired = all || fds.contains(fd);
                    w.subs
                        .iter()
                        .filter_map(Weak::upgrade)
                        .filter(move |s| fired || s.stands_readable())
                })
                .collect()
        };
        let mut any_readable = false;
        for s in subs {
            s.sync();
            any_readable |= s.stands_readable();
        }
        timeout = if any_readable {
            RECHECK.as_millis() as i32
        } else {
            -1
        };
    }
}
