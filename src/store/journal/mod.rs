//! The journal: persistent messages in append-only, memory-mapped, checksummed
//! segment files (format: `docs/journal-format.md`).
//!
//! - `codec`: record framing (length, type, commit mark, CRC-32C) and payloads.
//! - this file: the data directory (lock, segments), appends with group commit,
//!   sync modes, and recovery.
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

use self::codec::{kind, Dec, Enc, Malformed, Scan};
use crate::engine::Node;
use crate::error::{Error, Result};
use crate::queue::QueueOptions;
use crate::store::{Record, RemoveReason, Storage};
use memmap2::MmapMut;
use parking_lot::{Condvar, Mutex};
use std::collections::BTreeMap;
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
}

/// A message found by recovery.
pub(crate) struct RecoveredMessage {
    pub namespace: String,
    pub queue: String,
    pub node: Node,
    pub deliver_at: Option<u64>,
}

pub(crate) struct Recovered {
    pub queues: Vec<RecoveredQueue>,
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
        let (recovered, mut old, last_seq) = recover(dir)?;
        // Files without a valid header hold nothing replayable: move them aside
        // now, so the checkpoint's name is free even if one squats on it.
        old.retain(|(path, _)| {
            if read_header(path).is_some_and(|h| header_valid(&h)) {
                return true;
            }
            move_damaged(dir, path);
            false
        });
        let journal = Arc::new(Journal {
            w: Mutex::new(Writer {
                dir: dir.to_path_buf(),
                seg: None,
                seq: last_seq,
                seg_size: opts.segment_size as usize,
                written: 0,
                rolls: 0,
                closed: false,
                sync_dir: opts.sync == SyncMode::Always,
            }),
            flushed: Mutex::new(0),
            sync: opts.sync,
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            lock: Mutex::new(Some(lock)),
            dir: dir.to_path_buf(),
        });
        // Checkpoint: the live state into a fresh segment (flagged), closed by a
        // CHECKPOINT record and synced before the old segments go. Recovery starts
        // at the newest complete checkpoint, so leftovers never cut it.
        journal.w.lock().roll(0, true)?;
        for q in &recovered.queues {
            journal.append(&Record::QueueDefined {
                namespace: &q.namespace,
                queue: &q.queue,
                options: &q.options,
            })?;
        }
        for m in &recovered.messages {
            journal.append(&Record::Enqueued {
                namespace: &m.namespace,
                queue: &m.queue,
                message: &m.node,
                deliver_at: m.deliver_at,
            })?;
        }
        let mut end = Vec::new();
        codec::frame(kind::CHECKPOINT, &[], &mut end);
        journal.append_bytes(&end)?;
        journal.sync_all()?;
        for (path, damaged) in old {
            if damaged {
                move_damaged(dir, &path);
            } else {
                let _ = fs::remove_file(&path);
            }
        }
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all(); // the deletions and the new segment's name
        }
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
                .map_err(|e| Error::Storage(format!("cannot start the sync thread: {e}")))?;
        }
        Ok((journal, recovered))
    }

    /// Appends one framed record; returns the byte position after it.
    fn append_bytes(&self, framed: &[u8]) -> Result<u64> {
        let mut w = self.w.lock();
        if w.closed {
            return Err(Error::Closed);
        }
        let need = framed.len();
        let fits = w.seg.as_ref().is_some_and(|s| s.tail + need <= s.map.len());
        if !fits {
            w.roll(need, false)?;
        }
        let seg = w.seg.as_mut().expect("rolled");
        let at = seg.tail;
        // Copy everything but the commit mark, then set it: a torn copy never
        // reads as committed.
        seg.map[at..at + 5].copy_from_slice(&framed[..5]);
        seg.map[at + 5] = 0;
        seg.map[at + 6..at + need].copy_from_slice(&framed[6..]);
        std::sync::atomic::fence(SeqCst);
        seg.map[at + 5] = codec::COMMITTED;
        seg.tail += need;
        w.written += need as u64;
        Ok(w.written)
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
        let path = self.dir.join(seg_name(seq));
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io("cannot create", &path, e))?;
        let sized = allocate(&file, size as u64);
        if let Err(e) = sized {
            let _ = fs::remove_file(&path);
            return Err(io("cannot allocate", &path, e));
        }
        // SAFETY: the file is ours (created just now, the directory is locked against
        // other writers) and stays open as long as the mapping, which is only
        // accessed through `Segment` under the writer mutex.
        let mut map = match unsafe { MmapMut::map_mut(&file) } {
            Ok(m) => m,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(io("cannot map", &path, e));
            }
        };
        let mut h = Vec::with_capacity(codec::SEGMENT_HEADER);
        h.extend_from_slice(codec::MAGIC);
        h.extend_from_slice(&codec::VERSION.to_le_bytes());
        h.extend_from_slice(&(codec::SEGMENT_HEADER as u32).to_le_bytes());
        h.extend_from_slice(&seq.to_le_bytes());
        h.resize(codec::SEGMENT_HEADER - 4, 0);
        h[codec::FLAGS_AT] = if checkpoint {
            codec::FLAG_CHECKPOINT
        } else {
            0
        };
        h[codec::SIZE_AT..codec::SIZE_AT + 8].copy_from_slice(&(size as u64).to_le_bytes());
        let crc = crc32c::crc32c(&h);
        h.extend_from_slice(&crc.to_le_bytes());
        map[..codec::SEGMENT_HEADER].copy_from_slice(&h);
        self.seg = Some(Segment {
            _file: file,
            map,
            tail: codec::SEGMENT_HEADER,
        });
        self.seq = seq;
        self.rolls += 1;
        if self.sync_dir {
            // The new file's name must survive a machine crash too.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

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
pub(crate) fn encode(r: &Record<'_>, e: &mut Enc) -> u8 {
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
                .opt_str(n.name.as_deref())
                .opt_str(n.correlation_id.as_deref())
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
    }
}

