//! The writer: appends framed records to the current segment, rolls to the
//! next one (prepared ahead on a helper thread), continues a clean journal's
//! newest segment on open, and writes checkpoints (the live records copied
//! forward into a fresh segment) so disk use stays bounded by live data.

use super::codec::encode;
use super::codec::{self, kind, Enc};
use super::index::{Index, SegStat};
use super::io;
use super::recover::{map_segment, read_header};
use super::segment::{create_segment, seg_name, Prepared, Segment};
use crate::error::{Error, Result};
use crate::store::Record;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::SeqCst;

/// The appending side of a journal, behind `Journal`'s writer mutex.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) seg: Option<Segment>,
    pub(super) seq: u64,
    pub(super) seg_size: usize,
    /// Bytes appended since open (all segments).
    pub(super) written: u64,
    /// Segments rolled or closed so far (a sync tells a concurrent unmap apart).
    pub(super) rolls: u64,
    pub(super) closed: bool,
    /// Sync the directory when a segment is created (sync mode `Always`).
    pub(super) sync_dir: bool,
    /// What is live, and where.
    pub(super) index: Index,
    /// A segment filled since the last look at whether to checkpoint.
    pub(super) rolled: bool,
    /// The next segment, being prepared by a helper thread.
    pub(super) next: Option<std::thread::JoinHandle<Result<Prepared>>>,
}

impl Writer {
    /// Appends one framed record; returns its segment and offset.
    pub(super) fn write_framed(&mut self, framed: &[u8]) -> Result<(u64, u64)> {
        self.write_with(framed.len(), |b| {
            b[..5].copy_from_slice(&framed[..5]);
            b[6..].copy_from_slice(&framed[6..]);
        })
    }

    /// Encodes a record straight into the segment; returns its segment, offset
    /// and framed length.
    pub(super) fn write_encoded(&mut self, record: &Record<'_>) -> Result<(u64, u64, u32)> {
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
    pub(super) fn write_with(
        &mut self,
        need: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(u64, u64)> {
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
    pub(super) fn continue_segment(&mut self, seq: u64, path: &Path) -> Result<()> {
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
    pub(super) fn checkpoint(&mut self) -> Result<Vec<u64>> {
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
    pub(super) fn remove_segments(&self, seqs: &[u64]) {
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
    pub(super) fn roll(&mut self, need: usize, checkpoint: bool) -> Result<()> {
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
    pub(super) fn prepare_next(&mut self) {
        let (dir, size, seq) = (self.dir.clone(), self.seg_size, self.seq + 1);
        self.next = std::thread::Builder::new()
            .name("libqueue-journal-prepare".into())
            .spawn(move || create_segment(&dir, seq, size))
            .ok();
    }

    /// Waits for a segment being prepared and deletes it (it holds nothing).
    pub(super) fn discard_prepared(&mut self) {
        if let Some(Ok(Ok(p))) = self.next.take().map(|h| h.join()) {
            drop(p.map);
            let _ = fs::remove_file(self.dir.join(seg_name(p.seq)));
        }
    }
}
