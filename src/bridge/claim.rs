//! Exactly one forwarder per local queue (and one receiver per remote
//! source), across the processes of one data directory.
//!
//! A route claims what it drains with an OS lock in the data directory:
//! `bridges/out/<namespace>/<queue>.lock` for an outbound route,
//! `bridges/in/<durable>.lock` for an inbound one (`flock`, exclusive). The
//! kernel releases it when the holder's descriptor is closed — at a clean
//! stop, or when the process dies, even by SIGKILL — and a forked child does
//! not keep it (the descriptor is [`Guarded`]). A route that finds its lock
//! held waits as a *standby* and tries again every [`POLL`], so it takes over
//! within about that much of the holder's end. A broker without a data
//! directory has no lock files; its routes claim in-process only (the
//! `AlreadyExists` of `start`).

use crate::sync::fork::Guarded;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// How often a standby route tries the lock again.
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// The lock file an outbound route on `ns/queue` claims.
pub(crate) fn outbound_lock(dir: &Path, ns: &str, queue: &str) -> PathBuf {
    dir.join("bridges")
        .join("out")
        .join(ns)
        .join(format!("{queue}.lock"))
}

/// The lock file an inbound route from the durable consumer `durable`
/// claims (bytes other than `[A-Za-z0-9_-]` written as `%XX`).
pub(crate) fn inbound_lock(dir: &Path, durable: &str) -> PathBuf {
    let mut name = String::new();
    for b in durable.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    dir.join("bridges").join("in").join(format!("{name}.lock"))
}

/// What a route must claim before it runs: a lock file, or nothing (no data
/// directory). `standby` says, for stats and the bridges file, that the
/// route waits for another process's claim.
pub(crate) struct Slot {
    pub(crate) path: Option<PathBuf>,
    pub(crate) standby: Arc<AtomicBool>,
}

/// A claim held: the locked file, unlocked when dropped (closed).
pub(crate) struct Held(#[allow(dead_code)] Option<Guarded<File>>);

/// Tries the lock once: `Ok(Some)` taken, `Ok(None)` held by another.
pub(crate) fn try_lock(path: &Path) -> std::io::Result<Option<Guarded<File>>> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    // Guarded before the lock is taken: a fork between the two leaves the
    // child without the descriptor either way.
    let f = Guarded::new(f);
    // SAFETY: flock on a descriptor we own (it stays open inside `f`), with
    // flags; no memory is passed.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(Some(f));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(e)
    }
}

impl Slot {
    /// Claims the slot, waiting as a standby while another process holds it;
    /// `None` if the bridge stops first. Errors (the lock file cannot be
    /// made) are reported through `error` and retried at the same pace.
    pub(crate) async fn acquire(&self, stop: &AtomicBool, error: impl Fn(&str)) -> Option<Held> {
        let Some(path) = &self.path else {
            return Some(Held(None));
        };
        loop {
            if stop.load(Relaxed) {
                self.standby.store(false, Relaxed);
                return None;
            }
            match try_lock(path) {
                Ok(Some(f)) => {
                    self.standby.store(false, Relaxed);
                    return Some(Held(Some(f)));
                }
                Ok(None) => self.standby.store(true, Relaxed),
                Err(e) => error(&format!("bridge claim {}: {e}", path.display())),
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_waits_until_the_first_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = outbound_lock(dir.path(), "app", "jobs");
        assert!(p.ends_with("bridges/out/app/jobs.lock"));
        let first = try_lock(&p).unwrap().expect("free");
        // flock is per open file: a second open, even in this process, waits.
        assert!(try_lock(&p).unwrap().is_none());
        drop(first);
        assert!(try_lock(&p).unwrap().is_some());
    }

    #[test]
    fn inbound_lock_names_are_escaped() {
        let p = inbound_lock(Path::new("/d"), "a/b%c-d_e");
        assert_eq!(p, Path::new("/d/bridges/in/a%2Fb%25c-d_e.lock"));
    }
}
