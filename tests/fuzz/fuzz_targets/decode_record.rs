//! Fuzzes the journal's record decoder: recovery's frame scanning and payload
//! decoding over arbitrary bytes (`libqueue::store::journal::fuzz::decode_input`
//! says how the first byte picks a raw segment, headerless records, or records
//! framed again with valid checksums). Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = libqueue::store::journal::fuzz::decode_input(data);
});
