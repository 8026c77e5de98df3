//! Reading a data directory: replay from the newest complete checkpoint, damage
//! detection and reporting, and decoding record payloads (`decode`). The
//! read-only `inspect` / `dump` of the CLI build on it (`inspect.rs`).

use super::*;

use super::index::{Index, Loc, QueueEntry, SegStat};
use crate::types::Filter;
use crate::types::Quotas;
use std::sync::atomic::Ordering::Relaxed;

/// What a replay of a data directory found.
pub(crate) struct Replayed {
    pub recovered: Recovered,
    /// The live state's index (segments replayed, live records, queues).
    pub index: Index,
    /// Segments older than the checkpoint the replay started at: superseded.
    pub superseded: Vec<PathBuf>,
    /// Segments replayed (or skipped after damage), in order, flagged when damaged.
    pub replayed: Vec<(u64, PathBuf, bool)>,
    /// A CHECKPOINT record was read before any damage.
    pub complete: bool,
    /// The number after which new segments are numbered.
    pub last_seq: u64,
}

impl Replayed {
    /// Whether anything was damaged (or missing).
    pub fn damaged(&self) -> bool {
        self.recovered.report.segments_damaged > 0 || !self.recovered.report.damage.is_empty()
    }
}

/// Replays `dir` from its newest complete checkpoint.
pub(crate) fn recover(dir: &Path) -> Result<Replayed> {
    let mut segs: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(|e| io("cannot list", dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((parse_seg_name(&name)?, e.path()))
        })
        .collect();
    segs.sort();
    // A crash while a segment was being created leaves it all zeros (no header
    // yet): it never held a record, so it is not damage; it goes with the
    // superseded ones.
    let mut unstarted = Vec::new();
    while let Some((_, path)) = segs.last() {
        let zeros = map_segment(path)
            .ok()
            .is_some_and(|m| m.as_deref().unwrap_or(&[]).iter().all(|b| *b == 0));
        if !zeros {
            break;
        }
        unstarted.push(segs.pop().expect("last").1);
    }
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
        let mut r = replay(&segs[i..])?;
        if r.complete {
            r.superseded = segs[..i].iter().map(|(_, p)| p.clone()).collect();
            r.superseded.append(&mut unstarted);
            r.last_seq = last_seq;
            return Ok(r);
        }
    }
    let mut r = replay(&segs)?;
    r.superseded = unstarted;
    r.last_seq = last_seq;
    Ok(r)
}

/// Whether a segment's (valid) header says it starts a checkpoint.
fn checkpoint_flag(path: &Path) -> bool {
    read_header(path)
        .is_some_and(|h| header_valid(&h) && h[codec::FLAGS_AT] & codec::FLAG_CHECKPOINT != 0)
}

/// Moves a damaged segment into `damaged/` (kept for inspection, never replayed).
pub(super) fn move_damaged(dir: &Path, path: &Path) {
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

pub(super) fn read_header(path: &Path) -> Option<[u8; codec::SEGMENT_HEADER]> {
    use std::io::Read;
    let mut h = [0u8; codec::SEGMENT_HEADER];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut h))
        .ok()?;
    Some(h)
}

