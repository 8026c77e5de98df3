//! Writes a running bridge's stats into the bridges file of its data
//! directory (`file.rs` has the format) every [`PERIOD`], from a thread of
//! its own, and removes the file when the bridge stops cleanly.

use super::stats::{BridgeStats, Shared};
use crate::bridge_file::{self, BridgeRecord};
use crate::Queue;
use parking_lot::{Condvar, Mutex};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the file is written.
pub(crate) const PERIOD: Duration = Duration::from_secs(1);

/// What a bridge's stats are read from (by its handle and by the writer).
pub(crate) struct View {
    pub(crate) shared: Arc<Shared>,
    pub(crate) queues: Vec<Queue>,
    /// One flag per route: waiting for another process's claim.
    pub(crate) standby: Vec<Arc<AtomicBool>>,
}

impl View {
    pub(crate) fn stats(&self) -> BridgeStats {
        let pending = self
            .queues
            .iter()
            .map(|q| {
                let s = q.stats();
                s.ready + s.leased + s.delayed
            })
            .sum();
        let mut s = self.shared.snapshot(pending);
        s.standby = self.standby.iter().filter(|f| f.load(Relaxed)).count() as u64;
        s
    }
}

/// The writer thread of one bridge's file; stopped (and the file removed)
/// by [`stop`](Self::stop).
pub(crate) struct Reporter {
    wake: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Removes the files of processes that are gone (their bridges died with
/// them); best effort.
fn remove_stale(data_dir: &Path) {
    for l in bridge_file::list(data_dir) {
        if l.record.is_ok() && !l.alive {
            let _ = std::fs::remove_file(&l.path);
        }
    }
}

impl Reporter {
    /// Starts writing `base` (the configuration) with `view`'s stats into
    /// `data_dir/bridges/bridge-<pid>-<n>.json`.
    pub(crate) fn start(data_dir: &Path, base: BridgeRecord, view: Arc<View>) -> Option<Reporter> {
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        let folder = bridge_file::folder(data_dir);
        if std::fs::create_dir_all(&folder).is_err() {
            view.shared
                .error(&format!("cannot make {}", folder.display()));
            return None;
        }
        remove_stale(data_dir);
        let path = folder.join(format!(
            "bridge-{}-{}.json",
            std::process::id(),
            SERIAL.fetch_add(1, Relaxed)
        ));
        // The first write before `start` returns: the file is there as soon
        // as the bridge is.
        let _ = bridge_file::write_atomic(&path, &record(&base, &view).to_json());
        let wake = Arc::new((Mutex::new(false), Condvar::new()));
        let (w, p) = (wake.clone(), path.clone());
        let thread = std::thread::Builder::new()
            .name("lq-bridge-file".into())
            .spawn(move || {
                let mut warned = false;
                loop {
                    let r = record(&base, &view);
                    if let Err(e) = bridge_file::write_atomic(&p, &r.to_json()) {
                        if !warned {
                            view.shared
                                .error(&format!("cannot write {}: {e}", p.display()));
                            warned = true;
                        }
                    }
                    let mut stop = w.0.lock();
                    if !*stop {
                        w.1.wait_for(&mut stop, PERIOD);
                    }
                    if *stop {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Reporter {
            wake,
            thread: Some(thread),
            path,
        })
    }

    /// Stops the writer and removes the file.
    pub(crate) fn stop(&mut self) {
        *self.wake.0.lock() = true;
        self.wake.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn record(base: &BridgeRecord, view: &View) -> BridgeRecord {
    let s = view.stats();
    let mut r = base.clone();
    for (route, flag) in r.routes.iter_mut().zip(&view.standby) {
        route.standby = flag.load(Relaxed);
    }
    r.updated_ms = ms(SystemTime::now());
    r.connected = s.connected;
    r.forwarded = s.forwarded;
    r.received = s.received;
    r.pending_outbound = s.pending_outbound;
    r.pending_inbound = s.pending_inbound;
    r.retries = s.retries;
    r.duplicates = s.duplicates;
    r.dead_lettered = s.dead_lettered;
    r.standby = s.standby;
    r.last_error = s.last_error;
    r.last_error_ms = s.last_error_at.map(ms);
    r.error_since_ms = s.error_since.map(ms);
    r
}

/// The configuration part of a bridge's record.
pub(crate) fn base(url: &str, identity: &str) -> BridgeRecord {
    let kind = url.split_once("://").map_or("nats", |(s, _)| s).to_string();
    BridgeRecord {
        kind,
        url: bridge_file::strip_credentials(url),
        identity: identity.to_string(),
        pid: std::process::id(),
        started_ms: ms(SystemTime::now()),
        ..BridgeRecord::default()
    }
}
