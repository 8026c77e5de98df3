//! Record framing and payload encoding (see docs/journal-format.md): segment
//! headers, record frames (length, type, commit mark, CRC-32C), the scanner, the
//! payload encoder `Enc` and `encode` of every `Record`. Decoding payloads into
//! recovery's operations is in `recover.rs`.

use crate::store::{Record, RemoveReason};
use crate::types::Filter;
use crate::types::Headers;
use crate::types::Quotas;
use std::sync::atomic::Ordering::SeqCst;

/// Bytes before the first record of a segment.
pub(crate) const SEGMENT_HEADER: usize = 64;
/// Magic at the start of every segment.
pub(crate) const MAGIC: &[u8; 8] = b"LQJRNL\0\x01";
/// Format version written in segment headers. Version 2 added record types 7
/// (`Group`) and 8 (`NextId`), skippable record types (bit 0x80) and, in that
/// room, the definitions 0x81 to 0x84 (namespaces, topics, subscriptions,
/// unsubscribes); readers take versions 1 and 2 (a version-1 segment holds
/// only types 1 to 6).
pub(crate) const VERSION: u32 = 2;
/// The oldest format version this reader takes.
pub(crate) const MIN_VERSION: u32 = 1;
/// Record header: len u32, type u8, commit u8, reserved u16, crc u32.
pub(crate) const RECORD_HEADER: usize = 12;
/// The commit mark of a fully written record.
pub(crate) const COMMITTED: u8 = 0xA5;

/// Record types.
pub(crate) mod kind {
    pub(crate) const QUEUE_DEFINED: u8 = 1;
    pub(crate) const ENQUEUED: u8 = 2;
    pub(crate) const REMOVED: u8 = 3;
    pub(crate) const DELIVERED: u8 = 4;
    /// Ends a checkpoint: everything live was written before it.
    pub(crate) const CHECKPOINT: u8 = 5;
    pub(crate) const QUEUE_DELETED: u8 = 6;
    /// Several records applied together or not at all (version 2).
    pub(crate) const GROUP: u8 = 7;
    /// A queue's ids below a value are used: a durable id high-water mark
    /// (version 2).
    pub(crate) const NEXT_ID: u8 = 8;
    /// The highest type this reader knows.
    pub(crate) const LAST: u8 = NEXT_ID;
    /// Set in types a reader that does not know them skips (after checking
    /// the CRC) instead of calling them damage: room for records a later
    /// build adds without another format version.
    pub(crate) const SKIPPABLE: u8 = 0x80;
    /// A namespace and its quotas (skippable: a reader without it loses the
    /// definition, never a message).
    pub(crate) const NAMESPACE_DEFINED: u8 = SKIPPABLE | 1;
    /// A topic (skippable).
    pub(crate) const TOPIC_DEFINED: u8 = SKIPPABLE | 2;
    /// A subscription and its filter (skippable).
    pub(crate) const SUBSCRIBED: u8 = SKIPPABLE | 3;
    /// A subscription removed (skippable).
    pub(crate) const UNSUBSCRIBED: u8 = SKIPPABLE | 4;
}

/// Segment header byte holding flags.
pub(crate) const FLAGS_AT: usize = 28;
/// Segment header u64: the size the segment file was created with.
pub(crate) const SIZE_AT: usize = 32;
/// Flag: the segment starts a checkpoint (the full live state follows).
pub(crate) const FLAG_CHECKPOINT: u8 = 1;

