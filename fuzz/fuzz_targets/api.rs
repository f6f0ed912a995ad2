//! cargo-fuzz target: see `orion_core::testing::fuzz::ApiTarget` (one
//! in-process node for the whole run; state carries over between inputs).
#![no_main]

use std::sync::OnceLock;

use orion_core::testing::fuzz::ApiTarget;

static TARGET: OnceLock<ApiTarget> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| TARGET.get_or_init(ApiTarget::new).run(data));
