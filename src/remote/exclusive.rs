//! Telling an exclusive holder of a data directory from a host in the making.
//!
//! A process opening a directory whose lock (`LOCK`) is held attaches to the
//! holder's socket — but for a moment there is none: a process taking over
//! holds the lock while it replays the journal, before it binds the socket
//! (a second on a journal of 1 M messages). An exclusive broker
//! (`BrokerOptions::exclusive`) never binds one. So an exclusive broker also
//! holds `dir/EXCLUSIVE` (flock, for as long as it is open; released by the
//! kernel if it dies), and an opener that finds the lock held waits for a
//! socket unless that file is locked.

use crate::sync::fork::Guarded;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

const FILE: &str = "EXCLUSIVE";

/// Marks the directory as held exclusively (the caller holds its lock);
/// the mark lasts as long as the value returned.
pub(crate) fn mark(dir: &Path) -> Option<Guarded<File>> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join(FILE))
        .ok()?;
    // SAFETY: flock on a descriptor we own, with flags.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    (r == 0).then(|| Guarded::new(f))
}

/// Whether an exclusive broker holds the directory now.
pub(crate) fn held(dir: &Path) -> bool {
    let Ok(f) = File::open(dir.join(FILE)) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own (closed when `f` drops, which
    // releases the shared lock if we got it).
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK)
}