pub(super) fn header_valid(buf: &[u8]) -> bool {
    buf.len() >= codec::SEGMENT_HEADER
        && &buf[..8] == codec::MAGIC
        && (codec::MIN_VERSION..=codec::VERSION)
            .contains(&u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes")))
        && crc32c::crc32c(&buf[..codec::SEGMENT_HEADER - 4])
            == u32::from_le_bytes(
                buf[codec::SEGMENT_HEADER - 4..codec::SEGMENT_HEADER]
                    .try_into()
                    .expect("4 bytes"),
            )
}

/// Maps a segment file read-only.
pub(super) fn map_segment(path: &Path) -> Result<Option<memmap2::Mmap>> {
    let f = File::open(path).map_err(|e| io("cannot open", path, e))?;
    let len = f.metadata().map_err(|e| io("cannot stat", path, e))?.len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: a read-only mapping of a segment file. The journal never truncates
    // or rewrites a segment's written bytes (it only appends to the newest one
    // and deletes whole files, which leaves existing mappings valid); we only
    // read through the mapping for the duration of the replay.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&f) }
        .map_err(|e| io("cannot map", path, e))?;
    Ok(Some(map))
}

/// A recovered message, in its slot (`None` once gone): its `Enqueued`
/// payload, borrowed from the segment's mapping (checked to decode; the node
/// is made from it only once the replay knows the message is live, see
/// [`materialize`]), and what later records changed.
pub(super) struct Slot<'a> {
    payload: &'a [u8],
    q: u32,
    deliveries: u32,
    /// 0: none.
    deliver_at: u64,
}

/// What decoding one segment found (names borrow from its mapping).
pub(super) struct Decoded<'a> {
    /// Records up to the first damage: (record, offset, framed length).
    pub ops: Vec<(Op<'a>, u64, u32)>,
    /// Offset after the last good record.
    end: usize,
    /// The first damage, and the written bytes from there on.
    damage: Option<(String, u64)>,
}

/// Scans and decodes one segment's records (CRCs, payloads, message nodes):
/// the expensive part of a replay, independent per segment.
pub(super) fn decode_segment<'a>(name: &str, buf: &'a [u8]) -> Decoded<'a> {
    let declared = u64::from_le_bytes(
        buf[codec::SIZE_AT..codec::SIZE_AT + 8]
            .try_into()
            .expect("8 bytes"),
    );
    // Bytes past the size the segment was created with are not part of it.
    let buf = &buf[..buf
        .len()
        .min(declared.max(codec::SEGMENT_HEADER as u64) as usize)];
    let mut d = decode_from(name, buf, codec::SEGMENT_HEADER);
    if d.damage.is_none() && (buf.len() as u64) < declared {
        let why = format!("{name}: truncated to {} of {declared} bytes", buf.len());
        d.damage = Some((why, 0));
    }
    d
}

/// Scans and decodes records from `off` to the end of the data or the first
/// damaged or undecodable record.
pub(super) fn decode_from<'a>(name: &str, buf: &'a [u8], mut off: usize) -> Decoded<'a> {
    let mut ops = Vec::new();
    let damage = loop {
        match codec::scan(buf, off) {
            Scan::End => break None,
            Scan::Damaged(why) => break Some(format!("{name} at byte {off}: {why}")),
            Scan::Record {
                kind: k,
                payload,
                next,
            } => match decode(k, payload) {
                Ok(op) => {
                    ops.push((op, off as u64, (next - off) as u32));
                    off = next;
                }
                Err(Malformed) => break Some(format!("{name} at byte {off}: undecodable payload")),
            },
        }
    };
    let damage = damage.map(|why| {
        // Count what follows the bad record up to the zeros at the end.
        let written = buf.iter().rposition(|b| *b != 0).map_or(off, |p| p + 1);
        (why, written.saturating_sub(off) as u64)
    });
    Decoded {
        ops,
        end: off,
        damage,
    }
}

/// Runs `f` over `items` on up to one thread per CPU; results in item order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Relaxed);
                        let Some(item) = items.get(i) else {
                            return mine;
                        };
                        mine.push((i, f(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("replay worker panicked"))
            .collect()
    });
    out.sort_unstable_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Replays `segs` in order from an empty state: segments are mapped and