impl Storage for Journal {
    fn name(&self) -> &'static str {
        "journal"
    }

    fn append(&self, record: &Record<'_>) -> Result<()> {
        let mut e = Enc::default();
        let k = encode(record, &mut e);
        let mut framed = Vec::with_capacity(codec::framed_len(e.0.len()));
        codec::frame(k, &e.0, &mut framed);
        let end = self.append_bytes(&framed)?;
        // `Always` makes *sends* durable before they return. Acks, delivery
        // counts and removals ride along with the next flush: losing one to a
        // machine crash only redelivers a message (at-least-once).
        let confirms_a_send = matches!(
            record,
            Record::Enqueued { .. } | Record::QueueDefined { .. } | Record::QueueDeleted { .. }
        );
        if self.sync == SyncMode::Always && confirms_a_send {
            self.sync_upto(Some(end))?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.sync_all()
    }

    fn close(&self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        let _ = self.sync_all();
        // Hold the writer while releasing, so no append lands after the unlock.
        let mut w = self.w.lock();
        w.closed = true;
        w.rolls += 1;
        w.seg = None;
        self.lock.lock().take();
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

type Key = (String, String, u64);

struct Live {
    node: Node,
    deliver_at: Option<u64>,
    order: u64,
}

/// What a read-only look at a data directory finds (no lock taken, nothing
/// written: safe while a broker has the directory open).
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    /// The replay's findings, as an open would report them.
    pub report: RecoveryReport,
    /// Per queue (`namespace/queue`): unacked persistent messages and their bytes.
    pub queues: Vec<(String, u64, u64)>,
}

/// Replays `dir` read-only (see [`Inspection`]).
pub fn inspect(dir: &Path) -> Result<Inspection> {
    let (rec, _, _) = recover(dir)?;
    let mut per: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for q in &rec.queues {
        per.entry(format!("{}/{}", q.namespace, q.queue))
            .or_default();
    }
    for m in &rec.messages {
        let e = per
            .entry(format!("{}/{}", m.namespace, m.queue))
            .or_default();
        e.0 += 1;
        e.1 += m.node.size;
    }
    Ok(Inspection {
        report: rec.report,
        queues: per.into_iter().map(|(k, (n, b))| (k, n, b)).collect(),
    })
}

/// Writes one line per record of every segment file of `dir` (read-only), in
/// segment order, superseded ones included; stops at the first record that does
/// not decode. A listing for people; [`inspect`] gives recovery's verdict.
/// Returns the number of records.
pub fn dump(dir: &Path, out: &mut dyn std::io::Write) -> Result<u64> {
    let mut segs: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(|e| io("cannot list", dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            Some((
                parse_seg_name(&e.file_name().into_string().ok()?)?,
                e.path(),
            ))
        })
        .collect();
    segs.sort();
    let mut n = 0;
    let w = |out: &mut dyn std::io::Write, line: String| {
        writeln!(out, "{line}").map_err(|e| Error::Storage(format!("write: {e}")))
    };
    for (seq, path) in segs {
        let buf = fs::read(&path).map_err(|e| io("cannot read", &path, e))?;
        w(
            out,
            format!("segment {seq} ({}, {} bytes)", path.display(), buf.len()),
        )?;
        let mut off = codec::SEGMENT_HEADER;
        loop {
            match codec::scan(&buf, off) {
                Scan::End => break,
                Scan::Damaged(why) => {
                    w(out, format!("  @{off}: DAMAGED: {why}"))?;
                    return Ok(n);
                }
                Scan::Record {
                    kind: k,
                    payload,
                    next,
                } => {
                    n += 1;
                    w(out, format!("  @{off}: {}", describe(k, payload)))?;
                    off = next;
                }
            }
        }
    }
    Ok(n)
}

fn describe(k: u8, payload: &[u8]) -> String {
    if k == kind::CHECKPOINT {
        return "checkpoint complete (everything live is above)".into();
    }
    let mut d = Dec::new(payload);
    let r: Result<String, Malformed> = (|| {
        let ns = d.str()?;
        let q = d.str()?;
        Ok(match k {
            kind::QUEUE_DELETED => format!("delete queue {ns}/{q}"),
            kind::QUEUE_DEFINED => {
                format!("define {ns}/{q} [{}]", d.str()?.replace('\n', ", "))
            }
            kind::ENQUEUED => {
                let id = d.u64()?;
                let prio = d.u8()?;
                let _flags = d.u8()?;
                let _enq = d.u64()?;
                let exp = d.u64()?;
                let due = d.u64()?;
                let deliveries = d.u32()?;
                let name = d.opt_str()?;
                let _corr = d.opt_str()?;
                let headers = d.headers()?;
                let body = d.bytes()?;
                format!(
                    "enqueue {ns}/{q} id {id} prio {prio} name {} deliveries {deliveries}{}{} headers {} body {} bytes",
                    name.as_deref().unwrap_or("-"),
                    if exp != u64::MAX { format!(" expires {exp}") } else { String::new() },
                    if due != 0 { format!(" due {due}") } else { String::new() },
                    headers.len(),
                    body.len()
                )
            }
            kind::REMOVED => format!("remove {ns}/{q} id {} reason {}", d.u64()?, d.u8()?),
            kind::DELIVERED => format!("delivered {ns}/{q} id {} count {}", d.u64()?, d.u32()?),
            _ => "unknown".into(),
        })
    })();
    r.unwrap_or_else(|_| "undecodable payload".into())
}

/// Segment files replayed by recovery, each flagged when damaged.
type OldSegments = Vec<(PathBuf, bool)>;

/// Replays `dir` from its newest complete checkpoint. Returns the state, the
/// segment files to remove (flagged when damaged) and the number after which new
/// segments are numbered.
fn recover(dir: &Path) -> Result<(Recovered, OldSegments, u64)> {
    let mut segs: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(|e| io("cannot list", dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((parse_seg_name(&name)?, e.path()))
        })
        .collect();
    segs.sort();
    // Numbering continues after the newest segment with a valid header (a garbage
    // file with a huge number must not exhaust the numbers).
    let last_seq = segs
        .iter()
        .rev()
        .find(|(_, p)| read_header(p).is_some_and(|h| header_valid(&h)))
        .map_or(0, |s| s.0);
    // Start at the newest checkpoint that is complete; older segments are superseded.
    let flagged: Vec<usize> = (0..segs.len())
        .filter(|&i| checkpoint_flag(&segs[i].1))
        .collect();
    for &i in flagged.iter().rev() {
        let (rec, mut old, complete) = replay(&segs[i..])?;
        if complete {
            let mut superseded: OldSegments =
                segs[..i].iter().map(|(_, p)| (p.clone(), false)).collect();
            superseded.append(&mut old);
            return Ok((rec, superseded, last_seq));
        }
    }
    let (rec, old, _) = replay(&segs)?;
    Ok((rec, old, last_seq))
}

/// Whether a segment's (valid) header says it starts a checkpoint.
fn checkpoint_flag(path: &Path) -> bool {
    read_header(path)
        .is_some_and(|h| header_valid(&h) && h[codec::FLAGS_AT] & codec::FLAG_CHECKPOINT != 0)
}

/// Moves a damaged segment into `damaged/` (kept for inspection, never replayed).
fn move_damaged(dir: &Path, path: &Path) {
    let d = dir.join("damaged");
    let _ = fs::create_dir_all(&d);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_nanos());
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment");
    let _ = fs::rename(path, d.join(format!("{stamp}-{name}")));
}

