//! The journal: persistent messages in append-only, memory-mapped, checksummed
//! segment files (format: `docs/journal-format.md`).
//!
//! - `mod.rs` (this file): `Journal`, the storage backend: open (lock, recover,
//!   compact), appends with group commit, sync modes, close.
//! - `segment`: the data directory's lock, segment names, creating a segment.
//! - `writer`: appending to the current segment, rolling, checkpoints.
//! - `codec`: record framing (length, type, commit mark, CRC-32C) and encoding.
//! - `index`: what is live, and where (decides when to checkpoint).
//! - `recover`: replay, damage detection, payload decoding.
//! - `inspect`: the read-only `inspect` / `dump` of the `libqueue` command.
//! - `fuzz`: entry points for the decoder fuzz targets.
//!
//! Opening a directory replays the segments in order, starting at the newest
//! complete checkpoint (older segments are superseded); the first damaged record
//! (torn, uncommitted, bad checksum, lost write, truncation, missing segment)
//! ends the replay — nothing after it is delivered — and is reported. Then the
//! live state (queue definitions and unacked persistent messages) is written as a
//! new checkpoint, synced, and the old segments are deleted (damaged ones are
//! moved to `damaged/` for inspection): disk use after an open is bounded by
//! live data.

pub(crate) mod codec;
#[doc(hidden)]
pub mod fuzz;
mod index;
mod inspect;
mod recover;
mod segment;
mod writer;

pub use inspect::{dump, filter_text, inspect, quotas_text, Inspection};
use recover::{header_valid, move_damaged, read_header, recover, Replayed};
use segment::{lock_dir, parse_seg_name, seg_name};
use writer::Writer;

use self::codec::{encode, kind, Dec, Enc, Malformed, Scan};
use crate::error::{Error, Result};
use crate::store::{Record, Storage};
use crate::types::Node;
use crate::types::QueueOptions;
use parking_lot::{Condvar, Mutex};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

/// When appended records reach the disk (they reach the page cache at once, so
/// every mode survives a crash of the process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// The OS writes back when it likes: survives a process crash, not a power cut.
    #[default]
    None,
    /// A background flush every interval: a machine crash loses at most that much.
    Interval(Duration),
    /// Every send returns after its record is on disk; concurrent senders share
    /// one flush (group commit). Survives a machine crash.
    Always,
}

/// Journal settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    /// Size of each preallocated segment file.
    pub segment_size: u64,
    /// When records reach the disk.
    pub sync: SyncMode,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            segment_size: 64 << 20,
            sync: SyncMode::None,
        }
    }
}

/// What opening a data directory found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Valid records replayed.
    pub records_read: u64,
    /// Queues defined.
    pub queues: u64,
    /// Unacked persistent messages brought back.
    pub messages_recovered: u64,
    /// Bytes not replayed because of damage (from the first bad record on).
    pub bytes_cut: u64,
    /// Segments with damage, or skipped because they follow it.
    pub segments_damaged: u64,
    /// What was wrong, one line per finding.
    pub damage: Vec<String>,
}

/// A queue definition found by recovery.
pub(crate) struct RecoveredQueue {
    pub namespace: String,
    pub queue: String,
    pub options: QueueOptions,
    /// Ids below this were used (and are never handed out again).
    pub next_id: u64,
}

/// A message found by recovery.
pub(crate) struct RecoveredMessage {
    /// Its queue: an index into [`Recovered::names`].
    pub queue: u32,
    pub node: Arc<Node>,
    pub deliver_at: Option<u64>,
}

/// A topic found by recovery, with its subscriptions (queue, filter) in
/// subscription order.
pub(crate) struct RecoveredTopic {
    pub namespace: String,
    pub topic: String,
    pub subs: Vec<(String, crate::types::Filter)>,
}

pub(crate) struct Recovered {
    pub queues: Vec<RecoveredQueue>,
    /// Namespaces with their latest quotas, in definition order.
    pub namespaces: Vec<(String, crate::types::Quotas)>,
    /// Topics in definition order.
    pub topics: Vec<RecoveredTopic>,
    /// `(namespace, queue)` of every queue a message names.
    pub names: Vec<(String, String)>,
    /// In the order they were sent.
    pub messages: Vec<RecoveredMessage>,
    pub report: RecoveryReport,
}

