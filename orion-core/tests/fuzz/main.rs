//! Fuzz targets run as tests: each over its checked-in corpus
//! (`fuzz/corpus/<target>`, shared with the cargo-fuzz targets of `fuzz/`),
//! then over random mutations of it for a bounded number of cases
//! (`ORION_FUZZ_CASES` raises them for a long run by hand). A crash found by
//! either becomes a file of the corpus, so it is checked on every run after.

mod api;
mod command;
mod spec;

use orion_core::testing::fuzz::Mutator;
use proptest::prelude::*;

/// A seed of the corpus (by position) and the mutations made to it.
pub fn mutation(seeds: usize) -> impl Strategy<Value = (usize, Mutator)> {
    (
        0..seeds,
        prop::collection::vec((any::<u8>(), any::<u32>(), any::<u8>()), 1..8),
    )
        .prop_map(|(seed, ops)| (seed, Mutator { ops }))
}

/// proptest's settings for a fuzz test: `default` cases unless
/// `ORION_FUZZ_CASES` says otherwise, no persistence files (the corpus is
/// where findings are kept).
pub fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: orion_core::testing::fuzz::cases(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
