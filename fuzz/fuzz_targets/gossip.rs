//! cargo-fuzz target: see `orion_gossip::fuzz::gossip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orion_gossip::fuzz::gossip(data));