/// decoded in parallel, then applied in order on this thread.
fn replay(segs: &[(u64, PathBuf)]) -> Result<Replayed> {
    let mut complete = false;
    let mut report = RecoveryReport::default();
    let mut index = Index::default();
    let mut slots: Vec<Option<Slot<'_>>> = Vec::new();
    let mut replayed = Vec::new();
    let mut cut = false;
    let mut prev: Option<u64> = None;
    let maps = par_map(segs, |(_, path)| map_segment(path))
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = segs.iter().map(|(_, p)| p.display().to_string()).collect();
    let decoded = par_map(&(0..segs.len()).collect::<Vec<_>>(), |&i| {
        let buf: &[u8] = maps[i].as_deref().unwrap_or(&[]);
        header_valid(buf).then(|| decode_segment(&names[i], buf))
    });
    let enqueues = decoded
        .iter()
        .flatten()
        .flat_map(|d| &d.ops)
        .filter(|(op, _, _)| matches!(op, Op::Enqueue { .. }))
        .count();
    slots.reserve(enqueues);
    for (((seq, path), decoded), map) in segs.iter().cloned().zip(decoded).zip(&maps) {
        if cut {
            report.segments_damaged += 1;
            report.bytes_cut += fs::metadata(&path).map_or(0, |m| m.len());
            replayed.push((seq, path, true));
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
                replayed.push((seq, path, true));
                continue;
            }
        }
        let first = prev.is_none();
        prev = Some(seq);
        let buf: &[u8] = map.as_deref().unwrap_or(&[]);
        let name = path.display().to_string();
        if first && header_valid(buf) && buf[codec::FLAGS_AT] & codec::FLAG_CHECKPOINT == 0 {
            // Every journal starts with a checkpoint: a first segment without one
            // means the segments before it are gone.
            report.damage.push(format!(
                "{name}: no checkpoint before it (earlier segments are missing); replaying what is left"
            ));
        }
        let Some(d) = decoded else {
            report.damage.push(format!("{name}: bad segment header"));
            report.segments_damaged += 1;
            report.bytes_cut += buf.len() as u64;
            cut = true;
            replayed.push((seq, path, true));
            continue;
        };
        index.segs.insert(seq, SegStat::default());
        for (op, off, len) in d.ops {
            if matches!(op, Op::Checkpoint) {
                complete = true;
            }
            apply_op(op, (seq, off, len), &mut index, &mut slots);
            report.records_read += 1;
        }
        if let Some(s) = index.segs.get_mut(&seq) {
            s.used = d.end as u64;
        }
        let damaged = d.damage.is_some();
        if let Some((why, after)) = d.damage {
            report.damage.push(why);
            report.bytes_cut += after;
            report.segments_damaged += 1;
            cut = true;
        }
        replayed.push((seq, path, damaged));
    }
    let mut defined: Vec<&QueueEntry> = index
        .queues
        .iter()
        .filter(|q| q.options.is_some())
        .collect();
    defined.sort_by_key(|q| q.def_order);
    let queues: Vec<RecoveredQueue> = defined
        .into_iter()
        .map(|q| RecoveredQueue {
            namespace: q.namespace.to_string(),
            queue: q.queue.to_string(),
            options: q.options.clone().expect("defined"),
            next_id: q.next_id,
        })
        .collect();
    let messages = materialize(slots);
    let names = index
        .queues
        .iter()
        .map(|q| (q.namespace.to_string(), q.queue.to_string()))
        .collect();
    report.queues = queues.len() as u64;
    report.messages_recovered = messages.len() as u64;
    let namespaces = index
        .defs
        .namespaces
        .iter()
        .map(|(n, q)| (n.to_string(), q.clone()))
        .collect();
    let topics = index
        .defs
        .topics
        .iter()
        .map(|t| RecoveredTopic {
            namespace: t.namespace.to_string(),
            topic: t.topic.to_string(),
            subs: t
                .subs
                .iter()
                .map(|(q, f)| (q.to_string(), f.clone()))
                .collect(),
        })
        .collect();
    Ok(Replayed {
        recovered: Recovered {
            queues,
            names,
            messages,
            namespaces,
            topics,
            report,
        },
        index,
        superseded: Vec::new(),
        replayed,
        complete,
        last_seq: 0,
    })
}

