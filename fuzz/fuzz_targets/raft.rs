//! cargo-fuzz target: see `orion_store::fuzz::raft`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orion_store::fuzz::raft(data));
