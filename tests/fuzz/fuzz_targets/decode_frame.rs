//! Fuzzes the wire format's decoders: the host's decoding of a request frame,
//! the framing of a byte stream of frames after a `HELLO`, the `HELLO`, and
//! every value decoder (`libqueue::wire::fuzz::decode_input` says how the
//! first byte picks one). Any panic is a bug. Seeds: `make fuzz-wire` writes
//! one per sample request (tests/fuzz_wire.rs `write_seed_corpus`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = libqueue::wire::fuzz::decode_input(data);
});