/// One decoded record; names borrow from the segment's mapping.
pub(super) enum Op<'a> {
    Define {
        ns: &'a str,
        q: &'a str,
        opts: Box<QueueOptions>,
        next_id: u64,
    },
    Delete {
        ns: &'a str,
        q: &'a str,
    },
    /// A message: the payload is checked to decode (the node is made from
    /// it by [`enqueued_node`] only if it is still live at the end).
    Enqueue {
        ns: &'a str,
        q: &'a str,
        id: u64,
        deliveries: u32,
        deliver_at: u64,
        payload: &'a [u8],
    },
    Remove {
        ns: &'a str,
        q: &'a str,
        id: u64,
        reason: u8,
    },
    Deliver {
        ns: &'a str,
        q: &'a str,
        id: u64,
        n: u32,
    },
    /// Members applied together: (record, offset of its payload within the
    /// group's payload, payload length).
    Group(Vec<(Op<'a>, u32, u32)>),
    NextId {
        ns: &'a str,
        q: &'a str,
        next: u64,
    },
    Namespace {
        ns: &'a str,
        quotas: Box<Quotas>,
    },
    Topic {
        ns: &'a str,
        topic: &'a str,
    },
    Subscribe {
        ns: &'a str,
        topic: &'a str,
        q: &'a str,
        filter: Box<Filter>,
    },
    Unsubscribe {
        ns: &'a str,
        topic: &'a str,
        q: &'a str,
    },
    Checkpoint,
    /// A record of a skippable type this reader does not know.
    Skip,
}

/// Decodes one record's payload (no shared state: runs on any thread).
pub(super) fn decode(k: u8, payload: &[u8]) -> Result<Op<'_>, Malformed> {
    match k {
        kind::CHECKPOINT => return Ok(Op::Checkpoint),
        kind::GROUP => return decode_group(payload),
        kind::NAMESPACE_DEFINED | kind::TOPIC_DEFINED | kind::SUBSCRIBED | kind::UNSUBSCRIBED => {
            return decode_def(k, payload)
        }
        k if k > kind::LAST && k & kind::SKIPPABLE != 0 => return Ok(Op::Skip),
        _ => {}
    }
    let mut d = Dec::new(payload);
    let ns = d.str_ref()?;
    let q = d.str_ref()?;
    Ok(match k {
        kind::QUEUE_DEFINED => {
            let opts = QueueOptions::from_text(d.str_ref()?).map_err(|_| Malformed)?;
            // Checkpoints add the next unused id (older records end here).
            let next_id = if d.remaining() >= 8 { d.u64()? } else { 0 };
            Op::Define {
                ns,
                q,
                opts: Box::new(opts),
                next_id,
            }
        }
        kind::QUEUE_DELETED => Op::Delete { ns, q },
        kind::ENQUEUED => {
            // Checked whole here (an undecodable record changes nothing), but
            // nothing allocated: most messages of a long journal are acked.
            let id = d.u64()?;
            let _priority = d.u8()?;
            let _persistent = d.u8()?;
            let _enqueued_at = d.u64()?;
            let _expires_at = d.u64()?;
            let deliver_at = d.u64()?;
            let deliveries = d.u32()?;
            d.skip_opt_str()?;
            d.skip_opt_str()?;
            d.skip_headers()?;
            let len = d.u32()? as usize;
            d.take(len)?;
            Op::Enqueue {
                ns,
                q,
                id,
                deliveries,
                deliver_at,
                payload,
            }
        }
        kind::REMOVED => {
            let id = d.u64()?;
            let reason = d.u8()?;
            Op::Remove { ns, q, id, reason }
        }
        kind::DELIVERED => {
            let id = d.u64()?;
            let n = d.u32()?;
            Op::Deliver { ns, q, id, n }
        }
        kind::NEXT_ID => {
            let next = d.u64()?;
            Op::NextId { ns, q, next }
        }
        _ => return Err(Malformed),
    })
}

