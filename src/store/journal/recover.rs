//! Reading a data directory: replay from the newest complete checkpoint, damage
//! detection and reporting, and the read-only `inspect` / `dump` of the CLI.

use super::*;

pub(super) type Key = (String, String, u64);

pub(super) struct Live {
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
        writeln!(out, "{line}").map_err(|e| Error::Io(format!("write: {e}")))
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
pub(super) fn recover(dir: &Path) -> Result<(Recovered, OldSegments, u64)> {
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

pub(super) fn apply(
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
