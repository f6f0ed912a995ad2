//! The API's request parsing, through the real router of an in-process node:
//! arbitrary methods, paths, queries, content types and bodies get an answer
//! in time, never a panic, never a 5xx but 503, and every error is JSON.

use std::sync::OnceLock;

use orion_core::testing::fuzz::{corpus, ApiTarget};
use proptest::prelude::*;

fn target() -> &'static ApiTarget {
    static TARGET: OnceLock<ApiTarget> = OnceLock::new();
    TARGET.get_or_init(ApiTarget::new)
}

#[test]
fn every_corpus_request_is_answered_well() {
    let files = corpus("api");
    assert!(files.len() >= 30, "the api corpus lost its seeds");
    for (name, bytes) in &files {
        eprintln!("api corpus: {name}");
        target().run(bytes);
    }
}

proptest! {
    #![proptest_config(crate::config(300))]

    #[test]
    fn mutated_requests_are_answered_well(
        (seed, m) in crate::mutation(corpus("api").len())
    ) {
        let files = corpus("api");
        target().run(&m.apply(&files[seed].1));
    }
}