/// The message of an `Enqueued` payload (as [`decode`] checked it: an error
/// only for a payload `decode` refuses).
pub(super) fn enqueued_node(payload: &[u8]) -> Result<Node, Malformed> {
    let mut d = Dec::new(payload);
    // The namespace and queue (checked by `decode`; the caller knows them).
    d.skip_bytes()?;
    d.skip_bytes()?;
    let id = d.u64()?;
    let priority = d.u8()?;
    let persistent = d.u8()? != 0;
    let enqueued_at = d.u64()?;
    let expires_at = d.u64()?;
    let _deliver_at = d.u64()?;
    let deliveries = d.u32()?;
    let name = d.opt_str()?;
    let corr = d.opt_str()?;
    let headers = d.headers()?;
    let body = d.bytes()?;
    let size = crate::types::message::size_of(&body, &headers, name.as_deref(), corr.as_deref());
    Ok(Node {
        id,
        priority: priority.min(crate::MAX_PRIORITY),
        persistent,
        body: body.into_boxed_slice(),
        extra: crate::types::node::Extra::new(headers, name, corr),
        enqueued_at,
        expires_at,
        size,
        deliveries: AtomicU32::new(deliveries),
    })
}

/// Makes the messages of the live slots, in order, on up to one thread per
/// CPU (a node and its body allocated each: the part of a replay that grows
/// with the live messages only).
pub(super) fn materialize(slots: Vec<Option<Slot<'_>>>) -> Vec<RecoveredMessage> {
    let live: Vec<Slot<'_>> = slots.into_iter().flatten().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = live.len().div_ceil(threads.max(1)).max(4096);
    let chunks: Vec<&[Slot<'_>]> = live.chunks(chunk).collect();
    let made = par_map(&chunks, |c| {
        c.iter()
            .map(|s| {
                let node = enqueued_node(s.payload).expect("checked by decode");
                node.deliveries.store(s.deliveries, Relaxed);
                RecoveredMessage {
                    queue: s.q,
                    node: Arc::new(node),
                    deliver_at: (s.deliver_at != 0).then_some(s.deliver_at),
                }
            })
            .collect::<Vec<_>>()
    });
    let mut out = Vec::with_capacity(live.len());
    for m in made {
        out.extend(m);
    }
    out
}

/// Decodes a namespace, topic, subscription or unsubscribe record (nothing
/// may follow its fields).
fn decode_def(k: u8, payload: &[u8]) -> Result<Op<'_>, Malformed> {
    let mut d = Dec::new(payload);
    let ns = d.str_ref()?;
    let op = match k {
        kind::NAMESPACE_DEFINED => Op::Namespace {
            ns,
            quotas: Box::new(d.quotas()?),
        },
        kind::TOPIC_DEFINED => Op::Topic {
            ns,
            topic: d.str_ref()?,
        },
        kind::SUBSCRIBED => Op::Subscribe {
            ns,
            topic: d.str_ref()?,
            q: d.str_ref()?,
            filter: Box::new(d.filter()?),
        },
        kind::UNSUBSCRIBED => Op::Unsubscribe {
            ns,
            topic: d.str_ref()?,
            q: d.str_ref()?,
        },
        _ => return Err(Malformed),
    };
    if d.remaining() != 0 {
        return Err(Malformed);
    }
    Ok(op)
}

/// Decodes a group: `u32` count, then per member its type (`u8`), payload
/// length (`u32`) and payload. A member that is a group or a checkpoint, a
/// count that does not match, or bytes left over make it undecodable.
fn decode_group(payload: &[u8]) -> Result<Op<'_>, Malformed> {
    let mut d = Dec::new(payload);
    let n = d.u32()?;
    let mut members = Vec::new();
    for _ in 0..n {
        let k = d.u8()?;
        let len = d.u32()?;
        let at = payload.len() - d.remaining();
        let body = d.take(len as usize)?;
        if k == kind::GROUP || k == kind::CHECKPOINT {
            return Err(Malformed);
        }
        if !(kind::QUEUE_DEFINED..=kind::LAST).contains(&k) && k & kind::SKIPPABLE == 0 {
            return Err(Malformed);
        }
        members.push((decode(k, body)?, at as u32, len));
    }
    if d.remaining() != 0 {
        return Err(Malformed);
    }
    Ok(Op::Group(members))
}