fn read_header(path: &Path) -> Option<[u8; codec::SEGMENT_HEADER]> {
    use std::io::Read;
    let mut h = [0u8; codec::SEGMENT_HEADER];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut h))
        .ok()?;
    Some(h)
}

fn header_valid(buf: &[u8]) -> bool {
    buf.len() >= codec::SEGMENT_HEADER
        && &buf[..8] == codec::MAGIC
        && u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes")) == codec::VERSION
        && crc32c::crc32c(&buf[..codec::SEGMENT_HEADER - 4])
            == u32::from_le_bytes(
                buf[codec::SEGMENT_HEADER - 4..codec::SEGMENT_HEADER]
                    .try_into()
                    .expect("4 bytes"),
            )
}

/// Replays `segs` in order from an empty state; the flag says whether a
/// CHECKPOINT record was read before any damage.
fn replay(segs: &[(u64, PathBuf)]) -> Result<(Recovered, OldSegments, bool)> {
    let segs = segs.to_vec();
    let mut complete = false;
    let mut report = RecoveryReport::default();
    let mut queues: BTreeMap<(String, String), (u64, QueueOptions)> = BTreeMap::new();
    let mut live: BTreeMap<Key, Live> = BTreeMap::new();
    let mut order = 0u64;
    let mut old = Vec::new();
    let mut cut = false;
    let mut prev: Option<u64> = None;
    for (seq, path) in segs {
        if cut {
            report.segments_damaged += 1;
            report.bytes_cut += fs::metadata(&path).map_or(0, |m| m.len());
            old.push((path, true));
            continue;
        }
        if let Some(p) = prev {
            if seq != p + 1 {
                report
                    .damage
                    .push(format!("segments {} to {} are missing", p + 1, seq - 1));
                cut = true;
                report.segments_damaged += 1;
                report.bytes_cut += fs::metadata(&path).map_or(0, |m| m.len());
                old.push((path, true));
                continue;
            }
        }
        let first = prev.is_none();
        prev = Some(seq);
        let buf = fs::read(&path).map_err(|e| io("cannot read", &path, e))?;
        let name = path.display().to_string();
        if first && header_valid(&buf) && buf[codec::FLAGS_AT] & codec::FLAG_CHECKPOINT == 0 {
            // Every open starts the journal with a checkpoint: a first segment
            // without one means the segments before it are gone.
            report.damage.push(format!(
                "{name}: no checkpoint before it (earlier segments are missing); replaying what is left"
            ));
        }
        if !header_valid(&buf) {
            report.damage.push(format!("{name}: bad segment header"));
            report.segments_damaged += 1;
            report.bytes_cut += buf.len() as u64;
            cut = true;
            old.push((path, true));
            continue;
        }
        let mut off = codec::SEGMENT_HEADER;
        let mut damaged = false;
        let declared = u64::from_le_bytes(
            buf[codec::SIZE_AT..codec::SIZE_AT + 8]
                .try_into()
                .expect("8 bytes"),
        );
        // Bytes past the size the segment was created with are not part of it.
        let buf = &buf[..buf
            .len()
            .min(declared.max(codec::SEGMENT_HEADER as u64) as usize)];
        loop {
            match codec::scan(buf, off) {
                Scan::End if (buf.len() as u64) < declared => {
                    report.damage.push(format!(
                        "{name}: truncated to {} of {declared} bytes",
                        buf.len()
                    ));
                    damaged = true;
                    break;
                }
                Scan::End => break,
                Scan::Damaged(why) => {
                    report.damage.push(format!("{name} at byte {off}: {why}"));
                    damaged = true;
                    break;
                }
                Scan::Record {
                    kind: k,
                    payload,
                    next,
                } => {
                    order += 1;
                    if k == kind::CHECKPOINT {
                        complete = true;
                    }
                    if apply(k, payload, order, &mut queues, &mut live).is_err() {
                        report
                            .damage
                            .push(format!("{name} at byte {off}: undecodable payload"));
                        damaged = true;
                        break;
                    }
                    report.records_read += 1;
                    off = next;
                }
            }
        }
        if damaged {
            // Count what follows the bad record up to the zeros at the end.
            let written = buf.iter().rposition(|b| *b != 0).map_or(off, |p| p + 1);
            report.bytes_cut += written.saturating_sub(off) as u64;
            report.segments_damaged += 1;
            cut = true;
        }
        old.push((path, damaged));
    }
    let mut qs: Vec<_> = queues.into_iter().collect();
    qs.sort_by_key(|(_, (o, _))| *o);
    let queues: Vec<RecoveredQueue> = qs
        .into_iter()
        .map(|((namespace, queue), (_, options))| RecoveredQueue {
            namespace,
            queue,
            options,
        })
        .collect();
    let mut ms: Vec<_> = live.into_iter().collect();
    ms.sort_by_key(|(_, l)| l.order);
    let messages: Vec<RecoveredMessage> = ms
        .into_iter()
        .map(|((namespace, queue, _), l)| RecoveredMessage {
            namespace,
            queue,
            node: l.node,
            deliver_at: l.deliver_at,
        })
        .collect();
    report.queues = queues.len() as u64;
    report.messages_recovered = messages.len() as u64;
    Ok((
        Recovered {
            queues,
            messages,
            report,
        },
        old,
        complete,
    ))
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

fn apply(
    k: u8,
    payload: &[u8],
    order: u64,
    queues: &mut BTreeMap<(String, String), (u64, QueueOptions)>,
    live: &mut BTreeMap<Key, Live>,
) -> Result<(), Malformed> {
    if k == kind::CHECKPOINT {
        return Ok(());
    }
    let mut d = Dec::new(payload);
    let ns = d.str()?;
    let q = d.str()?;
    match k {
        kind::QUEUE_DEFINED => {
            let opts = QueueOptions::from_text(&d.str()?).map_err(|_| Malformed)?;
            // The latest definition wins (a queue deleted and created again).
            queues.insert((ns, q), (order, opts));
        }
        kind::QUEUE_DELETED => {
            live.retain(|(n, qq, _), _| !(n == &ns && qq == &q));
            queues.remove(&(ns, q));
        }
        kind::ENQUEUED => {
            let id = d.u64()?;
            let priority = d.u8()?;
            let persistent = d.u8()? != 0;
            let enqueued_at = d.u64()?;
            let expires_at = d.u64()?;
            let deliver_at = d.u64()?;
            let deliveries = d.u32()?;
            let name = d.opt_str()?;
            let corr = d.opt_str()?;
            let headers = d.headers()?;
            let body = d.bytes()?;
            let size = crate::message::size_of(&body, &headers, name.as_deref(), corr.as_deref());
            let node = Node {
                id,
                priority: priority.min(crate::MAX_PRIORITY),
                persistent,
                body: body.into_boxed_slice(),
                headers: (!headers.is_empty()).then(|| Box::new(headers)),
                name: name.map(String::into_boxed_str),
                correlation_id: corr.map(String::into_boxed_str),
                enqueued_at,
                expires_at,
                size,
                deliveries: AtomicU32::new(deliveries),
            };
            live.insert(
                (ns, q, id),
                Live {
                    node,
                    deliver_at: (deliver_at != 0).then_some(deliver_at),
                    order,
                },
            );
        }
        kind::REMOVED => {
            let id = d.u64()?;
            let _reason = d.u8()?;
            live.remove(&(ns, q, id));
        }
        kind::DELIVERED => {
            let id = d.u64()?;
            let n = d.u32()?;
            if let Some(l) = live.get_mut(&(ns, q, id)) {
                l.node.deliveries.store(n, SeqCst);
                // Redelivered messages are ready, whatever their original delay.
                l.deliver_at = None;
            }
        }
        _ => return Err(Malformed),
    }
    Ok(())
}
