//! cargo-fuzz target: see `orion_core::testing::fuzz::command`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orion_core::testing::fuzz::command(data));