/// A segment file's header: magic, version, header size, number, flags, the
/// size the file is created with, CRC-32C of the rest.
pub fn segment_header(seq: u64, size: u64, checkpoint: bool) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(SEGMENT_HEADER as u32).to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    h[FLAGS_AT] = if checkpoint { FLAG_CHECKPOINT } else { 0 };
    h[SIZE_AT..SIZE_AT + 8].copy_from_slice(&size.to_le_bytes());
    let crc = crc32c::crc32c(&h[..SEGMENT_HEADER - 4]);
    h[SEGMENT_HEADER - 4..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Records are 8-byte aligned.
pub fn framed_len(payload: usize) -> usize {
    (RECORD_HEADER + payload + 7) & !7
}

/// CRC-32C over the length, the type and the payload.
pub fn record_crc(len: u32, kind: u8, payload: &[u8]) -> u32 {
    let c = crc32c::crc32c(&len.to_le_bytes());
    let c = crc32c::crc32c_append(c, &[kind]);
    crc32c::crc32c_append(c, payload)
}

/// Frames, in place, a record whose payload was encoded into `buf` after
/// [`RECORD_HEADER`] reserved bytes: fills the header (committed) and pads.
pub fn finish_frame(kind: u8, buf: &mut Vec<u8>) {
    let len = (buf.len() - RECORD_HEADER) as u32;
    let crc = record_crc(len, kind, &buf[RECORD_HEADER..]);
    buf[0..4].copy_from_slice(&len.to_le_bytes());
    buf[4] = kind;
    buf[5] = COMMITTED;
    buf[6..8].copy_from_slice(&[0, 0]);
    buf[8..12].copy_from_slice(&crc.to_le_bytes());
    buf.resize(framed_len(len as usize), 0);
}

/// Writes a framed record (committed) into `out` (exactly `framed_len` bytes).
pub fn frame(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.push(kind);
    out.push(COMMITTED);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&record_crc(len, kind, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(
        out.len() + (framed_len(payload.len()) - RECORD_HEADER - payload.len()),
        0,
    );
}

/// What a scan found at one offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan<'a> {
    /// A valid record and the offset of the next one.
    Record {
        kind: u8,
        payload: &'a [u8],
        next: usize,
    },
    /// Zeros: the written part of the segment ends here.
    End,
    /// Not a valid record (torn, uncommitted or corrupt), with why.
    Damaged(&'static str),
}

/// Decodes the record at `off` of a segment's bytes. Never panics.
pub fn scan(buf: &[u8], off: usize) -> Scan<'_> {
    let Some(h) = buf.get(off..off.saturating_add(RECORD_HEADER)) else {
        // Fewer bytes than a header: the end only if they are all zero.
        let rest = buf.get(off..).unwrap_or(&[]);
        if rest.iter().all(|b| *b == 0) {
            return Scan::End;
        }
        return Scan::Damaged("truncated record header");
    };
    if h.iter().all(|b| *b == 0) {
        // The unwritten end of a segment is zeros to its last byte: zeros followed
        // by data are a lost write (a page that never reached the disk).
        if buf[off..].iter().all(|b| *b == 0) {
            return Scan::End;
        }
        return Scan::Damaged("zeroed bytes followed by data (a lost write)");
    }
    let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
    let kind = h[4];
    if h[5] != COMMITTED {
        return Scan::Damaged("record not committed (torn write)");
    }
    if h[6] != 0 || h[7] != 0 {
        return Scan::Damaged("reserved header bytes are not zero");
    }
    if !(kind::QUEUE_DEFINED..=kind::LAST).contains(&kind) && kind & kind::SKIPPABLE == 0 {
        return Scan::Damaged("unknown record type");
    }
    let crc = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    let start = off + RECORD_HEADER;
    let Some(payload) = start
        .checked_add(len as usize)
        .and_then(|end| buf.get(start..end))
    else {
        return Scan::Damaged("record runs past the end of the segment");
    };
    if record_crc(len, kind, payload) != crc {
        return Scan::Damaged("checksum mismatch");
    }
    Scan::Record {
        kind,
        payload,
        next: off + framed_len(len as usize),
    }
}

/// Where an [`Enc`] writes.
pub trait Out {
    fn put(&mut self, b: &[u8]);
}

impl Out for Vec<u8> {
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

/// Counts the bytes an encoding would take (writes nothing).
#[derive(Default)]
pub struct Count(pub usize);

impl Out for Count {
    fn put(&mut self, b: &[u8]) {
        self.0 += b.len();
    }
}

/// Writes into a slice sized by a [`Count`] of the same encoding.
pub struct Slice<'a> {
    pub buf: &'a mut [u8],
    pub pos: usize,
}

impl Out for Slice<'_> {
    fn put(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
}

/// Little-endian payload writer.
#[derive(Default)]
pub struct Enc<W: Out = Vec<u8>>(pub W);

impl<W: Out> Enc<W> {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.put(&[v]);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.put(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.put(&v.to_le_bytes());
        self
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.put(b);
        self
    }
    pub fn opt_str(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.u8(1).str(s),
            None => self.u8(0),
        }
    }
    pub fn headers(&mut self, h: &Headers) -> &mut Self {
        self.u32(h.len() as u32);
        for (k, v) in h {
            self.str(k).bytes(v);
        }
        self
    }
    /// Quotas: a `u8` of flags (bit 0 max_queues, bit 1 max_messages, bit 2
    /// max_bytes set), then those three (0 when unset) and max_message_size,
    /// each a `u64`.
    pub fn quotas(&mut self, q: &Quotas) -> &mut Self {
        let flags = u8::from(q.max_queues.is_some())
            | u8::from(q.max_messages.is_some()) << 1
            | u8::from(q.max_bytes.is_some()) << 2;
        self.u8(flags)
            .u64(q.max_queues.unwrap_or(0))
            .u64(q.max_messages.unwrap_or(0))
            .u64(q.max_bytes.unwrap_or(0))
            .u64(q.max_message_size)
    }
    /// A filter: `u8` 0 all; 1 name (a string); 2 header (key string, value
    /// bytes).
    pub fn filter(&mut self, f: &Filter) -> &mut Self {
        match f {
            Filter::All => self.u8(0),
            Filter::Name(n) => self.u8(1).str(n),
            Filter::Header { key, value } => self.u8(2).str(key).bytes(value),
        }
    }
}

