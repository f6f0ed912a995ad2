//! cargo-fuzz target: see `orion_core::testing::fuzz::spec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orion_core::testing::fuzz::spec(data));
