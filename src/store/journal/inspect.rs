//! The read-only look at a data directory of the `libqueue` command: `inspect`
//! (recovery's verdict, per-queue counts, definitions) and `dump` (one line per
//! record). No lock is taken and nothing is written, so both are safe while a
//! broker has the directory open.

use super::*;

use super::recover::{decode, Op};
use crate::types::Filter;
use crate::types::Quotas;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

/// What a read-only look at a data directory finds (no lock taken, nothing
/// written: safe while a broker has the directory open).
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    /// The replay's findings, as an open would report them.
    pub report: RecoveryReport,
    /// Per queue (`namespace/queue`): unacked persistent messages and their bytes.
    pub queues: Vec<(String, u64, u64)>,
    /// Namespaces and their quotas, in the order they were defined.
    pub namespaces: Vec<(String, Quotas)>,
    /// Topics (`namespace/topic`) and their subscriptions (queue, filter), in
    /// the order they were defined.
    pub topics: Vec<(String, Vec<(String, Filter)>)>,
}

/// Replays `dir` read-only (see [`Inspection`]).
pub fn inspect(dir: &Path) -> Result<Inspection> {
    // A running broker's checkpoint may delete a segment between the listing
    // and the read: look again.
    let mut tries = 0;
    let rec = loop {
        match recover(dir) {
            Ok(r) => break r.recovered,
            Err(Error::Storage(_)) if tries < 3 => tries += 1,
            Err(e) => return Err(e),
        }
    };
    let mut per: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for q in &rec.queues {
        per.entry(format!("{}/{}", q.namespace, q.queue))
            .or_default();
    }
    let mut counts = vec![(0u64, 0u64); rec.names.len()];
    for m in &rec.messages {
        let c = &mut counts[m.queue as usize];
        c.0 += 1;
        c.1 += m.node.size;
    }
    for ((ns, q), (n, b)) in rec.names.iter().zip(counts) {
        if n > 0 {
            let e = per.entry(format!("{ns}/{q}")).or_default();
            e.0 += n;
            e.1 += b;
        }
    }
    Ok(Inspection {
        report: rec.report,
        queues: per.into_iter().map(|(k, (n, b))| (k, n, b)).collect(),
        namespaces: rec.namespaces,
        topics: rec
            .topics
            .into_iter()
            .map(|t| (format!("{}/{}", t.namespace, t.topic), t.subs))
            .collect(),
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
    let Ok(op) = decode(k, payload) else {
        return "undecodable payload".into();
    };
    match op {
        Op::Checkpoint => "checkpoint complete (everything live is above)".into(),
        Op::Define {
            ns,
            q,
            opts,
            next_id,
        } => format!(
            "define {ns}/{q} [{}]{}",
            opts.to_text().replace('\n', ", "),
            if next_id != 0 {
                format!(" next id {next_id}")
            } else {
                String::new()
            }
        ),
        Op::Delete { ns, q } => format!("delete queue {ns}/{q}"),
        Op::Enqueue {
            ns,
            q,
            payload,
            deliver_at,
            ..
        } => {
            let Ok(n) = super::recover::enqueued_node(payload) else {
                return "undecodable payload".into();
            };
            format!(
                "enqueue {ns}/{q} id {} prio {} name {} deliveries {}{}{} headers {} body {} bytes",
                n.id,
                n.priority,
                n.name().unwrap_or("-"),
                n.deliveries.load(Relaxed),
                if n.expires_at != u64::MAX {
                    format!(" expires {}", n.expires_at)
                } else {
                    String::new()
                },
                if deliver_at != 0 {
                    format!(" due {deliver_at}")
                } else {
                    String::new()
                },
                n.headers().len(),
                n.body.len()
            )
        }
        Op::Remove { ns, q, id, reason } => format!("remove {ns}/{q} id {id} reason {reason}"),
        Op::Deliver { ns, q, id, n } => format!("delivered {ns}/{q} id {id} count {n}"),
        Op::NextId { ns, q, next } => format!("next id {ns}/{q} {next}"),
        Op::Namespace { ns, quotas } => format!("namespace {ns} [{}]", quotas_text(&quotas)),
        Op::Topic { ns, topic } => format!("topic {ns}/{topic}"),
        Op::Subscribe {
            ns,
            topic,
            q,
            filter,
        } => format!(
            "subscribe {ns}/{q} to topic {topic} filter {}",
            filter_text(&filter)
        ),
        Op::Unsubscribe { ns, topic, q } => format!("unsubscribe {ns}/{q} from topic {topic}"),
        Op::Skip => format!("skipped record of type {k}"),
        Op::Group(_) => {
            // Described member by member, from the payload.
            let mut d = Dec::new(payload);
            let n = d.u32().unwrap_or(0);
            let mut parts = Vec::new();
            for _ in 0..n {
                let (Ok(k), Ok(len)) = (d.u8(), d.u32()) else {
                    break;
                };
                let Ok(body) = d.take(len as usize) else {
                    break;
                };
                parts.push(describe(k, body));
            }
            format!("group of {n}: {}", parts.join("; "))
        }
    }
}

/// Quotas as `inspect` and `stats` show them.
pub fn quotas_text(q: &Quotas) -> String {
    let opt = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
    format!(
        "max_queues {}, max_messages {}, max_bytes {}, max_message_size {}",
        opt(q.max_queues),
        opt(q.max_messages),
        opt(q.max_bytes),
        q.max_message_size
    )
}

/// A filter as `inspect` and `stats` show it.
pub fn filter_text(f: &Filter) -> String {
    match f {
        Filter::All => "all".into(),
        Filter::Name(n) => format!("name={n:?}"),
        Filter::Header { key, value } => {
            format!("header {key:?}={:?}", String::from_utf8_lossy(value))
        }
    }
}
