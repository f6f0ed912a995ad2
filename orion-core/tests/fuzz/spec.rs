//! The job spec parsers (JSON, YAML, many at once, Compose) and the
//! validator: no input panics them; a spec they accept validates and reads
//! back equal from its JSON.

use orion_core::testing::fuzz::{corpus, spec};
use proptest::prelude::*;

#[test]
fn every_corpus_file_parses_or_is_refused_without_a_panic() {
    let files = corpus("spec");
    assert!(files.len() >= 10, "the spec corpus lost its seeds");
    let mut accepted = 0;
    for (name, bytes) in &files {
        eprintln!("spec corpus: {name}");
        spec(bytes);
        let text = String::from_utf8_lossy(bytes);
        accepted += usize::from(orion_core::JobSpec::parse(&text).is_ok());
    }
    // The seeds are mostly real specs: the target must see accepted ones too,
    // or its round-trip checks would never run.
    assert!(accepted >= 5, "only {accepted} seeds parse as specs");
}

proptest! {
    #![proptest_config(crate::config(300))]

    #[test]
    fn mutated_specs_parse_or_are_refused_without_a_panic(
        (seed, m) in crate::mutation(corpus("spec").len())
    ) {
        let files = corpus("spec");
        spec(&m.apply(&files[seed].1));
    }
}
