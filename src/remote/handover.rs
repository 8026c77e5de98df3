//! The handover file: when the host of a shared data directory closes while
//! other processes are attached, it writes the messages only its memory
//! holds (non-persistent ones: ready, delayed and leased) to `handover.lqh`
//! in the directory before it lets the lock go; the next host reads them back
//! after its replay and deletes the file (docs/journal-format.md, "The
//! handover file"; docs/multi-process.md).
//!
//! ```text
//! 0   8  magic "LQHANDOV"
//! 8   4  version u32le (1)
//! 12  4  reserved (0)
//! 16  8  count u64le
//! 24  …  count records, each a wire frame (docs/wire.md): len:u32le,
//!        request id 0, op 0, then ns:str queue:str due:opt<u64> Node
//! end-4  CRC-32C (Castagnoli) of every byte before it, u32le
//! ```

use super::wire::{DResult, Dec, Enc, Malformed, HEADER, MAX_FRAME};
use crate::engine::Engine;
use crate::types::node::Node;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"LQHANDOV";
const VERSION: u32 = 1;
const FILE: &str = "handover.lqh";

/// The handover file of a data directory.
pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Writes the engine's in-memory messages for the next host (`Ok(0)`, and no
/// file, when there are none). Durable before it returns: written to a
/// temporary name, synced, renamed, the directory synced.
pub(crate) fn write(engine: &Engine, dir: &Path) -> std::io::Result<u64> {
    let msgs = engine.in_memory_messages();
    if msgs.is_empty() {
        return Ok(0);
    }
    let mut buf = Vec::with_capacity(64 + msgs.len() * 64);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    buf.extend_from_slice(&0u64.to_le_bytes());
    let mut n = 0u64;
    for (ns, queue, node, due) in &msgs {
        let mut e = Enc::new(0, 0);
        e.str(ns).str(queue).opt_u64(*due).node(node);
        if let Some(f) = e.finish() {
            buf.extend_from_slice(&f);
            n += 1;
        }
    }
    buf[16..24].copy_from_slice(&n.to_le_bytes());
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path(dir))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(n)
}

/// One handed-over message: namespace, queue, the message, its due time if delayed.
pub(crate) type Handed = (String, String, Node, Option<u64>);

/// Decodes a handover file.
pub(crate) fn decode(buf: &[u8]) -> DResult<Vec<Handed>> {
    if buf.len() < 28 || &buf[..8] != MAGIC {
        return Err(Malformed("not a handover file"));
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(Malformed("checksum mismatch"));
    }
    if u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) != VERSION {
        return Err(Malformed("unknown handover version"));
    }
    let count = u64::from_le_bytes(body[16..24].try_into().expect("8 bytes"));
    let mut rest = &body[24..];
    let mut out = Vec::new();
    for _ in 0..count {
        if rest.len() < 4 {
            return Err(Malformed("truncated"));
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if !(HEADER..=MAX_FRAME).contains(&len) || rest.len() < 4 + len {
            return Err(Malformed("bad record length"));
        }
        let mut d = Dec::new(&rest[4..4 + len]);
        d.header()?;
        let ns = d.string()?;
        let queue = d.string()?;
        let due = d.opt_u64()?;
        let node = d.node()?;
        d.end()?;
        out.push((ns, queue, node, due));
        rest = &rest[4 + len..];
    }
    if !rest.is_empty() {
        return Err(Malformed("trailing bytes"));
    }
    Ok(out)
}

/// Puts back what an earlier host handed over (if it did), then deletes the
/// file; whether there was one. A file that does not decode is moved to
/// `damaged/` with a line on stderr: its messages are lost, as with a crash
/// of the host.
pub(crate) fn load(engine: &Engine, dir: &Path) -> bool {
    let p = path(dir);
    let Ok(buf) = std::fs::read(&p) else {
        return false;
    };
    match decode(&buf) {
        Ok(msgs) => {
            let (put, left) = engine.restore_in_memory(msgs);
            if left > 0 {
                eprintln!(
                    "libqueue[{}]: {left} handed-over messages left out (their queues are gone); {put} put back",
                    std::process::id()
                );
            }
            let _ = std::fs::remove_file(&p);
        }
        Err(Malformed(why)) => {
            eprintln!(
                "libqueue[{}]: {} is damaged ({why}); its in-memory messages are lost",
                std::process::id(),
                p.display()
            );
            let aside = dir.join("damaged");
            let _ = std::fs::create_dir_all(&aside);
            let _ = std::fs::rename(&p, aside.join(FILE));
        }
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Broker, BrokerOptions, Error, Message, MessageView};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn written_and_read_back_with_ids_counts_and_due_times() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(crate::engine::EngineOptions {
            clock: Arc::new(crate::clock::SystemClock::new()),
            storage: Arc::new(crate::store::MemoryStorage),
            default_quotas: Default::default(),
            default_queue_options: Default::default(),
            data_dir: Some(dir.path().to_path_buf()),
            journal: Default::default(),
        })
        .unwrap();
        let src = Broker::from_engine(engine.clone());
        let q = src.queue("q").unwrap();
        let a = q.send(Message::new("a").header("k", "v")).unwrap();
        let b = q
            .send(Message::new("b").delay(Duration::from_secs(60)))
            .unwrap();
        q.send(Message::new("p").persistent(true)).unwrap();
        let d = q.try_receive().unwrap().unwrap();
        assert_eq!(d.id(), a);
        let c = q.send(Message::new("c").priority(7)).unwrap();
        assert_eq!(
            write(&engine, dir.path()).unwrap(),
            3,
            "a (leased), b (delayed), c"
        );
        let buf = std::fs::read(path(dir.path())).unwrap();
        let got = decode(&buf).unwrap();
        let ids: Vec<(u64, Option<bool>)> =
            got.iter().map(|m| (m.2.id, m.3.map(|_| true))).collect();
        assert_eq!(ids, [(a, None), (b, Some(true)), (c, None)]);
        assert_eq!(
            got[0]
                .2
                .deliveries
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        drop(d);
        src.close();
        // Every flipped byte is refused; so is a truncated file.
        for i in [0, 9, 20, 30, buf.len() / 2, buf.len() - 1] {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "byte {i}");
        }
        assert!(decode(&buf[..buf.len() - 3]).is_err());
        // The next open puts them back (the persistent one from the journal).
        let next = Broker::open(BrokerOptions::new().data_dir(dir.path()).exclusive(true)).unwrap();
        assert!(!path(dir.path()).exists());
        let q = next.queue("q").unwrap();
        let s = q.stats();
        assert_eq!((s.ready, s.delayed), (3, 1), "{s:?}");
        // Reclaiming: the holder's count or higher only.
        assert!(matches!(q.reclaim(a, 0), Err(Error::LeaseExpired { .. })));
        let r = q.reclaim(a, 1).unwrap();
        assert_eq!(
            (r.id(), r.delivery_count(), r.header_str("k")),
            (a, 1, Some("v"))
        );
        assert!(
            matches!(q.reclaim(a, 1), Err(Error::LeaseExpired { .. })),
            "leased already"
        );
        r.ack().unwrap();
        assert_eq!(q.try_receive().unwrap().unwrap().id(), c, "priority kept");
        next.close();
    }
}
