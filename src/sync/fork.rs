//! Fork detection. A child made by `fork()` inherits a copy of its parent's
//! broker — its journal mappings and descriptors, its locks in whatever state the
//! parent's threads held them, none of its threads. Nothing of that may be used
//! by the child: a `pthread_atfork` child handler bumps a process-wide
//! generation, every broker (its journal, namespaces, queues, pools) remembers
//! the generation it was made under, and every call compares the two — one
//! relaxed load of a line that is never written outside `fork`, no syscall.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Runs in the child, inside `fork`: only an atomic add (async-signal-safe).
extern "C" fn in_child() {
    GENERATION.fetch_add(1, Relaxed);
}

/// Where a handle was made: the fork generation and the process id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    generation: u64,
    pid: u32,
}

impl Origin {
    /// The current process (installing the fork handler the first time).
    pub(crate) fn here() -> Self {
        install();
        Origin {
            generation: GENERATION.load(Relaxed),
            pid: std::process::id(),
        }
    }

    /// Whether this process is a forked child of the one the handle was made in.
    /// One relaxed load: cheap enough for every call.
    #[inline]
    pub(crate) fn inherited(&self) -> bool {
        GENERATION.load(Relaxed) != self.generation
    }

    /// [`inherited`](Self::inherited), also comparing the process id (a
    /// syscall): for close and drop paths, so a child made without the fork
    /// handlers running (a raw `clone`) cannot write either.
    pub(crate) fn inherited_exact(&self) -> bool {
        self.inherited() || std::process::id() != self.pid
    }
}

fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(unix)]
        // SAFETY: registers two child handlers, one that only performs an
        // atomic add on a static, one that only calls open/dup2/close
        // (async-signal-safe, as a handler run inside fork must be); no
        // prepare or parent handler. A failure (ENOMEM) leaves the pid
        // comparison of `inherited_exact` as the only detection.
        unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
            libc::pthread_atfork(None, None, Some(release_in_child));
        }
    });
}

/// Descriptors a forked child must not keep: the data directory's lock and
/// the sockets between host and attached processes. A child holding a copy
/// would keep the lock taken (no process could take over after the parent
/// exits) or keep a dead parent's connection open (its leases would not come
/// back). The child handler points each at `/dev/null` (`dup2`, so the number
/// stays valid for the drop that closes it later).
const GUARDED: usize = 8192;
static GUARDED_FDS: [std::sync::atomic::AtomicI32; GUARDED] =
    [const { std::sync::atomic::AtomicI32::new(-1) }; GUARDED];

/// Runs in the child, inside `fork`: only `open`, `dup2` and `close`
/// (async-signal-safe) and atomic loads.
extern "C" fn release_in_child() {
    // SAFETY: open/dup2/close on descriptor numbers, with a static C string;
    // all async-signal-safe. A failed open leaves the descriptors as they are.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if null < 0 {
            return;
        }
        for slot in GUARDED_FDS.iter() {
            let fd = slot.load(Relaxed);
            if fd >= 0 && fd != null {
                libc::dup2(null, fd);
            }
        }
        libc::close(null);
    }
}

/// Registers `fd` to be released in forked children (see [`GUARDED_FDS`]);
/// [`Guarded`] unregisters it before it is closed. Beyond 8192 at once the
/// extra ones are not guarded.
pub(crate) fn guard_fd(fd: i32) {
    install();
    for slot in GUARDED_FDS.iter() {
        if slot
            .compare_exchange(-1, fd, std::sync::atomic::Ordering::SeqCst, Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

/// Unregisters `fd` (before it is closed, so its number, reused, is not touched).
pub(crate) fn unguard_fd(fd: i32) {
    for slot in GUARDED_FDS.iter() {
        if slot
            .compare_exchange(fd, -1, std::sync::atomic::Ordering::SeqCst, Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

/// Owns a descriptor-holding value guarded by [`guard_fd`]; unregisters it
/// before the value (and its descriptor) is dropped.
pub(crate) struct Guarded<T: std::os::fd::AsRawFd>(pub(crate) T);

impl<T: std::os::fd::AsRawFd> Guarded<T> {
    pub(crate) fn new(v: T) -> Self {
        guard_fd(v.as_raw_fd());
        Guarded(v)
    }
}

impl<T: std::os::fd::AsRawFd> Drop for Guarded<T> {
    fn drop(&mut self) {
        unguard_fd(self.0.as_raw_fd());
    }
}

impl<T: std::os::fd::AsRawFd> std::ops::Deref for Guarded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: std::os::fd::AsRawFd> std::ops::DerefMut for Guarded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}
