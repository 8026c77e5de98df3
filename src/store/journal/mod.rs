//! The journal: persistent messages in append-only, memory-mapped, checksummed
//! segment files (format: `docs/journal-format.md`).
//!
//! - `codec`: record framing (length, type, commit mark, CRC-32C) and payloads.
//! - `recover`: replay, damage detection, `inspect` and `dump`.
//! - this file: the data directory (lock, segments), appends with group commit,
//!   sync modes, compaction on open.
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
mod recover;

use index::{Index, SegStat};
pub use recover::{dump, filter_text, inspect, quotas_text, Inspection};
use recover::{header_valid, map_segment, move_damaged, read_header, recover, Replayed};

use self::codec::{kind, Dec, Enc, Malformed, Scan};
use crate::error::{Error, Result};
use crate::store::{Record, RemoveReason, Storage};
use crate::types::Node;
use crate::types::QueueOptions;
use memmap2::MmapMut;
use parking_lot::{Condvar, Mutex};
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
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
    pub node: Node,
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

struct Segment {
    _file: File,
    map: MmapMut,
    tail: usize,
}

struct Writer {
    dir: PathBuf,
    seg: Option<Segment>,
    seq: u64,
    seg_size: usize,
    /// Bytes appended since open (all segments).
    written: u64,
    /// Segments rolled or closed so far (a sync tells a concurrent unmap apart).
    rolls: u64,
    closed: bool,
    /// Sync the directory when a segment is created (sync mode `Always`).
    sync_dir: bool,
    /// What is live, and where.
    index: Index,
    /// A segment filled since the last look at whether to checkpoint.
    rolled: bool,
    /// The next segment, being prepared by a helper thread.
    next: Option<std::thread::JoinHandle<Result<Prepared>>>,
}

/// The journal storage backend.
pub struct Journal {
    w: Mutex<Writer>,
    /// Bytes known to be on disk; the flush mutex is where senders group.
    flushed: Mutex<u64>,
    sync: SyncMode,
    stop: Arc<(Mutex<bool>, Condvar)>,
    /// The data directory's lock; `None` once closed.
    lock: Mutex<Option<File>>,
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

fn seg_name(seq: u64) -> String {
    format!("seg-{seq:016x}.lqj")
}

/// Only canonical names (exactly 16 lowercase hex digits) are segments.
fn parse_seg_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".lqj")?;
    let seq = u64::from_str_radix(hex, 16).ok()?;
    (seg_name(seq) == name).then_some(seq)
}

