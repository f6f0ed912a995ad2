//! The body of the gossip codec fuzz target (feature `testing`), shared by
//! this crate's tests and the cargo-fuzz target of `fuzz/`.
//!
//! An input is one byte naming the layer, then its bytes:
//!
//! - `0`: a datagram opened under a keyring (as every received packet is);
//! - `1`: frames pushed to a reassembler, split on [`FRAME_SEP`], each from
//!   one of four senders;
//! - `2`: a member's published metadata decoded;
//! - `3`: a plaintext sealed, opened, framed and reassembled.
//!
//! What holds: nothing panics; a datagram opens only when it was sealed with
//! an installed key (the fuzzer cannot forge a tag); a reassembled envelope
//! is never over the datagram limit; what is sealed opens to itself and what
//! is split reassembles to itself; a member that decodes encodes back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chitchat::{ChitchatId, NodeState};

use crate::keyring::{GossipKey, Keyring, KEY_LEN};
use crate::transport::frame::{self, Reassembler, MAX_DATAGRAM};
use crate::transport::packet;

/// What separates frames in a reassembler input.
pub const FRAME_SEP: &[u8] = b"\xffFRAME";

fn keyring() -> Keyring {
    Keyring::new(GossipKey::from_bytes([7; KEY_LEN]))
}

/// Runs the layer `data`'s first byte names on the rest.
pub fn gossip(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let keys = keyring();
            // A sealed packet of the seeds opens; anything the fuzzer makes
            // of it must fail the tag unless it is byte for byte the same.
            if let Ok(plain) = packet::open(&keys, rest) {
                assert_eq!(
                    packet::open(&keys, rest).ok(),
                    Some(plain),
                    "opening is not deterministic"
                );
            }
        }
        1 => {
            let mut r = Reassembler::default();
            let start = Instant::now();
            let mut rest = rest;
            let mut i = 0u16;
            loop {
                let (frame, more) = match find(rest, FRAME_SEP) {
                    Some(at) => (&rest[..at], Some(&rest[at + FRAME_SEP.len()..])),
                    None => (rest, None),
                };
                let from = SocketAddr::from(([127, 0, 0, 1], 7000 + i % 4));
                let now = start + Duration::from_millis(300 * u64::from(i));
                if let Ok(Some(envelope)) = r.push(from, frame.to_vec(), now) {
                    assert!(envelope.len() <= MAX_DATAGRAM, "an envelope over the limit");
                }
                i = i.wrapping_add(1);
                match more {
                    Some(m) => rest = m,
                    None => break,
                }
            }
        }
        2 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let id = ChitchatId::new("n1", 3, SocketAddr::from(([127, 0, 0, 1], 7947)));
            let mut state = NodeState::for_test();
            state.set(crate::MEMBER_KEY, text);
            if let Some(member) = crate::codec::decode(&id, &state) {
                if let Ok(encoded) = crate::codec::encode(&member) {
                    state.set(crate::MEMBER_KEY, encoded);
                    assert_eq!(
                        crate::codec::decode(&id, &state).as_ref(),
                        Some(&member),
                        "a member reads back differently"
                    );
                }
            }
        }
        _ => {
            let keys = keyring();
            let sealed = packet::seal(&keys, rest);
            assert_eq!(packet::open(&keys, &sealed).ok().as_deref(), Some(rest));
            if let Ok(frames) = frame::split(rest, 9) {
                let mut r = Reassembler::default();
                let from = SocketAddr::from(([127, 0, 0, 1], 1));
                let now = Instant::now();
                let mut out = None;
                for f in frames {
                    out = r.push(from, f, now).expect("own frames are well formed");
                }
                assert_eq!(out.as_deref(), Some(rest), "split and reassembled differs");
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The seeds the corpus starts from, one or more per layer.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let keys = keyring();
    let member = r#"{"addrs":{"http":"127.0.0.1:8080","raft":"127.0.0.1:7946","gossip":"127.0.0.1:7947"},"role":"manager","capacity":{"cpu":4.0,"memory_mb":4096,"disk_mb":1000},"used":{"cpu":0.5,"memory_mb":256,"disk_mb":0},"tags":{"zone":"a"}}"#;
    let big: Vec<u8> = (0..frame::MAX_WHOLE + 10)
        .map(|i| (i % 251) as u8)
        .collect();
    let halves = frame::split(&big, 5).expect("splits");
    let mut reassembly = halves[1].clone();
    reassembly.extend_from_slice(FRAME_SEP);
    reassembly.extend_from_slice(&halves[0]);
    reassembly.extend_from_slice(FRAME_SEP);
    reassembly.extend_from_slice(&frame::split(b"whole", 6).expect("whole")[0]);
    let with = |b: u8, rest: &[u8]| {
        let mut v = vec![b];
        v.extend_from_slice(rest);
        v
    };
    vec![
        ("packet", with(0, &packet::seal(&keys, b"\x00hello gossip"))),
        ("packet-empty", with(0, &packet::seal(&keys, b""))),
        ("frames", with(1, &reassembly)),
        ("member", with(2, member.as_bytes())),
        ("roundtrip", with(3, b"\x00\x01 a chitchat envelope")),
    ]
    .into_iter()
    .map(|(n, b)| (n.to_string(), b))
    .collect()
}

#[cfg(test)]
mod tests {
    use orion_core::testing::fuzz::{cases, corpus, Mutator};
    use proptest::prelude::*;

    use super::*;

    /// The seeds are in the corpus, and every corpus input runs clean.
    #[test]
    fn the_corpus_holds_a_seed_of_every_layer_and_each_runs_clean() {
        let files = corpus("gossip");
        for (name, seed) in seeds() {
            // The sealed seeds carry random nonces: their layer byte and
            // length are what must be there.
            assert!(
                files
                    .iter()
                    .any(|(_, b)| b.len() == seed.len() && b[0] == seed[0]),
                "the gossip corpus lacks its {name} seed (see fuzz/README.md)"
            );
        }
        for (name, bytes) in &files {
            eprintln!("gossip corpus: {name}");
            gossip(bytes);
        }
        let member = &seeds()[3].1[1..];
        let mut state = NodeState::for_test();
        state.set(crate::MEMBER_KEY, std::str::from_utf8(member).unwrap());
        let id = ChitchatId::new("n1", 3, SocketAddr::from(([127, 0, 0, 1], 7947)));
        assert!(
            crate::codec::decode(&id, &state).is_some(),
            "the member seed decodes"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: cases(300),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Mutated packets, frames and members are taken or dropped, never
        /// a panic.
        #[test]
        fn mutated_gossip_is_taken_or_dropped(
            seed in 0..corpus("gossip").len(),
            ops in prop::collection::vec((any::<u8>(), any::<u32>(), any::<u8>()), 1..8),
        ) {
            let files = corpus("gossip");
            let mut bytes = Mutator { ops }.apply(&files[seed].1);
            if let (Some(b), Some(orig)) = (bytes.first_mut(), files[seed].1.first()) {
                *b = *orig;
            }
            gossip(&bytes);
        }
    }
}
