//! Entry points for fuzzing the record decoder (`tests/fuzz/`, a cargo-fuzz
//! target, and `tests/fuzz_decode.rs`, a seeded run on stable): recovery's own
//! frame scanning (`codec::scan`) and payload decoding (`recover::apply`) over
//! bytes in memory, no directory involved. Not part of the API.

use super::codec::{self, Scan};
use super::index::Index;
use super::recover::{apply, Slot};

/// Replays one segment file's bytes as recovery does: the header must be valid,
/// bytes past the size it declares are ignored, then records are scanned and
/// decoded into a fresh state up to the end of the data or the first damaged
/// or undecodable record. Returns the number of records decoded. Never panics.
pub fn decode_segment(buf: &[u8]) -> usize {
    if !super::header_valid(buf) {
        return 0;
    }
    let declared = u64::from_le_bytes(
        buf[codec::SIZE_AT..codec::SIZE_AT + 8]
            .try_into()
            .expect("8 bytes"),
    );
    let end = (buf.len() as u64).min(declared.max(codec::SEGMENT_HEADER as u64)) as usize;
    decode_from(&buf[..end], codec::SEGMENT_HEADER)
}

/// Scans and decodes records from the start of `buf`, as if they followed a
/// segment header (a fuzzer reaches the record framing without having to forge
/// the header's checksum). Returns the number of records decoded. Never panics.
pub fn decode_records(buf: &[u8]) -> usize {
    decode_from(buf, 0)
}

fn decode_from(buf: &[u8], mut off: usize) -> usize {
    let mut index = Index::default();
    let mut slots: Vec<Option<Slot>> = Vec::new();
    let mut n = 0;
    loop {
        match codec::scan(buf, off) {
            Scan::End | Scan::Damaged(_) => return n,
            Scan::Record {
                kind,
                payload,
                next,
            } => {
                let at = (1, off as u64, (next - off) as u32);
                if apply(kind, payload, at, &mut index, &mut slots).is_err() {
                    return n;
                }
                n += 1;
                off = next;
            }
        }
    }
}

/// A segment file's bytes holding `records` (type, payload), each framed with
/// its commit mark and a valid checksum, after a valid header (flagged as a
/// checkpoint when `checkpoint`) that declares the buffer's size. Lets a fuzzer
/// or a test reach payload decoding past the checksums.
pub fn segment(records: &[(u8, &[u8])], checkpoint: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, payload) in records {
        codec::frame(*kind, payload, &mut body);
    }
    let size = (codec::SEGMENT_HEADER + body.len()) as u64;
    let mut h = Vec::with_capacity(size as usize);
    h.extend_from_slice(codec::MAGIC);
    h.extend_from_slice(&codec::VERSION.to_le_bytes());
    h.extend_from_slice(&(codec::SEGMENT_HEADER as u32).to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes());
    h.resize(codec::SEGMENT_HEADER - 4, 0);
    h[codec::FLAGS_AT] = if checkpoint {
        codec::FLAG_CHECKPOINT
    } else {
        0
    };
    h[codec::SIZE_AT..codec::SIZE_AT + 8].copy_from_slice(&size.to_le_bytes());
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(&body);
    h
}

/// The records (type, payload) of a segment file's bytes, in order, up to the
/// end of its data or the first damaged record (no payload decoding): the
/// parts a test mutates and frames again with [`segment`].
pub fn records(buf: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    if !super::header_valid(buf) {
        return out;
    }
    let mut off = codec::SEGMENT_HEADER;
    while let Scan::Record {
        kind,
        payload,
        next,
    } = codec::scan(buf, off)
    {
        out.push((kind, payload.to_vec()));
        off = next;
    }
    out
}

/// The cargo-fuzz target's input. The first byte says what the rest is:
/// `0` a segment file ([`decode_segment`]), `1` records without a segment
/// header ([`decode_records`]), `2` records as (type u8, payload length u16
/// little-endian, payload)… ([`structured_input`]), framed with valid
/// checksums into a segment and decoded, so mutations reach the payload
/// decoder. Returns the number of records decoded. Never panics.
pub fn decode_input(data: &[u8]) -> usize {
    let Some((mode, rest)) = data.split_first() else {
        return 0;
    };
    match mode % 3 {
        0 => decode_segment(rest),
        1 => decode_records(rest),
        _ => {
            let mut recs = Vec::new();
            let mut r = rest;
            while let [kind, a, b, tail @ ..] = r {
                let n = (u16::from_le_bytes([*a, *b]) as usize).min(tail.len());
                recs.push((*kind, &tail[..n]));
                r = &tail[n..];
            }
            decode_segment(&segment(&recs, true))
        }
    }
}

/// An input of type `2` for [`decode_input`] holding these records (payloads
/// longer than `u16::MAX` are cut).
pub fn structured_input(records: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = vec![2];
    for (kind, payload) in records {
        let p = &payload[..payload.len().min(u16::MAX as usize)];
        out.push(*kind);
        out.extend_from_slice(&(p.len() as u16).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}
