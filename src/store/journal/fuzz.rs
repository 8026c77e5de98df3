//! Entry points for fuzzing the record decoder (`tests/fuzz/`, a cargo-fuzz
//! target, and `tests/fuzz_decode.rs`, a seeded run on stable): recovery's own
//! segment decoding (`recover::decode_segment`, `decode_from`) and replay (`apply_op`) over
//! bytes in memory, no directory involved. Not part of the API.

use super::codec::{self, Scan};
use super::index::Index;
use super::recover;

/// Replays one segment file's bytes as recovery does: the header must be valid,
/// bytes past the size it declares are ignored, then records are scanned and
/// decoded into a fresh state up to the end of the data or the first damaged
/// or undecodable record. Returns the number of records decoded. Never panics.
pub fn decode_segment(buf: &[u8]) -> usize {
    if !super::header_valid(buf) {
        return 0;
    }
    apply_all(recover::decode_segment("fuzz", buf))
}

/// Scans and decodes records from the start of `buf`, as if they followed a
/// segment header (a fuzzer reaches the record framing without having to forge
/// the header's checksum). Returns the number of records decoded. Never panics.
pub fn decode_records(buf: &[u8]) -> usize {
    apply_all(recover::decode_from("fuzz", buf, 0))
}

/// Applies decoded records to a fresh replay state, as recovery does.
fn apply_all(d: recover::Decoded<'_>) -> usize {
    let mut index = Index::default();
    let mut slots: Vec<Option<recover::Slot<'_>>> = Vec::new();
    let n = d.ops.len();
    for (op, off, len) in d.ops {
        recover::apply_op(op, (1, off, len), &mut index, &mut slots);
    }
    // The live messages are made as recovery makes them (from payloads
    // `decode` checked: this must never panic).
    drop(recover::materialize(slots));
    n
}

/// A segment file's bytes holding `records` (type, payload), each framed with
/// its commit mark and a valid checksum, after a valid header (flagged as a
/// checkpoint when `checkpoint`) that declares the buffer's size. Lets a fuzzer
/// or a test reach payload decoding past the checksums.
pub fn segment(records: &[(u8, &[u8])], checkpoint: bool) -> Vec<u8> {
    segment_file(1, codec::VERSION, records, checkpoint)
}

/// [`segment`] numbered `seq`, with format `version` in its header (a test
/// writes a version-1 journal with it: records of types 1 to 6 only).
pub fn segment_file(seq: u64, version: u32, records: &[(u8, &[u8])], checkpoint: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, payload) in records {
        codec::frame(*kind, payload, &mut body);
    }
    let size = (codec::SEGMENT_HEADER + body.len()) as u64;
    let mut h = codec::segment_header(seq, size, checkpoint).to_vec();
    h[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&h[..codec::SEGMENT_HEADER - 4]);
    h[codec::SEGMENT_HEADER - 4..].copy_from_slice(&crc.to_le_bytes());
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