/// The journal storage backend.
pub struct Journal {
    w: Mutex<Writer>,
    /// Bytes known to be on disk; the flush mutex is where senders group.
    flushed: Mutex<u64>,
    sync: SyncMode,
    stop: Arc<(Mutex<bool>, Condvar)>,
    /// The data directory's lock; `None` once closed.
    lock: Mutex<Option<crate::sync::fork::Guarded<File>>>,
    dir: PathBuf,
    /// The process that opened it: a forked child never writes, syncs or
    /// closes it (the files, the lock and the threads are the parent's).
    origin: crate::sync::fork::Origin,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

fn io(what: &str, p: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{what} {}: {e}", p.display()))
}

impl Journal {
    /// Opens (creating if needed) a data directory: locks it, recovers, compacts.
    pub(crate) fn open(dir: &Path, opts: JournalOptions) -> Result<(Arc<Journal>, Recovered)> {
        if opts.segment_size < 4096 {
            return Err(Error::InvalidArgument(
                "journal segments must be at least 4096 bytes".into(),
            ));
        }
        // A new data directory is private to its user (0700): its socket
        // takes the same permissions, so no other user can attach.
        {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io("cannot create", dir, e))?;
        }
        let lock = crate::sync::fork::Guarded::new(lock_dir(dir)?);
        let r = recover(dir)?;
        let damaged = r.damaged();
        let Replayed {
            recovered,
            index,
            superseded,
            mut replayed,
            complete,
            last_seq,
        } = r;
        // Files without a valid header hold nothing replayable: move them aside
        // now, so the checkpoint's name is free even if one squats on it.
        replayed.retain(|(_, path, _)| {
            if read_header(path).is_some_and(|h| header_valid(&h)) {
                return true;
            }
            move_damaged(dir, path);
            false
        });
        let mut w = Writer {
            dir: dir.to_path_buf(),
            seg: None,
            seq: last_seq,
            seg_size: opts.segment_size as usize,
            written: 0,
            rolls: 0,
            closed: false,
            sync_dir: opts.sync == SyncMode::Always,
            index,
            rolled: false,
            next: None,
        };
        // A clean journal is taken as it is: appends continue in its newest
        // segment, nothing is rewritten (an open costs one replay). A damaged
        // one, one without a complete checkpoint, or one that is mostly dead
        // gets a checkpoint: the live records copied forward into a fresh
        // segment (flagged), closed by a CHECKPOINT record and synced before the
        // old segments go. Recovery starts at the newest complete checkpoint, so
        // leftovers never cut it.
        // Superseded (or never started) segments can go now: the newest complete
        // checkpoint covers them. (Their names must be free for the next segment.)
        for path in &superseded {
            let _ = fs::remove_file(path);
        }
        let continued = !damaged
            && complete
            && !w.index.wants_checkpoint()
            && replayed
                .last()
                .is_some_and(|(seq, path, _)| w.continue_segment(*seq, path).is_ok());
        if !continued {
            if let Err(e) = w.checkpoint() {
                // Leave nothing behind: the segments this attempt created hold
                // an incomplete checkpoint, and would pile up with each retry.
                w.seg = None;
                w.discard_prepared();
                for seq in last_seq.saturating_add(1)..=w.seq {
                    let _ = fs::remove_file(dir.join(seg_name(seq)));
                }
                return Err(e);
            }
            for (_, path, damaged) in replayed {
                if damaged {
                    move_damaged(dir, &path);
                } else {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all(); // the deletions and the new segment's name
        }
        let journal = Arc::new(Journal {
            w: Mutex::new(w),
            flushed: Mutex::new(0),
            sync: opts.sync,
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            lock: Mutex::new(Some(lock)),
            dir: dir.to_path_buf(),
            origin: crate::sync::fork::Origin::here(),
        });
        if let SyncMode::Interval(every) = opts.sync {
            let j = Arc::downgrade(&journal);
            let stop = journal.stop.clone();
            std::thread::Builder::new()
                .name("libqueue-journal-sync".into())
                .spawn(move || loop {
                    let mut s = stop.0.lock();
                    if !*s {
                        stop.1.wait_for(&mut s, every);
                    }
                    if *s {
                        return;
                    }
                    drop(s);
                    match j.upgrade() {
                        Some(j) => {
                            let _ = j.sync_all();
                        }
                        None => return,
                    }
                })
                .map_err(|e| Error::Io(format!("cannot start the journal sync thread: {e}")))?;
        }
        Ok((journal, recovered))
    }

    /// Flushes everything appended so far to disk (msync of the current segment;
    /// earlier segments were synced when they filled).
    fn sync_all(&self) -> Result<()> {
        self.sync_upto(None)
    }

    /// Returns once everything up to `end` (or everything, `None`) is on disk.
    ///
    /// Group commit: callers queue on the `flushed` mutex; the one holding it
    /// notes how far the segment is written (under the writer lock, briefly) and
    /// msyncs that range *without* the writer lock, so senders keep appending;
    /// each waiter then finds its record covered or flushes everything written
    /// meanwhile with a single msync.
    fn sync_upto(&self, end: Option<u64>) -> Result<()> {
        let mut flushed = self.flushed.lock();
        if end.is_some_and(|e| *flushed >= e) {
            return Ok(());
        }
        let (addr, len, written, rolls) = {
            let w = self.w.lock();
            match &w.seg {
                Some(seg) => (seg.map.as_ptr() as usize, seg.tail, w.written, w.rolls),
                None => {
                    *flushed = w.written;
                    return Ok(());
                }
            }
        };
        if *flushed >= written {
            return Ok(());
        }
        // SAFETY: `addr` is the page-aligned start of the current segment's
        // mapping and `len` its written length, read under the writer lock. msync
        // only asks the kernel to write those pages back; it reads or writes no
        // memory of ours. If a roll or close unmapped the segment meanwhile (after
        // syncing it itself), the call fails with ENOMEM and we check for that
        // below; if the range was mapped again by then, its pages are flushed,
        // which is harmless.
        let r = unsafe { libc::msync(addr as *mut libc::c_void, len, libc::MS_SYNC) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            let w = self.w.lock();
            if w.rolls == rolls {
                return Err(io("cannot sync", &w.dir, e));
            }
        }
        *flushed = written;
        Ok(())
    }
}

thread_local! {
    /// Each appending thread's encode buffer (small records; kept up to 64 KiB).
    static ENCODE_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Gives an encode buffer back to its thread when the append is done (also on
/// an error return).
struct ReturnBuf(Vec<u8>);

impl Drop for ReturnBuf {
    fn drop(&mut self) {
        if self.0.capacity() <= 64 << 10 {
            let v = std::mem::take(&mut self.0);
            let _ = ENCODE_BUF.try_with(|b| *b.borrow_mut() = v);
        }
    }
}

/// Bodies from this size on are encoded straight into the segment.
const DIRECT_MIN: usize = 4096;

/// Whether an append of `r` confirms something to the caller that must survive
/// a machine crash under `SyncMode::Always` (a send, a definition of a queue,
/// namespace, topic or subscription, an unsubscribe, a queue deletion, an id
/// reservation).
fn confirms(r: &Record<'_>) -> bool {
    match r {
        Record::Enqueued { .. }
        | Record::QueueDefined { .. }
        | Record::QueueDeleted { .. }
        | Record::NextId { .. }
        | Record::NamespaceDefined { .. }
        | Record::TopicDefined { .. }
        | Record::Subscribed { .. }
        | Record::Unsubscribed { .. } => true,
        Record::Group(rs) => rs.iter().any(confirms),
        _ => false,
    }
}

impl Storage for Journal {
    fn name(&self) -> &'static str {
        "journal"
    }

    fn append(&self, record: &Record<'_>) -> Result<()> {
        if self.origin.inherited() {
            return Err(Error::Forked);
        }
        // Large messages are encoded straight into the segment (one copy of the
        // body, under the writer lock); others into one pre-sized buffer first
        // (header space, payload encoded in place, header filled in), so the
        // lock is held only for the copy.
        let direct =
            matches!(record, Record::Enqueued { message, .. } if message.body.len() >= DIRECT_MIN);
        // The buffer is the thread's own, reused: no allocation per record.
        let mut e = Enc(ENCODE_BUF.with(|b| std::mem::take(&mut *b.borrow_mut())));
        if !direct {
            let hint = match record {
                Record::Enqueued { message, .. } => message.size as usize + 128,
                Record::Group(rs) => rs
                    .iter()
                    .map(|r| match r {
                        Record::Enqueued { message, .. } => message.size as usize + 133,
                        _ => 133,
                    })
                    .sum(),
                _ => 128,
            };
            e.0.clear();
            e.0.reserve(codec::framed_len(hint));
            e.0.resize(codec::RECORD_HEADER, 0);
            let k = encode(record, &mut e);
            if e.0.len() - codec::RECORD_HEADER > u32::MAX as usize {
                return Err(Error::InvalidArgument(
                    "a journal record must be under 4 GiB".into(),
                ));
            }
            codec::finish_frame(k, &mut e.0);
        }
        let e = ReturnBuf(e.0);
        let end = {
            let mut w = self.w.lock();
            let (seg, off, len) = if direct {
                w.write_encoded(record)?
            } else {
                let (seg, off) = w.write_framed(&e.0)?;
                (seg, off, e.0.len() as u32)
            };
            w.index.note(record, seg, off, len);
            let end = w.written;
            // Space comes back while running: when a segment fills and most of
            // the journal is dead, copy the live records forward and delete the
            // rest (this append waits for it; the copy is bounded by live data).
            if std::mem::take(&mut w.rolled) && w.index.wants_checkpoint() {
                if let Ok(old) = w.checkpoint() {
                    w.remove_segments(&old);
                }
            }
            end
        };
        // `Always` makes *sends* durable before they return. Acks, delivery
        // counts and removals ride along with the next flush: losing one to a
        // machine crash only redelivers a message (at-least-once).
        if self.sync == SyncMode::Always && confirms(record) {
            self.sync_upto(Some(end))?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        if self.origin.inherited() {
            return Err(Error::Forked);
        }
        self.sync_all()
    }

    fn durable(&self) -> bool {
        true
    }

    fn close(&self) {
        if self.origin.inherited_exact() {
            // A forked child's copy: the parent's files stay as they are (no
            // sync, no prepared segment removed, no thread joined, no lock
            // released); the child's descriptors and mappings go with it.
            return;
        }
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        let _ = self.sync_all();
        // Hold the writer while releasing, so no append lands after the unlock.
        let mut w = self.w.lock();
        w.closed = true;
        w.rolls += 1;
        w.seg = None;
        w.discard_prepared();
        self.lock.lock().take();
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}