/// Takes the data directory's write lock (flock on `LOCK`).
fn lock_dir(dir: &Path) -> Result<File> {
    let p = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&p)
        .map_err(|e| io("cannot open", &p, e))?;
    // A lock being released can stay held for a moment: a child process the host
    // is spawning shares the descriptor until its exec closes it. Wait up to
    // 200 ms before calling the directory locked.
    let give_up = std::time::Instant::now() + Duration::from_millis(200);
    loop {
        // SAFETY: flock takes a descriptor we own (open for the duration) and flags.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(f);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io("cannot lock", &p, e));
        }
        if std::time::Instant::now() >= give_up {
            return Err(Error::Locked(dir.display().to_string()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Journal {
    /// Opens (creating if needed) a data directory: locks it, recovers, compacts.
    pub(crate) fn open(dir: &Path, opts: JournalOptions) -> Result<(Arc<Journal>, Recovered)> {
        if opts.segment_size < 4096 {
            return Err(Error::InvalidArgument(
                "journal segments must be at least 4096 bytes".into(),
            ));
        }
        fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        let lock = lock_dir(dir)?;
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

impl Writer {
    /// Appends one framed record; returns its segment and offset.
    fn write_framed(&mut self, framed: &[u8]) -> Result<(u64, u64)> {
        self.write_with(framed.len(), |b| {
            b[..5].copy_from_slice(&framed[..5]);
            b[6..].copy_from_slice(&framed[6..]);
        })
    }

    /// Encodes a record straight into the segment; returns its segment, offset
    /// and framed length.
    fn write_encoded(&mut self, record: &Record<'_>) -> Result<(u64, u64, u32)> {
        let mut count = Enc(codec::Count(0));
        let k = encode(record, &mut count);
        let len = count.0 .0;
        let framed = codec::framed_len(len);
        let (seg, off) = self.write_with(framed, |b| {
            let (h, rest) = b.split_at_mut(codec::RECORD_HEADER);
            let (payload, pad) = rest.split_at_mut(len);
            encode(
                record,
                &mut Enc(codec::Slice {
                    buf: payload,
                    pos: 0,
                }),
            );
            pad.fill(0);
            let crc = codec::record_crc(len as u32, k, payload);
            h[0..4].copy_from_slice(&(len as u32).to_le_bytes());
            h[4] = k;
            h[6..8].copy_from_slice(&[0, 0]);
            h[8..12].copy_from_slice(&crc.to_le_bytes());
        })?;
        Ok((seg, off, framed as u32))
    }

    /// Reserves `need` bytes at the segment's tail, lets `fill` write the
    /// record there (all but its commit mark, byte 5, which is 0 meanwhile), then
    /// commits it: a torn write never reads as committed.
    fn write_with(&mut self, need: usize, fill: impl FnOnce(&mut [u8])) -> Result<(u64, u64)> {
        if self.closed {
            return Err(Error::Closed);
        }
        let fits = self
            .seg
            .as_ref()
            .is_some_and(|s| s.tail + need <= s.map.len());
        if !fits {
            self.roll(need, false)?;
        }
        let seg = self.seg.as_mut().expect("rolled");
        let at = seg.tail;
        fill(&mut seg.map[at..at + need]);
        seg.map[at + 5] = 0; // uncommitted until the fence below
        std::sync::atomic::fence(SeqCst);
        seg.map[at + 5] = codec::COMMITTED;
        seg.tail += need;
        self.written += need as u64;
        let half_full = seg.tail * 2 > seg.map.len();
        let tail = seg.tail as u64;
        if let Some(st) = self.index.segs.get_mut(&self.seq) {
            st.used = tail;
        }
        if half_full && self.next.is_none() {
            self.prepare_next();
        }
        Ok((self.seq, at as u64))
    }

    /// Takes up the newest segment of a clean journal again, appending after
    /// its last record.
    fn continue_segment(&mut self, seq: u64, path: &Path) -> Result<()> {
        let used = self
            .index
            .segs
            .get(&seq)
            .map(|s| s.used)
            .ok_or(Error::Closed)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io("cannot open", path, e))?;
        let h = read_header(path).ok_or(Error::Closed)?;
        // Records of this format go into segments of this format only: an
        // older version's segment gets a checkpoint instead.
        if u32::from_le_bytes(h[8..12].try_into().expect("4 bytes")) != codec::VERSION {
            return Err(Error::Storage(format!("{}: older format", path.display())));
        }
        let size = u64::from_le_bytes(
            h[codec::SIZE_AT..codec::SIZE_AT + 8]
                .try_into()
                .expect("8 bytes"),
        );
        let len = file
            .metadata()
            .map_err(|e| io("cannot stat", path, e))?
            .len();
        if len < size || used > size {
            return Err(Error::Storage(format!("{}: size changed", path.display())));
        }
        // SAFETY: as in `roll`: the file is a segment of our locked directory,
        // mapped for its declared size (which it has), and only accessed through
        // `Segment` under the writer mutex.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .len(size as usize)
                .map_mut(&file)
        }
        .map_err(|e| io("cannot map", path, e))?;
        self.seg = Some(Segment {
            _file: file,
            map,
            tail: used as usize,
        });
        self.seq = seq;
        Ok(())
    }

    /// Writes a checkpoint: every namespace (with its quotas), every queue
    /// definition (with its next id), every topic with its subscriptions, and a copy
    /// of every live `Enqueued` record (followed by its delivery count when it
    /// changed), in their original order, into a fresh flagged segment, then a
    /// CHECKPOINT record, synced. Returns the segments it supersedes (forgotten
    /// by the index; the caller deletes them).
    fn checkpoint(&mut self) -> Result<Vec<u64>> {
        let old: Vec<u64> = self.index.segs.keys().copied().collect();
        let mut maps = std::collections::HashMap::new();
        for (&seq, st) in &self.index.segs {
            if st.live > 0 {
                let path = self.dir.join(seg_name(seq));
                let map = map_segment(&path)?
                    .ok_or_else(|| Error::Storage(format!("{}: empty", path.display())))?;
                maps.insert(seq, map);
            }
        }
        self.roll(0, true)?;
        let mut e = Enc(Vec::new());
        // Namespaces first (the queues' quotas), then the queues, then the
        // topics with their subscriptions.
        let framed = |r: &Record<'_>| {
            let mut e = Enc(vec![0u8; codec::RECORD_HEADER]);
            let k = encode(r, &mut e);
            codec::finish_frame(k, &mut e.0);
            e.0
        };
        let defs_before: Vec<Vec<u8>> = (self.index.defs.namespaces.iter())
            .map(|(ns, quotas)| {
                framed(&Record::NamespaceDefined {
                    namespace: ns,
                    quotas,
                })
            })
            .collect();
        let mut defs_after = Vec::new();
        for t in &self.index.defs.topics {
            defs_after.push(framed(&Record::TopicDefined {
                namespace: &t.namespace,
                topic: &t.topic,
            }));
            for (q, filter) in &t.subs {
                defs_after.push(framed(&Record::Subscribed {
                    namespace: &t.namespace,
                    topic: &t.topic,
                    queue: q,
                    filter,
                }));
            }
        }
        for f in &defs_before {
            self.write_framed(f)?;
        }
        let mut defs: Vec<usize> = (0..self.index.queues.len())
            .filter(|&i| self.index.queues[i].options.is_some())
            .collect();
        defs.sort_by_key(|&i| self.index.queues[i].def_order);
        for i in defs {
            let q = &self.index.queues[i];
            e.0.clear();
            e.0.resize(codec::RECORD_HEADER, 0);
            let record = Record::QueueDefined {
                namespace: &q.namespace,
                queue: &q.queue,
                options: q.options.as_ref().expect("defined"),
            };
            // A checkpoint's definition ends with the queue's next id.
            let k = encode(&record, &mut e);
            e.u64(q.next_id);
            codec::finish_frame(k, &mut e.0);
            self.write_framed(&e.0)?;
        }
        for framed in &defs_after {
            self.write_framed(framed)?;
        }
        let mut live: Vec<(u64, u64, u32, u64)> = Vec::with_capacity(self.index.live_msgs as usize);
        for (qi, q) in self.index.queues.iter().enumerate() {
            for (id, loc) in &q.msgs {
                live.push((loc.seg, loc.off, qi as u32, *id));
            }
        }
        live.sort_unstable();
        for (seg, off, q, id) in live {
            let loc = *self.index.get(q, id).expect("live");
            let map = maps.get(&seg).map_or(&[][..], |m| &m[..]);
            let outside = || Error::Storage(format!("live record outside segment {seg}"));
            let (nseg, noff, nlen) = if loc.embedded {
                // A group member: framed as a record of its own.
                let payload = map
                    .get(off as usize..off as usize + loc.len as usize)
                    .ok_or_else(outside)?;
                e.0.clear();
                codec::frame(kind::ENQUEUED, payload, &mut e.0);
                let (s, o) = self.write_framed(&e.0)?;
                (s, o, e.0.len() as u32)
            } else {
                // Byte for byte, up to the end of its payload: replay took the
                // record even if the file ends inside its padding (a truncated
                // segment), and the padding is zeros.
                let start = off as usize;
                let plen = map
                    .get(start..start + codec::RECORD_HEADER)
                    .map(|h| u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as usize)
                    .ok_or_else(outside)?;
                let end = start + codec::RECORD_HEADER + plen;
                if codec::framed_len(plen) != loc.len as usize {
                    return Err(outside());
                }
                let src = map.get(start..end).ok_or_else(outside)?;
                let (s, o) = self.write_with(loc.len as usize, |b| {
                    let (head, pad) = b.split_at_mut(src.len());
                    head[..5].copy_from_slice(&src[..5]);
                    head[6..].copy_from_slice(&src[6..]);
                    pad.fill(0);
                })?;
                (s, o, loc.len)
            };
            self.index.relocate(q, id, nseg, noff, nlen);
            if loc.delivered {
                let qe = &self.index.queues[q as usize];
                e.0.clear();
                e.0.resize(codec::RECORD_HEADER, 0);
                let record = Record::Delivered {
                    namespace: &qe.namespace,
                    queue: &qe.queue,
                    id,
                    deliveries: loc.deliveries,
                };
                let k = encode(&record, &mut e);
                codec::finish_frame(k, &mut e.0);
                self.write_framed(&e.0)?;
            }
        }
        e.0.clear();
        codec::frame(kind::CHECKPOINT, &[], &mut e.0);
        self.write_framed(&e.0)?;
        if let Some(seg) = &self.seg {
            seg.map
                .flush_range(0, seg.tail)
                .map_err(|e| io("cannot sync", &self.dir, e))?;
        }
        for s in &old {
            self.index.segs.remove(s);
        }
        Ok(old)
    }

    /// Deletes superseded segment files.
    fn remove_segments(&self, seqs: &[u64]) {
        for &seq in seqs {
            let _ = fs::remove_file(self.dir.join(seg_name(seq)));
        }
        if self.sync_dir {
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
    }

    /// Closes the current segment (synced) and starts the next, big enough for `need`.
    fn roll(&mut self, need: usize, checkpoint: bool) -> Result<()> {
        if let Some(seg) = self.seg.take() {
            seg.map
                .flush_range(0, seg.tail)
                .map_err(|e| io("cannot sync", &self.dir, e))?;
        }
        // The number advances only once the file exists, sized and mapped: a
        // failure leaves no gap for recovery to cut at.
        let seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| Error::Storage("journal segment numbers exhausted".into()))?;
        let size = self.seg_size.max(codec::SEGMENT_HEADER + need);
        // The next segment is usually ready: created, preallocated and its
        // pages faulted in by a helper thread while this one filled.
        let ready = self
            .next
            .take()
            .and_then(|h| h.join().ok())
            .and_then(|r| r.ok());
        let (file, mut map) = match ready {
            Some(p) if p.seq == seq && p.map.len() >= size => (p.file, p.map),
            other => {
                if let Some(p) = other {
                    let _ = fs::remove_file(self.dir.join(seg_name(p.seq)));
                }
                let p = create_segment(&self.dir, seq, size)?;
                (p.file, p.map)
            }
        };
        map[..codec::SEGMENT_HEADER].copy_from_slice(&codec::segment_header(
            seq,
            size as u64,
            checkpoint,
        ));
        self.seg = Some(Segment {
            _file: file,
            map,
            tail: codec::SEGMENT_HEADER,
        });
        self.seq = seq;
        self.rolls += 1;
        self.index.segs.insert(
            seq,
            SegStat {
                used: codec::SEGMENT_HEADER as u64,
                live: 0,
            },
        );
        self.rolled |= !checkpoint;
        if self.sync_dir {
            // The new file's name must survive a machine crash too.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Starts preparing the segment after the current one on a helper thread,
    /// once the current one is half full (a broker that appends little never
    /// prepares one). Until it gets its header it is all zeros: a crash leaves
    /// it as a segment that never started (deleted on open).
    fn prepare_next(&mut self) {
        let (dir, size, seq) = (self.dir.clone(), self.seg_size, self.seq + 1);
        self.next = std::thread::Builder::new()
            .name("libqueue-journal-prepare".into())
            .spawn(move || create_segment(&dir, seq, size))
            .ok();
    }

    /// Waits for a segment being prepared and deletes it (it holds nothing).
    fn discard_prepared(&mut self) {
        if let Some(Ok(Ok(p))) = self.next.take().map(|h| h.join()) {
            drop(p.map);
            let _ = fs::remove_file(self.dir.join(seg_name(p.seq)));
        }
    }
}

/// A created, preallocated and mapped segment file, without a header yet.
struct Prepared {
    seq: u64,
    file: File,
    map: MmapMut,
}

/// Creates segment `seq` of `size` bytes: preallocated, mapped, its pages
/// faulted in for writing (so the appends that fill it do not stop for page
/// faults).
fn create_segment(dir: &Path, seq: u64, size: usize) -> Result<Prepared> {
    let path = dir.join(seg_name(seq));
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io("cannot create", &path, e))?;
    if let Err(e) = allocate(&file, size as u64) {
        let _ = fs::remove_file(&path);
        return Err(io("cannot allocate", &path, e));
    }
    // SAFETY: the file is ours (created just now, the directory is locked against
    // other writers) and stays open as long as the mapping, which is only
    // accessed through `Segment` under the writer mutex once it is taken.
    match unsafe { memmap2::MmapOptions::new().map_mut(&file) } {
        Ok(map) => {
            // Fault every page in *writable*, here on the preparing thread: a
            // shared file mapping populated for reading (MAP_POPULATE) still
            // takes a write fault (page_mkwrite, block mapping) per page at the
            // first append, which was most of a 64 KiB append's time. Linux
            // 5.14+; on an older kernel the appends fault the pages in instead.
            if map.advise(memmap2::Advice::PopulateWrite).is_err() {
                let _ = map.advise(memmap2::Advice::WillNeed);
            }
            Ok(Prepared { seq, file, map })
        }
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(io("cannot map", &path, e))
        }
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

fn reason_code(r: RemoveReason) -> u8 {
    match r {
        RemoveReason::Acked => 1,
        RemoveReason::Expired => 2,
        RemoveReason::DeadLettered => 3,
        RemoveReason::Cancelled => 4,
        RemoveReason::Purged => 5,
        RemoveReason::QueueDeleted => 6,
    }
}

/// Encodes a record's payload; returns its type.
pub(crate) fn encode<W: codec::Out>(r: &Record<'_>, e: &mut Enc<W>) -> u8 {
    match r {
        Record::QueueDefined {
            namespace,
            queue,
            options,
        } => {
            e.str(namespace).str(queue).str(&options.to_text());
            kind::QUEUE_DEFINED
        }
        Record::Enqueued {
            namespace,
            queue,
            message: n,
            deliver_at,
        } => {
            e.str(namespace)
                .str(queue)
                .u64(n.id)
                .u8(n.priority)
                .u8(n.persistent as u8)
                .u64(n.enqueued_at)
                .u64(n.expires_at)
                .u64(deliver_at.unwrap_or(0))
                .u32(n.deliveries.load(SeqCst))
                .opt_str(n.name())
                .opt_str(n.correlation_id())
                .headers(n.headers())
                .bytes(&n.body);
            kind::ENQUEUED
        }
        Record::QueueDeleted { namespace, queue } => {
            e.str(namespace).str(queue);
            kind::QUEUE_DELETED
        }
        Record::Removed {
            namespace,
            queue,
            id,
            reason,
        } => {
            e.str(namespace)
                .str(queue)
                .u64(*id)
                .u8(reason_code(*reason));
            kind::REMOVED
        }
        Record::Delivered {
            namespace,
            queue,
            id,
            deliveries,
        } => {
            e.str(namespace).str(queue).u64(*id).u32(*deliveries);
            kind::DELIVERED
        }
        Record::Group(records) => {
            // count, then per record: type, payload length, payload.
            e.u32(records.len() as u32);
            for r in records.iter() {
                debug_assert!(!matches!(r, Record::Group(_)), "a group holds no group");
                let mut count = Enc(codec::Count(0));
                let k = encode(r, &mut count);
                e.u8(k).u32(count.0 .0 as u32);
                encode(r, e);
            }
            kind::GROUP
        }
        Record::NextId {
            namespace,
            queue,
            next_id,
        } => {
            e.str(namespace).str(queue).u64(*next_id);
            kind::NEXT_ID
        }
        Record::NamespaceDefined { namespace, quotas } => {
            e.str(namespace).quotas(quotas);
            kind::NAMESPACE_DEFINED
        }
        Record::TopicDefined { namespace, topic } => {
            e.str(namespace).str(topic);
            kind::TOPIC_DEFINED
        }
        Record::Subscribed {
            namespace,
            topic,
            queue,
            filter,
        } => {
            e.str(namespace).str(topic).str(queue).filter(filter);
            kind::SUBSCRIBED
        }
        Record::Unsubscribed {
            namespace,
            topic,
            queue,
        } => {
            e.str(namespace).str(topic).str(queue);
            kind::UNSUBSCRIBED
        }
    }
}

/// Bytes before a group member's payload: its type (u8) and length (u32).
pub(crate) const MEMBER_HEADER: usize = 5;
/// Bytes before a group's first member: its count (u32).
pub(crate) const GROUP_HEADER: usize = 4;

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

/// Reserves the file's blocks (so a full disk is an error now, not a SIGBUS on
/// a later write to the mapping); falls back to a sparse size where the file
/// system cannot preallocate.
fn allocate(file: &File, size: u64) -> std::io::Result<()> {
    // SAFETY: posix_fallocate takes a descriptor we own and plain integers.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) };
    match r {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(size),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}
