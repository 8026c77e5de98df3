//! The listening tests (`tests/listening`) on brokers attached to a host of a
//! data directory: the same files, built with `ATTACHED` set (see
//! `listening/main.rs`), so pools, RPC, topics and the pollable descriptor
//! are checked across the seam between the public API and a host.

#[path = "listening/main.rs"]
mod listening;