/// Applies one decoded record, in journal order.
pub(super) fn apply_op<'a>(
    op: Op<'a>,
    (seg, off, len): (u64, u64, u32),
    index: &mut Index,
    slots: &mut Vec<Option<Slot<'a>>>,
) {
    apply_at(op, (seg, off, len, false), index, slots)
}

/// [`apply_op`] of a record (`embedded` false: `off`/`len` are the framed
/// record's) or of a group member (`embedded`: its payload's).
fn apply_at<'a>(
    op: Op<'a>,
    (seg, off, len, embedded): (u64, u64, u32, bool),
    index: &mut Index,
    slots: &mut Vec<Option<Slot<'a>>>,
) {
    match op {
        Op::Checkpoint | Op::Skip => {}
        Op::Namespace { ns, quotas } => index.defs.namespace(ns, &quotas),
        Op::Topic { ns, topic } => {
            index.defs.topic(ns, topic);
        }
        Op::Subscribe {
            ns,
            topic,
            q,
            filter,
        } => index.defs.subscribe(ns, topic, q, &filter),
        Op::Unsubscribe { ns, topic, q } => index.defs.unsubscribe(ns, topic, q),
        Op::Group(members) => {
            let base = off + codec::RECORD_HEADER as u64;
            for (op, at, n) in members {
                apply_at(op, (seg, base + u64::from(at), n, true), index, slots);
            }
        }
        Op::NextId { ns, q, next } => {
            let q = index.qid(ns, q);
            index.raise_next_id(q, next);
        }
        Op::Define {
            ns,
            q,
            opts,
            next_id,
        } => {
            let q = index.qid(ns, q);
            // The latest definition wins (a queue deleted and created again).
            index.define(q, *opts, next_id);
        }
        Op::Delete { ns, q } => {
            let q = index.qid(ns, q);
            index.delete(q, |slot| slots[slot as usize] = None);
        }
        Op::Enqueue {
            ns,
            q,
            id,
            deliveries,
            deliver_at,
            payload,
        } => {
            let q = index.qid(ns, q);
            let loc = Loc {
                seg,
                off,
                len,
                deliveries,
                delivered: false,
                slot: slots.len() as u32,
                embedded,
            };
            let mut slot = Slot {
                payload,
                q,
                deliveries,
                deliver_at,
            };
            // The same message again (a checkpoint's copy, perhaps of an
            // interrupted checkpoint) keeps its place, and never lowers its
            // delivery count or brings back a delay a delivery cleared.
            match index.enqueue(q, id, loc) {
                Some(old) => {
                    let now = index.get(q, id).expect("just enqueued");
                    slot.deliveries = now.deliveries;
                    if now.delivered {
                        slot.deliver_at = 0;
                    }
                    slots[old.slot as usize] = Some(slot);
                }
                None => slots.push(Some(slot)),
            }
        }
        Op::Remove { ns, q, id, .. } => {
            let q = index.qid(ns, q);
            if let Some(old) = index.remove(q, id) {
                slots[old.slot as usize] = None;
            }
        }
        Op::Deliver { ns, q, id, n } => {
            let q = index.qid(ns, q);
            if let Some(loc) = index.delivered(q, id, n) {
                if let Some(s) = slots[loc.slot as usize].as_mut() {
                    s.deliveries = n;
                    // Redelivered messages are ready, whatever their original delay.
                    s.deliver_at = 0;
                }
            }
        }
    }
}
