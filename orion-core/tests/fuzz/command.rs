//! Commands decoded from JSON (as the log and forwarded proposals carry
//! them) and applied to a live state, and snapshots decoded: no input panics
//! the state machine, its invariants hold after every command, and a command
//! applied twice changes nothing more than once.

use orion_core::testing::fuzz::{command, corpus};
use proptest::prelude::*;

#[test]
fn every_corpus_command_applies_without_a_panic() {
    let files = corpus("command");
    assert!(files.len() >= 20, "the command corpus lost its seeds");
    let mut decoded = 0;
    for (name, bytes) in &files {
        eprintln!("command corpus: {name}");
        command(bytes);
        decoded += usize::from(serde_json::from_slice::<orion_core::Command>(bytes).is_ok());
    }
    assert!(decoded >= 20, "only {decoded} seeds decode as commands");
}

proptest! {
    #![proptest_config(crate::config(300))]

    #[test]
    fn mutated_commands_apply_without_a_panic(
        (seed, m) in crate::mutation(corpus("command").len())
    ) {
        let files = corpus("command");
        command(&m.apply(&files[seed].1));
    }
}