/// Little-endian payload reader; every read is bounds-checked.
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A payload that does not decode (its record's checksum held, so this is a bug
/// or a different format version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf, pos: 0 }
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).ok_or(Malformed)?;
        let s = self.buf.get(self.pos..end).ok_or(Malformed)?;
        self.pos = end;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| Malformed)?,
        ))
    }
    pub fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| Malformed)?,
        ))
    }
    pub fn str(&mut self) -> Result<String, Malformed> {
        String::from_utf8(self.bytes()?).map_err(|_| Malformed)
    }
    /// A string borrowed from the payload (no allocation).
    pub fn str_ref(&mut self) -> Result<&'a str, Malformed> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| Malformed)
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn bytes(&mut self) -> Result<Vec<u8>, Malformed> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    pub fn opt_str(&mut self) -> Result<Option<String>, Malformed> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(Malformed),
        }
    }
    pub fn quotas(&mut self) -> Result<Quotas, Malformed> {
        let flags = self.u8()?;
        if flags & !7 != 0 {
            return Err(Malformed);
        }
        let mut opt = |bit: u8| -> Result<Option<u64>, Malformed> {
            let v = self.u64()?;
            Ok((flags & bit != 0).then_some(v))
        };
        let max_queues = opt(1)?;
        let max_messages = opt(2)?;
        let max_bytes = opt(4)?;
        Ok(Quotas {
            max_queues,
            max_messages,
            max_bytes,
            max_message_size: self.u64()?,
        })
    }
    pub fn filter(&mut self) -> Result<Filter, Malformed> {
        Ok(match self.u8()? {
            0 => Filter::All,
            1 => Filter::Name(self.str()?),
            2 => Filter::Header {
                key: self.str()?,
                value: self.bytes()?,
            },
            _ => return Err(Malformed),
        })
    }
    /// Steps over a `bytes` (or a `str` already checked to be UTF-8).
    pub fn skip_bytes(&mut self) -> Result<(), Malformed> {
        let n = self.u32()? as usize;
        self.take(n).map(drop)
    }
    /// Checks an `opt_str` without allocating.
    pub fn skip_opt_str(&mut self) -> Result<(), Malformed> {
        match self.u8()? {
            0 => Ok(()),
            1 => self.str_ref().map(drop),
            _ => Err(Malformed),
        }
    }
    /// Checks `headers` without allocating (what [`Dec::headers`] would accept).
    pub fn skip_headers(&mut self) -> Result<(), Malformed> {
        let n = self.u32()?;
        for _ in 0..n {
            self.str_ref()?;
            let len = self.u32()? as usize;
            self.take(len)?;
        }
        Ok(())
    }
    pub fn headers(&mut self) -> Result<Headers, Malformed> {
        let n = self.u32()?;
        let mut h = Headers::new();
        for _ in 0..n {
            let k = self.str()?;
            h.insert(k, self.bytes()?);
        }
        Ok(h)
    }
}

/// A removal reason as the journal writes it.
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
pub(crate) fn encode<W: Out>(r: &Record<'_>, e: &mut Enc<W>) -> u8 {
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
                let mut count = Enc(Count(0));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_and_scan_round_trip() {
        let mut buf = vec![0u8; 16];
        frame(kind::REMOVED, b"hello", &mut buf);
        assert_eq!(buf.len(), 16 + framed_len(5));
        buf.resize(buf.len() + 32, 0);
        match scan(&buf, 16) {
            Scan::Record {
                kind,
                payload,
                next,
            } => {
                assert_eq!(
                    (kind, payload, next),
                    (kind::REMOVED, &b"hello"[..], 16 + 24)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(scan(&buf, 40), Scan::End);
    }

    #[test]
    fn framing_in_place_matches_frame() {
        for payload in [&b""[..], b"x", b"hello world!", &[7u8; 100]] {
            let mut a = Vec::new();
            frame(kind::DELIVERED, payload, &mut a);
            let mut b = vec![0u8; RECORD_HEADER];
            b.extend_from_slice(payload);
            finish_frame(kind::DELIVERED, &mut b);
            assert_eq!(a, b);
        }
    }

    /// Every single-byte corruption of a record is detected, never decoded.
    #[test]
    fn every_flipped_byte_is_detected() {
        let mut rec = Vec::new();
        frame(kind::ENQUEUED, b"payload bytes", &mut rec);
        for i in 0..RECORD_HEADER + 13 {
            for bit in 0..8 {
                let mut bad = rec.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    !matches!(scan(&bad, 0), Scan::Record { .. }),
                    "byte {i} bit {bit} undetected"
                );
            }
        }
    }

    /// Seeded random garbage never panics the scanner or the decoder.
    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let n = rng.gen_range(0..64);
            let buf: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            let _ = scan(&buf, rng.gen_range(0..64));
            let mut d = Dec::new(&buf);
            let _ = d.str().and_then(|_| d.headers()).and_then(|_| d.bytes());
        }
    }
}
